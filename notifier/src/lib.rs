//! Relays `batch_persisted` events and live stats to WebSocket clients, delivers each channel's messages to
//! its subscribers (channel feeds, docs/feeds.md), and serves the dashboard.
//!
//! # Layout
//!
//! - `relay`: subscribes to the `{prefix}:events` Redis channel and puts every valid `batch_persisted` payload,
//!   unchanged, on one bounded broadcast channel; reconnects with capped backoff, and tells the feeds' hub
//!   after each (re)subscription (events published meanwhile are lost).
//! - `feeds`: `GET /ws/channels` and `GET /sse/channels/{channel_id}`: a hub per notifier reads what the
//!   events announce (each channel's committed offsets) from PostgreSQL, one query per round for every
//!   subscribed channel, and broadcasts it per channel; each subscription replays from PostgreSQL, then goes
//!   live with no gap and no duplicate; `channel_heads` is re-read every second and after relay reconnects, so
//!   a lost event only delays. With `API_KEYS`, both need a key.
//! - `stats`: one task computes [`pipeline::events::Stats`] every 500 ms for all clients (totals from
//!   `pipeline_totals`, `queue_depth` from Redis) and publishes them on a watch channel.
//! - `rate`: `RateWindow`, `messages_per_second` over the last few seconds (pure).
//! - `ws`: `GET /ws/stats`, one task per client fed by the broadcast and the watch channel through a bounded
//!   per-client queue; a client that falls behind is closed (1008), a silent one too (1001), frames from
//!   clients are capped at 64 KiB, the number of clients is bounded. Its checks, writer and keep-alive are
//!   shared with `/ws/channels`.
//! - `origin`: `WS_ORIGINS`, which browser pages may open a WebSocket (default: the notifier's own).
//! - `dashboard`: the built dashboard at `/` (or a small page saying how to build it) and `GET /config.json`.
//! - `http`: the router, `/health`, `/ready` (their checks are `pipeline::probe`'s) and `/metrics`.
//! - `state`: `AppState`, what the handlers share (with the read check and the WebSocket settings); `error`:
//!   `ApiError`, the HTTP layer's one error type. Both are leaves: no module they import imports them back.
//! - `telemetry`: the metrics, declared at start.
//!
//! The dashboard calls the ingestor's API directly: it learns the ingestor's URL from `/config.json`
//! (`INGESTOR_URL`), and the ingestor allows the notifier's origin via CORS.

mod dashboard;
mod error;
mod feeds;
mod http;
mod origin;
mod rate;
mod relay;
mod state;
mod stats;
pub mod telemetry;
mod ws;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use pipeline::access::{ApiKeys, ReadKeys};
use pipeline::config::{
    BatchConfig, DatabaseConfig, LogConfig, RedisConfig, parse_addr, parse_seconds,
};
use state::AppState;
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore, broadcast, watch},
};
use tokio_util::sync::CancellationToken;

/// Capacity of the fan-out channel. Each client's task drains it at once into the client's own bounded queue
/// (`ws::CLIENT_QUEUE`), so only a starved task lags; it is then closed as too slow, never left to skip events.
const BROADCAST_CAPACITY: usize = 1024;
/// The stats task's and `/health`'s Redis connection: it connects on demand (Redis may be down at start) and
/// each read is bounded by the caller as well.
const REDIS_TIMEOUTS: pipeline::connection::Timeouts = pipeline::connection::Timeouts {
    connect: Duration::from_secs(2),
    response: Some(Duration::from_secs(2)),
};
/// PostgreSQL connections of the notifier.
const POSTGRES_POOL: usize = 8;
/// How long the HTTP server may take to finish in-flight requests once shutdown starts.
const SERVER_GRACE: Duration = Duration::from_secs(5);
/// How long WebSocket tasks may take to send their Close frame and end once shutdown starts.
const CLIENTS_GRACE: Duration = Duration::from_secs(3);

