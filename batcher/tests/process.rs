//! The real `batcher` binary: killed with SIGKILL holding a full processing list, killed again and again in
//! the middle of a stream, and stopped with SIGTERM holding a partial batch.

mod common;

use std::{process::Stdio, time::Duration};

use common::*;
use testkit::TestEnv;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The binary for `env`, quiet (warnings only, stdout discarded); the variables are set on the child only.
fn command(env: &TestEnv, batcher_id: &str, batch_size: usize, timeout: &str) -> Command {
    let mut command = batcher_command(
        &env.database_url,
        &env.prefix,
        batcher_id,
        batch_size,
        timeout,
        "warn",
    );
    command.env("REDIS_URL", &env.redis_url);
    command
}

/// Starts the binary for `env`.
fn spawn(env: &TestEnv, batcher_id: &str, batch_size: usize, timeout: &str) -> Child {
    command(env, batcher_id, batch_size, timeout)
        .spawn()
        .expect("the batcher binary starts")
}

/// Sends SIGTERM (tokio's `Child::kill` is SIGKILL) and asserts that the batcher exits 0 within 20 s.
async fn terminate(child: &mut Child) {
    let pid = child.id().expect("the child is running").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within 20 s")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_batcher_killed_with_a_full_processing_list_loses_and_duplicates_nothing_on_restart() {
    let env = TestEnv::with_schema().await;
    let sent = messages(500);
    push(&env, &sent).await;

    let processing = env.keys().shard(0).processing("k1");
    let mut first = spawn(&env, "k1", 1000, "60");
    wait_held(&env, "k1", 500).await;
    first.kill().await.unwrap();
    assert_eq!(env.count("messages").await, 0);
    assert_eq!(llen(&env, &processing).await, 500);

    // The restart waits for the dead process's lease on the shard to expire, then takes the shard over: its
    // list goes back to pending and is flushed first, as a replay.
    let mut second = spawn(&env, "k1", 1000, "0.1");
    testkit::eventually(Duration::from_secs(20), "500 rows", || async {
        (env.count("messages").await == 500).then_some(())
    })
    .await;
    wait_empty(&env, &processing).await;
    assert_eq!(row_counts(&env).await, (500, 500));
    assert_eq!(persisted(&env).await, sent);
    let reasons: Vec<_> = batches(&env).await.into_iter().map(|b| b.reason).collect();
    assert_eq!(reasons, ["recovery"]);

    terminate(&mut second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batchers_killed_again_and_again_mid_stream_lose_and_duplicate_nothing() {
    const MESSAGES: usize = 10_000;
    const CHUNK: usize = 250;
    // Kill delays after each start, spread so that kills land while moving, during COPY and between the
    // commit and the clearing of the processing list (fixed, so a failure replays the same schedule).
    // Every incarnation after the first waits for the previous one's lease to expire (5 s) before it takes the
    // shard, so the later delays are the lease's TTL plus a little work.
    const KILL_AFTER_MS: [u64; 6] = [300, 5_300, 5_150, 5_500, 5_100, 5_250];

    let env = TestEnv::with_schema().await;
    let sent = messages(MESSAGES);

    // The stream, a chunk every 800 ms (32 s), while batchers come and go (27 s), so the survivor gets a tail.
    let stream = async {
        for chunk in sent.chunks(CHUNK) {
            push(&env, chunk).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
    };
    // Each incarnation gets a new id, as a rescheduled container would: the dead one's list is left for the
    // shard's next holder to reclaim once its lease expires.
    let crashes = async {
        for (n, delay) in KILL_AFTER_MS.iter().enumerate() {
            let mut child = spawn(&env, &format!("crash-{n}"), 200, "0.05");
            tokio::time::sleep(Duration::from_millis(*delay)).await;
            child.kill().await.unwrap();
        }
    };
    tokio::join!(stream, crashes);
    let mut survivor = spawn(&env, "survivor", 200, "0.05");

    testkit::eventually(Duration::from_secs(60), "10000 rows", || async {
        (env.count("messages").await == MESSAGES as i64).then_some(())
    })
    .await;
    for n in 0..KILL_AFTER_MS.len() {
        wait_empty(&env, &env.keys().shard(0).processing(&format!("crash-{n}"))).await;
    }
    wait_empty(&env, &env.keys().shard(0).pending()).await;
    // Give a replayed batch the chance to show up as a duplicate before asserting there is none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(row_counts(&env).await, (MESSAGES as i64, MESSAGES as i64));
    let mut persisted = persisted(&env).await;
    persisted.sort_by_key(|m| m.tracking_id);
    let mut expected = sent.clone();
    expected.sort_by_key(|m| m.tracking_id);
    assert_eq!(persisted, expected);
    let (totals, _, _) = env.totals().await;
    assert_eq!(
        totals, MESSAGES as i64,
        "the running total counts each row once"
    );
    // The kills landed on batchers at work, and the survivor recovered what they held.
    let batches = batches(&env).await;
    assert!(batches.iter().any(|b| b.batcher_id.starts_with("crash-")));
    assert!(batches.iter().any(|b| b.batcher_id == "survivor"));

    terminate(&mut survivor).await;
}

#[tokio::test]
async fn sigterm_commits_the_held_partial_batch_and_exits_zero() {
    let env = TestEnv::with_schema().await;
    let mut child = spawn(&env, "t1", 1000, "60");
    let sent = messages(3);
    push(&env, &sent).await;
    let processing = env.keys().shard(0).processing("t1");
    wait_held(&env, "t1", 3).await;
    assert_eq!(env.count("messages").await, 0);

    terminate(&mut child).await;
    assert_eq!(persisted(&env).await, sent);
    let batches = batches(&env).await;
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (batches[0].reason.as_str(), batches[0].size),
        ("shutdown", 3)
    );
    assert_eq!(llen(&env, &processing).await, 0);
    assert!(!registered(&env, "t1").await);
    let lease: bool = env
        .redis_query(redis::cmd("EXISTS").arg(env.keys().shard(0).lease()))
        .await;
    assert!(!lease, "the shard was released");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_one_line_per_flush_and_none_per_message() {
    let env = TestEnv::with_schema().await;
    let mut child = command(&env, "log1", 10, "60")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the batcher binary starts");
    let mut stdout = child.stdout.take().unwrap();
    let sent = messages(23);
    push(&env, &sent).await;
    wait_rows(&env, 20).await;
    wait_held(&env, "log1", 3).await;
    terminate(&mut child).await;
    let mut log = String::new();
    stdout.read_to_string(&mut log).await.unwrap();

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let flushes: Vec<(u64, String)> = lines
        .iter()
        .filter(|line| line["message"] == "batch committed")
        .map(|line| {
            assert!(line["duration_ms"].is_string() || line["duration_ms"].is_number());
            (
                line["size"].as_u64().unwrap(),
                line["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        flushes,
        [
            (10, "size".into()),
            (10, "size".into()),
            (3, "shutdown".into())
        ]
    );
    for message in &sent {
        let id = message.tracking_id.to_string();
        assert!(!log.contains(&id), "a message id in the log: {id}");
    }
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to `child`.
async fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batcher_stopped_mid_flush_past_its_lease_then_resumed_duplicates_no_row_and_no_announcement()
 {
    let env = TestEnv::with_schema().await;
    let mut events = subscribe_events(&env).await;

    let mut first = spawn(&env, "paused", 50, "0.05");
    testkit::eventually(WAIT, "the first batcher holds the shard", || async {
        registered(&env, "paused").await.then_some(())
    })
    .await;
    // An uncommitted row with the tracking_id of the batch's 26th message holds the first batcher's COPY at
    // that row (the unique index waits for this transaction): it is mid-flush.
    let sent = messages(50);
    let mut holder = env.db().await;
    let blocker = holder.transaction().await.unwrap();
    let m = &sent[25];
    blocker
        .execute(
            "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &m.tracking_id,
                &m.user_id,
                &m.channel_id,
                &m.content,
                &m.created_at,
            ],
        )
        .await
        .unwrap();
    push(&env, &sent).await;
    let processing = env.keys().shard(0).processing("paused");
    wait_held(&env, "paused", 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stopped past its lease (5 s): the second batcher takes the shard over and moves the 50 back.
    signal(&first, "STOP").await;
    let mut second = spawn(&env, "second", 50, "0.05");
    testkit::eventually(Duration::from_secs(20), "the takeover", || async {
        (llen(&env, &processing).await == 0).then_some(())
    })
    .await;
    // The first batcher's COPY goes on (its rows, uncommitted, now hold the second's); then it resumes: one of
    // the two commits the rows, the other finds them there; the first finds its lease gone.
    blocker.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&first, "CONT").await;
    testkit::eventually(Duration::from_secs(20), "50 rows", || async {
        (env.count("messages").await == 50).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(row_counts(&env).await, (50, 50));
    assert_eq!(persisted(&env).await, sent, "in order");

    let announced = announced_ids(&mut events).await;
    let mut unique = announced.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50, "every id announced");
    assert_eq!(announced.len(), 50, "and each once");
    terminate(&mut second).await;
    terminate(&mut first).await;
}
