//! Helpers shared by the notifier's integration tests: start the real service, talk to it over WebSocket.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod feeds;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use notifier::Config;
use serde_json::Value;
use testkit::{TestEnv, service::Spawned};
use tokio_tungstenite::{MaybeTlsStream, tungstenite::protocol::frame::coding::CloseCode};
use uuid::Uuid;

/// `BATCH_SIZE` of the tests: small, so a handful of queued messages shows progress and ready batches.
pub const BATCH_SIZE: usize = 2;
/// Bound of every wait for something the notifier sends.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client of `/ws/stats`.
pub use testkit::ws::Ws;

/// The code of the Close frame `ws` receives within `within`, skipping the frames before it; panics if the
/// connection ends without one.
pub async fn close_code(ws: &mut Ws, within: Duration) -> Option<CloseCode> {
    testkit::ws::close_frame(ws, within).await.map(|f| f.code)
}

/// The configuration of a test's notifier: its own database and key prefix, no built dashboard.
pub fn config(env: &TestEnv) -> Config {
    Config {
        redis: env.redis_config(),
        database: env.database_config(),
        batch: testkit::batch_config(BATCH_SIZE, Duration::from_millis(100)),
        log: testkit::text_log("info"),
        notifier_addr: "127.0.0.1:0".parse().unwrap(),
        // A directory that does not exist: the fallback page is served.
        dashboard_dir: std::env::temp_dir().join(format!("{}-no-dashboard", env.prefix)),
        ingestor_url: "http://127.0.0.1:8000".into(),
        api_keys: Default::default(),
        max_ws_clients: 1024,
        ws_origins: Vec::new(),
        ws_send_timeout: Duration::from_secs(10),
        ws_idle_timeout: Duration::from_secs(60),
    }
}

/// A notifier running in this process on `127.0.0.1:0`.
pub struct Notifier {
    pub addr: SocketAddr,
    service: Spawned,
}

impl Notifier {
    pub async fn start(config: Config) -> Self {
        let service = Spawned::start("notifier", Duration::from_secs(10), |listener, shutdown| {
            notifier::run(config, listener, shutdown)
        })
        .await;
        Self {
            addr: service.addr,
            service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/stats", self.addr)
    }

    /// A client whose socket has a tiny receive buffer, so the notifier soon cannot write to it unless it
    /// reads.
    pub async fn connect_with_tiny_buffer(&self) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(self.ws_url(), MaybeTlsStream::Plain(stream))
            .await
            .expect("the WebSocket handshake succeeds");
        ws
    }

    /// The value of the metric line starting with `series` (e.g. `notifier_ws_clients` or
    /// `notifier_clients_disconnected_total{reason="idle"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = testkit::get_text(&self.url("/metrics")).await;
        testkit::metric_value(&text, series).unwrap_or(0.0)
    }

    pub async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .expect("the WebSocket handshake succeeds");
        ws
    }

    /// Cancels the token and expects `run` to return Ok within a bound.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// A test's environment, a notifier on it with [`config`], and a `/ws/stats` client of it.
pub async fn start_with_client() -> (TestEnv, Notifier, Ws) {
    let env = TestEnv::new().await;
    let notifier = Notifier::start(config(&env)).await;
    let ws = notifier.connect().await;
    (env, notifier, ws)
}

/// [`start_with_client`], once the notifier's relay is subscribed to the test's events channel (a publish is
/// heard).
pub async fn start_relaying() -> (TestEnv, Notifier, Ws) {
    let (env, notifier, ws) = start_with_client().await;
    wait_subscribed(&env).await;
    (env, notifier, ws)
}

/// Reads until a text message satisfies `wanted`, for at most [`WAIT`]; returns it as JSON.
pub async fn next_matching(ws: &mut Ws, what: &str, wanted: impl FnMut(&Value) -> bool) -> Value {
    testkit::ws::next_matching(ws, WAIT, what, wanted).await
}

/// The next `stats_update`.
pub async fn next_stats(ws: &mut Ws, what: &str) -> Value {
    next_matching(ws, what, |v| v["type"] == "stats_update").await
}

