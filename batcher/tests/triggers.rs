//! The volume and time triggers, the rows they write, and the `batch_persisted` event.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;

#[tokio::test]
async fn thirty_messages_with_batch_size_ten_make_exactly_three_size_batches() {
    let (env, batcher) = start_new("b1", 10, 30.0).await;
    let sent = messages(30);
    push(&env, &sent).await;

    wait_rows(&env, 30).await;
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    let batches = batches(&env).await;
    assert_eq!(batches.len(), 3, "{batches:?}");
    for batch in &batches {
        assert_eq!(
            (batch.size, batch.inserted, batch.dead_letters),
            (10, 10, 0)
        );
        assert_eq!(batch.reason, "size");
        assert_eq!(batch.batcher_id, "b1");
    }
    // Every row is exactly what was pushed, in the order it was pushed.
    assert_eq!(persisted(&env).await, sent);
    assert_eq!(llen(&env, &env.keys().shard(0).pending()).await, 0);
    batcher.stop().await;
}

#[tokio::test]
async fn a_partial_batch_is_flushed_by_the_timer_with_its_ids_published() {
    let (env, mut events, batcher) = start_watched("b1", 1000, 0.2).await;

    let sent = messages(7);
    let pushed_at = Utc::now();
    push(&env, &sent).await;

    wait_rows(&env, 7).await;
    let batches = batches(&env).await;
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(
        (batches[0].size, batches[0].reason.as_str()),
        (7, "timeout")
    );
    // The first element was taken after it was pushed, so this bounds "timeout after the first element".
    let waited = (batches[0].committed_at - pushed_at).to_std().unwrap();
    assert!(
        waited >= Duration::from_millis(200),
        "flushed after only {waited:?}"
    );
    assert_eq!(persisted(&env).await, sent);

    let (payload, event) = next_batch_event(&mut events).await;
    assert!(payload.contains(r#""type":"batch_persisted""#));
    assert_eq!(
        event.ids,
        sent.iter().map(|m| m.tracking_id).collect::<Vec<_>>()
    );
    assert_eq!(event.batch_id, batches[0].id);
    assert_eq!((event.batch_size, event.dead_letters), (7, 0));
    assert_eq!(
        (event.reason.as_str(), event.batcher_id.as_str()),
        ("timeout", "b1")
    );
    batcher.stop().await;
}

#[tokio::test]
async fn the_timer_starts_at_the_first_message_not_at_the_last_flush() {
    let (env, batcher) = start_persisted("b1", 1000, 0.3, 1).await;

    // Idle for twice the timeout after that flush, then one message: it must still wait its full timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = message(1);
    push(&env, std::slice::from_ref(&late)).await;
    wait_rows(&env, 2).await;

    let batches = batches(&env).await;
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[1].reason, "timeout");
    let waited = (batches[1].committed_at - late.created_at)
        .to_std()
        .unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "flushed after only {waited:?}"
    );
    batcher.stop().await;
}

#[tokio::test]
async fn health_reports_both_dependencies_and_metrics_count_flushes() {
    let (_env, batcher) = start_persisted("b-health", 2, 30.0, 2).await;

    let base = format!("http://{}", batcher.addr);
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "batcher_id": "b-health", "redis": "ok", "postgres": "ok"})
    );

    let metrics = testkit::get_text(&format!("{base}/metrics")).await;
    for name in [
        "batcher_flushes_total{reason=\"size\"}",
        "batcher_messages_persisted_total",
        "batcher_batch_size",
        "batcher_flush_duration_seconds",
        "pipeline_end_to_end_latency_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    batcher.stop().await;
}

#[tokio::test]
async fn an_element_queued_twice_is_one_row_one_id_in_the_event_and_counted_once() {
    let (env, mut events, batcher) = start_watched("b1", 1000, 0.2).await;

    // A group push retried after its reply was lost: the same elements twice.
    let sent = messages(3);
    let twice: Vec<_> = sent.iter().chain(&sent).cloned().collect();
    push(&env, &twice).await;

    wait_rows(&env, 3).await;
    assert_eq!(persisted(&env).await, sent);
    let batches = batches(&env).await;
    assert_eq!(
        batches
            .iter()
            .map(|b| (b.size, b.inserted))
            .collect::<Vec<_>>(),
        [(3, 3)]
    );
    let (_, event) = next_batch_event(&mut events).await;
    assert_eq!(
        event.ids,
        sent.iter().map(|m| m.tracking_id).collect::<Vec<_>>()
    );
    assert_eq!(event.batch_size, 3);
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    let (totals, _, _) = env.totals().await;
    assert_eq!(totals, 3);
    batcher.stop().await;
}
