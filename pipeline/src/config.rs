//! Configuration groups shared by the services, read from the environment (or the matching flags).
//!
//! Each service's `Config` flattens the groups it needs, so `--help` lists every variable it reads, and a bad
//! value stops the service at start with a message naming the variable.

use std::{net::SocketAddr, time::Duration};

/// Where Redis is, how our keys are named, and how the queue is split. Its `Debug` hides a password in the
/// URLs.
#[derive(Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis server URL (unused when REDIS_CLUSTER_NODES is set).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Redis Cluster seed nodes, comma-separated `host:port` or `redis://host:port`. When set, every
    /// connection is cluster-aware (redis-rs's cluster client: MOVED/ASK, resharding and master failover are
    /// followed) and REDIS_URL is unused. Needs Redis 7.0 or newer: batch events use sharded pub/sub.
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        value_parser = parse_cluster_node
    )]
    pub redis_cluster_nodes: Vec<String>,

    /// Prefix of every Redis key and channel (a hash tag: `{ingest}:pending`): 1 to 64 of letters, digits,
    /// `_`, `-`, `.`. Every service must be given the same value.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ingest", value_parser = parse_key_part)]
    pub redis_key_prefix: String,

    /// Shards of the queue, each under its own hash tag (`{ingest}`, `{ingest:1}`, …) so a Redis Cluster
    /// spreads them over its nodes. A message's shard is a stable hash of its channel_id; each shard is
    /// drained by one batcher at a time. 1 to 1024. Every service must be given the same value.
    #[arg(long, env = "QUEUE_SHARDS", default_value = "1", value_parser = parse_queue_shards)]
    pub queue_shards: u32,
}

impl RedisConfig {
    pub fn keys(&self) -> crate::keys::Keys {
        crate::keys::Keys::new(&self.redis_key_prefix)
    }

    /// The Redis this configuration names: one server, or a cluster.
    pub fn target(&self) -> anyhow::Result<crate::connection::RedisTarget> {
        crate::connection::RedisTarget::new(&self.redis_url, &self.redis_cluster_nodes)
    }
}

/// The most shards `QUEUE_SHARDS` allows (each costs a lease renewal per second and a depth read).
pub const MAX_QUEUE_SHARDS: u32 = 1024;

/// `QUEUE_SHARDS`: an integer in 1..=[`MAX_QUEUE_SHARDS`].
pub fn parse_queue_shards(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_QUEUE_SHARDS).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from 1 to {MAX_QUEUE_SHARDS}")),
    }
}

/// One `REDIS_CLUSTER_NODES` entry: `host:port` or a `redis://` URL, returned as a URL.
pub fn parse_cluster_node(value: &str) -> Result<String, String> {
    let value = value.trim();
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("redis://{value}")
    };
    match redis::parse_redis_url(&url) {
        Some(parsed) if parsed.scheme() == "redis" || parsed.scheme() == "rediss" => {
            if parsed.port().is_none() && !value.contains("://") {
                return Err("must be host:port or a redis:// URL".into());
            }
            Ok(url)
        }
        _ => Err("must be host:port or a redis:// URL".into()),
    }
}

/// Where PostgreSQL is. Its `Debug` hides the password, in whichever form `DATABASE_URL` has it.
#[derive(Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection string: a URL (`postgres://user:password@host/db`) or libpq's key-value form
    /// (`host=… user=… password=…`); a URL may carry the password as `?password=`. The schema (init.sql) is
    /// applied at start (by the ingestor in the background while PostgreSQL is unreachable). Its password is
    /// never printed, in any form (not in errors, logs, `Debug` or this help). Every service must be given the
    /// same database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/ingest",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub database_url: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("redis_url", &crate::redact::redact(&self.redis_url))
            .field(
                "redis_cluster_nodes",
                &self
                    .redis_cluster_nodes
                    .iter()
                    .map(|node| crate::redact::redact(node))
                    .collect::<Vec<_>>(),
            )
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("queue_shards", &self.queue_shards)
            .finish()
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("database_url", &crate::redact::redact(&self.database_url))
            .finish()
    }
}

/// When a batch is flushed.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchConfig {
    /// Volume trigger: flush when a batch holds this many messages (1 to 100000). The ingestor and the
    /// notifier report it as `batch_threshold`. Every service must be given the same value.
    #[arg(long, env = "BATCH_SIZE", default_value = "50", value_parser = parse_batch_size)]
    pub batch_size: usize,

    /// Time trigger, in seconds (fractions allowed, e.g. 0.05; more than 0, at most 86400), counted from the
    /// first message of the batch. With several queue shards a batcher flushes its shards' batches in rounds,
    /// so some flush sooner, none later. The notifier hands it to the dashboard.
    #[arg(long, env = "BATCH_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub batch_timeout: Duration,
}

/// The largest `BATCH_SIZE`: a batch is held in memory and in one COPY.
pub const MAX_BATCH_SIZE: usize = 100_000;

