//! The ingestor: the HTTP front door of the pipeline. It validates messages and pushes them onto the Redis
//! pending list, answering 201 only once Redis holds them.
//!
//! # Layout
//!
//! - [`Config`] and [`run`] (this file): configuration from the environment, and serving until shutdown.
//! - [`state`]: [`state::AppState`], what every handler shares; it imports no handler, `auth` or `openapi`.
//! - [`app`]: the one list of routes ([`app::routes`]), from which the router ([`app::app`]) and the OpenAPI
//!   document are both made; the document reaches its handlers as an `Extension`.
//! - [`routes`]: one module per endpoint (`messages`, `batch`, `simulate`, `queue_status`, `reset`,
//!   `health`, `ready`, `metrics`, `root` (`GET /`), `ws_stats` (the `/ws/stats` relay to the notifier)),
//!   plus the Redis/PostgreSQL timeouts, the queue depth read and the `Idempotency-Key` calls they share.
//! - [`schema`]: `init.sql`, applied in the background with retries, so writes never wait for PostgreSQL.
//! - [`openapi`]: `GET /openapi.json`, generated from the handlers' annotations.
//! - [`auth`]: `API_KEYS` for the write endpoints and content reads, `ADMIN_API_KEY` for `DELETE /reset`.
//! - [`cors`]: `CORS_ORIGINS` and CORS for browsers, skipped for requests that are not CORS requests.
//! - [`backpressure`]: `MAX_QUEUE_DEPTH`, checked against a queue depth cached in memory.
//! - [`domain`]: the validation rules, pure and unit-tested.
//! - [`extract`]: the JSON body extractor (content type, body limits, the failing field's path).
//! - [`error`]: [`error::ApiError`], the one place each error status is produced (and how Redis and
//!   PostgreSQL errors map onto it).
//! - [`enqueue`]: pushing elements onto their shards' pending lists, and `REDIS_WAIT_REPLICAS`.
//! - [`pusher`]: the group commit: concurrent requests share one multi-value `LPUSH` per shard.
//! - [`idempotency`]: `Idempotency-Key`, remembered and pushed in one Lua script.
//! - [`telemetry`]: request metrics (duration by route and status, rejections by reason).
//! - [`write_timeout`]: `HTTP_WRITE_TIMEOUT`, which drops a client that stops reading its answer.

