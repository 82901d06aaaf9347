//! The write path does not depend on PostgreSQL: with PostgreSQL unreachable the ingestor starts, answers 201
//! to POST /messages, 503 with a JSON error to reads, and `/ready` (the readiness probe) stays 200; once
//! PostgreSQL is reachable the schema is applied in the background and reads work. `/ready` follows Redis.

mod common;

use std::time::Duration;

use common::{ADMIN_KEY, dead_port, message, pending_len, spawn_app, with_admin_key};
use serde_json::{Value, json};
use testkit::TestEnv;
use testkit::redis_server::RedisServer;

/// `GET path` → (status, `Retry-After` if any, JSON body).
async fn get_json(app: &common::TestApp, path: &str) -> (u16, Option<String>, Value) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test]
async fn with_postgres_unreachable_the_ingestor_starts_takes_writes_and_refuses_reads_with_503() {
    let env = TestEnv::new().await;
    let database_url = format!("postgres://postgres@127.0.0.1:{}/ingest", dead_port());
    let app = spawn_app(&env, |config| {
        config.database.database_url = database_url;
        with_admin_key(config);
    })
    .await;

    let response = app
        .post_json("/messages", message(1, 2, "while PostgreSQL is down"))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(pending_len(&env).await, 1);

    let (status, retry_after, body) = get_json(&app, "/messages").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(
        body,
        json!({"error": "database_unavailable", "message": "PostgreSQL is unavailable; retry later"})
    );

    // Reset refuses before touching anything: the queued message is still there.
    let reset = app.reset(Some(ADMIN_KEY)).await;
    assert_eq!(reset.status(), 503);
    let body: Value = reset.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable");
    assert_eq!(pending_len(&env).await, 1);

    assert_eq!(
        get_json(&app, "/ready").await,
        (200, None, json!({"status": "ready", "redis": "ok"}))
    );
    assert_eq!(
        get_json(&app, "/health").await,
        (
            503,
            None,
            json!({"status": "degraded", "redis": "ok", "postgres": "unavailable",
                   "queue_length": 1, "batch_threshold": 50, "batch_progress": 1, "batches_pending": 0})
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn reads_work_once_postgres_becomes_reachable_after_the_start() {
    let env = TestEnv::new().await;
    // A database that does not exist yet: PostgreSQL refuses the connection until it is created.
    let late_name = format!("{}_late", env.database_url.rsplit('/').next().unwrap());
    let late_url = format!("{}_late", env.database_url);
    let app = spawn_app(&env, |config| config.database.database_url = late_url).await;
    assert_eq!(get_json(&app, "/messages").await.0, 503);

    let admin = env.db().await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{late_name}\""))
        .await
        .unwrap();
    // The schema task retries at least every 5 s.
    let body = testkit::eventually(
        Duration::from_secs(15),
        "GET /messages to answer 200",
        || async {
            let (status, _, body) = get_json(&app, "/messages").await;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert_eq!(body, json!([]));
    app.stop().await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{late_name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn ready_is_503_with_a_json_body_while_redis_is_down() {
    let env = TestEnv::new().await;
    let redis = RedisServer::start(&[]).await;
    let url = redis.url();
    let app = spawn_app(&env, |config| config.redis.redis_url = url).await;
    assert_eq!(
        get_json(&app, "/ready").await,
        (200, None, json!({"status": "ready", "redis": "ok"}))
    );

    drop(redis);
    assert_eq!(
        get_json(&app, "/ready").await,
        (
            503,
            None,
            json!({"status": "not_ready", "redis": "unavailable"})
        )
    );
    app.stop().await;
}

/// A loopback proxy to PostgreSQL that can *freeze*: from then on it moves no byte in either direction and
/// accepts new connections without answering, but closes nothing: PostgreSQL as seen from a hung host.
struct FreezingProxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, _) = tokio::sync::watch::channel(false);
        let watch = frozen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut frozen = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut inbound, mut outbound) = (inbound, outbound);
                    let frozen = async move {
                        let _ = frozen.wait_for(|frozen| *frozen).await;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = frozen => {
                            // Hold both sockets open, silent, until the test ends.
                            std::future::pending::<()>().await;
                        }
                    }
                });
            }
        });
        Self {
            port,
            frozen,
            accept,
        }
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test]
async fn a_postgres_that_hangs_gets_reads_a_503_within_the_database_timeout_and_writes_go_on() {
    let env = TestEnv::new().await;
    let real: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = FreezingProxy::start(real).await;
    let database_url = env
        .database_url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert_ne!(
        database_url, env.database_url,
        "the test database is on 127.0.0.1:5432"
    );
    let app = spawn_app(&env, |config| config.database.database_url = database_url).await;
    assert_eq!(
        get_json(&app, "/messages").await.0,
        200,
        "PostgreSQL answers at first"
    );

    proxy.freeze();
    let response = app
        .post_json("/messages", message(1, 2, "while PostgreSQL hangs"))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(pending_len(&env).await, 1);
    // The read gives up after the database timeout (5 s, `routes::DB_TIMEOUT`) instead of hanging; the
    // client's own limit is only there so that a hang fails the test.
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(20), get_json(&app, "/messages"))
        .await
        .expect("the read is answered, not left hanging");
    assert_eq!(
        read,
        (
            503,
            Some("1".into()),
            json!({"error": "database_unavailable", "message": "PostgreSQL is unavailable; retry later"})
        )
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the 503 came from the timeout, not a refusal"
    );
    assert_eq!(
        get_json(&app, "/ready").await.0,
        200,
        "Redis is all /ready needs"
    );
    app.stop().await;
}
