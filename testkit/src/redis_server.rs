//! [`RedisServer`]: a private `redis-server` on a free loopback port, for tests that need a Redis configured
//! differently from the shared one (or one they can stop).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child on `127.0.0.1:<port>`, nothing kept on disk; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts one on a free port with `extra` arguments (e.g. `["--maxmemory-policy", "allkeys-lru"]`) and
    /// waits, at most 10 s, until it answers PING.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra).await
    }

    /// Starts one on `port` (e.g. the port of one stopped before, to restart it) with `extra` arguments, and
    /// waits, at most 10 s, until it answers PING.
    pub async fn start_on(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (see ENVIRONMENT)");
        let server = Self { port, child };
        let client = redis::Client::open(server.url()).expect("a valid URL");
        crate::eventually(Duration::from_secs(10), "the private redis-server", || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
        })
        .await;
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Checks that a service refuses to start on a Redis whose `maxmemory-policy` is `policy` (an `allkeys-*` one,
/// which could evict the queue), with an error naming the setting. `run` is the service's `run` on the Redis at
/// the URL it is given and on the listener; `service` names it. Returns that Redis, for the test to go on with.
pub async fn assert_refused_for_eviction<Fut>(
    service: &str,
    policy: &str,
    run: impl FnOnce(String, tokio::net::TcpListener) -> Fut,
) -> RedisServer
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let redis = RedisServer::start(&["--maxmemory-policy", policy]).await;
    let (listener, _) = crate::listener().await.unwrap();
    let message = crate::start_error(service, run(redis.url(), listener)).await;
    assert!(
        message.contains(&format!("maxmemory-policy {policy}")),
        "{message}"
    );
    redis
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
