//! Test helpers shared by the services' integration tests.
//!
//! Every test gets its own PostgreSQL database (`CREATE DATABASE`, dropped at the end) and its own
//! `REDIS_KEY_PREFIX` (its keys deleted at the end), so tests run in parallel against the one real Redis and
//! PostgreSQL of the machine without seeing each other.
//!
//! `TEST_REDIS_URL` and `TEST_DATABASE_URL` (a database to connect to for `CREATE DATABASE`) override the
//! defaults, `redis://127.0.0.1:6379` and `postgres://postgres@127.0.0.1:5432/postgres`. The Redis Cluster
//! helpers ([`cluster`]) find their cluster through `TEST_REDIS_CLUSTER_NODES`. A service runs in the test's
//! process as a [`service::Spawned`].

pub mod cluster;

pub mod feeds;

pub mod redis_server;

pub mod seed;

pub mod service;

pub mod ws;

use std::{future::Future, time::Duration};

use anyhow::Context;
use pipeline::keys::Keys;

/// One test's private slice of Redis and PostgreSQL.
#[derive(Debug)]
pub struct TestEnv {
    /// `DATABASE_URL` of this test's fresh database (schema not yet applied).
    pub database_url: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_KEY_PREFIX`, unique to this test.
    pub prefix: String,
    database_name: String,
    admin_url: String,
}

impl TestEnv {
    /// Creates a fresh database and picks a unique key prefix.
    pub async fn new() -> Self {
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let redis_url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database_name = format!("test_{id}");
        let admin = pipeline::schema::connect(&admin_url)
            .await
            .expect("PostgreSQL is reachable at TEST_DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database_name}\""))
            .await
            .expect("can create a test database");
        let database_url = pipeline::schema::with_database(&admin_url, &database_name);
        Self {
            database_url,
            redis_url,
            prefix: format!("test-{id}"),
            database_name,
            admin_url,
        }
    }

    /// [`TestEnv::new`] with init.sql applied, for tests that query before any service has started.
    pub async fn with_schema() -> Self {
        let env = Self::new().await;
        env.apply_schema().await;
        env
    }

    /// The Redis key names of this test.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }

    /// The services' Redis configuration for this test: its Redis and key prefix, one queue shard.
    pub fn redis_config(&self) -> pipeline::config::RedisConfig {
        pipeline::config::RedisConfig {
            redis_url: self.redis_url.clone(),
            redis_cluster_nodes: Vec::new(),
            redis_key_prefix: self.prefix.clone(),
            queue_shards: 1,
        }
    }

    /// The services' database configuration for this test.
    pub fn database_config(&self) -> pipeline::config::DatabaseConfig {
        pipeline::config::DatabaseConfig {
            database_url: self.database_url.clone(),
        }
    }

    /// Every element of the list `key`, as `LRANGE key 0 -1` returns them (newest first for the pending
    /// lists, which are pushed on the left).
    pub async fn lrange(&self, key: &str) -> Vec<String> {
        lrange(&self.redis_url, key).await
    }

    /// The command-line arguments of a service on this test's Redis, key prefix and database.
    pub fn service_args(&self) -> [&str; 6] {
        [
            "--redis-url",
            &self.redis_url,
            "--redis-key-prefix",
            &self.prefix,
            "--database-url",
            &self.database_url,
        ]
    }

    /// Drops this test's database now, its connections with it: PostgreSQL is gone for the services
    /// using it (as when it is unreachable) while Redis stays.
    pub async fn drop_database(&self) {
        pipeline::schema::connect(&self.admin_url)
            .await
            .expect("PostgreSQL is reachable at TEST_DATABASE_URL")
            .batch_execute(&format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                self.database_name
            ))
            .await
            .expect("can drop the test database");
    }

    /// A fresh connection to this test's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        pipeline::schema::connect(&self.database_url)
            .await
            .expect("can connect to the test database")
    }

    /// Applies init.sql to this test's database (the services also do it at start).
    pub async fn apply_schema(&self) {
        pipeline::schema::connect_and_apply(&self.database_url)
            .await
            .expect("init.sql applies");
    }

    /// Lets new connections into this test's database, or refuses them (`ALTER DATABASE … ALLOW_CONNECTIONS`;
    /// sessions already open stay).
    pub async fn allow_database_connections(&self, allowed: bool) {
        let sql = format!(
            "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS {allowed}",
            self.database_name
        );
        self.admin()
            .await
            .batch_execute(&sql)
            .await
            .expect("can change the test database's ALLOW_CONNECTIONS");
    }

    /// Terminates every session of this test's database (this process's own clients included); how many.
    pub async fn terminate_database_sessions(&self) -> i64 {
        self.admin()
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                &[&self.database_name],
            )
            .await
            .expect("can terminate the test database's sessions")
            .get(0)
    }

    async fn admin(&self) -> tokio_postgres::Client {
        pipeline::schema::connect(&self.admin_url)
            .await
            .expect("PostgreSQL is reachable at TEST_DATABASE_URL")
    }

    /// A fresh Redis connection.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("valid TEST_REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis is reachable at TEST_REDIS_URL")
    }

    /// The running totals the batchers keep: `(messages, batches, dead_letters)` ([`pipeline::schema::TOTALS`]).
    pub async fn totals(&self) -> (i64, i64, i64) {
        let row = self
            .db()
            .await
            .query_one(pipeline::schema::TOTALS, &[])
            .await
            .expect("pipeline_totals has its row");
        (row.get(0), row.get(1), row.get(2))
    }

    /// Every row `sql` returns, in order, each made into a `T` by `read`.
    pub async fn rows<T>(&self, sql: &str, read: impl FnMut(&tokio_postgres::Row) -> T) -> Vec<T> {
        self.db()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .iter()
            .map(read)
            .collect()
    }

    /// The first column of every row `sql` returns, in order.
    pub async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> Vec<T> {
        self.rows(sql, |row| row.get(0)).await
    }

    /// Sends `command` to this test's Redis (on a fresh connection) and returns its answer.
    pub async fn redis_query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        command
            .query_async(&mut self.redis().await)
            .await
            .unwrap_or_else(|error| panic!("{command:?}: {error}"))
    }

    /// `SELECT count(*) FROM <table>`.
    pub async fn count(&self, table: &str) -> i64 {
        self.db()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count query runs")
            .get(0)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Drop runs outside any runtime guarantee, so clean up on a thread of its own with a small runtime.
        let (admin_url, name) = (self.admin_url.clone(), self.database_name.clone());
        let (redis_url, prefix) = (self.redis_url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async move {
                if let Ok(admin) = pipeline::schema::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = admin.batch_execute(&sql).await;
                }
                if let Ok(client) = redis::Client::open(redis_url.as_str())
                    && let Ok(mut redis) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{{{prefix}}}*"))
                        .query_async(&mut redis)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: redis::RedisResult<()> =
                            redis::cmd("DEL").arg(keys).query_async(&mut redis).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`; panics naming `what` otherwise.
///
/// For outcomes that arrive asynchronously (rows persisted by a batcher): the test still asserts the exact
/// outcome, this only bounds how long it waits for it.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `LRANGE key 0 -1` on the Redis at `redis_url` (this test's, or a private [`redis_server::RedisServer`]).
pub async fn lrange(redis_url: &str, key: &str) -> Vec<String> {
    let mut redis = redis::Client::open(redis_url)
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable");
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("LRANGE of a list")
}

/// The flush threshold and timeout of a test's services.
pub fn batch_config(batch_size: usize, batch_timeout: Duration) -> pipeline::config::BatchConfig {
    pipeline::config::BatchConfig {
        batch_size,
        batch_timeout,
    }
}

/// Plain-text logs with `filter` (e.g. `"warn"`), the format a test's output is read in.
pub fn text_log(filter: &str) -> pipeline::config::LogConfig {
    pipeline::config::LogConfig {
        log_format: pipeline::config::LogFormat::Text,
        log_filter: filter.into(),
    }
}

/// `GET url` with `client`, its body parsed as `T` whatever the status; panics when nothing answers or the
/// body is not that JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
        .json()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: not the expected JSON: {error}"))
}

