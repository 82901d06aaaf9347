//! Backpressure: over `MAX_QUEUE_DEPTH` the write endpoints answer 429 `queue_full` with `Retry-After` and
//! queue nothing, and admit again by themselves once the queue drains.

mod common;

use std::time::Duration;

use common::{TestApp, assert_retry_later, message, pending_len, spawn_app};
use pipeline::api::MessageAccepted;
use serde_json::Value;
use testkit::TestEnv;

/// The three write endpoints, with bodies of 1, 2 and 3 messages.
fn submissions() -> [(&'static str, String); 3] {
    [
        ("/messages", message(1, 1, "one")),
        (
            "/messages/batch",
            format!("[{}, {}]", message(1, 1, "a"), message(2, 2, "b")),
        ),
        ("/simulate", r#"{"count": 3}"#.to_owned()),
    ]
}

async fn assert_queue_full(response: reqwest::Response, what: &str) {
    let body = assert_retry_later(response, 429, "queue_full", what).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("MAX_QUEUE_DEPTH (10)"),
        "{what}: {body}"
    );
}

/// Pushes `n` raw elements onto the pending list, as if clients had queued them.
async fn fill(env: &TestEnv, n: usize) {
    let redis_key = env.keys().shard(0).pending();
    let _: () = env
        .redis_query(redis::cmd("LPUSH").arg(&redis_key).arg(vec!["filler"; n]))
        .await;
}

/// Posts single messages until one is refused (the cached depth has caught up), at most for 5 s.
async fn wait_until_full(app: &TestApp) {
    testkit::eventually(Duration::from_secs(5), "a 429", || async {
        let response = app.post_json("/messages", message(1, 1, "probe")).await;
        (response.status() == 429).then_some(())
    })
    .await;
}

#[tokio::test]
async fn over_max_queue_depth_every_write_gets_429_and_queues_nothing_until_the_queue_drains() {
    let env = TestEnv::new().await;
    fill(&env, 10).await;
    let app = spawn_app(&env, |config| config.max_queue_depth = 10).await;
    wait_until_full(&app).await;

    let before = pending_len(&env).await;
    assert!(before >= 10, "{before}");
    for (path, body) in submissions() {
        assert_queue_full(app.post_json(path, body).await, path).await;
    }
    assert_eq!(pending_len(&env).await, before, "a 429 queues nothing");

    // The batchers drain the queue: submissions are admitted again without anyone stepping in.
    let _: () = env
        .redis_query(redis::cmd("DEL").arg(env.keys().shard(0).pending()))
        .await;
    testkit::eventually(Duration::from_secs(5), "a 201 after draining", || async {
        let response = app.post_json("/messages", message(1, 1, "again")).await;
        (response.status() == 201).then_some(())
    })
    .await;
    // 1 queued; 9 more fill it exactly, and what is admitted counts at once, before any reading.
    let nine: Vec<String> = (0..9).map(|n| message(1, 1, &format!("m{n}"))).collect();
    let batch = app
        .post_json("/messages/batch", format!("[{}]", nine.join(",")))
        .await;
    assert_eq!(batch.status(), 201);
    assert_queue_full(
        app.post_json("/messages", message(1, 1, "eleventh")).await,
        "the eleventh",
    )
    .await;
    assert_eq!(pending_len(&env).await, 10);

    let metrics = app.get("/metrics").await;
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"ingestor_messages_rejected_total{reason="queue_full"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("pipeline_queue_depth "), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_submission_larger_than_max_queue_depth_is_refused_with_422() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.max_queue_depth = 10).await;

    let response = app.post_json("/simulate", r#"{"count": 11}"#).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["field"], "count");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("MAX_QUEUE_DEPTH is 10")
    );

    let eleven: Vec<String> = (0..11).map(|n| message(1, 1, &format!("m{n}"))).collect();
    let response = app
        .post_json("/messages/batch", format!("[{}]", eleven.join(",")))
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), &body["field"]),
        (Some("invalid_field"), &Value::Null)
    );

    assert_eq!(
        app.post_json("/simulate", r#"{"count": 10}"#)
            .await
            .status(),
        202
    );
    assert_eq!(pending_len(&env).await, 10);
    app.stop().await;
}

#[tokio::test]
async fn a_repeat_with_a_known_idempotency_key_is_answered_while_the_queue_is_full() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.max_queue_depth = 3).await;
    let batch = format!("[{}, {}]", message(1, 1, "a"), message(1, 1, "b"));
    let post_batch = || app.post_idempotent("/messages/batch", batch.clone(), "b-1");
    let app_ref = &app;
    let post_one = |key: &'static str| async move {
        app_ref
            .post_idempotent("/messages", message(1, 1, "c"), key)
            .await
    };

    let first_batch: Value = post_batch().await.json().await.unwrap();
    let first_one = post_one("m-1").await;
    assert_eq!(first_one.status(), 201);
    let first_one: MessageAccepted = first_one.json().await.unwrap();
    assert_eq!(pending_len(&env).await, 3, "the queue is now full");

    let again_batch = post_batch().await;
    assert_eq!(again_batch.status(), 201);
    assert_eq!(again_batch.json::<Value>().await.unwrap(), first_batch);
    let again_one = post_one("m-1").await;
    assert_eq!(again_one.status(), 201);
    assert_eq!(
        again_one.json::<MessageAccepted>().await.unwrap(),
        first_one
    );

    assert_queue_full_any(post_one("m-2").await).await;
    assert_queue_full_any(app.post_json("/messages", message(1, 1, "d")).await).await;
    assert_eq!(pending_len(&env).await, 3);
    app.stop().await;
}

async fn assert_queue_full_any(response: reqwest::Response) {
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "queue_full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingestors_taking_concurrent_posts_queue_at_most_max_queue_depth_and_refuse_the_rest()
{
    const LIMIT: u64 = 1000;
    let env = TestEnv::new().await;
    // No batcher runs: whatever is admitted stays queued.
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(spawn_app(&env, |config| config.max_queue_depth = LIMIT).await);
    }
    // Per ingestor, 30 clients each posting 20 single messages and 2 batches of 25, all at once: 2,100
    // messages per ingestor, 6,300 in all, against room for 1,000.
    let clients = apps.iter().flat_map(|app| {
        (0..30).map(move |client| async move {
            let (mut queued, mut refused) = (0u64, 0u64);
            for n in 0..22 {
                let (path, body, count) = if n % 11 == 10 {
                    let items: Vec<String> = (0..25)
                        .map(|i| message(1, client + 1, &format!("b{n}-{i}")))
                        .collect();
                    ("/messages/batch", format!("[{}]", items.join(",")), 25)
                } else {
                    ("/messages", message(1, client + 1, &format!("m{n}")), 1)
                };
                let response = app.post_json(path, body).await;
                match response.status().as_u16() {
                    201 => queued += count,
                    429 => refused += count,
                    other => panic!("{path}: {other} {}", response.text().await.unwrap()),
                }
            }
            (queued, refused)
        })
    });
    let outcomes = futures_util::future::join_all(clients).await;
    let queued: u64 = outcomes.iter().map(|(queued, _)| queued).sum();
    let refused: u64 = outcomes.iter().map(|(_, refused)| refused).sum();
    eprintln!("{queued} messages queued, {refused} refused");
    assert_eq!(queued + refused, 6_300);
    assert_eq!(
        pending_len(&env).await,
        queued,
        "every 201 is queued, no 429 is"
    );
    assert!(
        queued <= LIMIT,
        "{queued} queued past MAX_QUEUE_DEPTH {LIMIT}"
    );
    for app in apps {
        app.stop().await;
    }
}
