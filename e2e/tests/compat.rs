//! Drop-in compatibility with the original Python ingestor: each answer its clients read, checked field by
//! field against the real services (the original's answers are listed in docs/migration.md).
//!
//! The ingestor runs with the original's batch settings (BATCH_SIZE 50, BATCH_TIMEOUT 2) and a
//! NOTIFIER_URL pointing at a real notifier, so `/ws/stats` is tried at the ingestor's address as the
//! original's dashboard uses it.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use serde_json::{Value, json};
use testkit::ws::Ws;
use testkit::{TestEnv, eventually};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use tokio_util::sync::CancellationToken;

/// Bound of every wait for something the services send.
const WAIT: Duration = Duration::from_secs(15);
const ADMIN_KEY: &str = "compat-admin-key";
/// One service running in this process.
struct Service {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn stop(self) {
        self.shutdown.cancel();
        testkit::join_service("service", self.task, WAIT)
            .await
            .expect("the service stops cleanly");
    }
}

/// The arguments every service of a test shares: its database and key prefix, the original's batch settings.
fn shared_args(env: &TestEnv, name: &str, extra: &[&str]) -> Vec<String> {
    [name]
        .into_iter()
        .chain(env.service_args())
        .chain(["--batch-size", "50", "--batch-timeout", "2"])
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// A free loopback port for a service started later (the notifier, when a test starts the ingestor first).
async fn free_addr() -> SocketAddr {
    let (listener, addr) = testkit::listener().await.unwrap();
    drop(listener);
    addr
}

async fn start_notifier(env: &TestEnv, addr: SocketAddr) -> Service {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let config = notifier::Config::try_parse_from(shared_args(env, "notifier", &[])).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(notifier::run(config, listener, shutdown.clone()));
    wait_healthy(&format!("http://{addr}/health")).await;
    Service { shutdown, task }
}

/// Starts the ingestor relaying `/ws/stats` to a notifier at `notifier`; returns its base URL.
async fn start_ingestor(env: &TestEnv, notifier: SocketAddr) -> (String, Service) {
    let notifier_url = format!("http://{notifier}");
    let args = shared_args(
        env,
        "ingestor",
        &[
            "--notifier-url",
            &notifier_url,
            "--admin-api-key",
            ADMIN_KEY,
        ],
    );
    let config = ingestor::Config::try_parse_from(args).unwrap();
    let (listener, addr) = testkit::listener().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingestor::run(config, listener, shutdown.clone()));
    let base = format!("http://{addr}");
    wait_healthy(&format!("{base}/health")).await;
    (base, Service { shutdown, task })
}

async fn start_batcher(env: &TestEnv) -> Service {
    let args = shared_args(env, "batcher", &["--batcher-id", "compat"]);
    let config = batcher::Config::try_parse_from(args).unwrap();
    let (listener, addr) = testkit::listener().await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(batcher::run(config, listener, shutdown.clone()));
    wait_healthy(&format!("http://{addr}/health")).await;
    Service { shutdown, task }
}

