//! Redis under an `allkeys-*` `maxmemory-policy` could evict the queue: the notifier refuses to start on it,
//! with an error naming the setting.

mod common;

use testkit::TestEnv;
use testkit::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_notifier_refuses_to_start_on_a_redis_that_evicts_any_key() {
    let env = TestEnv::new().await;
    let redis = RedisServer::start(&["--maxmemory-policy", "allkeys-random"]).await;
    let mut config = common::config(&env);
    config.redis.redis_url = redis.url();
    let (listener, _) = testkit::listener().await.unwrap();
    let run = notifier::run(config, listener, CancellationToken::new());
    let message = testkit::start_error("notifier", run).await;
    assert!(
        message.contains("maxmemory-policy allkeys-random"),
        "{message}"
    );
}
