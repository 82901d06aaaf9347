//! Shared by the integration tests: start the real ingestor in-process on 127.0.0.1:0 against this test's
//! Redis prefix and fresh database, and read what it pushed.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use ingestor::Config;
use ingestor::auth::{ApiKeys, Secret};
use pipeline::queued::QueuedMessage;
use testkit::{TestEnv, service::Spawned};

/// A running ingestor.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub client: reqwest::Client,
    service: Spawned,
}

/// The configuration a test starts from: this test's Redis prefix and database, BATCH_SIZE 50, and the
/// production defaults otherwise (writes open, reset disabled, MAX_QUEUE_DEPTH a million).
pub fn config(env: &TestEnv) -> Config {
    Config {
        redis: env.redis_config(),
        database: env.database_config(),
        batch: testkit::batch_config(50, Duration::from_millis(100)),
        log: testkit::text_log("warn"),
        ingestor_addr: "127.0.0.1:0".parse().unwrap(),
        cors_origins: vec!["http://127.0.0.1:8001".into()],
        api_keys: ApiKeys::default(),
        admin_api_key: None,
        max_queue_depth: 1_000_000,
        redis_wait_replicas: 0,
        // Nothing listens on port 9 (discard) on loopback: tests that need the relay set a real notifier.
        notifier_url: "http://127.0.0.1:9".into(),
        http_write_timeout: Duration::from_secs(30),
        idempotency_ttl: Duration::from_secs(86_400),
    }
}

/// The admin key tests configure when they need `DELETE /reset`.
pub const ADMIN_KEY: &str = "test-admin-key";

/// Enables `DELETE /reset` with [`ADMIN_KEY`].
pub fn with_admin_key(config: &mut Config) {
    config.admin_api_key = Some(Secret::new(ADMIN_KEY));
}

/// Starts the ingestor with [`config`] changed by `tweak`, and waits until it answers HTTP.
pub async fn spawn_app(env: &TestEnv, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = config(env);
    tweak(&mut config);
    let service = Spawned::start("ingestor", Duration::from_secs(10), |listener, shutdown| {
        ingestor::run(config, listener, shutdown)
    })
    .await;
    let app = TestApp {
        base: format!("http://{}", service.addr),
        client: reqwest::Client::new(),
        service,
    };
    // The schema is applied before serving; any answer (even a 503) means the router is up.
    testkit::eventually(
        Duration::from_secs(10),
        "the ingestor to answer",
        || async { app.client.get(app.url("/health")).send().await.ok() },
    )
    .await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with_auth(path, None).await
    }

    /// `GET path` with `authorization` as the `Authorization` header when given.
    pub async fn get_with_auth(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send().await.expect("the ingestor answers")
    }

    /// `GET path`, its body parsed as `T` whatever the status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        testkit::get_json(&self.client, &self.url(path)).await
    }

    /// `GET path`: its status and its JSON body.
    pub async fn get_status_json(&self, path: &str) -> (u16, serde_json::Value) {
        testkit::get_status_json(&self.url(path)).await
    }

    /// POSTs `body` as `application/json`.
    pub async fn post_json(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the ingestor answers")
    }

    /// POSTs `body` as `application/json` with the given extra headers.
    pub async fn post_json_with(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the ingestor answers")
    }

    /// POSTs `body` as `application/json` with `Idempotency-Key: key`.
    pub async fn post_idempotent(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        key: &str,
    ) -> reqwest::Response {
        self.post_json_with(path, body, &[("idempotency-key", key)])
            .await
    }

    /// `DELETE /reset`, with `key` as the bearer token when given.
    pub async fn reset(&self, key: Option<&str>) -> reqwest::Response {
        let mut request = self.client.delete(self.url("/reset"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("the ingestor answers")
    }

    /// Cancels the token and waits for `run` to return; it must return Ok.
    pub async fn stop(self) {
        self.service.stop().await;
    }

    /// Cancels the token without waiting.
    pub fn cancel(&self) {
        self.service.cancel();
    }

    /// Waits for `run` to return after [`TestApp::cancel`].
    pub async fn join(self) -> anyhow::Result<()> {
        self.service.join().await
    }
}

/// Every element of the pending list, oldest first, parsed.
pub async fn pending(env: &TestEnv) -> Vec<QueuedMessage> {
    pending_at(env, &env.redis_url).await
}

/// [`pending`] on the Redis at `redis_url` (a private one the test starts and stops).
pub async fn pending_at(env: &TestEnv, redis_url: &str) -> Vec<QueuedMessage> {
    let raw = testkit::lrange(redis_url, &env.keys().shard(0).pending()).await;
    raw.iter()
        .rev()
        .map(|element| {
            serde_json::from_str(element).expect("pending elements are QueuedMessage JSON")
        })
        .collect()
}

/// `LLEN` of the pending list.
pub async fn pending_len(env: &TestEnv) -> u64 {
    env.redis_query(redis::cmd("LLEN").arg(env.keys().shard(0).pending()))
        .await
}

/// Asserts `response` is the 401 of a missing or unlisted key (`WWW-Authenticate: Bearer`, error
/// `unauthorized`), naming `what` on failure; returns the body.
pub async fn assert_unauthorized(response: reqwest::Response, what: &str) -> serde_json::Value {
    assert_eq!(response.status(), 401, "{what}");
    assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{what}");
    body
}

/// Asserts `response` is a refusal to retry after 1 s (`status`, `Retry-After: 1`) with the error code
/// `error`, naming `what` on failure; returns the body.
pub async fn assert_retry_later(
    response: reqwest::Response,
    status: u16,
    error: &str,
    what: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(response.headers()["retry-after"], "1", "{what}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{what}");
    body
}

/// A message body.
pub fn message(user_id: i64, channel_id: i64, content: &str) -> String {
    serde_json::json!({"user_id": user_id, "channel_id": channel_id, "content": content})
        .to_string()
}

/// A loopback port nobody listens on (bound, then released).
pub fn dead_port() -> u16 {
    testkit::redis_server::free_port()
}
