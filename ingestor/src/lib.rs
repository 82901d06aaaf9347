//! The ingestor: the HTTP front door of the pipeline. It validates messages and pushes them onto the Redis
//! pending list, answering 201 only once Redis holds them.
//!
//! # Layout
//!
//! - [`Config`] and [`run`] (this file): configuration from the environment, and serving until shutdown.
//! - [`startup`]: the shared [`startup::AppState`] and the router ([`startup::app`]).
//! - [`routes`]: one module per endpoint (`messages`, `batch`, `simulate`, `queue_status`, `reset`,
//!   `health`, `metrics`), plus the Redis/PostgreSQL timeouts they share.
//! - [`domain`]: the validation rules, pure and unit-tested.
//! - [`extract`]: the JSON body extractor (content type, body limits, the failing field's path).
//! - [`error`]: [`error::ApiError`], the one place each error status is produced.
//! - [`pusher`]: the group commit: concurrent requests share one multi-value `LPUSH`.
//! - [`reconnect`]: one retry of a Redis command whose connection had broken (Redis restarted).
//! - [`idempotency`]: `Idempotency-Key`, remembered and pushed in one Lua script.
//! - [`telemetry`]: request metrics (duration by route and status, rejections by reason).

pub mod domain;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod pusher;
pub mod reconnect;
pub mod routes;
pub mod startup;
pub mod telemetry;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use pipeline::config::{BatchConfig, DatabaseConfig, LogConfig, RedisConfig, parse_addr};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for the pusher to hand its last group to Redis.
const PUSHER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The ingestor's configuration: every field has an environment variable (see `--help`).
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
        value_parser = parse_origin
    )]
    pub cors_origins: Vec<String>,
}

/// A CORS origin: `*`, or `http(s)://host[:port]` without path or trailing slash.
pub fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.to_owned());
    }
    let host = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    match host {
        Some(host)
            if !host.is_empty()
                && host.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                }) =>
        {
            Ok(value.to_owned())
        }
        _ => Err("must be `*` or an origin such as http://127.0.0.1:8001 (no path)".into()),
    }
}

/// Applies the schema, then serves the API on `listener` until `shutdown` is cancelled; in-flight requests
/// finish and the pusher hands its last group to Redis before this returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    pipeline::schema::connect_and_apply(&config.database.database_url)
        .await
        .context("Failed to prepare the database")?;
    // Installs the recorder before anything is counted (counts made before it would be lost).
    pipeline::telemetry::metrics();
    let (state, pusher) = startup::AppState::new(&config)?;
    let app = startup::app(state);
    tracing::info!(addr = %listener.local_addr()?, "ingestor listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")?;
    // The server has dropped the router and with it the last sender, so the pusher ends once drained.
    match tokio::time::timeout(PUSHER_DRAIN_TIMEOUT, pusher).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "pusher task failed"),
        Err(_) => tracing::error!("pusher did not drain within {PUSHER_DRAIN_TIMEOUT:?}"),
    }
    tracing::info!("ingestor stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn origins_are_checked() {
        for good in [
            "*",
            "http://127.0.0.1:8001",
            "https://dash.example.com",
            "http://[::1]:8001",
        ] {
            assert_eq!(parse_origin(good).as_deref(), Ok(good));
        }
        for bad in ["", "127.0.0.1:8001", "http://", "http://a/b", "ftp://x"] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_parse_and_origins_split_on_commas() {
        let config =
            Config::try_parse_from(["ingestor", "--cors-origins", "http://a:1,http://b:2"])
                .unwrap();
        assert_eq!(config.cors_origins, ["http://a:1", "http://b:2"]);
        assert_eq!(config.ingestor_addr.port(), 8000);
    }
}
