//! The notifier's plain HTTP side (dashboard, `/config.json`, `/health`, `/metrics`), its bounds, and shutdown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use testkit::TestEnv;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode};

#[tokio::test]
async fn the_fallback_page_is_served_when_the_dashboard_is_not_built() {
    let env = TestEnv::new().await;
    let mut config = common::config(&env);
    let empty = common::temp_dir(&env, "empty-dist");
    config.dashboard_dir = empty.clone();
    let notifier = Notifier::start(config).await;

    let response = reqwest::get(notifier.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("dashboard/build.sh"), "{page}");
    assert!(page.contains("/ws/stats"), "{page}");

    notifier.stop().await;
    std::fs::remove_dir_all(empty).unwrap();
}

#[tokio::test]
async fn a_built_dashboard_is_served_from_dashboard_dir() {
    let env = TestEnv::new().await;
    let dist = common::temp_dir(&env, "dist");
    let index = "<!doctype html><title>built dashboard</title>";
    std::fs::write(dist.join("index.html"), index).unwrap();
    std::fs::write(dist.join("app.js"), "console.log(1)").unwrap();
    let mut config = common::config(&env);
    config.dashboard_dir = dist.clone();
    let notifier = Notifier::start(config).await;

    let root = reqwest::get(notifier.url("/")).await.unwrap();
    assert_eq!(root.status(), 200);
    assert!(
        root.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(root.text().await.unwrap(), index);
    let script = reqwest::get(notifier.url("/app.js")).await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.text().await.unwrap(), "console.log(1)");
    // A client-side route of the single-page app gets its index.html.
    let route = reqwest::get(notifier.url("/some/page")).await.unwrap();
    assert_eq!(route.status(), 200);
    assert_eq!(route.text().await.unwrap(), index);

    notifier.stop().await;
    std::fs::remove_dir_all(dist).unwrap();
}

#[tokio::test]
async fn config_json_tells_the_dashboard_where_the_ingestor_is() {
    let (_env, notifier) = common::start_with(|config| {
        config.ingestor_url = "http://127.0.0.1:18000".into();
        config.batch.batch_size = 25;
        config.batch.batch_timeout = Duration::from_millis(250);
    })
    .await;

    let config = json!({"ingestor_url": "http://127.0.0.1:18000", "batch_size": 25, "batch_timeout_seconds": 0.25});
    assert_eq!(
        testkit::get_status_json(&notifier.url("/config.json")).await,
        (200, config)
    );

    notifier.stop().await;
}

#[tokio::test]
async fn health_is_ok_and_metrics_list_the_client_gauge() {
    let env = TestEnv::new().await;
    let notifier = Notifier::start(common::config(&env)).await;

    let healthy = json!({"status": "ok", "redis": "ok", "postgres": "ok"});
    assert_eq!(
        testkit::get_status_json(&notifier.url("/health")).await,
        (200, healthy)
    );

    let metrics = reqwest::get(notifier.url("/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("notifier_ws_clients"), "{text}");

    notifier.stop().await;
}

#[tokio::test]
async fn health_is_degraded_but_stats_keep_flowing_when_redis_is_down() {
    let env = TestEnv::new().await;
    // A loopback port nobody listens on.
    let (closed, addr) = testkit::listener().await.unwrap();
    drop(closed);
    let mut config = common::config(&env);
    config.redis.redis_url = format!("redis://{addr}");
    let notifier = Notifier::start(config).await;

    let degraded = json!({"status": "degraded", "redis": "unavailable", "postgres": "ok"});
    assert_eq!(
        testkit::get_status_json(&notifier.url("/health")).await,
        (503, degraded)
    );

    // The stats task keeps going on what it can read: the totals from PostgreSQL.
    let mut ws = notifier.connect().await;
    next_stats(&mut ws, "a first stats_update").await;
    env.db()
        .await
        .execute("UPDATE pipeline_totals SET messages = 10, batches = 1", &[])
        .await
        .unwrap();
    let stats = next_matching(&mut ws, "stats with the new totals", |v| {
        v["total_messages"] == 10
    })
    .await;
    assert_eq!(stats["queue_depth"], 0);

    notifier.stop().await;
}

#[tokio::test]
async fn clients_beyond_max_ws_clients_get_503() {
    let (_env, notifier) = common::start_with(|config| config.max_ws_clients = 1).await;

    let mut first = notifier.connect().await;
    next_stats(&mut first, "a first stats_update").await;
    match tokio_tungstenite::connect_async(notifier.ws_url()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a second client was not refused: {other:?}"),
    }

    // Once the first leaves, its slot is free again.
    first.close(None).await.unwrap();
    drop(first);
    let mut again = testkit::ws::connect_within(&notifier.ws_url(), common::WAIT).await;
    next_stats(&mut again, "a stats_update").await;

    notifier.stop().await;
}

#[tokio::test]
async fn shutdown_closes_websockets_and_stops_the_server() {
    let (_env, notifier, mut ws) = start_with_client().await;
    next_stats(&mut ws, "a first stats_update").await;
    let addr = notifier.addr;

    let started = tokio::time::Instant::now();
    notifier.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // The client got a Close frame ("going away"), after at most the stats already in flight.
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(5)).await,
        Some(CloseCode::Away)
    );
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
