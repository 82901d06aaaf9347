//! `GET /ready`: whether the ingestor can do its main job, taking messages, which needs Redis only. This is
//! the readiness probe: while PostgreSQL is down the ingestor keeps accepting (Redis absorbs the outage), so
//! PostgreSQL must not take it out of service. `/health` stays the detailed view of both.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

/// `{"status": "ready" | "not_ready", "redis": "ok" | "unavailable"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub redis: &'static str,
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    summary = "Whether the ingestor can take messages (Redis answers)",
    description = "The readiness probe. PostgreSQL is not checked: the ingestor accepts messages while it \
                   is down. `/health` reports both.",
    responses(
        (status = 200, description = "Redis answers: messages are accepted.", body = Ready),
        (status = 503, description = "Redis does not answer within 1 s.", body = Ready),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let redis = super::health::redis_answers(&state).await;
    let (status, verdict) = pipeline::probe::ready(redis);
    let body = Ready {
        status: verdict,
        redis: pipeline::probe::word(redis),
    };
    (status, Json(body))
}
