//! `GET /health`: 200 when Redis and PostgreSQL both answer quickly, 503 naming the one that did not.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::startup::AppState;

/// A dependency that takes longer than this to answer counts as down: health checks must be quick.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1000);

/// `{"status": "ok" | "degraded", "redis": "ok" | "unavailable", "postgres": "ok" | "unavailable"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub redis: &'static str,
    pub postgres: &'static str,
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Whether Redis and PostgreSQL answer",
    responses(
        (status = 200, description = "Both answer.", body = Health),
        (status = 503, description = "One of them does not (named in the body).", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let (redis_ok, postgres_ok) = tokio::join!(redis_answers(&state), postgres_answers(&state));
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let healthy = redis_ok && postgres_ok;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        redis: word(redis_ok),
        postgres: word(postgres_ok),
    };
    (status, Json(body))
}

/// Whether Redis answers PING within [`CHECK_TIMEOUT`] (also `/ready`'s check).
pub(crate) async fn redis_answers(state: &AppState) -> bool {
    let command = redis::cmd("PING");
    let ping = crate::reconnect::retry_once(|| {
        let mut conn = state.redis.clone();
        let command = &command;
        async move { command.query_async::<String>(&mut conn).await }
    });
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: Redis failed");
            false
        }
        Err(_) => {
            tracing::warn!("health: Redis did not answer in time");
            false
        }
    }
}

async fn postgres_answers(state: &AppState) -> bool {
    let check = async {
        let client = state.db.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: PostgreSQL failed");
            false
        }
        Err(_) => {
            tracing::warn!("health: PostgreSQL did not answer in time");
            false
        }
    }
}