/// The notifier's configuration: environment variables, or the matching flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "notifier",
    version,
    about = "Relays batch_persisted events and live stats to WebSocket clients, delivers channel feeds (WebSocket and SSE); serves the dashboard."
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

    /// Listen address of the notifier (WebSocket, dashboard, /health, /metrics).
    #[arg(long, env = "NOTIFIER_ADDR", default_value = "127.0.0.1:8001", value_parser = parse_addr)]
    pub notifier_addr: SocketAddr,

    /// Directory of the built dashboard, served at `/`. Without an index.html in it, `/` shows how to build it.
    #[arg(long, env = "DASHBOARD_DIR", default_value = "dashboard/dist")]
    pub dashboard_dir: PathBuf,

    /// Base URL of the ingestor's API, handed to the dashboard by `/config.json`.
    #[arg(long, env = "INGESTOR_URL", default_value = "http://127.0.0.1:8000", value_parser = parse_base_url)]
    pub ingestor_url: String,

    /// Keys that may read channels (GET /ws/channels, GET /sse/channels/{channel_id}), comma-separated: the
    /// ingestor's API_KEYS, sent as `Authorization: Bearer <key>` or as the `access_token` query parameter
    /// (browsers' WebSocket and EventSource cannot set headers); else 401. Unset or empty: the feeds are
    /// open, for development only. /ws/stats stays open either way (it carries ids, not content).
    #[arg(
        long,
        env = "API_KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        value_parser = pipeline::access::parse_api_keys
    )]
    pub api_keys: ApiKeys,

    /// Most WebSocket and SSE clients served at once (/ws/stats, /ws/channels and /sse/channels together,
    /// 1 to 1000000); more get 503.
    #[arg(long, env = "MAX_WS_CLIENTS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_ws_clients: u32,

    /// Web pages (origins, `https://host[:port]`) that may open a WebSocket besides the notifier's own (pages
    /// it serves, such as the dashboard: their `host:port` is the request's `Host`), comma-separated; `*`
    /// allows any. Only browsers send an `Origin`; clients that send none are not checked. Others get 403.
    /// Behind a proxy that rewrites `Host`, list the dashboard's public origin here.
    #[arg(long, env = "WS_ORIGINS", value_delimiter = ',', value_parser = pipeline::config::parse_origin)]
    pub ws_origins: Vec<String>,

    /// Seconds a WebSocket client may take to accept one write (fractions allowed): the messages queued for it
    /// when the write starts (at most 128), sent together and flushed once. A client that takes longer is
    /// disconnected. On /ws/stats, a client more than 128 messages behind is closed at once (1008,
    /// too slow); on /ws/channels it is told `lagged` and caught up from PostgreSQL.
    #[arg(long, env = "WS_SEND_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub ws_send_timeout: Duration,

    /// Seconds of silence after which a WebSocket client is closed (1001, idle): nothing received from it,
    /// not even the pong to the ping the notifier sends every third of this (browsers answer pings by
    /// themselves).
    #[arg(long, env = "WS_IDLE_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub ws_idle_timeout: Duration,
}

/// `INGESTOR_URL`: an `http://` or `https://` URL, kept without its trailing slash.
fn parse_base_url(value: &str) -> Result<String, String> {
    let value = value.trim().trim_end_matches('/');
    let host = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(value.to_owned())
        }
        _ => Err("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000".into()),
    }
}

