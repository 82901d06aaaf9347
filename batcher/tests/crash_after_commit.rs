//! A crash between a batch's COMMIT and the clearing of its processing list, made exact by a fault point
//! (feature `failpoints`: `cargo test -p batcher --features failpoints --test crash_after_commit`): the real
//! batcher binary dies right after the commit, the next holder of the shard replays the batch, and nothing is
//! committed twice.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::{process::Stdio, time::Duration};

use common::*;
use testkit::TestEnv;
use tokio::process::Child;

/// The binary for `env`, with `failpoints` as its FAILPOINTS variable if any.
fn spawn(env: &TestEnv, batcher_id: &str, failpoints: Option<&str>) -> Child {
    let mut command = batcher_command(
        &env.database_url,
        &env.prefix,
        batcher_id,
        1000,
        "0.1",
        "warn",
    );
    if let Some(failpoints) = failpoints {
        command.env("FAILPOINTS", failpoints);
    }
    command
        .env("REDIS_URL", &env.redis_url)
        .stderr(Stdio::null())
        .spawn()
        .expect("the batcher binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batcher_killed_between_commit_and_clear_is_replayed_without_committing_anything_twice() {
    let env = TestEnv::with_schema().await;
    let mut events = subscribe_events(&env).await;

    let sent = messages(50);
    push(&env, &sent).await;
    let mut first = spawn(&env, "dies", Some("batcher::after_commit=return"));
    let status = tokio::time::timeout(Duration::from_secs(30), first.wait())
        .await
        .expect("the batcher reaches the fault point within 30 s")
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(6),
        "aborted at the fault point: {status}"
    );

    // Committed, not cleared: the rows are in, the batch is still in the dead batcher's processing list.
    let processing = env.keys().shard(0).processing("dies");
    assert_eq!(row_counts(&env).await, (50, 50));
    assert_eq!(llen(&env, &processing).await, 50);
    let committed = batches(&env).await;
    assert_eq!(committed.len(), 1);
    assert_eq!(
        (
            committed[0].size,
            committed[0].inserted,
            committed[0].batcher_id.as_str()
        ),
        (50, 50, "dies")
    );

    // The next holder takes the shard once the dead one's lease expires (5 s), moves the list back and
    // replays it: it finds every row there and inserts none.
    let mut second = spawn(&env, "replays", None);
    testkit::eventually(Duration::from_secs(30), "the replay", || async {
        (batches(&env).await.len() == 2).then_some(())
    })
    .await;
    wait_empty(&env, &processing).await;
    wait_empty(&env, &env.keys().shard(0).pending()).await;
    assert_eq!(row_counts(&env).await, (50, 50));
    assert_eq!(persisted(&env).await, sent, "in order, once each");
    let all = batches(&env).await;
    let replay = &all[1];
    assert_eq!(
        (
            replay.size,
            replay.inserted,
            replay.reason.as_str(),
            replay.batcher_id.as_str()
        ),
        (50, 0, "recovery", "replays"),
        "a replay counts what it took and inserted nothing"
    );
    let (messages, batches, _) = env.totals().await;
    assert_eq!((messages, batches), (50, 2));

    // The dead batcher announced nothing (the event goes with the clear); the replay announces each id once.
    let announced = announced_ids(&mut events).await;
    let expected: Vec<_> = sent.iter().map(|message| message.tracking_id).collect();
    assert_eq!(announced, expected);
    second.kill().await.unwrap();
}
