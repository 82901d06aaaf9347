//! Applies `init.sql` at start, so a fresh, empty database just works.

use anyhow::Context;

pub use crate::redact::redact;

/// The schema, idempotent (`CREATE … IF NOT EXISTS`).
pub const INIT_SQL: &str = include_str!("../../init.sql");

/// What `DELETE /reset` does to the tables, after locking them: every message, dead letter and channel head
/// goes (offsets start again at 1), totals go to zero (every shard's too), and `resets` counts one more, which tells the
/// notifiers' channel feeds to start their subscribers over. Batch ids keep counting up: a batcher takes its
/// batch's id before its transaction and, on a retry, takes a `batches` row with that id as proof that an
/// earlier try committed; restarting the sequence would let a later batch draw an id that a batch in flight
/// at the reset commits under, and count itself committed without a row.
pub const RESET_TABLES: &str = "TRUNCATE messages, dead_letters, channel_heads RESTART IDENTITY; \
     TRUNCATE batches CONTINUE IDENTITY; \
     UPDATE pipeline_totals SET messages = 0, batches = 0, dead_letters = 0, resets = resets + 1; \
     DELETE FROM shard_totals";

/// The running totals, one row `(messages, batches, dead_letters)`: every shard's (`shard_totals`) plus
/// `pipeline_totals`' own counts, kept from before `shard_totals` and added to by earlier batchers during a
/// rolling upgrade. Stats read these instead of counting `messages`.
pub const TOTALS: &str = "SELECT t.messages + s.messages AS messages, t.batches + s.batches AS batches, \
     t.dead_letters + s.dead_letters AS dead_letters \
     FROM pipeline_totals t, (SELECT coalesce(sum(messages), 0)::bigint AS messages, \
     coalesce(sum(batches), 0)::bigint AS batches, coalesce(sum(dead_letters), 0)::bigint AS dead_letters \
     FROM shard_totals) s";

/// Any fixed number; it only has to be the same for every service.
const SCHEMA_LOCK: i64 = 0x001a_6e57_0001;

/// Applies [`INIT_SQL`] in one transaction, under an advisory lock: services starting together would otherwise
/// race on `CREATE TABLE IF NOT EXISTS` and fail on the catalog's unique index.
pub async fn apply(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the schema transaction")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .context("Failed to take the schema lock")?;
    // Every start re-applies the schema: without this, each service logs "relation … already exists"
    // notices for every table.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .context("Failed to quiet the schema's notices")?;
    tx.batch_execute(INIT_SQL)
        .await
        .context("Failed to apply init.sql")?;
    tx.commit().await.context("Failed to commit the schema")?;
    // After the commit: the backfill runs chunk by chunk, each in its own transaction.
    crate::offset_backfill::run(client, SCHEMA_LOCK).await
}

/// Connects one client (its connection runs on a spawned task) and applies the schema with it.
pub async fn connect_and_apply(database_url: &str) -> anyhow::Result<()> {
    let mut client = connect(database_url).await?;
    apply(&mut client).await
}

/// Connects one client; the connection is driven by a spawned task that ends when the client is dropped.
pub async fn connect(database_url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "Failed to connect to PostgreSQL at {}",
                redact(database_url)
            )
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// A connection pool (deadpool) for request handlers; connections are re-made when they break.
pub fn pool(database_url: &str, max_size: usize) -> anyhow::Result<deadpool_postgres::Pool> {
    let config: tokio_postgres::Config = database_url.parse().with_context(|| {
        format!(
            "DATABASE_URL is not a valid PostgreSQL URL: {}",
            redact(database_url)
        )
    })?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("Failed to build the PostgreSQL pool")
}
/// A `messages` row as the channel feeds' message object; the row must have the columns `channel_id`,
/// `channel_offset`, `tracking_id`, `user_id`, `content`, `created_at` and `inserted_at` (the history endpoint
/// and the notifier's feeds both read them).
pub fn channel_message(row: &tokio_postgres::Row) -> crate::api::ChannelMessage {
    crate::api::ChannelMessage {
        channel_id: row.get("channel_id"),
        offset: row.get("channel_offset"),
        message_id: row.get("tracking_id"),
        user_id: row.get("user_id"),
        content: row.get("content"),
        created_at: row.get("created_at"),
        inserted_at: row.get("inserted_at"),
    }
}

/// `url` (a PostgreSQL URL) with its database replaced by `database`, host and query parameters kept: how the
/// tests and the benchmark reach the databases they create from the one they are given.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_keeping_host_and_query() {
        for (url, database, replaced) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "t1",
                "postgres://postgres@127.0.0.1:5432/t1",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "t2",
                "postgres://u:p@h/t2?sslmode=disable",
            ),
            ("postgres://h:5432", "t3", "postgres://h:5432/t3"),
            (
                "postgres://127.0.0.1?sslmode=disable",
                "postgres",
                "postgres://127.0.0.1/postgres?sslmode=disable",
            ),
            ("postgresql://h/db/x?a=1", "y", "postgresql://h/y?a=1"),
        ] {
            assert_eq!(with_database(url, database), replaced, "{url}");
        }
    }
}
