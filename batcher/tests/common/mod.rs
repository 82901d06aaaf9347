//! Helpers shared by the batcher's integration tests: a running batcher, messages pushed the way the ingestor
//! pushes them, and queries over the outcome.
#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use batcher::Config;
use chrono::{DateTime, SubsecRound, Utc};
use pipeline::{
    events::{BatchPersisted, ServerEvent},
    queued::QueuedMessage,
};
use testkit::{TestEnv, service::Spawned};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a test waits for an outcome that should take well under a second.
pub const WAIT: Duration = Duration::from_secs(10);

/// A batcher config for `env`.
pub fn config(env: &TestEnv, batcher_id: &str, batch_size: usize, timeout_secs: f64) -> Config {
    Config {
        redis: env.redis_config(),
        database: env.database_config(),
        batch: testkit::batch_config(batch_size, Duration::from_secs_f64(timeout_secs)),
        log: testkit::text_log("warn"),
        batcher_addr: "127.0.0.1:0".parse().unwrap(),
        batcher_id: batcher_id.into(),
    }
}

/// A batcher running in this process (given 20 s to stop).
pub type Running = Spawned;

/// Applies the schema (so the test can query before the batcher has started), then starts `batcher::run`
/// on 127.0.0.1:0.
pub async fn start(env: &TestEnv, config: Config) -> Running {
    env.apply_schema().await;
    Spawned::start("batcher", Duration::from_secs(20), |listener, shutdown| {
        batcher::run(config, listener, shutdown)
    })
    .await
}

/// The batcher binary as `batcher_id` on the database at `database_url` and the key prefix `prefix` (the
/// caller adds where Redis is), flushing at `batch_size` or after `timeout` seconds, logging at `rust_log`;
/// its stdout discarded, killed on drop. The variables are set on the child only.
pub fn batcher_command(
    database_url: &str,
    prefix: &str,
    batcher_id: &str,
    batch_size: usize,
    timeout: &str,
    rust_log: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_batcher"));
    command
        .env("DATABASE_URL", database_url)
        .env("REDIS_KEY_PREFIX", prefix)
        .env("BATCH_SIZE", batch_size.to_string())
        .env("BATCH_TIMEOUT", timeout)
        .env("BATCHER_ID", batcher_id)
        .env("BATCHER_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", rust_log)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Applies the schema with a rule the batcher does not know about: PostgreSQL refuses rows whose content is
/// `forbidden`.
pub async fn forbid_content(env: &TestEnv) {
    env.apply_schema().await;
    env.db()
        .await
        .batch_execute(
            "ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content <> 'forbidden')",
        )
        .await
        .unwrap();
}

/// A test's environment and a batcher on it ([`start`] with [`config`]).
pub async fn start_new(
    batcher_id: &str,
    batch_size: usize,
    timeout_secs: f64,
) -> (TestEnv, Running) {
    let env = TestEnv::new().await;
    let batcher = start(&env, config(&env, batcher_id, batch_size, timeout_secs)).await;
    (env, batcher)
}

/// [`start_new`], once it has persisted `n` messages pushed to it.
pub async fn start_persisted(
    batcher_id: &str,
    batch_size: usize,
    timeout_secs: f64,
    n: usize,
) -> (TestEnv, Running) {
    let (env, batcher) = start_new(batcher_id, batch_size, timeout_secs).await;
    push(&env, &messages(n)).await;
    wait_rows(&env, n as i64).await;
    (env, batcher)
}

/// [`start_new`], subscribed to the test's events channel before the batcher starts (no event is missed).
pub async fn start_watched(
    batcher_id: &str,
    batch_size: usize,
    timeout_secs: f64,
) -> (TestEnv, redis::aio::PubSub, Running) {
    let env = TestEnv::new().await;
    let events = subscribe_events(&env).await;
    let batcher = start(&env, config(&env, batcher_id, batch_size, timeout_secs)).await;
    (env, events, batcher)
}

/// A valid message, as the ingestor would queue it (created_at in whole microseconds, like PostgreSQL).
pub fn message(i: usize) -> QueuedMessage {
    QueuedMessage {
        tracking_id: Uuid::now_v7(),
        user_id: 1 + i as i64,
        channel_id: 7,
        content: format!("message {i} ✓"),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

/// `n` valid messages.
pub fn messages(n: usize) -> Vec<QueuedMessage> {
    (0..n).map(message).collect()
}

/// The JSON element of `message`.
pub fn raw(message: &QueuedMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap()
}

/// `LPUSH key e1 e2 …` in one command: `e1` ends up rightmost, i.e. oldest.
pub async fn lpush(env: &TestEnv, key: &str, elements: &[Vec<u8>]) {
    let _: i64 = env
        .redis_query(redis::cmd("LPUSH").arg(key).arg(elements))
        .await;
}

/// Pushes raw elements onto the pending list, oldest first.
pub async fn push_raw(env: &TestEnv, elements: &[Vec<u8>]) {
    lpush(env, &env.keys().shard(0).pending(), elements).await;
}

/// Pushes messages onto the pending list, oldest first.
pub async fn push(env: &TestEnv, messages: &[QueuedMessage]) {
    let elements: Vec<Vec<u8>> = messages.iter().map(raw).collect();
    push_raw(env, &elements).await;
}

/// `LLEN key`.
pub async fn llen(env: &TestEnv, key: &str) -> i64 {
    env.redis_query(redis::cmd("LLEN").arg(key)).await
}

/// Waits until `messages` holds `n` rows.
pub async fn wait_rows(env: &TestEnv, n: i64) {
    testkit::eventually(WAIT, &format!("{n} rows"), || async {
        (env.count("messages").await == n).then_some(())
    })
    .await;
}

/// Waits until `batcher_id`'s processing list (shard 0) holds `n` elements.
pub async fn wait_held(env: &TestEnv, batcher_id: &str, n: i64) {
    let processing = env.keys().shard(0).processing(batcher_id);
    testkit::eventually(WAIT, &format!("{n} held by {batcher_id}"), || async {
        (llen(env, &processing).await == n).then_some(())
    })
    .await;
}

/// Waits until `key` is an empty list.
pub async fn wait_empty(env: &TestEnv, key: &str) {
    testkit::eventually(WAIT, &format!("{key} to empty"), || async {
        (llen(env, key).await == 0).then_some(())
    })
    .await;
}

/// A subscription to this test's events channel, open before the test publishes anything.
pub async fn subscribe_events(env: &TestEnv) -> redis::aio::PubSub {
    let redis = redis::Client::open(env.redis_url.as_str()).unwrap();
    let mut events = redis.get_async_pubsub().await.unwrap();
    events.subscribe(env.keys().events()).await.unwrap();
    events
}

/// The next event on `events` (within [`WAIT`]), as published and parsed; panics unless it is a
/// `batch_persisted` event.
pub async fn next_batch_event(events: &mut redis::aio::PubSub) -> (String, BatchPersisted) {
    use futures_util::StreamExt;
    let payload: String = tokio::time::timeout(WAIT, events.on_message().next())
        .await
        .expect("an event within the wait")
        .expect("the subscription is open")
        .get_payload()
        .unwrap();
    let ServerEvent::BatchPersisted(event) = serde_json::from_str(&payload).unwrap() else {
        panic!("not a batch_persisted event: {payload}");
    };
    (payload, event)
}

/// The ids of every `batch_persisted` event on `events`, in order, until none arrives for 500 ms.
pub async fn announced_ids(events: &mut redis::aio::PubSub) -> Vec<Uuid> {
    use futures_util::StreamExt;
    let mut announced = Vec::new();
    let mut stream = events.on_message();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), stream.next()).await
    {
        let payload: String = message.get_payload().unwrap();
        if let ServerEvent::BatchPersisted(event) = serde_json::from_str(&payload).unwrap() {
            announced.extend(event.ids);
        }
    }
    announced
}

/// The distinct `batcher_id`s of the `batches` rows.
pub async fn committers(env: &TestEnv) -> std::collections::HashSet<String> {
    let ids: Vec<String> = env.column("SELECT DISTINCT batcher_id FROM batches").await;
    ids.into_iter().collect()
}

/// One `batches` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    pub id: i64,
    pub batcher_id: String,
    pub reason: String,
    pub size: i32,
    pub inserted: i32,
    pub dead_letters: i32,
    pub committed_at: DateTime<Utc>,
}

