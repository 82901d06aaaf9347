//! Redis under an `allkeys-*` `maxmemory-policy` could evict the queue: the notifier refuses to start on it,
//! with an error naming the setting.

mod common;

use testkit::TestEnv;
use testkit::redis_server::assert_refused_for_eviction;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_notifier_refuses_to_start_on_a_redis_that_evicts_any_key() {
    let env = TestEnv::new().await;
    assert_refused_for_eviction("notifier", "allkeys-random", |url, listener| {
        let mut config = common::config(&env);
        config.redis.redis_url = url;
        notifier::run(config, listener, CancellationToken::new())
    })
    .await;
}
