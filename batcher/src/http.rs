//! `/health` (the detailed view), `/ready` (the readiness probe) and `/metrics`.

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde::Serialize;

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub batcher_id: String,
    /// A shared connection (probes open none of their own).
    pub redis: pipeline::connection::RedisConn,
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
    let (redis, postgres) = dependencies(&state, "health").await;
    let word = pipeline::probe::word;
    let (status, verdict) = pipeline::probe::health(redis && postgres);
    let body = Health {
        status: verdict,
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
    let (redis, postgres) = dependencies(&state, "ready").await;
    let word = pipeline::probe::word;
    let (status, verdict) = pipeline::probe::ready(redis && postgres);
    let body = Ready {
        status: verdict,
        redis: word(redis),
        postgres: word(postgres),
    };
    (status, Json(body))
}

/// Whether Redis and PostgreSQL answer.
async fn dependencies(state: &HttpState, probe: &'static str) -> (bool, bool) {
    tokio::join!(
        pipeline::probe::redis_answers(probe, &state.redis),
        pipeline::probe::postgres_answers(probe, &state.postgres)
    )
}

async fn metrics() -> impl IntoResponse {
    pipeline::telemetry::exposition()
}
