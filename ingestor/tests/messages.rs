//! `POST /messages` and `POST /messages/batch` against real Redis: exactly what was acknowledged is queued.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{message, pending, pending_len, spawn_app};
use pipeline::api::{MessageAccepted, NewMessage};
use serde_json::Value;
use testkit::TestEnv;
use uuid::Uuid;

#[tokio::test]
async fn a_valid_message_is_queued_once_with_its_fields() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;

    // An unknown extra field is ignored, and a charset parameter is fine.
    let response = app
        .client
        .post(app.url("/messages"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"user_id": 7, "channel_id": 3, "content": "héllo", "client": "seed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let accepted: MessageAccepted = response.json().await.unwrap();
    assert_eq!(accepted.status, "queued");
    assert_eq!(accepted.message_id.get_version_num(), 7);

    let queued = pending(&env).await;
    assert_eq!(queued.len(), 1);
    let element = &queued[0];
    assert_eq!(element.tracking_id, accepted.message_id);
    assert_eq!((element.user_id, element.channel_id), (7, 3));
    assert_eq!(element.content, "héllo");
    assert_eq!(element.created_at, accepted.queued_at);
    app.stop().await;
}

#[tokio::test]
async fn two_thousand_concurrent_posts_queue_exactly_the_returned_ids() {
    const TOTAL: usize = 2000;
    const WORKERS: usize = 64;
    let env = TestEnv::new().await;
    let app = Arc::new(spawn_app(&env, |_| {}).await);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (app, next) = (app.clone(), next.clone());
        workers.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL {
                    return ids;
                }
                let response = app
                    .post_json(
                        "/messages",
                        message(1 + n as i64, 1, &format!("message {n}")),
                    )
                    .await;
                assert_eq!(response.status(), 201);
                let accepted: MessageAccepted = response.json().await.unwrap();
                ids.push(accepted.message_id);
            }
        });
    }
    let mut returned = HashSet::new();
    while let Some(ids) = workers.join_next().await {
        returned.extend(ids.unwrap());
    }
    assert_eq!(returned.len(), TOTAL);

    assert_eq!(pending_len(&env).await, TOTAL as u64);
    let queued: HashSet<Uuid> = pending(&env).await.iter().map(|m| m.tracking_id).collect();
    assert_eq!(queued, returned);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn a_batch_is_queued_in_order_with_one_id_per_message() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let batch: Vec<NewMessage> = (1..=300)
        .map(|i| NewMessage {
            user_id: i,
            channel_id: 10 + i,
            content: format!("batch item {i}"),
        })
        .collect();
    let response = app
        .post_json("/messages/batch", serde_json::to_string(&batch).unwrap())
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let ids: Vec<Uuid> = serde_json::from_value(body["message_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 300);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 300);

    // Oldest first in Redis is request order.
    let queued = pending(&env).await;
    assert_eq!(queued.len(), 300);
    for ((element, sent), id) in queued.iter().zip(&batch).zip(&ids) {
        assert_eq!(element.tracking_id, *id);
        assert_eq!(
            (element.user_id, element.channel_id, &element.content),
            (sent.user_id, sent.channel_id, &sent.content)
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_on_a_batch_yields_the_same_ids_and_queues_it_once() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    // 2,500 messages: more than the script pushes per LPUSH (1,000), to check chunking keeps the order.
    let batch: Vec<NewMessage> = (1..=2500)
        .map(|i| NewMessage {
            user_id: i,
            channel_id: 1,
            content: format!("keyed item {i}"),
        })
        .collect();
    let body = serde_json::to_string(&batch).unwrap();
    let (app_ref, body) = (&app, &body);
    let post = |key: &'static str| async move {
        app_ref
            .post_idempotent("/messages/batch", body.clone(), key)
            .await
    };
    let first = post("batch-7").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let ids: Vec<Uuid> = serde_json::from_value(first["message_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2500);

    let again = post("batch-7").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let queued = pending(&env).await;
    assert_eq!(
        queued.iter().map(|m| m.tracking_id).collect::<Vec<_>>(),
        ids
    );
    for (element, sent) in queued.iter().zip(&batch) {
        assert_eq!(element.content, sent.content);
    }

    // Keys are scoped by endpoint: the same key on POST /messages is another request.
    let single = app
        .post_idempotent("/messages", message(1, 1, "single"), "batch-7")
        .await;
    assert_eq!(single.status(), 201);
    let single: MessageAccepted = single.json().await.unwrap();
    assert!(!ids.contains(&single.message_id));
    // Another key is another batch.
    let other: Value = post("batch-8").await.json().await.unwrap();
    assert_ne!(other["message_ids"], first["message_ids"]);
    assert_eq!(pending_len(&env).await, 2500 + 1 + 2500);
    app.stop().await;
}

#[tokio::test]
async fn a_batch_with_bad_items_names_them_all_and_queues_nothing() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let good = message(1, 1, "fine");
    let body = format!(
        "[{good}, {good}, {good}, {}, {good}, {}]",
        message(1, 1, "   "),
        r#"{"user_id": 1.5, "channel_id": 1, "content": "x"}"#
    );
    let response = app.post_json("/messages/batch", body).await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_field");
    assert_eq!(error["field"], "[3].content");
    assert_eq!(error["invalid_indexes"], serde_json::json!([3, 5]));
    assert_eq!(pending_len(&env).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn content_of_2000_characters_is_accepted_and_2001_refused() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let longest = "é".repeat(2000);
    let response = app.post_json("/messages", message(1, 1, &longest)).await;
    assert_eq!(response.status(), 201);

    let response = app
        .post_json("/messages", message(1, 1, &"é".repeat(2001)))
        .await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        (error["error"].as_str(), error["field"].as_str()),
        (Some("invalid_field"), Some("content"))
    );

    let queued = pending(&env).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].content, longest);
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_yields_the_same_id_and_one_element() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let post = |key: &'static str| {
        app.client
            .post(app.url("/messages"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(message(5, 6, "only once"))
            .send()
    };
    let first: MessageAccepted = post("order-42").await.unwrap().json().await.unwrap();
    let again = post("order-42").await.unwrap();
    assert_eq!(again.status(), 201);
    let again: MessageAccepted = again.json().await.unwrap();
    assert_eq!(again, first);
    let other: MessageAccepted = post("order-43").await.unwrap().json().await.unwrap();
    assert_ne!(other.message_id, first.message_id);

    let ids: Vec<Uuid> = pending(&env).await.iter().map(|m| m.tracking_id).collect();
    assert_eq!(ids, [first.message_id, other.message_id]);

    let bad = app
        .post_idempotent("/messages", message(5, 6, "x"), &"k".repeat(129))
        .await;
    assert_eq!(bad.status(), 422);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["field"], "Idempotency-Key");
    assert_eq!(pending_len(&env).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_posts_finish_and_every_acknowledged_post_is_queued() {
    const WORKERS: usize = 32;
    const POSTS_PER_WORKER: usize = 200;
    let env = TestEnv::new().await;
    let app = Arc::new(spawn_app(&env, |_| {}).await);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let app = app.clone();
        // Each worker posts until the service stops answering 201 (it is shutting down).
        workers.spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..POSTS_PER_WORKER {
                let sent = app
                    .client
                    .post(app.url("/messages"))
                    .header("content-type", "application/json")
                    .body(message(1, 1, &format!("worker {worker} post {n}")))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 201 {
                    break;
                }
                let Ok(accepted) = response.json::<MessageAccepted>().await else {
                    break;
                };
                acknowledged.push(accepted.message_id);
            }
            acknowledged
        });
    }
    // Shut down mid-stream, once a good number of posts went through.
    testkit::eventually(Duration::from_secs(10), "100 queued messages", || async {
        (pending_len(&env).await >= 100).then_some(())
    })
    .await;
    app.cancel();
    let mut acknowledged = HashSet::new();
    while let Some(ids) = workers.join_next().await {
        acknowledged.extend(ids.unwrap());
    }
    Arc::into_inner(app).unwrap().join().await.unwrap();

    assert!(acknowledged.len() >= 100);
    assert!(
        acknowledged.len() < WORKERS * POSTS_PER_WORKER,
        "the shutdown came mid-stream"
    );
    let queued: HashSet<Uuid> = pending(&env).await.iter().map(|m| m.tracking_id).collect();
    assert_eq!(queued, acknowledged);
}

