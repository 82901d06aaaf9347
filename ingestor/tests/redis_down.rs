//! Redis unreachable: every endpoint that needs it answers 503 with `Retry-After`, never a 201; and the
//! ingestor reconnects by itself once Redis is back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{dead_port, message, spawn_app};
use serde_json::Value;
use testkit::TestEnv;

#[tokio::test]
async fn redis_unreachable_gives_503_with_retry_after_and_never_a_201() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let app = spawn_app(&env, |config| {
        config.redis.redis_url = format!("redis://127.0.0.1:{port}");
    })
    .await;

    let requests = [
        ("/messages", message(1, 1, "lost?")),
        ("/messages/batch", format!("[{}]", message(1, 1, "lost?"))),
        ("/simulate", r#"{"count": 3}"#.to_owned()),
    ];
    for (path, body) in requests {
        let response = app.post_json(path, body).await;
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(response.headers()["retry-after"], "1", "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "redis_unavailable", "{path}");
    }
    let status = app
        .client
        .get(app.url("/queue/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 503);

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "degraded", "redis": "unavailable", "postgres": "ok"})
    );
    app.stop().await;
}

/// A private redis-server on `port`, killed on drop.
struct RedisServer(Child);

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (see ENVIRONMENT)");
        Self(child)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn posts_succeed_again_after_redis_restarts() {
    let env = TestEnv::new().await;
    let port = dead_port();
    let server = RedisServer::start(port);
    let app = spawn_app(&env, |config| {
        config.redis.redis_url = format!("redis://127.0.0.1:{port}");
    })
    .await;
    let post = || app.post_json("/messages", message(1, 1, "survives restarts"));
    testkit::eventually(
        Duration::from_secs(10),
        "a 201 from the first Redis",
        || async { (post().await.status() == 201).then_some(()) },
    )
    .await;

    drop(server);
    assert_eq!(post().await.status(), 503);

    let _server = RedisServer::start(port);
    testkit::eventually(
        Duration::from_secs(10),
        "a 201 after the restart",
        || async { (post().await.status() == 201).then_some(()) },
    )
    .await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    app.stop().await;
}