/// `GET url`, its body as text whatever the status (e.g. a service's `/metrics`).
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
        .text()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: no text body: {error}"))
}

/// `GET url`: its status and its body as JSON (e.g. a service's `/health` or `/ready`, 200 or 503).
pub async fn get_status_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .unwrap_or_else(|error| panic!("GET {url}: not JSON: {error}"));
    (status, body)
}

/// The value of the sample `series` (a metric name with its labels as exposed, e.g.
/// `notifier_clients_disconnected_total{reason="idle"}`) in a Prometheus text exposition; `None` when absent.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a sample value is a number"))
}

/// The error `run` (a service's `run`, on something it must refuse) stops with, as `{error:#}`; panics
/// naming `service` unless it returns one within 10 s.
pub async fn start_error(service: &str, run: impl Future<Output = anyhow::Result<()>>) -> String {
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Err(error)) => format!("{error:#}"),
        Ok(Ok(())) => panic!("the {service} must not start"),
        Err(_) => panic!("the {service} did not give up within 10 s"),
    }
}

/// Waits, at most `within`, for `task` (a service's `run`, spawned by the test) to return, and returns what it
/// returned; panics naming `service` when it takes longer or panicked.
pub async fn join_service(
    service: &str,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    within: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(within, task).await {
        Ok(Ok(returned)) => returned,
        Ok(Err(error)) => panic!("the {service} task panicked: {error}"),
        Err(_) => panic!("the {service} did not stop within {within:?}"),
    }
}

/// Binds `127.0.0.1:0` and returns the listener with its address.
pub async fn listener() -> anyhow::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("Failed to bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_found_by_its_whole_series_name() {
        let exposition =
            "# TYPE a_total counter\na_total 3\na_total_bytes 9\nb{reason=\"idle\"} 1.5\n";
        assert_eq!(metric_value(exposition, "a_total"), Some(3.0));
        assert_eq!(metric_value(exposition, "a_total_bytes"), Some(9.0));
        assert_eq!(metric_value(exposition, "b{reason=\"idle\"}"), Some(1.5));
        assert_eq!(metric_value(exposition, "b"), None);
        assert_eq!(metric_value(exposition, "c_total"), None);
    }

    #[tokio::test]
    async fn each_env_gets_its_own_empty_database_that_is_dropped_after() {
        let env = TestEnv::new().await;
        env.apply_schema().await;
        assert_eq!(env.count("messages").await, 0);
        let name = env.database_name.clone();
        let admin = pipeline::schema::connect(&env.admin_url).await.unwrap();
        drop(env);
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
    }
}