#[tokio::test]
async fn cors_answers_the_dashboard_and_only_marks_other_clients_answers() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/messages"))
        .header("origin", "http://127.0.0.1:8001")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://127.0.0.1:8001"
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("idempotency-key"), "{allowed}");

    let foreign = app
        .client
        .get(app.url("/health"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // The dashboard's POST itself, and a client that is not a browser (no Origin: CORS is skipped, its
    // two unconditional headers are still there).
    let from_dashboard = app
        .post_json_with(
            "/messages",
            message(1, 1, "from the dashboard"),
            &[("origin", "http://127.0.0.1:8001")],
        )
        .await;
    assert_eq!(from_dashboard.status(), 201);
    let headers = from_dashboard.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://127.0.0.1:8001"
    );
    assert_eq!(headers["access-control-expose-headers"], "retry-after");
    let plain = app.post_json("/messages", message(1, 1, "no origin")).await;
    assert_eq!(plain.status(), 201);
    let headers = plain.headers();
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert_eq!(headers["access-control-expose-headers"], "retry-after");
    assert_eq!(headers["vary"], "origin");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_forgotten_after_idempotency_ttl() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.idempotency_ttl = Duration::from_secs(1);
    })
    .await;
    let body = message(1, 2, "remembered for a second");
    let key = [("Idempotency-Key", "ttl-key")];
    let post = || async {
        let response = app.post_json_with("/messages", body.clone(), &key).await;
        assert_eq!(response.status(), 201);
        response.json::<MessageAccepted>().await.unwrap().message_id
    };
    let first = post().await;
    assert_eq!(post().await, first, "a repeat within the TTL");
    assert_eq!(pending_len(&env).await, 1);
    let ttl_ms: i64 = env
        .redis_query(redis::cmd("PTTL").arg(env.keys().shard(0).idempotency("ttl-key")))
        .await;
    assert!((1..=1000).contains(&ttl_ms), "PTTL {ttl_ms}");

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let later = post().await;
    assert_ne!(later, first, "after the TTL the key is new again");
    assert_eq!(pending_len(&env).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_queue_one_message_and_share_its_id() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let body = message(1, 2, "sent by twenty at once");
    let posts = (0..20).map(|_| async {
        let response = app
            .post_json_with("/messages", body.clone(), &[("Idempotency-Key", "race")])
            .await;
        assert_eq!(response.status(), 201);
        response.json::<MessageAccepted>().await.unwrap().message_id
    });
    let ids: HashSet<Uuid> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 1, "one id for all: {ids:?}");
    assert_eq!(pending_len(&env).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_batch_of_10000_is_remembered_in_38_bytes_plus_16_per_message() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let items: Vec<String> = (0..10_000)
        .map(|i| message(1, 2, &format!("message {i}")))
        .collect();
    let body = format!("[{}]", items.join(","));
    let key = [("Idempotency-Key", "compact")];
    let response = app
        .post_json_with("/messages/batch", body.clone(), &key)
        .await;
    assert_eq!(response.status(), 201);
    let first: Value = response.json().await.unwrap();
    let record = env.keys().shard(0).idempotency("batch compact");
    let length: usize = env.redis_query(redis::cmd("STRLEN").arg(&record)).await;
    assert_eq!(
        length,
        ingestor::idempotency::BATCH_RECORD_HEADER_LEN + 16 * 10_000
    );
    assert_eq!(length, 160_038);
    // The compact record answers a repeat exactly as the first answer.
    let repeat = app.post_json_with("/messages/batch", body, &key).await;
    assert_eq!(repeat.status(), 201);
    assert_eq!(repeat.json::<Value>().await.unwrap(), first);
    assert_eq!(pending_len(&env).await, 10_000);
    app.stop().await;
}