/// Every `batches` row, in commit order.
pub async fn batches(env: &TestEnv) -> Vec<BatchRow> {
    let sql = "SELECT id, batcher_id, reason, size, inserted, dead_letters, committed_at \
               FROM batches ORDER BY id";
    env.rows(sql, |row| BatchRow {
        id: row.get(0),
        batcher_id: row.get(1),
        reason: row.get(2),
        size: row.get(3),
        inserted: row.get(4),
        dead_letters: row.get(5),
        committed_at: row.get(6),
    })
    .await
}

/// Every row of `messages` as the message it came from, in insertion order.
pub async fn persisted(env: &TestEnv) -> Vec<QueuedMessage> {
    let sql =
        "SELECT tracking_id, user_id, channel_id, content, created_at FROM messages ORDER BY id";
    env.rows(sql, |row| QueuedMessage {
        tracking_id: row.get(0),
        user_id: row.get(1),
        channel_id: row.get(2),
        content: row.get(3),
        created_at: row.get(4),
    })
    .await
}

/// `(count(*), count(DISTINCT tracking_id))` of `messages`.
pub async fn row_counts(env: &TestEnv) -> (i64, i64) {
    let row = env
        .db()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT tracking_id) FROM messages",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Whether `id` is in the set of batchers.
pub async fn registered(env: &TestEnv, id: &str) -> bool {
    env.redis_query(
        redis::cmd("SISMEMBER")
            .arg(env.keys().shard(0).batchers())
            .arg(id),
    )
    .await
}

/// A loopback TCP proxy in front of Redis or PostgreSQL, so a test can cut one service's connections and make
/// the server unreachable for a while without touching anyone else's connections.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };
        let (listener, addr) = testkit::listener().await.unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        let accept = {
            let (refusing, cuts) = (Arc::clone(&refusing), cuts.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if refusing.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let mut cut = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            refusing,
            cuts,
            accept,
        }
    }

    /// Closes every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut_and_refuse(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// `url` with its `host:port` replaced by `addr` (e.g. to go through a [`Proxy`]).
pub fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let scheme_end = url.find("://").unwrap() + 3;
    let host_start = url[scheme_end..]
        .find('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let host_end = url[host_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| host_start + i);
    format!("{}{addr}{}", &url[..host_start], &url[host_end..])
}
