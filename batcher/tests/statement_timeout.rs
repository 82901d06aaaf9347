//! A statement timeout cancelling the batcher's COPY: the batch stays in the processing list, is retried with
//! backoff, and commits exactly once, with no dead letter. In a file of its own so that the process-wide
//! `batcher_retries_total` counts only this test's batcher.

mod common;

use std::time::Duration;

use common::*;
use testkit::TestEnv;

/// Gives every new connection to this test's database a `statement_timeout` of `timeout` (e.g. `300ms`).
async fn set_statement_timeout(env: &TestEnv, timeout: &str) {
    let sql = format!(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = ''{timeout}''', \
         current_database()); END $$"
    );
    env.db().await.batch_execute(&sql).await.unwrap();
}

async fn retries_total(metrics_url: &str) -> f64 {
    let text = testkit::get_text(metrics_url).await;
    testkit::metric_value(&text, "batcher_retries_total").expect("batcher_retries_total is exposed")
}

#[tokio::test]
async fn statements_cancelled_by_statement_timeout_are_retried_until_the_batch_commits_once() {
    let env = TestEnv::with_schema().await;
    // Every new connection to this test's database gets a 300 ms statement_timeout.
    set_statement_timeout(&env, "300ms").await;
    let batcher = start(&env, config(&env, "st1", 1000, 0.1)).await;
    push(&env, &messages(1)).await;
    wait_rows(&env, 1).await;

    // A long transaction holds `messages`: the batcher's COPY waits for the lock until it is cancelled.
    let mut holder = env.db().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute(
        "SET LOCAL statement_timeout = 0; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .unwrap();
    let sent = messages(5);
    push(&env, &sent).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        llen(&env, &env.keys().shard(0).processing("st1")).await,
        5,
        "the batch stays in Redis while its statements time out"
    );
    lock.rollback().await.unwrap();

    wait_rows(&env, 6).await;
    wait_empty(&env, &env.keys().shard(0).processing("st1")).await;
    assert_eq!(row_counts(&env).await, (6, 6));
    assert_eq!(&persisted(&env).await[1..], &sent[..]);
    assert_eq!(
        env.count("dead_letters").await,
        0,
        "a timeout is not bad data"
    );
    assert_eq!(
        batches(&env).await.len(),
        2,
        "one batch per flush, however many tries"
    );
    // Alone in this process, so every retry counted is this batcher's: the lock outlasted several timeouts.
    let retries = retries_total(&format!("http://{}/metrics", batcher.addr)).await;
    assert!(retries >= 2.0, "{retries} retries");
    batcher.stop().await;
}

#[tokio::test]
async fn a_backlog_drains_when_statement_timeout_is_shorter_than_one_copy_of_batch_size() {
    const MESSAGES: usize = 40_000;
    let env = TestEnv::with_schema().await;
    // 30 ms: far less than one COPY of 20,000 rows (about 100 ms here), more than one of a few thousand.
    set_statement_timeout(&env, "30ms").await;
    let db = env.db().await;
    let sent = messages(MESSAGES);
    push(&env, &sent).await;
    let batcher = start(&env, config(&env, "split", 20_000, 0.1)).await;
    // The test's own reads are not held to the limit.
    db.batch_execute("SET statement_timeout = 0").await.unwrap();
    testkit::eventually(Duration::from_secs(120), "40,000 rows", || async {
        let count: i64 = db
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap()
            .get(0);
        (count == MESSAGES as i64).then_some(())
    })
    .await;
    db.batch_execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET statement_timeout', current_database()); END $$",
    )
    .await
    .unwrap();
    wait_empty(&env, &env.keys().shard(0).processing("split")).await;
    assert_eq!(row_counts(&env).await, (MESSAGES as i64, MESSAGES as i64));
    assert_eq!(persisted(&env).await, sent, "every row once, in order");
    assert_eq!(env.count("dead_letters").await, 0);
    let biggest = batches(&env)
        .await
        .iter()
        .map(|batch| batch.size)
        .max()
        .unwrap();
    assert!(biggest < 20_000, "the batches were halved: {biggest}");
    batcher.stop().await;
}
