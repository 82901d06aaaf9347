//! Redis unreachable: every endpoint that needs it answers 503 with `Retry-After`, never a 201; the
//! ingestor reconnects by itself once Redis is back; and a retry with the same `Idempotency-Key` after a
//! 503 is queued exactly once, also when Redis was paused rather than gone.

mod common;

use std::time::Duration;

use common::{TestApp, assert_retry_later, dead_port, message, spawn_app};
use pipeline::api::MessageAccepted;
use serde_json::Value;
use testkit::TestEnv;
use testkit::redis_server::RedisServer;
use uuid::Uuid;

#[tokio::test]
async fn redis_unreachable_gives_503_with_retry_after_and_never_a_201() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let app = spawn_on(&env, port).await;

    let requests = [
        ("/messages", message(1, 1, "lost?")),
        ("/messages/batch", format!("[{}]", message(1, 1, "lost?"))),
        ("/simulate", r#"{"count": 3}"#.to_owned()),
    ];
    for (path, body) in requests {
        let response = app.post_json(path, body).await;
        assert_retry_later(response, 503, "redis_unavailable", path).await;
    }
    let status = app.get("/queue/status").await;
    assert_eq!(status.status(), 503);

    assert_eq!(
        app.get_status_json("/health").await,
        (
            503,
            // The queue figures need Redis: only batch_threshold is left.
            serde_json::json!({
                "status": "degraded", "redis": "unavailable", "postgres": "ok", "batch_threshold": 50,
            })
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn posts_succeed_again_after_redis_restarts() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let server = RedisServer::start_on(port, &[]).await;
    let app = spawn_on(&env, port).await;
    let post = || app.post_json("/messages", message(1, 1, "survives restarts"));
    testkit::eventually(
        Duration::from_secs(10),
        "a 201 from the first Redis",
        || async { (post().await.status() == 201).then_some(()) },
    )
    .await;

    drop(server);
    assert_eq!(post().await.status(), 503);

    let _server = RedisServer::start_on(port, &[]).await;
    testkit::eventually(
        Duration::from_secs(10),
        "a 201 after the restart",
        || async { (post().await.status() == 201).then_some(()) },
    )
    .await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    app.stop().await;
}

/// The Redis this file's tests start (or leave dead) on `port`.
fn redis_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// An ingestor using the Redis at `port` (which may be dead, or come and go).
async fn spawn_on(env: &TestEnv, port: u16) -> TestApp {
    spawn_app(env, |config| config.redis.redis_url = redis_url(port)).await
}

/// The pending list of `env`'s prefix on the Redis at `port`, oldest first, as tracking ids.
async fn pending_ids(env: &TestEnv, port: u16) -> Vec<Uuid> {
    common::pending_at(env, &redis_url(port))
        .await
        .iter()
        .map(|message| message.tracking_id)
        .collect()
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_after_a_503_is_queued_exactly_once() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let app = spawn_on(&env, port).await;
    let post_one = || app.post_idempotent("/messages", message(3, 4, "retried"), "retry-1");
    let batch = format!("[{}, {}]", message(1, 1, "b1"), message(1, 1, "b2"));
    let post_batch = || app.post_idempotent("/messages/batch", batch.clone(), "retry-2");

    // Redis is down: 503, nothing remembered, nothing queued.
    for response in [post_one().await, post_batch().await] {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
    }

    let _server = RedisServer::start_on(port, &[]).await;
    let accepted: MessageAccepted = testkit::eventually(
        Duration::from_secs(10),
        "a 201 once Redis is up",
        || async {
            let response = post_one().await;
            if response.status() == 201 {
                Some(response.json().await.unwrap())
            } else {
                None
            }
        },
    )
    .await;
    assert_eq!(pending_ids(&env, port).await, [accepted.message_id]);
    let again = post_one().await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<MessageAccepted>().await.unwrap(), accepted);

    let first_batch = post_batch().await;
    assert_eq!(first_batch.status(), 201);
    let first_batch: Value = first_batch.json().await.unwrap();
    let again_batch = post_batch().await;
    assert_eq!(again_batch.json::<Value>().await.unwrap(), first_batch);
    let batch_ids: Vec<Uuid> = serde_json::from_value(first_batch["message_ids"].clone()).unwrap();

    let mut expected = vec![accepted.message_id];
    expected.extend(batch_ids);
    assert_eq!(pending_ids(&env, port).await, expected);
    app.stop().await;
}

#[tokio::test]
async fn a_paused_redis_gets_a_503_within_the_push_timeout_and_a_keyed_retry_is_queued_once() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let _server = RedisServer::start_on(port, &[]).await;
    let app = spawn_on(&env, port).await;
    let post_keyed = || app.post_idempotent("/messages", message(5, 6, "paused"), "paused-1");
    let post = || app.post_json("/messages", message(5, 6, "after the pause"));
    testkit::eventually(Duration::from_secs(10), "a first 201", || async {
        (post().await.status() == 201).then_some(())
    })
    .await;

    // Redis stops answering writes for 6 s, far beyond the ingestor's 2 s push timeout.
    let client = redis::Client::open(redis_url(port)).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "6000", "WRITE"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    let (plain, keyed) = tokio::join!(post(), post_keyed());
    let waited = asked.elapsed();
    for response in [plain, keyed] {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert!(
        waited < Duration::from_secs(5),
        "answered while Redis was still paused, after {waited:?}"
    );

    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut admin)
        .await
        .unwrap();
    // Whether the timed-out pushes ran is unknown to the client; the keyed retry settles it: one element.
    let accepted: MessageAccepted =
        testkit::eventually(Duration::from_secs(10), "a 201 for the retry", || async {
            let response = post_keyed().await;
            if response.status() == 201 {
                Some(response.json().await.unwrap())
            } else {
                None
            }
        })
        .await;
    let pending = pending_ids(&env, port).await;
    assert_eq!(
        pending
            .iter()
            .filter(|id| **id == accepted.message_id)
            .count(),
        1
    );
    assert_eq!(post().await.status(), 201, "writes go through again");
    app.stop().await;
}
