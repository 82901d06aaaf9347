-- Schema of the ingestion pipeline. Idempotent: every service applies it at start (under an advisory lock),
-- so a fresh, empty database just works, and applying it twice changes nothing.

-- One row per accepted message. `tracking_id` is the message_id the ingestor returned (UUID v7); the unique
-- constraint is what makes a replayed batch insert nothing twice.
CREATE TABLE IF NOT EXISTS messages (
    id          bigserial   PRIMARY KEY,
    tracking_id uuid        NOT NULL UNIQUE,
    user_id     bigint      NOT NULL CHECK (user_id > 0),
    channel_id  bigint      NOT NULL CHECK (channel_id > 0),
    content     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    batch_id    bigint
);

-- Channel offsets: each channel's rows are numbered 1, 2, 3, … in commit order, with no hole (the
-- history endpoint and the channel feeds resume from an offset). Added nullable, so adding it to a large
-- table is instant; rows from before it are numbered at start, in chunks (pipeline/src/offset_backfill.rs),
-- which then creates the unique index `messages_channel_offset_key (channel_id, channel_offset)`.
-- Only when missing: ALTER TABLE takes an ACCESS EXCLUSIVE lock even with IF NOT EXISTS, and every service
-- applies this file at start, so a start would otherwise wait behind any batch transaction in flight (and
-- forever behind a batcher paused mid-flush).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'messages' AND column_name = 'channel_offset'
    ) THEN
        ALTER TABLE messages ADD COLUMN channel_offset bigint;
    END IF;
END
$$;

-- Each channel's last offset. A batch locks the heads of its channels (in channel_id order) before writing
-- rows, numbers its rows after them and moves them, in its own transaction (batcher/src/store/).
CREATE TABLE IF NOT EXISTS channel_heads (
    channel_id bigint PRIMARY KEY,
    head       bigint NOT NULL CHECK (head >= 0)
);

-- One row per committed batch, written in the same transaction as its messages.
CREATE TABLE IF NOT EXISTS batches (
    id           bigserial   PRIMARY KEY,
    batcher_id   text        NOT NULL,
    -- why the batch was flushed: size | timeout | shutdown | recovery
    reason       text        NOT NULL,
    -- elements taken from Redis for this batch (rows + dead letters + replays; a second copy of an element
    -- within the batch is not counted)
    size         integer     NOT NULL,
    -- rows this batch actually added (a replay after a crash adds fewer than `size`)
    inserted     integer     NOT NULL DEFAULT 0,
    dead_letters integer     NOT NULL DEFAULT 0,
    committed_at timestamptz NOT NULL DEFAULT now()
);

-- Elements that cannot become a row (not JSON, missing fields, refused by PostgreSQL), kept verbatim.
CREATE TABLE IF NOT EXISTS dead_letters (
    id         bigserial   PRIMARY KEY,
    raw        bytea       NOT NULL,
    error      text        NOT NULL,
    batcher_id text        NOT NULL,
    batch_id   bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Running totals, updated in each batch's transaction, so stats never need a count(*) over `messages`.
CREATE TABLE IF NOT EXISTS pipeline_totals (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    messages     bigint  NOT NULL DEFAULT 0,
    batches      bigint  NOT NULL DEFAULT 0,
    dead_letters bigint  NOT NULL DEFAULT 0
);
INSERT INTO pipeline_totals (singleton) VALUES (true) ON CONFLICT DO NOTHING;
-- Each queue shard's running totals, added to in each of its batches' transactions; the totals are these rows
-- summed plus `pipeline_totals`' own counts (`pipeline::schema::TOTALS`), which batchers of earlier versions
-- still add to during a rolling upgrade. Not one row for every batch: a row's lock lasts until COMMIT, so every
-- shard's commit would wait for the one before it, and concurrent commits could not share a WAL flush.
CREATE TABLE IF NOT EXISTS shard_totals (
    shard        integer PRIMARY KEY,
    messages     bigint  NOT NULL DEFAULT 0,
    batches      bigint  NOT NULL DEFAULT 0,
    dead_letters bigint  NOT NULL DEFAULT 0
);
-- How many times `DELETE /reset` has emptied the tables: channel offsets start again at 1 after each, and a
-- notifier that sees this change tells its channel subscribers to start over. Only when missing, for the
-- reason given for `channel_offset` (the batches' UPDATE holds the row's lock).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'pipeline_totals' AND column_name = 'resets'
    ) THEN
        ALTER TABLE pipeline_totals ADD COLUMN resets bigint NOT NULL DEFAULT 0;
    END IF;
END
$$;