async fn wait_healthy(url: &str) {
    let http = reqwest::Client::new();
    eventually(WAIT, url, || async {
        let response = http.get(url).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

/// GETs `path` and returns the status and the JSON body.
async fn get(base: &str, path: &str) -> (u16, Value) {
    testkit::get_status_json(&format!("{base}{path}")).await
}

/// `DELETE /reset` with the admin key: the status and the JSON body.
async fn reset(base: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .delete(format!("{base}/reset"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// POSTs `body` as JSON and returns the status and the JSON body.
async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The original's `/health` fields beside ours, for a queue of `length` and BATCH_SIZE 50.
fn health_with_queue(length: u64) -> Value {
    json!({
        "status": "ok", "redis": "ok", "postgres": "ok",
        "queue_length": length, "batch_threshold": 50,
        "batch_progress": length % 50, "batches_pending": length / 50,
    })
}

/// The next JSON text frame `ws` receives that `matches`, skipping others.
async fn next_matching(ws: &mut Ws, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    testkit::ws::next_matching(ws, WAIT, what, matches).await
}

/// The Close frame `ws` receives, skipping the frames before it; panics if the socket ends without one.
async fn close_frame(ws: &mut Ws) -> Option<CloseFrame> {
    testkit::ws::close_frame(ws, WAIT).await
}

/// `ws://` URL of `/ws/stats` at the ingestor `base` (`http://…`).
fn ws_url(base: &str) -> String {
    format!("{}/ws/stats", base.replacen("http://", "ws://", 1))
}

#[tokio::test]
async fn the_ingestor_answers_each_documented_request_as_the_original() {
    let env = TestEnv::new().await;
    let notifier_addr = free_addr().await;
    let notifier = start_notifier(&env, notifier_addr).await;
    // No batcher: the queue stays where the requests put it, so every figure is exact.
    let (api, ingestor) = start_ingestor(&env, notifier_addr).await;

    // GET /: the original's service description.
    let (status, root) = get(&api, "/").await;
    assert_eq!(status, 200);
    assert_eq!(root["service"], "High-Speed Message Ingestor");
    assert_eq!(root["status"], "running");
    assert_eq!(
        root["batch_config"],
        json!({"batch_size": 50, "timeout_seconds": 2})
    );
    for endpoint in testkit::seed::ENDPOINTS {
        assert!(
            root["endpoints"][endpoint].is_string(),
            "{endpoint} missing from {root}"
        );
    }

    // GET /health on an empty queue.
    assert_eq!(get(&api, "/health").await, (200, health_with_queue(0)));

    // POST /messages: 201 {"message_id", "status": "queued", "queued_at"}.
    let (status, accepted) = post(
        &api,
        "/messages",
        json!({"user_id": 1, "channel_id": 1, "content": "Hello, pipeline!"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(accepted["status"], "queued");
    assert!(accepted["message_id"].is_string(), "{accepted}");
    assert!(accepted["queued_at"].is_string(), "{accepted}");

    // POST /simulate: 202 with every field of the original, computed from the queue after the push.
    let (status, simulated) = post(&api, "/simulate", json!({"count": 100})).await;
    assert_eq!(status, 202);
    let ids = simulated["tracking_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(Value::is_string));
    let mut without_ids = simulated.clone();
    without_ids.as_object_mut().unwrap().remove("tracking_ids");
    assert_eq!(
        without_ids,
        json!({
            "status": "simulation_started",
            "messages_count": 100,
            "current_queue": 101,
            "expected_total": 101,
            "expected_complete_batches": 2,
            "expected_remaining_queued": 1,
            "batch_threshold": 50,
            "message": "Injecting 100 messages. 2 batch(es) will flush, 1 will remain queued.",
        })
    );

    // GET /health and GET /queue/status with 101 queued.
    assert_eq!(get(&api, "/health").await, (200, health_with_queue(101)));
    let (status, queue) = get(&api, "/queue/status").await;
    assert_eq!(status, 200);
    assert_eq!(queue["queue_length"], 101);
    assert_eq!(queue["batch_threshold"], 50);
    assert_eq!(queue["batch_progress"], 1);
    assert_eq!(queue["batches_ready"], 2);
    assert_eq!(queue["queued_message_ids"].as_array().unwrap().len(), 100);
    // The oldest first: the single message, then the simulated ones in order.
    assert_eq!(queue["queued_message_ids"][0], accepted["message_id"]);
    assert_eq!(queue["queued_message_ids"][1], ids[0]);

    // GET /messages: nothing persisted yet, an empty array as the original's.
    assert_eq!(get(&api, "/messages?limit=5").await, (200, json!([])));

    // DELETE /reset (ours needs the admin key): nothing persisted, 101 cleared from the queue.
    assert_eq!(
        reset(&api).await,
        (
            200,
            json!({"status": "reset_complete", "deleted_messages": 0, "cleared_queue": 101})
        )
    );
    assert_eq!(get(&api, "/health").await, (200, health_with_queue(0)));

    ingestor.stop().await;
    notifier.stop().await;
}

#[tokio::test]
async fn at_the_ingestors_address_ws_stats_relays_the_notifiers_events_and_rows_persist_as_the_original()
 {
    let env = TestEnv::new().await;
    let notifier_addr = free_addr().await;
    let notifier = start_notifier(&env, notifier_addr).await;
    let (api, ingestor) = start_ingestor(&env, notifier_addr).await;
    let batcher = start_batcher(&env).await;

    // The original's dashboard connects to ws://<API>/ws/stats.
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&api))
        .await
        .unwrap();
    let first = next_matching(&mut ws, "the first message", |_| true).await;
    testkit::seed::assert_stats_update(&first);
    assert_eq!(first["batch_threshold"], 50);

    // 120 messages: two batches by size, the last 20 by the 2 s timeout.
    let (status, simulated) = post(&api, "/simulate", json!({"count": 120})).await;
    assert_eq!(status, 202);
    let mut waiting: std::collections::HashSet<Value> = simulated["tracking_ids"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    let mut sizes = Vec::new();
    while !waiting.is_empty() {
        let event = next_matching(&mut ws, "a batch_persisted", |v| {
            v["type"] == "batch_persisted"
        })
        .await;
        // The original's batch_persisted fields.
        assert!(event["batch_id"].is_i64(), "{event}");
        assert!(event["worker_timestamp"].is_string(), "{event}");
        for id in event["ids"].as_array().unwrap() {
            assert!(waiting.remove(id), "unknown or repeated id {id}");
        }
        sizes.push(event["batch_size"].as_u64().unwrap());
    }
    assert_eq!(sizes, [50, 50, 20]);

    // stats_update once the totals show all three batches: 120 / 3 = 40.0, and a whole-number rate.
    let stats = next_matching(&mut ws, "stats with every row", |v| {
        v["type"] == "stats_update" && v["total_messages"] == 120 && v["total_batches"] == 3
    })
    .await;
    assert_eq!(stats["queue_depth"], 0);
    assert_eq!(stats["avg_batch_size"], 40.0);
    assert_eq!(stats["batch_progress"], 0);
    assert_eq!(stats["batch_progress_percent"], 0.0);
    assert_eq!(stats["batches_ready"], 0);
    assert!(stats["messages_per_second"].is_u64(), "{stats}");

    // GET /messages: the original's row fields (ours add tracking_id).
    let (status, rows) = get(&api, "/messages?limit=3").await;
    assert_eq!(status, 200);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert!(row["id"].is_i64(), "{row}");
        assert!(row["user_id"].as_i64().unwrap() > 0, "{row}");
        assert!(row["channel_id"].as_i64().unwrap() > 0, "{row}");
        assert!(row["content"].is_string(), "{row}");
        assert!(row["created_at"].is_string(), "{row}");
        assert!(row["inserted_at"].is_string(), "{row}");
    }

    // GET /queue/status: the last batch under the original's names too.
    let (_, queue) = get(&api, "/queue/status").await;
    assert_eq!(queue["last_batch"]["size"], 20, "{queue}");
    assert!(queue["last_batch"]["batch_id"].is_i64(), "{queue}");
    assert!(queue["last_batch"]["completed_at"].is_string(), "{queue}");

    // DELETE /reset: the 120 rows are deleted, nothing was queued.
    assert_eq!(
        reset(&api).await,
        (
            200,
            json!({"status": "reset_complete", "deleted_messages": 120, "cleared_queue": 0})
        )
    );

    // The ingestor stopping closes the relayed socket with 1001.
    ingestor.stop().await;
    let close = close_frame(&mut ws).await.expect("with a code");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "ingestor shutting down");
    batcher.stop().await;
    notifier.stop().await;
}

#[tokio::test]
async fn ws_stats_at_the_ingestor_says_clearly_when_the_notifier_is_down_or_stops() {
    let env = TestEnv::new().await;
    // The notifier's address is known, but nothing listens there yet.
    let notifier_addr = free_addr().await;
    let (api, ingestor) = start_ingestor(&env, notifier_addr).await;

    // Down: a JSON 502 instead of an upgrade, with Retry-After.
    match tokio_tungstenite::connect_async(ws_url(&api)).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 502);
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "notifier_unavailable", "{body}");
            assert_eq!(
                body["message"],
                "the notifier (NOTIFIER_URL) is unavailable; retry later"
            );
        }
        other => panic!("expected a 502, got {other:?}"),
    }
    // A plain GET (no upgrade): a JSON 400.
    let (status, body) = get(&api, "/ws/stats").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "not_a_websocket");

    // Up: relayed; then the notifier stops and its Close frame (1001) reaches the client.
    let notifier = start_notifier(&env, notifier_addr).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&api))
        .await
        .unwrap();
    let first = next_matching(&mut ws, "the first message", |_| true).await;
    assert_eq!(first["type"], "stats_update");
    notifier.stop().await;
    let close = close_frame(&mut ws).await.expect("with a code");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "notifier shutting down");

    ingestor.stop().await;
}
