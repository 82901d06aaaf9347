//! The router, `/health` (the detailed view), `/ready` (the readiness probe) and `/metrics`.

use std::path::Path;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde::Serialize;

use crate::{dashboard, feeds, state::AppState, ws};

/// Every route of the notifier.
pub(crate) fn app(state: AppState, dashboard_dir: &Path) -> Router {
    let router = Router::new()
        .route("/ws/stats", get(ws::upgrade))
        .route("/ws/channels", get(feeds::ws::upgrade))
        .route("/sse/channels/{channel_id}", get(feeds::sse::stream))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    dashboard::serve(router, dashboard_dir).with_state(state)
}

/// Body of `/health`.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    redis: &'static str,
    postgres: &'static str,
}

/// Body of `/ready`.
#[derive(Debug, Serialize)]
struct Ready {
    /// `ready` or `not_ready`.
    status: &'static str,
    redis: &'static str,
}

/// The notifier's main job, relaying events, needs Redis only (PostgreSQL feeds the stats' totals, which
/// pause while it is down): 200 when Redis answers, 503 otherwise.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let redis = pipeline::probe::redis_answers("ready", &state.redis).await;
    let (status, verdict) = pipeline::probe::ready(redis);
    let body = Ready {
        status: verdict,
        redis: pipeline::probe::word(redis),
    };
    (status, Json(body))
}

/// 200 when Redis and PostgreSQL both answer, 503 otherwise (the service itself keeps running either way).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (redis, postgres) = tokio::join!(
        pipeline::probe::redis_answers("health", &state.redis),
        pipeline::probe::postgres_answers("health", &state.postgres)
    );
    let (status, verdict) = pipeline::probe::health(redis && postgres);
    let body = Health {
        status: verdict,
        redis: pipeline::probe::word(redis),
        postgres: pipeline::probe::word(postgres),
    };
    (status, Json(body))
}

/// Prometheus text format.
async fn metrics() -> impl IntoResponse {
    pipeline::telemetry::exposition()
}