pub mod app;
pub mod auth;
pub mod backpressure;
pub mod cors;
pub mod domain;
pub mod enqueue;
pub mod error;
pub mod extract;
pub mod history;
pub mod idempotency;
pub mod openapi;
pub mod pusher;
pub mod routes;
pub mod schema;
pub mod state;
pub mod telemetry;
pub mod write_timeout;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use auth::{ApiKeys, Secret};
use pipeline::config::{
    BatchConfig, DatabaseConfig, LogConfig, RedisConfig, parse_addr, parse_seconds,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Default `MAX_QUEUE_DEPTH`: a million messages is about 200 MB of Redis memory, and at 40k msg/s about
/// 25 s of work for the batchers, so a queue that long means they are down or far behind.
pub const DEFAULT_MAX_QUEUE_DEPTH: &str = "1000000";

/// How long shutdown waits for the pusher to hand its last group to Redis.
const PUSHER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the `/ws/stats` relays to close (each gives its client 1 s, then the notifier 1 s).
const RELAYS_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The ingestor's configuration: every field has an environment variable (see `--help`). Its `Debug`
/// shows no key (they are [`Secret`]s), and `--help` does not show the keys' environment values.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ingestor", version, about)]
pub struct Config {
    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub batch: BatchConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Address the HTTP API listens on.
    #[arg(long, env = "INGESTOR_ADDR", default_value = "127.0.0.1:8000", value_parser = parse_addr)]
    pub ingestor_addr: SocketAddr,

    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*` allows any. The
    /// dashboard is served by the notifier, so its origin belongs here.
    #[arg(
        long,
        env = "CORS_ORIGINS",
        default_value = "http://127.0.0.1:8001,http://localhost:8001",
        value_delimiter = ',',
        value_parser = pipeline::config::parse_origin
    )]
    pub cors_origins: Vec<String>,

    /// Keys that may call the write endpoints (POST /messages, /messages/batch, /simulate) and read content
    /// (GET /messages, GET /channels/{channel_id}/messages), comma-separated, each sent as
    /// `Authorization: Bearer <key>` (else 401) or, for reads, as the `access_token` query parameter; each 1
    /// to 256 visible ASCII characters. Unset or empty: those endpoints are open, for development only.
    #[arg(
        long,
        env = "API_KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        value_parser = auth::parse_api_keys
    )]
    pub api_keys: ApiKeys,

    /// Key for DELETE /reset, sent as `Authorization: Bearer <key>` (else 401). Unset: DELETE /reset is
    /// refused (403), so nobody can wipe the data.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true, value_parser = auth::parse_secret)]
    pub admin_api_key: Option<Secret>,

    /// Backpressure: when this many messages are in the pipeline (waiting in Redis plus held by
    /// batchers), submissions that would exceed it get 429 with Retry-After and queue nothing.
    /// 1 to 1000000000.
    #[arg(
        long,
        env = "MAX_QUEUE_DEPTH",
        default_value = DEFAULT_MAX_QUEUE_DEPTH,
        value_parser = backpressure::parse_limit
    )]
    pub max_queue_depth: u64,

    /// Replicas that must hold a message before its 201 (or 202): after each group of pushes the ingestor
    /// sends one `WAIT n`, and answers 503 if fewer than n replicas (on a cluster, of every master)
    /// acknowledged within 1 s. 0 acknowledges as soon as the master has it. 0 to 16.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value = "0", value_parser = clap::value_parser!(u32).range(0..=16))]
    pub redis_wait_replicas: u32,

    /// Base URL of the notifier (`http://host:port`, plain `http://` only): `GET /ws/stats` here is relayed
    /// to its `/ws/stats`,
    /// so the original's dashboard, which connects to the API's address, gets live stats.
    #[arg(
        long,
        env = "NOTIFIER_URL",
        default_value = "http://127.0.0.1:8001",
        value_parser = parse_notifier_url
    )]
    pub notifier_url: String,

    /// How long an `Idempotency-Key` is remembered, in whole seconds (1..=2592000): a retry with the same
    /// key within it gets the first answer and queues nothing; after it, the key is new again. Each record
    /// costs about 100 bytes of Redis memory for a message; a batch's holds its ids as 16-byte binary, 38
    /// bytes + 16 per message (10,000 messages: 160,038 bytes) plus Redis's ~60 bytes per key.
    #[arg(
        long,
        env = "IDEMPOTENCY_TTL",
        default_value = idempotency::DEFAULT_TTL_SECONDS,
        value_parser = idempotency::parse_ttl
    )]
    pub idempotency_ttl: Duration,

    /// Seconds (fractions allowed) a write to a client may stay blocked before the connection is dropped: a
    /// client that stops reading its answer holds nothing longer than this.
    #[arg(long, env = "HTTP_WRITE_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub http_write_timeout: Duration,
}