/// The next `batch_persisted` event.
pub async fn next_batch(ws: &mut Ws) -> Value {
    next_matching(ws, "a batch_persisted event", |v| {
        v["type"] == "batch_persisted"
    })
    .await
}

/// The JSON a batcher publishes after committing batch `batch_id` of `ids`.
pub fn batch_event(batch_id: i64, ids: &[Uuid]) -> String {
    serde_json::json!({
        "type": "batch_persisted",
        "ids": ids,
        "batch_id": batch_id,
        "batch_size": ids.len(),
        "worker_timestamp": "2025-01-01T00:00:00Z",
        "reason": "size",
        "batcher_id": "b1",
        "dead_letters": 0,
    })
    .to_string()
}

/// Waits until the notifier's relay is subscribed to this test's channel, so a publish is not lost.
pub async fn wait_subscribed(env: &TestEnv) {
    let channel = env.keys().events();
    testkit::eventually(WAIT, "the relay to subscribe", || {
        let channel = channel.clone();
        async move {
            let (_, subscribers): (String, u64) = env
                .redis_query(redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel))
                .await;
            (subscribers == 1).then_some(())
        }
    })
    .await;
}

/// A test's environment and a notifier on it with its [`config`] as `tweak` changes it.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> (TestEnv, Notifier) {
    let env = TestEnv::new().await;
    let mut config = config(&env);
    tweak(&mut config);
    let notifier = Notifier::start(config).await;
    (env, notifier)
}

/// A test's environment and a notifier on it that gives a WebSocket client `send_timeout` to accept a write
/// (`WS_SEND_TIMEOUT`).
pub async fn start_with_send_timeout(send_timeout: Duration) -> (TestEnv, Notifier) {
    start_with(|config| config.ws_send_timeout = send_timeout).await
}

/// PUBLISHes the [`batch_event`] of each of `batch_ids` (with the ids `ids_of` gives it) on this test's
/// events channel, in one round trip.
pub async fn publish_batches(
    env: &TestEnv,
    batch_ids: impl IntoIterator<Item = i64>,
    ids_of: impl Fn(i64) -> Vec<Uuid>,
) {
    let mut pipe = redis::pipe();
    for batch_id in batch_ids {
        pipe.cmd("PUBLISH")
            .arg(env.keys().events())
            .arg(batch_event(batch_id, &ids_of(batch_id)))
            .ignore();
    }
    let () = pipe.query_async(&mut env.redis().await).await.unwrap();
}

/// PUBLISHes `payload` on this test's events channel.
pub async fn publish(env: &TestEnv, payload: &str) {
    let _: u64 = env
        .redis_query(redis::cmd("PUBLISH").arg(env.keys().events()).arg(payload))
        .await;
}

/// A fresh, empty directory named after the test's prefix; the caller removes it.
pub fn temp_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-{name}", env.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(id, name, subscriptions)` of every client Redis lists.
pub async fn redis_clients(env: &TestEnv) -> Vec<(String, String, u64)> {
    let mut redis = env.redis().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis)
        .await
        .unwrap();
    list.lines()
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| {
                        kv.strip_prefix(name)
                            .and_then(|rest| rest.strip_prefix('='))
                    })
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("id"),
                field("name"),
                field("sub").parse().unwrap_or(0),
            )
        })
        .collect()
}

/// Kills the Redis connection whose client id is `id`; how many were killed.
pub async fn kill_redis_client(env: &TestEnv, id: &str) -> u64 {
    env.redis_query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id))
        .await
}

/// The Redis client id of this test's notifier's relay (its named, subscribed connection), once there is
/// one other than `not`.
pub async fn relay_connection_id(env: &TestEnv, not: Option<&str>) -> String {
    let name = format!("notifier-{}", env.prefix);
    testkit::eventually(WAIT, "the notifier's named subscriber connection", || {
        let name = name.clone();
        async move {
            redis_clients(env)
                .await
                .into_iter()
                .find(|(id, client, subs)| {
                    *client == name && *subs == 1 && Some(id.as_str()) != not
                })
                .map(|(id, _, _)| id)
        }
    })
    .await
}
