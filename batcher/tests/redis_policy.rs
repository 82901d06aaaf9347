//! Redis under an `allkeys-*` `maxmemory-policy` could evict the queue: the batcher refuses to start on it,
//! with an error naming the setting.

mod common;

use testkit::TestEnv;
use testkit::redis_server::assert_refused_for_eviction;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_batcher_refuses_to_start_on_a_redis_that_evicts_any_key() {
    let env = TestEnv::new().await;
    env.apply_schema().await;
    assert_refused_for_eviction("batcher", "allkeys-lfu", |url, listener| {
        let mut config = common::config(&env, "policy-1", 10, 0.1);
        config.redis.redis_url = url;
        batcher::run(config, listener, CancellationToken::new())
    })
    .await;
}
