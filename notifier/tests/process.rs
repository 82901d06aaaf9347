//! The real `notifier` binary: SIGTERM closes every WebSocket with "going away" and exits 0, promptly.

mod common;

use std::{process::Stdio, time::Duration};

use common::*;
use testkit::TestEnv;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn sigterm_closes_websockets_and_exits_zero() {
    let env = TestEnv::new().await;
    // A free port for the binary (released just before it binds it).
    let (listener, addr) = testkit::listener().await.unwrap();
    drop(listener);
    let mut child = Command::new(env!("CARGO_BIN_EXE_notifier"))
        .env("REDIS_URL", &env.redis_url)
        .env("DATABASE_URL", &env.database_url)
        .env("REDIS_KEY_PREFIX", &env.prefix)
        .env("NOTIFIER_ADDR", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the notifier binary starts");

    let url = format!("ws://{addr}/ws/stats");
    let mut ws = testkit::ws::connect_within(&url, Duration::from_secs(20)).await;
    next_stats(&mut ws, "a first stats_update").await;

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(10)).await,
        Some(CloseCode::Away)
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