/// `NOTIFIER_URL`: `http://host[:port]`, kept without a trailing slash. Only plain `http://`: the relay
/// speaks `ws://` (the notifier runs beside the ingestor, not across the internet).
pub fn parse_notifier_url(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    match value.strip_prefix("http://") {
        Some(host)
            if !host.is_empty()
                && host.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                }) =>
        {
            Ok(value.to_owned())
        }
        _ => Err("must be an http:// URL without a path, e.g. http://127.0.0.1:8001".into()),
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled (the schema is applied at start, or in the
/// background while PostgreSQL is unreachable: see [`schema`]); in-flight requests
/// finish and the pusher hands its last group to Redis before this returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Checked first, so a bad key stops the service before it touches anything; the error names the key
    // by position, never by value.
    let access = auth::Access::new(&config.api_keys, config.admin_api_key.as_ref())?;
    // Redis must not evict the queue; a Redis that is down is not waited for (see `redis_policy`).
    pipeline::redis_policy::check_at_start(&config.redis.target()?).await?;
    // Installs the recorder before anything is counted (counts made before it would be lost).
    pipeline::telemetry::declare(telemetry::metrics());
    tracing::info!(
        write_keys = config.api_keys.0.len(),
        writes_need_key = access.writes_need_key(),
        reset_enabled = access.reset_enabled(),
        max_queue_depth = config.max_queue_depth,
        "access control and backpressure"
    );
    let (state, tasks) = state::AppState::new(&config, access, &shutdown)?;
    // PostgreSQL serves reads only: writes never wait for it (see `schema`).
    let schema_task = schema::apply(
        config.database.database_url.clone(),
        state.schema.clone(),
        shutdown.clone(),
    )
    .await;
    let app = app::app(state);
    tracing::info!(addr = %listener.local_addr()?, "ingestor listening");
    let listener = write_timeout::WriteTimeoutListener::new(listener, config.http_write_timeout);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")?;
    // The server has dropped the router and with it the last sender, so the pusher ends once drained.
    match tokio::time::timeout(PUSHER_DRAIN_TIMEOUT, tasks.pusher).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "pusher task failed"),
        Err(_) => tracing::error!("pusher did not drain within {PUSHER_DRAIN_TIMEOUT:?}"),
    }
    // Relays saw the same token cancelled: each sends its client a Close frame (1001) and ends.
    tasks.relays.close();
    if tokio::time::timeout(RELAYS_CLOSE_TIMEOUT, tasks.relays.wait())
        .await
        .is_err()
    {
        tracing::warn!("WebSocket relays did not close within {RELAYS_CLOSE_TIMEOUT:?}");
    }
    // Cancelled with the server; it ends at its next tick at the latest.
    if let Err(error) = tasks.depth_refresher.await {
        tracing::error!(%error, "queue depth task failed");
    }
    // Cancelled with the server too.
    if let Err(error) = schema_task.await {
        tracing::error!(%error, "schema task failed");
    }
    tracing::info!("ingestor stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_parse_and_origins_split_on_commas() {
        let config =
            Config::try_parse_from(["ingestor", "--cors-origins", "http://a:1,http://b:2"])
                .unwrap();
        assert_eq!(config.cors_origins, ["http://a:1", "http://b:2"]);
        assert_eq!(config.ingestor_addr.port(), 8000);
        assert_eq!(config.api_keys, ApiKeys::default());
        assert_eq!(config.admin_api_key, None);
        assert_eq!(config.max_queue_depth, 1_000_000);
        assert_eq!(config.notifier_url, "http://127.0.0.1:8001");
        assert_eq!(config.http_write_timeout, Duration::from_secs(30));
    }

    #[test]
    fn notifier_urls_are_checked() {
        for (given, kept) in [
            ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("http://notifier:8001/", "http://notifier:8001"),
        ] {
            assert_eq!(parse_notifier_url(given).as_deref(), Ok(kept));
        }
        for bad in [
            "",
            "127.0.0.1:8001",
            "http://",
            "https://n:8001",
            "http://n:8001/ws/stats",
        ] {
            assert!(parse_notifier_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_parse_and_never_show_in_debug_output() {
        let config = Config::try_parse_from([
            "ingestor",
            "--api-keys",
            "write-secret-1, write-secret-2",
            "--admin-api-key",
            "admin-secret",
            "--max-queue-depth",
            "5",
        ])
        .unwrap();
        let keys: Vec<_> = config.api_keys.0.iter().map(Secret::expose).collect();
        assert_eq!(keys, ["write-secret-1", "write-secret-2"]);
        assert_eq!(
            config.admin_api_key.as_ref().map(Secret::expose),
            Some("admin-secret")
        );
        assert_eq!(config.max_queue_depth, 5);
        let printed = format!("{config:?} {config:#?}");
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn max_queue_depth_is_bounded() {
        for bad in ["0", "1000000001", "-1", "x"] {
            assert!(
                Config::try_parse_from(["ingestor", "--max-queue-depth", bad]).is_err(),
                "{bad:?}"
            );
        }
    }
}
