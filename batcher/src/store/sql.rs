//! The statements of a flush, prepared once per connection.

use tokio_postgres::{Client, Statement, types::Type};

const CREATE_STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS incoming (
    tracking_id uuid NOT NULL, user_id bigint NOT NULL, channel_id bigint NOT NULL,
    content text NOT NULL, created_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS";
const COPY_STAGING: &str = "COPY incoming (tracking_id, user_id, channel_id, content, created_at) \
    FROM STDIN (FORMAT binary)";
pub(super) const STAGING_TYPES: &[Type] = &[
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];
const COPY_MESSAGES: &str = "COPY messages (tracking_id, user_id, channel_id, content, created_at, batch_id) \
    FROM STDIN (FORMAT binary)";
pub(super) const MESSAGES_TYPES: &[Type] = &[
    Type::UUID,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
];
const INSERT_MESSAGES: &str = "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at, batch_id) \
    SELECT tracking_id, user_id, channel_id, content, created_at, $1 FROM incoming \
    ON CONFLICT (tracking_id) DO NOTHING";
const CLEAR_STAGING: &str = "DELETE FROM incoming";
// The id is taken before the transaction's rows so `messages.batch_id` can carry it, and so a retry after a
// lost COMMIT reply can tell whether that commit happened (see `find_batch`).
const NEXT_BATCH_ID: &str = "SELECT nextval(pg_get_serial_sequence('batches', 'id'))";
const INSERT_BATCH: &str = "INSERT INTO batches (id, batcher_id, reason, size, inserted, dead_letters, committed_at) \
    VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())";
const INSERT_DEAD_LETTERS: &str = "INSERT INTO dead_letters (raw, error, batcher_id, batch_id) \
    SELECT raw, error, $3, $4 FROM unnest($1::bytea[], $2::text[]) AS d(raw, error)";
const ADD_TOTALS: &str = "UPDATE pipeline_totals \
    SET messages = messages + $1, batches = batches + 1, dead_letters = dead_letters + $2";
const FIND_BATCH: &str = "SELECT inserted FROM batches WHERE id = $1";

/// Every statement of a flush, prepared on one connection.
pub(super) struct Statements {
    pub(super) copy_messages: Statement,
    pub(super) copy: Statement,
    pub(super) insert_messages: Statement,
    pub(super) clear_staging: Statement,
    pub(super) next_batch_id: Statement,
    pub(super) insert_batch: Statement,
    pub(super) insert_dead_letters: Statement,
    pub(super) add_totals: Statement,
    pub(super) find_batch: Statement,
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
        let (insert_batch, insert_dead_letters, add_totals, find_batch) = futures_util::try_join!(
            client.prepare(INSERT_BATCH),
            client.prepare(INSERT_DEAD_LETTERS),
            client.prepare(ADD_TOTALS),
            client.prepare(FIND_BATCH),
        )?;
        Ok(Self {
            copy_messages,
            copy,
            insert_messages,
            clear_staging,
            next_batch_id,
            insert_batch,
            insert_dead_letters,
            add_totals,
            find_batch,
        })
    }
}
