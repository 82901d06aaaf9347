//! `/simulate`, `/queue/status`, `GET /messages`, `/reset` and `/health` against real Redis and PostgreSQL.

mod common;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use common::{
    ADMIN_KEY, assert_retry_later, message, pending, pending_len, spawn_app, with_admin_key,
};
use pipeline::api::{PersistedMessage, QueueStatus, SimulateAccepted};
use serde_json::Value;
use testkit::TestEnv;
use uuid::Uuid;

#[tokio::test]
async fn simulate_500_queues_500_distinct_messages_and_reports_the_seeds_fields() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.batch.batch_size = 50).await;
    // 7 messages already held by a batcher count towards the queue too.
    let keys = env.keys().shard(0);
    let _: () = env
        .redis_query(redis::cmd("SADD").arg(keys.batchers()).arg("b1"))
        .await;
    let redis_key = keys.processing("b1");
    let _: () = env
        .redis_query(redis::cmd("RPUSH").arg(&redis_key).arg(vec!["held"; 7]))
        .await;

    let response = app.post_json("/simulate", r#"{"count": 500}"#).await;
    assert_eq!(response.status(), 202);
    let accepted: SimulateAccepted = response.json().await.unwrap();
    assert_eq!(accepted.tracking_ids.len(), 500);
    // The answer for the queue right after (500 + the 7 held) and BATCH_SIZE 50; how its figures and message
    // follow from those is tested with SimulateAccepted::new in pipeline::api.
    assert_eq!(
        accepted,
        SimulateAccepted::new(accepted.tracking_ids.clone(), 507, 50)
    );
    assert_eq!(accepted.messages_count, 500);

    assert_eq!(pending_len(&env).await, 500);
    let queued = pending(&env).await;
    let ids: HashSet<Uuid> = queued.iter().map(|m| m.tracking_id).collect();
    assert_eq!(
        ids,
        accepted
            .tracking_ids
            .iter()
            .copied()
            .collect::<HashSet<_>>()
    );
    // Oldest first is generation order.
    for (n, element) in queued.iter().enumerate() {
        assert_eq!(element.tracking_id, accepted.tracking_ids[n]);
        assert_eq!(
            element.content,
            format!("Simulated message {} of 500", n + 1)
        );
        assert!(element.user_id > 0 && element.channel_id > 0);
    }
    app.stop().await;
}

#[tokio::test]
async fn simulate_pushes_more_than_one_chunk() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let response = app.post_json("/simulate", r#"{"count": 25001}"#).await;
    assert_eq!(response.status(), 202);
    let accepted: SimulateAccepted = response.json().await.unwrap();
    assert_eq!(accepted.tracking_ids.len(), 25001);
    assert_eq!(accepted.current_queue, 25001);
    assert_eq!(pending_len(&env).await, 25001);
    app.stop().await;
}

#[tokio::test]
async fn queue_status_reports_exact_numbers_and_the_oldest_ids() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.batch.batch_size = 50).await;
    let mut ids = Vec::new();
    for n in 0..123 {
        let response = app
            .post_json("/messages", message(1, 1, &format!("m{n}")))
            .await;
        let body: Value = response.json().await.unwrap();
        ids.push(
            body["message_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    // An element that is not a message is skipped in the ids but still counts.
    let redis_key = env.keys().shard(0).pending();
    let _: () = env
        .redis_query(redis::cmd("RPUSH").arg(&redis_key).arg("garbage"))
        .await;
    let db = env.db().await;
    let committed_at: DateTime<Utc> = "2024-05-06T07:08:09Z".parse().unwrap();
    db.execute(
        "INSERT INTO batches (batcher_id, reason, size, committed_at) VALUES ('b0', 'size', 50, $1), ('b9', 'timeout', 17, $1)",
        &[&committed_at],
    )
    .await
    .unwrap();

    let status: QueueStatus = app.get_json("/queue/status").await;
    assert_eq!(status.queue_length, 124);
    assert_eq!(status.batch_threshold, 50);
    assert_eq!(status.batch_progress, 24);
    assert_eq!(status.batches_ready, 2);
    // The 100 oldest elements: the garbage one (oldest) is skipped, then the first 99 posted.
    assert_eq!(status.queued_message_ids, ids[..99]);
    let last = status.last_batch.expect("a batch exists");
    assert_eq!(
        (
            last.batch_id,
            last.batch_size,
            last.reason.as_str(),
            last.batcher_id.as_str(),
            last.committed_at
        ),
        (2, 17, "timeout", "b9", committed_at)
    );
    app.stop().await;
}

#[tokio::test]
async fn listing_returns_persisted_rows_newest_first_and_honours_limit() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let db = env.db().await;
    let created_at: DateTime<Utc> = "2024-01-02T03:04:05.123456Z".parse().unwrap();
    let mut expected = Vec::new();
    for n in 1..=60_i64 {
        let tracking_id = Uuid::now_v7();
        let row = db
            .query_one(
                "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id, inserted_at",
                &[
                    &tracking_id,
                    &n,
                    &(100 + n),
                    &format!("row {n}"),
                    &created_at,
                ],
            )
            .await
            .unwrap();
        expected.push(PersistedMessage {
            id: row.get(0),
            tracking_id,
            user_id: n,
            channel_id: 100 + n,
            content: format!("row {n}"),
            created_at,
            inserted_at: row.get(1),
        });
    }
    expected.reverse();

    let list = |query: &'static str| {
        let url = app.url(&format!("/messages{query}"));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Vec<PersistedMessage>>().await.unwrap()
        }
    };
    assert_eq!(list("").await, expected[..50], "default limit is 50");
    assert_eq!(list("?limit=3").await, expected[..3]);
    assert_eq!(list("?limit=1000").await, expected);
    app.stop().await;
}