/// A value that becomes part of Redis key names (`REDIS_KEY_PREFIX`, which becomes a hash tag; `BATCHER_ID`): 1 to 64 of `A-Z a-z 0-9 _ - .`,
/// so no braces (hash tags), colons (separators) or spaces.
pub fn parse_key_part(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be 1 to 64 of A-Z a-z 0-9 _ - .".into())
    }
}

/// `BATCH_SIZE`: an integer in 1..=[`MAX_BATCH_SIZE`].
pub fn parse_batch_size(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from 1 to {MAX_BATCH_SIZE}")),
    }
}

/// A positive, finite number of seconds, fractions allowed (`30`, `0.05`), at most a day.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(
            "must be a number of seconds greater than 0 and at most 86400 (e.g. 30 or 0.05)".into(),
        ),
    }
}

/// A listen address such as `127.0.0.1:8000`.
pub fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "must be an IP address and port, e.g. 127.0.0.1:8000".into())
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging, shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax (e.g. `info`, `batcher=debug`); a filter that does not
    /// parse stops the service at start.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log_filter: String,
}

/// `RUST_LOG`: a filter `EnvFilter` accepts. Checked here, so a typo is an error at start rather than a
/// service that logs something other than what was asked for.
pub fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|error| format!("not a log filter ({error}); e.g. `info` or `info,batcher=debug`"))
}

/// An entry of an origin list (`CORS_ORIGINS`, `WS_ORIGINS`): `*`, or `http(s)://host[:port]` without path or
/// trailing slash; empty (an empty list) lists nothing.
pub fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" || value.is_empty() {
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
        _ => Err("must be `*` or an origin such as https://dash.example.com (no path)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked() {
        for good in [
            "*",
            "http://127.0.0.1:8001",
            "https://dash.example.com",
            "http://[::1]:8001",
        ] {
            assert_eq!(parse_origin(good).as_deref(), Ok(good));
        }
        for bad in ["127.0.0.1:8001", "http://", "http://a/b", "ftp://x"] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
        // An empty list lists nothing.
        assert_eq!(parse_origin(" ").as_deref(), Ok(""));
    }

    #[test]
    fn log_filters_are_checked() {
        for good in ["info", "warn,batcher=debug", "ingestor::routes=trace", ""] {
            assert_eq!(parse_log_filter(good).as_deref(), Ok(good), "{good:?}");
        }
        for bad in ["info,batcher=loud", "=debug[", "batcher=debug=info"] {
            assert!(parse_log_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batch_timeout_takes_fractional_seconds() {
        assert_eq!(parse_seconds("0.05"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn zero_negative_and_garbage_are_refused() {
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e9"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} accepted as seconds");
        }
        for bad in ["0", "-5", "1.5", "x", "100001"] {
            assert!(
                parse_batch_size(bad).is_err(),
                "{bad:?} accepted as batch size"
            );
        }
        assert_eq!(parse_batch_size("50"), Ok(50));
    }

    #[test]
    fn key_prefix_must_be_a_safe_hash_tag() {
        assert_eq!(parse_key_part("test-1.a_b"), Ok("test-1.a_b".into()));
        for bad in ["", "a b", "a{b", "a}b", &"x".repeat(65)] {
            assert!(parse_key_part(bad).is_err(), "{bad:?} accepted as prefix");
        }
    }

    #[test]
    fn queue_shards_and_cluster_nodes_are_checked() {
        assert_eq!(parse_queue_shards("1"), Ok(1));
        assert_eq!(parse_queue_shards(" 12 "), Ok(12));
        for bad in ["0", "-1", "1025", "x", ""] {
            assert!(parse_queue_shards(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_cluster_node("127.0.0.1:7000").as_deref(),
            Ok("redis://127.0.0.1:7000")
        );
        assert_eq!(
            parse_cluster_node("redis://10.0.0.5:6379").as_deref(),
            Ok("redis://10.0.0.5:6379")
        );
        for bad in ["", "127.0.0.1", "http://x:1"] {
            assert!(parse_cluster_node(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_every_form_of_password() {
        for url in [
            "postgres://app:s3cret@db/ingest",
            "postgres://app@db/ingest?password=s3cret",
            "host=db user=app password=s3cret",
            "host=db password='s3 cret'",
        ] {
            let database = DatabaseConfig {
                database_url: url.into(),
            };
            let redis = RedisConfig {
                redis_url: "redis://:s3cret@127.0.0.1:6379".into(),
                redis_cluster_nodes: vec!["redis://:s3cret@10.0.0.1:7000".into()],
                redis_key_prefix: "ingest".into(),
                queue_shards: 1,
            };
            let printed = format!("{database:?} {database:#?} {redis:?}");
            assert!(!printed.contains("s3"), "{printed}");
            assert!(printed.contains("***"), "{printed}");
        }
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_addr("127.0.0.1:8000").unwrap().port(), 8000);
        assert!(parse_addr("localhost").is_err());
    }
}
