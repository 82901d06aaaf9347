//! `/health` (the detailed view), `/ready` (the readiness probe) and `/metrics`.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use serde::Serialize;

/// How long each dependency check of `/health` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub batcher_id: String,
    pub redis: pipeline::connection::RedisTarget,
    pub postgres: deadpool_postgres::Pool,
}

/// `GET /health` body: `status` is `ok` (200) or `degraded` (503, a dependency is down).
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub batcher_id: String,
    /// `ok` or `unavailable`.
    pub redis: &'static str,
    /// `ok` or `unavailable`.
    pub postgres: &'static str,
}

/// The router of the batcher's HTTP endpoints.
pub fn app(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let (redis, postgres) = tokio::join!(redis_ok(&state.redis), postgres_ok(&state.postgres));
    // The same words as the ingestor's and the notifier's /health.
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let status = if redis && postgres {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if status == StatusCode::OK {
            "ok"
        } else {
            "degraded"
        },
        batcher_id: state.batcher_id,
        redis: word(redis),
        postgres: word(postgres),
    };
    (status, Json(body))
}

/// `GET /ready` body: `status` is `ready` (200) or `not_ready` (503).
#[derive(Debug, Serialize)]
pub struct Ready {
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub redis: &'static str,
    /// `ok` or `unavailable`.
    pub postgres: &'static str,
}

/// The batcher's main job, moving messages from Redis into PostgreSQL, needs both: 200 when both answer.
/// (The same checks as `/health` today; kept apart so the probe's contract does not follow `/health`'s detail.)
async fn ready(State(state): State<HttpState>) -> (StatusCode, Json<Ready>) {
    let (redis, postgres) = tokio::join!(redis_ok(&state.redis), postgres_ok(&state.postgres));
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let (status, word_status) = if redis && postgres {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = Ready {
        status: word_status,
        redis: word(redis),
        postgres: word(postgres),
    };
    (status, Json(body))
}

async fn redis_ok(target: &pipeline::connection::RedisTarget) -> bool {
    let ping = async {
        let timeouts = pipeline::connection::Timeouts {
            connect: CHECK_TIMEOUT,
            response: Some(CHECK_TIMEOUT),
        };
        let mut conn = target.connect(timeouts).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: Redis unreachable");
            false
        }
        Err(_) => false,
    }
}

async fn postgres_ok(pool: &deadpool_postgres::Pool) -> bool {
    let check = async {
        let client = pool.get().await.map_err(|error| error.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|error| error.to_string())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: PostgreSQL unreachable");
            false
        }
        Err(_) => false,
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        pipeline::telemetry::metrics().render(),
    )
}
