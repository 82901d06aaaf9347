//! Gives the rows written before channel offsets existed their offsets, then adds the unique index.
//!
//! `init.sql` adds `messages.channel_offset` (nullable: adding it is instant, no table rewrite) and
//! `channel_heads`; it runs in one transaction, so it cannot do this itself without holding every row lock of
//! a large table until the end. Here each chunk of [`CHUNK_ROWS`] rows, in `id` order, is its own
//! statement and its own transaction: it numbers the chunk's rows without an offset per channel after the
//! channel's head, and moves the heads. Numbering by ascending `id` chunk after chunk gives each channel
//! 1, 2, 3, … in `id` order. A start interrupted half-way resumes where it stopped (done rows are skipped,
//! heads already count them; it starts after the last row numbered). The unique index `(channel_id, channel_offset)` is built last and is the mark
//! that the backfill is complete: once it exists, a start costs one catalog lookup.
//!
//! Runs under the schema's advisory lock (session-level here), so two services starting together never
//! number the same rows; the services write rows only after the schema is applied, so no new row races it.

use anyhow::Context;
use tokio_postgres::Client;

/// Rows per chunk (per transaction).
pub const CHUNK_ROWS: i64 = 10_000;

/// The unique index; its existence means the backfill is done.
pub const INDEX_NAME: &str = "messages_channel_offset_key";

const INDEX_EXISTS: &str = "SELECT to_regclass('messages_channel_offset_key') IS NOT NULL";

// $1: the last id done; $2: the chunk size. Returns the chunk's last id (NULL when no row is left).
// The heads are locked in channel order (the INSERT's input order), as the batcher does.
const BACKFILL_CHUNK: &str = "WITH chunk AS ( \
        SELECT id, channel_id, channel_offset FROM messages WHERE id > $1 ORDER BY id LIMIT $2 \
    ), todo AS ( \
        SELECT id, channel_id, row_number() OVER (PARTITION BY channel_id ORDER BY id) AS n \
        FROM chunk WHERE channel_offset IS NULL \
    ), counts AS ( \
        SELECT channel_id, count(*) AS n FROM todo GROUP BY channel_id \
    ), heads AS ( \
        INSERT INTO channel_heads (channel_id, head) \
        SELECT channel_id, n FROM counts ORDER BY channel_id \
        ON CONFLICT (channel_id) DO UPDATE SET head = channel_heads.head + EXCLUDED.head \
        RETURNING channel_id, head \
    ), numbered AS ( \
        UPDATE messages m SET channel_offset = h.head - c.n + t.n \
        FROM todo t JOIN counts c ON c.channel_id = t.channel_id JOIN heads h ON h.channel_id = t.channel_id \
        WHERE m.id = t.id \
    ) \
    SELECT max(id) FROM chunk";

const RESUME_AFTER: &str =
    "SELECT coalesce(max(id), 0) FROM messages WHERE channel_offset IS NOT NULL";

const CREATE_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS messages_channel_offset_key \
    ON messages (channel_id, channel_offset)";

/// Backfills and indexes, unless already done. `lock` is the schema's advisory lock key.
pub async fn run(client: &Client, lock: i64) -> anyhow::Result<()> {
    if index_exists(client).await? {
        return Ok(());
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock])
        .await
        .context("Failed to take the schema lock for the offset backfill")?;
    let result = backfill_and_index(client).await;
    // Released with the session anyway if this fails (the caller drops the connection on error).
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&lock])
        .await
        .context("Failed to release the schema lock");
    result.and(unlocked.map(|_| ()))
}

async fn index_exists(client: &Client) -> anyhow::Result<bool> {
    Ok(client
        .query_one(INDEX_EXISTS, &[])
        .await
        .context("Failed to look up the channel offset index")?
        .get(0))
}

async fn backfill_and_index(client: &Client) -> anyhow::Result<()> {
    // Another service may have finished while this one waited for the lock.
    if index_exists(client).await? {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let chunk = client
        .prepare(BACKFILL_CHUNK)
        .await
        .context("Failed to prepare the offset backfill")?;
    // Resuming: the rows done form a prefix of the ids; one scan finds its end, instead of re-reading every
    // chunk already done (an ingestor's schema attempt is cut off after seconds and tried again).
    let mut last_id: i64 = client
        .query_one(RESUME_AFTER, &[])
        .await
        .context("Failed to find where the offset backfill stopped")?
        .get(0);
    let mut chunks = 0_u64;
    loop {
        let next: Option<i64> = client
            .query_one(&chunk, &[&last_id, &CHUNK_ROWS])
            .await
            .context("Failed to backfill channel offsets")?
            .get(0);
        let Some(next) = next else { break };
        last_id = next;
        chunks += 1;
    }
    client
        .batch_execute(CREATE_INDEX)
        .await
        .context("Failed to create the channel offset index")?;
    if chunks > 0 {
        tracing::info!(
            chunks,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "channel offsets backfilled"
        );
    }
    Ok(())
}
