//! `GET /ready`, the readiness probe: 200 while the notifier can relay events (Redis answers), 503 with a
//! JSON body once Redis is gone.

mod common;

use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::redis_server::RedisServer;

async fn ready(notifier: &common::Notifier) -> (u16, Value) {
    testkit::get_status_json(&notifier.url("/ready")).await
}

#[tokio::test]
async fn ready_is_503_with_a_json_body_while_redis_is_down() {
    let env = TestEnv::new().await;
    let redis = RedisServer::start(&[]).await;
    let mut config = common::config(&env);
    config.redis.redis_url = redis.url();
    let notifier = common::Notifier::start(config).await;
    let url = notifier.url("/ready");
    testkit::eventually(common::WAIT, "/ready to answer", || async {
        reqwest::get(&url).await.ok().map(|_| ())
    })
    .await;
    assert_eq!(
        ready(&notifier).await,
        (200, json!({"status": "ready", "redis": "ok"}))
    );

    drop(redis);
    assert_eq!(
        ready(&notifier).await,
        (503, json!({"status": "not_ready", "redis": "unavailable"}))
    );
    notifier.stop().await;
}
