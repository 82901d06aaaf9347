//! Moves messages from Redis in batches and persists them to PostgreSQL with binary COPY.
//!
//! Delivery: at-least-once transport, exactly-once rows. The queue is split into shards (`QUEUE_SHARDS`), each
//! drained by one live batcher at a time, the holder of the shard's lease. Elements move atomically from the
//! shard's pending list into the holder's processing list and leave it only after their PostgreSQL commit;
//! rows are idempotent on `tracking_id`, so re-flushing after a crash duplicates nothing. Taking over a shard
//! moves every processing list of the shard back to the oldest end of pending, in one atomic step with the
//! lease, so a channel's messages are committed in the order they were queued, across crashes and hand-overs.
//!
//! # Guarantees and their bounds
//!
//! - **Crash** (`kill -9` at any moment): what was taken is in the processing list until its commit; once
//!   the lease expires (at most [`lease::LEASE_TTL`], 5 s), the shard's next holder (another batcher, or this
//!   one restarted) moves it back to pending and flushes it first, with reason `recovery`.
//! - **Batchers come and go**: membership and leases are renewed every [`lease::LEASE_INTERVAL`] (1 s); every
//!   live batcher works out the same assignment of shards to batchers, so a starting batcher takes its share
//!   (the old holders flush and release) and a dead one's shards are taken within the TTL.
//! - **Bad data**: elements that do not decode, and rows PostgreSQL refuses (SQLSTATE classes 22, 23, 54),
//!   go to `dead_letters` with the raw bytes and the error; the rest of the batch commits.
//! - **PostgreSQL or Redis failing** (anything else): the batch stays in the processing list and is retried
//!   on a new connection, backing off from 50 ms doubling to 5 s ([`backoff`]), for as long as it takes.
//! - **SIGTERM**: stop taking, commit what is held (reason `shutdown`), release every shard, leave the
//!   membership, exit 0. Retries stop [`ownership::SHUTDOWN_GRACE`] (10 s) after the signal; what could not be
//!   committed by then stays in its processing list for the shard's next holder.
//!
//! Limits: events are at-least-once (a replayed batch publishes its ids again). A batcher paused for longer
//! than the lease's TTL is presumed dead and its shards taken over; it cannot move anything after that (its
//! moves check the lease), and what it commits late is a replay the rows' uniqueness absorbs. Redis holds the
//! queue: without AOF and replicas, a crash of Redis itself loses what it held.
//!
//! # Layout
//!
//! - [`policy`]: the pure flush policy: flush at `BATCH_SIZE`, or `BATCH_TIMEOUT` after the batch's first element.
//! - [`row`]: the pure decoding of one Redis element into a validated row, or a dead-letter reason.
//! - [`assignment`]: the pure assignment of shards to live batchers (rendezvous hashing).
//! - [`backoff`]: capped exponential backoff (50 ms doubling to 5 s) for retries.
//! - [`link`]: one Redis connection (server or cluster), remade after failures, every call bounded.
//! - [`lease`]: membership, shard leases, takeover and release (Lua scripts).
//! - [`queue`]: a shard's Redis moves (the wake-up, the lease-checked move, clearing after commit).
//! - [`store`]: PostgreSQL: binary COPY straight into `messages` (through a staging table with `ON CONFLICT` only
//!   when a replay hits `tracking_id`), bad-row isolation, one transaction.
//! - [`flush`]: one flush end to end: decode, commit with retries, clear, publish `batch_persisted`, metrics.
//! - [`group_commit`]: with several shards, one transaction for the time-triggered batches of a round, whose
//!   deadline the shards' batches share.
//! - [`worker`]: one shard's fill/flush loop, recovery and final flush; `worker::step` decides its next step
//!   (pure), `worker::flush_task` runs its flusher beside it.
//! - [`ownership`]: which shards this batcher holds; lease renewal; one worker per shard.
//! - [`gauge`]: the `pipeline_queue_depth` gauge.
//! - [`http`]: `/health`, `/ready` and `/metrics`.
//! - [`telemetry`]: the metrics, declared at start.

pub mod assignment;
pub mod backoff;
pub mod flush;
pub mod gauge;
pub mod group_commit;
pub mod http;
pub mod lease;
pub mod link;
pub mod ownership;
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

    /// This batcher's identity: it names its processing lists and its membership in Redis, and is recorded
    /// with every batch it commits. Defaults to `<host name>-<process id>`, so batchers on one host never share
    /// one; ids must be distinct among live batchers. Letters, digits, `_`, `-`, `.`; at most 64.
    #[arg(long, env = "BATCHER_ID", default_value_t = default_batcher_id(), value_parser = parse_key_part)]
    pub batcher_id: String,
}

/// `<host name>-<process id>` (the host name alone is not unique among batchers on one host), or
/// `batcher-<process id>` if the host name cannot be read or is not usable in a key.
pub fn default_batcher_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().chars().take(50).collect::<String>())
        .find(|name| parse_key_part(name).is_ok())
        .unwrap_or_else(|| "batcher".into());
    format!("{host}-{}", std::process::id())
}

/// Applies the schema, then serves `/health` and `/metrics` on `listener` and runs the worker until
/// `shutdown` is cancelled and the held batch is flushed.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Installs the recorder before the first metric is recorded.
    pipeline::telemetry::declare(telemetry::metrics());
    let database_url = &config.database.database_url;
    pipeline::schema::connect_and_apply(database_url).await?;
    let redis = config.redis.target()?;
    // Redis must not evict the queue; a Redis that is down is not waited for (see `redis_policy`).
    pipeline::redis_policy::check_at_start(&redis).await?;

    let state = http::HttpState {
        batcher_id: config.batcher_id.clone(),
        redis: redis.lazy(pipeline::connection::Timeouts {
            connect: pipeline::probe::PROBE_TIMEOUT,
            response: Some(pipeline::probe::PROBE_TIMEOUT),
        })?,
        postgres: pipeline::schema::pool(database_url, 2)?,
    };
    // The HTTP server outlives the signal until the worker has flushed, so /health answers meanwhile.
    let http_stop = CancellationToken::new();
    let server = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(http_stop.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    let keys = config.redis.keys();
    let gauge_stop = CancellationToken::new();
    let gauge = tokio::spawn(gauge::run(
        link::RedisLink::new(redis.clone()),
        keys.clone(),
        config.redis.queue_shards,
        gauge_stop.clone(),
    ));
    let settings = ownership::Settings {
        policy: policy::FlushPolicy {
            threshold: config.batch.batch_size,
            timeout: config.batch.batch_timeout,
        },
        keys,
        batcher_id: config.batcher_id,
        redis,
        database_url: database_url.clone(),
        queue_shards: config.redis.queue_shards,
    };
    let result = ownership::run(settings, shutdown).await;
    gauge_stop.cancel();
    let _ = gauge.await;
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
