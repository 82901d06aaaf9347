//! The real `batcher` binary: killed with SIGKILL holding a full processing list, and stopped with SIGTERM
//! holding a partial batch.

mod common;

use std::{process::Stdio, time::Duration};

use common::*;
use testkit::TestEnv;
use tokio::process::{Child, Command};

/// Starts the binary for `env`; the variables are set on the child only.
fn spawn(env: &TestEnv, batcher_id: &str, batch_size: usize, timeout: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_batcher"))
        .env("REDIS_URL", &env.redis_url)
        .env("DATABASE_URL", &env.database_url)
        .env("REDIS_KEY_PREFIX", &env.prefix)
        .env("BATCH_SIZE", batch_size.to_string())
        .env("BATCH_TIMEOUT", timeout)
        .env("BATCHER_ID", batcher_id)
        .env("BATCHER_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the batcher binary starts")
}

/// Sends SIGTERM (tokio's `Child::kill` is SIGKILL).
async fn sigterm(child: &Child) {
    let pid = child.id().expect("the child is running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_batcher_killed_with_a_full_processing_list_loses_and_duplicates_nothing_on_restart() {
    let env = TestEnv::new().await;
    env.apply_schema().await;
    let sent = messages(500);
    push(&env, &sent).await;

    let processing = env.keys().processing("k1");
    let mut first = spawn(&env, "k1", 1000, "60");
    testkit::eventually(WAIT, "500 held by k1", || async {
        (llen(&env, &processing).await == 500).then_some(())
    })
    .await;
    first.kill().await.unwrap();
    assert_eq!(env.count("messages").await, 0);
    assert_eq!(llen(&env, &processing).await, 500);

    // The restart waits for the dead process's heartbeat to expire, then re-flushes its list.
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

    sigterm(&second).await;
    let status = tokio::time::timeout(Duration::from_secs(20), second.wait())
        .await
        .expect("exits within 20 s")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_commits_the_held_partial_batch_and_exits_zero() {
    let env = TestEnv::new().await;
    env.apply_schema().await;
    let mut child = spawn(&env, "t1", 1000, "60");
    let sent = messages(3);
    push(&env, &sent).await;
    let processing = env.keys().processing("t1");
    testkit::eventually(WAIT, "3 held by t1", || async {
        (llen(&env, &processing).await == 3).then_some(())
    })
    .await;
    assert_eq!(env.count("messages").await, 0);

    sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within 20 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(persisted(&env).await, sent);
    let batches = batches(&env).await;
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (batches[0].reason.as_str(), batches[0].size),
        ("shutdown", 3)
    );
    assert_eq!(llen(&env, &processing).await, 0);
    assert!(!registered(&env, "t1").await);
    let mut redis = env.redis().await;
    let heartbeat: bool = redis::cmd("EXISTS")
        .arg(env.keys().heartbeat("t1"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!heartbeat);
}
