//! `GET /ready`, the readiness probe: 200 while the batcher can move messages (Redis and PostgreSQL both
//! answer), 503 with a JSON body naming what is missing once Redis is gone.

mod common;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::redis_server::RedisServer;

async fn ready(addr: std::net::SocketAddr) -> (u16, Value) {
    testkit::get_status_json(&format!("http://{addr}/ready")).await
}

#[tokio::test]
async fn ready_is_503_with_a_json_body_while_redis_is_down() {
    let env = TestEnv::new().await;
    let redis = RedisServer::start(&[]).await;
    let mut config = common::config(&env, "ready-1", 10, 0.1);
    config.redis.redis_url = redis.url();
    let batcher = common::start(&env, config).await;
    let addr = batcher.addr;
    testkit::eventually(common::WAIT, "/ready to answer 200", || async {
        let response = reqwest::get(format!("http://{addr}/ready")).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert_eq!(
        ready(addr).await,
        (
            200,
            json!({"status": "ready", "redis": "ok", "postgres": "ok"})
        )
    );

    drop(redis);
    assert_eq!(
        ready(addr).await,
        (
            503,
            json!({"status": "not_ready", "redis": "unavailable", "postgres": "ok"})
        )
    );
    // Its Redis is gone for good, so a clean stop is not what this test is about.
    batcher.task.abort();
}
