//! Configuration groups shared by the services, read from the environment (or the matching flags).
//!
//! Each service's `Config` flattens the groups it needs, so `--help` lists every variable it reads, and a bad
//! value stops the service at start with a message naming the variable.

use std::{net::SocketAddr, time::Duration};

/// Where Redis is and how our keys are named. Its `Debug` hides a password in the URL.
#[derive(Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis server URL.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Prefix of every Redis key and channel (a hash tag: `{ingest}:pending`). Letters, digits, `_`, `-`, `.`.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ingest", value_parser = parse_key_part)]
    pub redis_key_prefix: String,
}

impl RedisConfig {
    pub fn keys(&self) -> crate::keys::Keys {
        crate::keys::Keys::new(&self.redis_key_prefix)
    }
}

/// Where PostgreSQL is. Its `Debug` hides the password, in whichever form `DATABASE_URL` has it.
#[derive(Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection string: a URL (`postgres://user:password@host/db`) or libpq's key-value form
    /// (`host=… user=… password=…`). The schema (init.sql) is applied at start. Its password is never
    /// printed (not in errors, logs, `Debug` or this help).
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
            .field("redis_key_prefix", &self.redis_key_prefix)
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
    /// Volume trigger: flush when a batch holds this many messages.
    #[arg(long, env = "BATCH_SIZE", default_value = "50", value_parser = parse_batch_size)]
    pub batch_size: usize,

    /// Time trigger, in seconds (fractions allowed, e.g. 0.05), counted from the first message of the batch.
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

#[cfg(test)]
mod tests {
    use super::*;

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
                redis_key_prefix: "ingest".into(),
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
