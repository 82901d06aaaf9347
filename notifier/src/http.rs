//! The router, `/health` (the detailed view), `/ready` (the readiness probe), `/metrics`, and the HTTP error
//! type.

use std::{path::Path, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use pipeline::api::ErrorBody;
use serde::Serialize;

use crate::{AppState, dashboard, feeds, ws};

/// Longest wait for each dependency check of `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Errors of the HTTP layer; each status is produced here and only here.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("too many WebSocket clients; try again later")]
    TooManyClients,
    /// A browser page whose origin is neither the notifier's own nor in `WS_ORIGINS`.
    #[error(
        "this page's origin may not open a WebSocket here; add it to the notifier's WS_ORIGINS"
    )]
    OriginNotAllowed,
    /// `API_KEYS` is set and the request carries none of them.
    #[error(
        "reading channels needs one of the notifier's API_KEYS, as `Authorization: Bearer <key>` or the `access_token` query parameter"
    )]
    Unauthorized,
    /// A path or query parameter that is not valid.
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// PostgreSQL could not be read.
    #[error("PostgreSQL is unavailable: {0}")]
    DatabaseUnavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            Self::TooManyClients => (StatusCode::SERVICE_UNAVAILABLE, "too_many_clients"),
            Self::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            Self::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
        };
        let field = match &self {
            Self::InvalidField { field, .. } => Some((*field).to_owned()),
            _ => None,
        };
        let body = ErrorBody {
            error: code.into(),
            message: self.to_string(),
            field,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Body of `/health`.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    redis: &'static str,
    postgres: &'static str,
}

fn state_of(up: bool) -> &'static str {
    // The same words as the ingestor's and the batcher's /health.
    if up { "ok" } else { "unavailable" }
}

/// Whether Redis answers PING within [`HEALTH_TIMEOUT`].
async fn redis_answers(state: &AppState) -> bool {
    let ping = async {
        let mut conn = state.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, ping).await,
        Ok(Some(_))
    )
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
    let redis = redis_answers(&state).await;
    let (status, word) = if redis {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = Ready {
        status: word,
        redis: state_of(redis),
    };
    (status, Json(body))
}

/// 200 when Redis and PostgreSQL both answer, 503 otherwise (the service itself keeps running either way).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let redis = redis_answers(&state);
    let postgres = async {
        let select = async {
            let client = state.postgres.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, select).await,
            Ok(Some(_))
        )
    };
    let (redis, postgres) = tokio::join!(redis, postgres);
    let healthy = redis && postgres;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        redis: state_of(redis),
        postgres: state_of(postgres),
    };
    (status, Json(body))
}

/// Prometheus text format.
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        pipeline::telemetry::metrics().render(),
    )
}
