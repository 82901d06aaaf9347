//! Redis and PostgreSQL going away and coming back: the batch stays in the processing list, is retried, and
//! commits exactly once.

mod common;

use std::time::Duration;

use common::*;
use testkit::TestEnv;

fn target(url: &str) -> std::net::SocketAddr {
    // Both test URLs name 127.0.0.1 and a port.
    let after_at = url.rsplit('@').next().unwrap();
    let host_port = after_at
        .trim_start_matches("redis://")
        .split(['/', '?'])
        .next()
        .unwrap();
    host_port
        .parse()
        .expect("the test server is at an IP address and port")
}

#[tokio::test]
async fn a_batch_held_while_postgresql_is_unreachable_commits_once_it_is_back() {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(target(&env.database_url)).await;
    let mut config = config(&env, "b1", 1000, 0.2);
    config.database.database_url = via(&env.database_url, proxy.addr);
    let batcher = start(&env, config).await;
    push(&env, &messages(1)).await;
    wait_rows(&env, 1).await;

    proxy.cut_and_refuse();
    let sent = messages(5);
    push(&env, &sent).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        env.count("messages").await,
        1,
        "nothing commits while PostgreSQL is away"
    );
    assert_eq!(
        llen(&env, &env.keys().shard(0).processing("b1")).await,
        5,
        "the batch stays in Redis"
    );

    proxy.restore();
    wait_rows(&env, 6).await;
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    assert_eq!(row_counts(&env).await, (6, 6));
    assert_eq!(&persisted(&env).await[1..], &sent[..]);
    batcher.stop().await;
}

#[tokio::test]
async fn the_batcher_rides_out_its_redis_connections_being_cut_and_refused() {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(target(&env.redis_url)).await;
    let mut config = config(&env, "b1", 1000, 0.5);
    config.redis.redis_url = via(&env.redis_url, proxy.addr);
    let batcher = start(&env, config).await;

    // Cut while a batch is held: it commits, but clearing it must wait for Redis.
    let first = messages(5);
    push(&env, &first).await;
    let processing = env.keys().shard(0).processing("b1");
    wait_held(&env, "b1", 5).await;
    proxy.cut_and_refuse();
    let second = messages(4);
    push(&env, &second).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = reqwest::get(format!("http://{}/health", batcher.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (health["status"].as_str(), health["redis"].as_str()),
        (Some("degraded"), Some("unavailable"))
    );
    assert_eq!(health["postgres"], "ok");
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();

    wait_rows(&env, 9).await;
    wait_empty(&env, &processing).await;
    wait_empty(&env, &env.keys().shard(0).pending()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row_counts(&env).await, (9, 9));
    let mut rows = persisted(&env).await;
    rows.sort_by_key(|m| m.tracking_id);
    let mut expected: Vec<_> = first.iter().chain(&second).cloned().collect();
    expected.sort_by_key(|m| m.tracking_id);
    assert_eq!(rows, expected);
    batcher.stop().await;
}
