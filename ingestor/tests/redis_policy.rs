//! Redis under an `allkeys-*` `maxmemory-policy` could evict the queue: the ingestor refuses to start on it,
//! with an error naming the setting, and starts on the same Redis once the policy is `noeviction`.

mod common;

use testkit::TestEnv;
use testkit::redis_server::assert_refused_for_eviction;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_ingestor_refuses_to_start_on_a_redis_that_evicts_any_key() {
    let env = TestEnv::new().await;
    let redis = assert_refused_for_eviction("ingestor", "allkeys-lru", |url, listener| {
        let mut config = common::config(&env);
        config.redis.redis_url = url;
        ingestor::run(config, listener, CancellationToken::new())
    })
    .await;

    // The same Redis with noeviction: it starts and takes a message.
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let app = common::spawn_app(&env, |config| config.redis.redis_url = redis.url()).await;
    let response = app
        .post_json("/messages", common::message(1, 2, "kept"))
        .await;
    assert_eq!(response.status(), 201);
    app.stop().await;
}
