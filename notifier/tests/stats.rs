//! `stats_update` over `/ws/stats`, against real Redis and PostgreSQL.

mod common;

use common::*;
use testkit::TestEnv;

/// Sets the batchers' running totals: `messages` rows committed in `batches` batches.
async fn set_totals(env: &TestEnv, messages: i64, batches: i64) {
    let sql = "UPDATE pipeline_totals SET messages = $1, batches = $2";
    let updated = env
        .db()
        .await
        .execute(sql, &[&messages, &batches])
        .await
        .unwrap();
    assert_eq!(updated, 1, "pipeline_totals has its row");
}

#[tokio::test]
async fn a_client_first_receives_a_stats_update_with_the_seeds_fields() {
    let (_env, notifier, mut ws) = start_with_client().await;

    let first = next_matching(&mut ws, "the first message", |_| true).await;
    testkit::seed::assert_stats_update(&first);
    assert_eq!(first["batch_threshold"], BATCH_SIZE);
    assert_eq!(first["total_messages"], 0);
    assert_eq!(first["queue_depth"], 0);

    // And then one every 500 ms.
    let started = tokio::time::Instant::now();
    next_stats(&mut ws, "a second stats_update").await;
    next_stats(&mut ws, "a third stats_update").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    notifier.stop().await;
}

#[tokio::test]
async fn stats_count_messages_waiting_and_held_by_batchers_and_the_persisted_totals() {
    let (env, notifier, mut ws) = start_with_client().await;
    // The first stats_update means the notifier is serving, so the schema is applied.
    next_stats(&mut ws, "the first stats_update").await;

    let keys = env.keys().shard(0);
    let redis_key = keys.pending();
    let _: u64 = env
        .redis_query(redis::cmd("LPUSH").arg(&redis_key).arg(&["m1", "m2", "m3"]))
        .await;
    let _: u64 = env
        .redis_query(redis::cmd("SADD").arg(keys.batchers()).arg("b1"))
        .await;
    let redis_key = keys.processing("b1");
    let _: u64 = env
        .redis_query(redis::cmd("LPUSH").arg(&redis_key).arg(&["m4", "m5"]))
        .await;
    // Two steps, so the rate window surely holds a sample before the last one (the notifier's first read
    // may come late on a busy machine).
    set_totals(&env, 60, 2).await;
    next_matching(&mut ws, "stats with the first totals", |v| {
        v["type"] == "stats_update" && v["total_messages"] == 60
    })
    .await;
    set_totals(&env, 120, 3).await;

    let stats = next_matching(&mut ws, "stats with the queue and the totals", |v| {
        v["type"] == "stats_update" && v["queue_depth"] == 5 && v["total_messages"] == 120
    })
    .await;
    assert_eq!(stats["total_batches"], 3);
    assert_eq!(stats["avg_batch_size"], 40.0);
    assert_eq!(stats["batch_threshold"], BATCH_SIZE);
    assert_eq!(stats["batch_progress"], 5 % BATCH_SIZE);
    assert_eq!(stats["batches_ready"], 5 / BATCH_SIZE);
    assert_eq!(stats["batch_progress_percent"], 50.0);
    // 60 rows appeared within the last 5 s.
    assert!(
        stats["messages_per_second"].as_f64().unwrap() > 0.0,
        "{stats}"
    );

    // The gauge follows the same number.
    let metrics = testkit::get_text(&notifier.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pipeline_queue_depth")),
        "{metrics}"
    );

    notifier.stop().await;
}

#[tokio::test]
async fn stats_update_is_rounded_as_the_original_rounds_it() {
    // A third of a batch waiting: 33.333…% unrounded.
    let (env, notifier) = common::start_with(|config| config.batch.batch_size = 3).await;
    let mut ws = notifier.connect().await;
    next_stats(&mut ws, "the first stats_update").await;

    let redis_key = env.keys().shard(0).pending();
    let _: u64 = env
        .redis_query(redis::cmd("LPUSH").arg(&redis_key).arg("m1"))
        .await;
    // 1234 rows in 25 batches: an average of 49.36 unrounded.
    set_totals(&env, 1234, 25).await;

    let stats = next_matching(&mut ws, "stats with the new totals and queue", |v| {
        v["type"] == "stats_update" && v["total_messages"] == 1234 && v["queue_depth"] == 1
    })
    .await;
    assert_eq!(stats["avg_batch_size"].to_string(), "49.4", "{stats}");
    assert_eq!(
        stats["batch_progress_percent"].to_string(),
        "33.3",
        "{stats}"
    );
    assert_eq!(stats["batch_progress"], 1);
    assert_eq!(stats["batch_threshold"], 3);
    // A JSON integer, as the original's int(): serde_json reads `91` as u64 and `91.0` as f64.
    assert!(stats["messages_per_second"].is_u64(), "{stats}");

    notifier.stop().await;
}
