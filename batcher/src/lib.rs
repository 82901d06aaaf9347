//! Moves messages from Redis in batches and persists them to PostgreSQL with binary COPY.
//!
//! Delivery: at-least-once transport, exactly-once rows. Elements move atomically from the pending list into
//! this batcher's own processing list and leave it only after their PostgreSQL commit; rows are idempotent on
//! `tracking_id`, so re-flushing after a crash duplicates nothing. A batcher re-flushes its own list at start,
//! and reclaims the list of any batcher whose heartbeat expired.
//!
//! # Guarantees and their bounds
//!
//! - **Crash** (`kill -9` at any moment): what was taken is in the processing list until its commit; the
//!   restarted batcher (same `BATCHER_ID`) waits for its predecessor's heartbeat to expire (at most
//!   [`heartbeat::HEARTBEAT_TTL`], 5 s), then re-flushes the list with reason `recovery`.
//! - **Gone for good**: the heartbeat is renewed every [`heartbeat::HEARTBEAT_INTERVAL`] (1 s) and expires
//!   after 5 s; any live batcher then moves that list back to the oldest end of pending within a second.
//! - **Bad data**: elements that do not decode, and rows PostgreSQL refuses (SQLSTATE classes 22, 23, 54),
//!   go to `dead_letters` with the raw bytes and the error; the rest of the batch commits.
//! - **PostgreSQL or Redis failing** (anything else): the batch stays in the processing list and is retried
//!   on a new connection, backing off from 50 ms doubling to 5 s ([`backoff`]), for as long as it takes.
//! - **SIGTERM**: stop taking, commit what is held (reason `shutdown`), leave the set, exit 0. Retries stop
//!   [`worker::SHUTDOWN_GRACE`] (10 s) after the signal; what could not be committed by then stays in the
//!   processing list, whose heartbeat is deleted so another batcher reclaims it at once.
//!
//! Limits: events are at-least-once (a replayed batch publishes its ids again). A batcher paused for longer
//! than 5 s is presumed dead and its list reclaimed; it notices within a second of waking and starts over,
//! but an element it moved in that second stays in its list, not in pending, and if it then dies for good
//! that element waits until a batcher with the same id starts again. Redis holds the queue: without AOF,
//! a crash of Redis itself loses what it held.
//!
//! # Layout
//!
//! - [`policy`]: the pure flush policy: flush at `BATCH_SIZE`, or `BATCH_TIMEOUT` after the batch's first element.
//! - [`row`]: the pure decoding of one Redis element into a validated row, or a dead-letter reason.
//! - [`backoff`]: capped exponential backoff (50 ms doubling to 5 s) for retries.
//! - [`queue`]: the Redis moves (BLMOVE, the batch-moving script, clearing after commit) and the connection.
//! - [`heartbeat`]: registration, the heartbeat lease, reclaiming dead batchers' lists.
//! - [`store`]: PostgreSQL: binary COPY straight into `messages` (through a staging table with `ON CONFLICT` only
//!   when a replay hits `tracking_id`), bad-row isolation, one transaction.
//! - [`flush`]: one flush end to end: decode, commit with retries, clear, publish `batch_persisted`, metrics.
//! - [`worker`]: the fill/flush loop, recovery and the shutdown flush.
//! - [`http`]: `/health`, `/ready` and `/metrics`.
//! - [`telemetry`]: the metrics, declared at start.

pub mod backoff;
pub mod flush;
pub mod heartbeat;
pub mod http;
pub mod policy;
pub mod queue;
pub mod row;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::net::SocketAddr;

use anyhow::Context;
use pipeline::config::{
    BatchConfig, DatabaseConfig, LogConfig, RedisConfig, parse_addr, parse_key_part,
};
use tokio_util::sync::CancellationToken;

/// The batcher's configuration, from the environment (or the matching flags).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "batcher",
    version,
    about = "Persists queued messages from Redis to PostgreSQL in batches."
)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub batch: BatchConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Listen address of /health and /metrics.
    #[arg(long, env = "BATCHER_ADDR", default_value = "127.0.0.1:8002", value_parser = parse_addr)]
    pub batcher_addr: SocketAddr,

    /// This batcher's identity: it names its processing list and heartbeat in Redis. Defaults to the host
    /// name; several batchers on one host need distinct ids (e.g. `$(hostname)-1`), and a restarted batcher
    /// must keep its id to re-flush what it held. Letters, digits, `_`, `-`, `.`; at most 64.
    #[arg(long, env = "BATCHER_ID", default_value_t = default_batcher_id(), value_parser = parse_key_part)]
    pub batcher_id: String,
}

/// The host name, or `batcher` if it cannot be read.
pub fn default_batcher_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| parse_key_part(name).is_ok())
        .unwrap_or_else(|| "batcher".into())
}

/// Applies the schema, then serves `/health` and `/metrics` on `listener` and runs the worker until
/// `shutdown` is cancelled and the held batch is flushed.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Installs the recorder before the first metric is recorded.
    telemetry::declare_metrics();
    let database_url = &config.database.database_url;
    pipeline::schema::connect_and_apply(database_url).await?;
    // Redis must not evict the queue; a Redis that is down is not waited for (see `redis_policy`).
    pipeline::redis_policy::check_at_start(&config.redis.redis_url).await?;
    let redis = redis::Client::open(config.redis.redis_url.as_str()).with_context(|| {
        format!(
            "REDIS_URL is not a valid Redis URL: {}",
            pipeline::schema::redact(&config.redis.redis_url)
        )
    })?;

    let state = http::HttpState {
        batcher_id: config.batcher_id.clone(),
        redis: redis.clone(),
        postgres: pipeline::schema::pool(database_url, 2)?,
    };
    // The HTTP server outlives the signal until the worker has flushed, so /health answers meanwhile.
    let http_stop = CancellationToken::new();
    let server = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(http_stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    let settings = worker::Settings {
        policy: policy::FlushPolicy {
            max_size: config.batch.batch_size,
            timeout: config.batch.batch_timeout,
        },
        keys: config.redis.keys(),
        batcher_id: config.batcher_id,
        redis,
        database_url: database_url.clone(),
    };
    let result = worker::run(settings, shutdown).await;
    http_stop.cancel();
    server
        .await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    result.context("the batcher stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn batcher_ids_must_be_safe_in_key_names() {
        assert_eq!(parse_key_part("host-1.a_b"), Ok("host-1.a_b".into()));
        for bad in ["", "a b", "a:b", "a{b", &"x".repeat(65)] {
            assert!(parse_key_part(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_key_part(&default_batcher_id()).is_ok());
    }

    #[test]
    fn flags_parse_into_the_config() {
        let config = Config::try_parse_from([
            "batcher",
            "--batcher-id",
            "b7",
            "--batch-size",
            "10",
            "--batch-timeout",
            "0.05",
            "--batcher-addr",
            "127.0.0.1:9",
        ])
        .unwrap();
        assert_eq!(config.batcher_id, "b7");
        assert_eq!(config.batch.batch_size, 10);
        assert_eq!(config.batcher_addr.port(), 9);
        assert!(Config::try_parse_from(["batcher", "--batcher-id", "a:b"]).is_err());
    }
}
