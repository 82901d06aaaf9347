//! Redis under an `allkeys-*` `maxmemory-policy` could evict the queue: the batcher refuses to start on it,
//! with an error naming the setting.

mod common;

use testkit::TestEnv;
use testkit::redis_server::RedisServer;

#[tokio::test]
async fn the_batcher_refuses_to_start_on_a_redis_that_evicts_any_key() {
    let env = TestEnv::new().await;
    let redis = RedisServer::start(&["--maxmemory-policy", "allkeys-lfu"]).await;
    let mut config = common::config(&env, "policy-1", 10, 0.1);
    config.redis.redis_url = redis.url();
    let running = common::start(&env, config).await;
    let run = async { running.task.await.expect("no panic") };
    let message = testkit::start_error("batcher", run).await;
    assert!(
        message.contains("maxmemory-policy allkeys-lfu"),
        "{message}"
    );
}
