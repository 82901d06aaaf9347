//! The statements of a flush, prepared once per connection.

use tokio_postgres::{Client, Statement, types::Type};

// `seq` is the row's index in the batch: offsets follow it (a heap scan's order is not a promise).
// The table lives as long as the connection, and is made anew with it, so its columns can change freely.
const CREATE_STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS incoming (
    tracking_id uuid NOT NULL, user_id bigint NOT NULL, channel_id bigint NOT NULL,
    content text NOT NULL, created_at timestamptz NOT NULL, seq integer NOT NULL
) ON COMMIT DELETE ROWS";
const COPY_STAGING: &str = "COPY incoming (tracking_id, user_id, channel_id, content, created_at, seq) \
    FROM STDIN (FORMAT binary)";
pub(super) const STAGING_TYPES: &[Type] = &[
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT4,
];
const COPY_MESSAGES: &str = "COPY messages \
    (tracking_id, user_id, channel_id, content, created_at, batch_id, channel_offset) \
    FROM STDIN (FORMAT binary)";
pub(super) const MESSAGES_TYPES: &[Type] = &[
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT8,
];
// Locks the heads of the batch's channels ($1, ascending: concurrent batches sharing channels lock them in
// the same order, so they queue instead of deadlocking) and adds $2 to each, creating missing heads at 0.
// Every path takes these locks first, and every insert into `messages` happens under them, so a row of a
// locked channel cannot appear behind this transaction's back: that is what makes the offsets contiguous
// even when a fenced batcher commits late, or a replay and its original run at once. The direct path
// reserves its row counts here (its COPY inserts all or nothing); the others pass 0 and count in SQL.
// Returns each channel's head after the addition.
const LOCK_HEADS: &str = "INSERT INTO channel_heads (channel_id, head) \
    SELECT channel_id, n FROM unnest($1::bigint[], $2::bigint[]) AS c(channel_id, n) ORDER BY channel_id \
    ON CONFLICT (channel_id) DO UPDATE SET head = channel_heads.head + EXCLUDED.head \
    RETURNING channel_id, head";
// The staged insert: numbers only the rows not yet in `messages` (the first of any tracking_id repeated in
// the batch), per channel in batch order after the (locked) head, inserts them, and moves each head to its
// channel's last offset. Returns the rows added, and whether every channel's new offsets are contiguous
// after its head: a row skipped by ON CONFLICT although NOT EXISTS let it through (its tracking_id was
// committed meanwhile under another channel's lock, which only a forged element can do) would leave a hole;
// the caller then rolls back and retries, and the retry no longer counts that row.
const INSERT_MESSAGES: &str = "WITH fresh AS ( \
        SELECT DISTINCT ON (i.tracking_id) i.* FROM incoming i \
        WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.tracking_id = i.tracking_id) \
        ORDER BY i.tracking_id, i.seq \
    ), numbered AS ( \
        SELECT f.*, h.head + row_number() OVER (PARTITION BY f.channel_id ORDER BY f.seq) AS channel_offset \
        FROM fresh f JOIN channel_heads h ON h.channel_id = f.channel_id \
    ), added AS ( \
        INSERT INTO messages \
            (tracking_id, user_id, channel_id, content, created_at, batch_id, channel_offset) \
        SELECT tracking_id, user_id, channel_id, content, created_at, $1, channel_offset \
        FROM numbered ORDER BY seq \
        ON CONFLICT (tracking_id) DO NOTHING \
        RETURNING channel_id, channel_offset \
    ), tops AS ( \
        SELECT a.channel_id, max(a.channel_offset) AS top, count(*) AS n, \
            max(a.channel_offset) - min(h.head) = count(*) AS contiguous \
        FROM added a JOIN channel_heads h ON h.channel_id = a.channel_id GROUP BY a.channel_id \
    ), moved AS ( \
        UPDATE channel_heads h SET head = tops.top FROM tops WHERE h.channel_id = tops.channel_id \
    ) \
    SELECT coalesce(sum(n), 0)::bigint, coalesce(bool_and(contiguous), true) FROM tops";