#[tokio::test]
async fn reset_empties_the_tables_the_totals_and_every_queue() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, with_admin_key).await;
    for n in 0..5 {
        app.post_json("/messages", message(1, 1, &format!("m{n}")))
            .await;
    }
    let idempotent = app
        .post_idempotent("/messages", message(1, 1, "once"), "reset-me")
        .await;
    assert_eq!(idempotent.status(), 201);
    let batch = format!("[{}]", message(1, 1, "batch once"));
    let idempotent_batch = app
        .post_idempotent("/messages/batch", batch, "reset-me")
        .await;
    assert_eq!(idempotent_batch.status(), 201);
    let keys = env.keys().shard(0);
    let _: () = env
        .redis_query(redis::cmd("SADD").arg(keys.batchers()).arg("b1"))
        .await;
    let _: () = env
        .redis_query(redis::cmd("RPUSH").arg(keys.processing("b1")).arg("held"))
        .await;
    let db = env.db().await;
    db.batch_execute(
        "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at, channel_offset) \
             VALUES (gen_random_uuid(), 1, 1, 'x', now(), 1); \
         INSERT INTO channel_heads (channel_id, head) VALUES (1, 1); \
         INSERT INTO batches (batcher_id, reason, size) VALUES ('b1', 'size', 1); \
         INSERT INTO dead_letters (raw, error, batcher_id) VALUES ('\\x00', 'bad', 'b1'); \
         UPDATE pipeline_totals SET messages = 1, batches = 1, dead_letters = 1; \
         INSERT INTO shard_totals (shard, messages, batches, dead_letters) VALUES (0, 2, 1, 0), (3, 5, 2, 1)",
    )
    .await
    .unwrap();
    assert_eq!(
        env.totals().await,
        (8, 4, 2),
        "the totals are pipeline_totals' counts plus every shard's"
    );

    let redis_key = keys.idempotency("reset-me");
    let remembered: u64 = env
        .redis_query(
            redis::cmd("EXISTS")
                .arg(&redis_key)
                .arg(keys.idempotency("batch reset-me")),
        )
        .await;
    assert_eq!(
        remembered, 2,
        "both idempotency records exist before the reset"
    );

    let response = app.reset(Some(ADMIN_KEY)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // Seven messages were pending and one held by b1; one row was persisted.
    assert_eq!(
        body,
        serde_json::json!({"status": "reset_complete", "deleted_messages": 1, "cleared_queue": 8})
    );

    // The heads go too: the channels' offsets start again at 1.
    for table in ["messages", "batches", "dead_letters", "channel_heads"] {
        assert_eq!(env.count(table).await, 0, "{table}");
    }
    assert_eq!(env.totals().await, (0, 0, 0), "every shard's totals too");
    let redis_key = keys.pending();
    let exists: u64 = env
        .redis_query(
            redis::cmd("EXISTS")
                .arg(&redis_key)
                .arg(keys.processing("b1"))
                .arg(keys.idempotency("reset-me"))
                .arg(keys.idempotency("batch reset-me")),
        )
        .await;
    assert_eq!(exists, 0);
    // Message ids restart; batch ids go on (a batch in flight at the reset keeps the id it drew, see
    // batcher/tests/reset.rs).
    let message_id: i64 = db
        .query_one(
            "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) \
             VALUES (gen_random_uuid(), 1, 1, 'x', now()) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(message_id, 1);
    let batch_id: i64 = db
        .query_one(
            "INSERT INTO batches (batcher_id, reason, size) VALUES ('b1', 'size', 1) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(batch_id > 1, "batch ids continue: {batch_id}");
    app.stop().await;
}

/// The `/health` body of an empty queue (BATCH_SIZE 50, Redis answering) with `status` and `postgres`.
fn empty_queue_health(status: &str, postgres: &str) -> Value {
    serde_json::json!({
        "status": status, "redis": "ok", "postgres": postgres,
        "queue_length": 0, "batch_threshold": 50, "batch_progress": 0, "batches_pending": 0,
    })
}

#[tokio::test]
async fn health_is_ok_when_redis_and_postgres_answer() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    assert_eq!(
        app.get_status_json("/health").await,
        (200, empty_queue_health("ok", "ok"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_broken_schema_gives_a_500_without_details() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    env.db()
        .await
        .batch_execute("ALTER TABLE messages DROP COLUMN content")
        .await
        .unwrap();
    let response = app.get("/messages").await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "internal", "message": "internal error"})
    );
    app.stop().await;
}

#[tokio::test]
async fn postgres_gone_gives_503_database_unavailable_with_retry_after() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    assert_eq!(app.get("/messages").await.status(), 200);
    env.drop_database().await;

    let response = app.get("/messages").await;
    assert_retry_later(response, 503, "database_unavailable", "GET /messages").await;
    assert_eq!(
        app.get_status_json("/health").await,
        (503, empty_queue_health("degraded", "unavailable"))
    );
    app.stop().await;
}
