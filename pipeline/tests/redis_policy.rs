//! `maxmemory-policy` read from a real Redis: `allkeys-*` is refused with an error naming the setting,
//! `noeviction` and `volatile-*` pass, an unreachable Redis is reported as such (the services then skip).

use pipeline::redis_policy::{PolicyError, check_at_start, check_eviction_policy};
use testkit::redis_server::{RedisServer, free_port};

async fn connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_allkeys_policy_is_refused_and_the_others_pass() {
    let server = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    let mut conn = connection(&server).await;
    let error = check_eviction_policy(&mut conn).await.unwrap_err();
    assert!(
        matches!(error, PolicyError::Evicts(ref policy) if policy == "allkeys-lru"),
        "{error:?}"
    );
    let refused = check_at_start(&target(&server.url())).await.unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("maxmemory-policy allkeys-lru"),
        "{message}"
    );
    assert!(message.contains("noeviction"), "{message}");

    for keeping in ["noeviction", "volatile-lru", "volatile-ttl"] {
        let () = redis::cmd("CONFIG")
            .arg(&["SET", "maxmemory-policy", keeping])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(check_eviction_policy(&mut conn).await.unwrap(), keeping);
        check_at_start(&target(&server.url())).await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unreachable_and_does_not_stop_a_start() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    check_at_start(&target(&url)).await.unwrap();
    let client = redis::Client::open(url).unwrap();
    assert!(client.get_multiplexed_async_connection().await.is_err());
}

#[tokio::test]
async fn a_redis_that_refuses_config_get_is_reported_as_unreadable_and_does_not_stop_a_start() {
    // Some managed Redis services disable CONFIG; the services then start with a warning.
    let server = RedisServer::start(&["--rename-command", "CONFIG", ""]).await;
    let mut conn = connection(&server).await;
    let error = check_eviction_policy(&mut conn).await.unwrap_err();
    assert!(matches!(error, PolicyError::Unreadable(_)), "{error:?}");
    check_at_start(&target(&server.url())).await.unwrap();
}

fn target(url: &str) -> pipeline::connection::RedisTarget {
    pipeline::connection::RedisTarget::new(url, &[]).unwrap()
}