const CLEAR_STAGING: &str = "DELETE FROM incoming";
// The id is taken before the transaction's rows so `messages.batch_id` can carry it, and so a retry after a
// lost COMMIT reply can tell whether that commit happened (see `find_batch`).
const NEXT_BATCH_ID: &str = "SELECT nextval(pg_get_serial_sequence('batches', 'id'))";
// The ids of $1 batches committed together (see `Store::commit_group`).
const NEXT_BATCH_IDS: &str =
    "SELECT nextval(pg_get_serial_sequence('batches', 'id')) FROM generate_series(1, $1::int)";
const INSERT_BATCH: &str = "INSERT INTO batches (id, batcher_id, reason, size, inserted, dead_letters, committed_at) \
    VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())";
const INSERT_DEAD_LETTERS: &str = "INSERT INTO dead_letters (raw, error, batcher_id, batch_id) \
    SELECT raw, error, $3, $4 FROM unnest($1::bytea[], $2::text[]) AS d(raw, error)";
// The shard's row of the totals (see `shard_totals` in init.sql): shards commit without waiting for each other.
const ADD_TOTALS: &str = "INSERT INTO shard_totals AS t (shard, messages, batches, dead_letters) \
    VALUES ($1, $2, 1, $3) ON CONFLICT (shard) DO UPDATE SET messages = t.messages + EXCLUDED.messages, \
    batches = t.batches + 1, dead_letters = t.dead_letters + EXCLUDED.dead_letters";
const FIND_BATCH: &str = "SELECT inserted FROM batches WHERE id = $1";
// Each channel's offsets among these tracking ids (the batch's rows: inserted now, or found already there by
// a replay), for the `channels` of the batch's event. Only the staged and isolating paths and a commit whose
// reply was lost ask: the direct path knows its offsets. Served by the unique index on tracking_id.
const CHANNEL_RANGES: &str = "SELECT channel_id, min(channel_offset), max(channel_offset) FROM messages \
    WHERE tracking_id = ANY($1) AND channel_offset IS NOT NULL GROUP BY channel_id ORDER BY channel_id";

/// Every statement of a flush, prepared on one connection.
pub(super) struct Statements {
    pub(super) copy_messages: Statement,
    pub(super) lock_heads: Statement,
    pub(super) copy: Statement,
    pub(super) insert_messages: Statement,
    pub(super) clear_staging: Statement,
    pub(super) next_batch_id: Statement,
    pub(super) next_batch_ids: Statement,
    pub(super) insert_batch: Statement,
    pub(super) insert_dead_letters: Statement,
    pub(super) add_totals: Statement,
    pub(super) find_batch: Statement,
    pub(super) channel_ranges: Statement,
}

impl Statements {
    /// Creates the staging table of this connection and prepares every statement on it.
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        client.batch_execute(CREATE_STAGING).await?;
        let (copy_messages, copy, insert_messages, clear_staging, next_batch_id) = futures_util::try_join!(
            client.prepare(COPY_MESSAGES),
            client.prepare(COPY_STAGING),
            client.prepare(INSERT_MESSAGES),
            client.prepare(CLEAR_STAGING),
            client.prepare(NEXT_BATCH_ID),
        )?;
        let (insert_batch, insert_dead_letters, add_totals, find_batch, lock_heads) = futures_util::try_join!(
            client.prepare(INSERT_BATCH),
            client.prepare(INSERT_DEAD_LETTERS),
            client.prepare(ADD_TOTALS),
            client.prepare(FIND_BATCH),
            client.prepare(LOCK_HEADS),
        )?;
        let (channel_ranges, next_batch_ids) = futures_util::try_join!(
            client.prepare(CHANNEL_RANGES),
            client.prepare(NEXT_BATCH_IDS),
        )?;
        Ok(Self {
            copy_messages,
            lock_heads,
            copy,
            insert_messages,
            clear_staging,
            next_batch_id,
            next_batch_ids,
            insert_batch,
            insert_dead_letters,
            add_totals,
            find_batch,
            channel_ranges,
        })
    }
}