/// Applies the schema, then serves on `listener` until `shutdown` is cancelled.
///
/// On shutdown every WebSocket client gets a Close frame, and this returns within a bounded time.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Install the recorder before the first metric is touched, and make every metric visible from the start.
    pipeline::telemetry::declare(telemetry::metrics());
    let read_keys = ReadKeys::new(&config.api_keys)?;

    pipeline::schema::connect_and_apply(&config.database.database_url)
        .await
        .context("Failed to prepare the database (DATABASE_URL)")?;
    // The stats, /health, and the channel feeds (the hub's reads and the subscribers' replays).
    let postgres = pipeline::schema::pool(&config.database.database_url, POSTGRES_POOL)?;
    let target = config.redis.target()?;
    // Redis must not evict the queue; a Redis that is down is not waited for (see `redis_policy`).
    pipeline::redis_policy::check_at_start(&target).await?;
    let redis = target.lazy(REDIS_TIMEOUTS)?;
    let keys = config.redis.keys();
    let flush_threshold = u64::try_from(config.batch.batch_size).unwrap_or(u64::MAX);

    // The tasks stop with the service, and also if the HTTP server fails.
    let stop = shutdown.child_token();
    let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
    let (stats_tx, stats_rx) = watch::channel(stats::StatsFrame::new(stats::derive(
        stats::Totals::default(),
        0,
        flush_threshold,
        0.0,
    )));

    let resubscribed = Arc::new(Notify::new());
    let relay = tokio::spawn(relay::run(
        relay::Relay::new(
            &target,
            &keys,
            format!("notifier-{}", config.redis.redis_key_prefix),
            events.clone(),
            resubscribed.clone(),
        )?,
        stop.clone(),
    ));
    let hub = Arc::new(feeds::hub::Hub::new(feeds::store::Store::new(
        postgres.clone(),
    )));
    let hub_task = tokio::spawn(feeds::hub::run(
        hub.clone(),
        events.subscribe(),
        resubscribed,
        stop.clone(),
    ));
    let stats_task = tokio::spawn(stats::run(
        stats::Source {
            redis: redis.clone(),
            postgres: postgres.clone(),
            keys,
            queue_shards: config.redis.queue_shards,
            flush_threshold,
        },
        stats_tx,
        stop.clone(),
    ));

    let max_clients = config.max_ws_clients;
    let state = AppState {
        events,
        stats: stats_rx,
        clients: Arc::new(Semaphore::new(max_clients as usize)),
        hub,
        read_keys,
        redis,
        postgres,
        client_config: Arc::new(dashboard::client_config_of(&config)),
        ws: Arc::new(state::WsSettings {
            origins: origin::AllowedOrigins::new(&config.ws_origins),
            send_timeout: config.ws_send_timeout,
            idle_timeout: config.ws_idle_timeout,
        }),
        shutdown: stop.clone(),
    };
    let clients = state.clients.clone();
    let app = http::app(state, &config.dashboard_dir);

    let addr = listener
        .local_addr()
        .context("The listener has no local address")?;
    tracing::info!(%addr, dashboard = %config.dashboard_dir.display(), "notifier serving");
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Graceful shutdown waits for in-flight requests; bound that wait.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SERVER_GRACE).await;
    };
    let served = tokio::select! {
        result = server => result.context("The HTTP server failed"),
        () = deadline => {
            tracing::warn!("HTTP requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    stop.cancel();

    // WebSocket connections outlive the HTTP server (they were upgraded); each holds a permit until its task
    // has sent its Close frame, so getting every permit back means every client task has ended.
    if tokio::time::timeout(CLIENTS_GRACE, clients.acquire_many(max_clients))
        .await
        .is_err()
    {
        tracing::warn!("WebSocket clients still open after the grace period; stopping anyway");
    }
    let _ = relay.await;
    let _ = stats_task.await;
    let _ = hub_task.await;
    tracing::info!("notifier stopped");
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn ingestor_url_must_be_http_and_loses_its_trailing_slash() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8000/"),
            Ok("http://127.0.0.1:8000".into())
        );
        assert_eq!(
            parse_base_url("https://api.example"),
            Ok("https://api.example".into())
        );
        for bad in ["", "127.0.0.1:8000", "ftp://x", "http://", "http://a b"] {
            assert!(parse_base_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn zero_ws_clients_is_refused() {
        // Flags win over the environment, so this does not depend on what the test process inherited.
        let error = Config::try_parse_from(["notifier", "--max-ws-clients", "0"]).unwrap_err();
        assert!(
            error.to_string().contains("MAX_WS_CLIENTS")
                || error.to_string().contains("max-ws-clients")
        );
    }
}
