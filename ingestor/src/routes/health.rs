//! `GET /health`: 200 when Redis and PostgreSQL both answer within `pipeline::probe::PROBE_TIMEOUT`, 503 naming the one that did not.
//!
//! Our `status` and `redis` words (`ok`/`degraded`, `ok`/`unavailable`) stay, as probes and the dashboard
//! read them; the original's own words there (`healthy`, `connected`) would clash with them. Its other
//! fields (`queue_length`, `batch_threshold`, `batch_progress`, `batches_pending`) are added beside ours.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

/// `{"status": "ok" | "degraded", "redis": "ok" | "unavailable", "postgres": "ok" | "unavailable"}`, plus
/// the original's queue figures while Redis answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub redis: &'static str,
    pub postgres: &'static str,
    /// Messages in the pipeline (waiting in Redis plus held by batchers); absent while Redis is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u64>,
    /// `BATCH_SIZE`.
    pub batch_threshold: u64,
    /// `queue_length % batch_threshold`; absent while Redis is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_progress: Option<u64>,
    /// `queue_length / batch_threshold`: full batches waiting (`batches_ready` elsewhere); absent while
    /// Redis is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches_pending: Option<u64>,
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
    let (depth, postgres_ok) = tokio::join!(
        queue_depth(&state),
        pipeline::probe::postgres_answers("health", &state.db)
    );
    let redis_ok = depth.is_some();
    let word = pipeline::probe::word;
    let progress =
        depth.map(|depth| pipeline::events::BatchProgress::of(depth, state.flush_threshold));
    let (status, verdict) = pipeline::probe::health(redis_ok && postgres_ok);
    let body = Health {
        status: verdict,
        redis: word(redis_ok),
        postgres: word(postgres_ok),
        queue_length: depth,
        batch_threshold: state.flush_threshold.max(1),
        batch_progress: progress.map(|progress| progress.progress),
        batches_pending: progress.map(|progress| progress.ready),
    };
    (status, Json(body))
}

/// Whether Redis answers PING (`/ready`'s check).
pub(crate) async fn redis_answers(state: &AppState) -> bool {
    pipeline::probe::redis_answers("ready", &state.redis).await
}

/// `queue_depth`, or `None` when Redis does not answer in time: reading it is `/health`'s Redis check.
async fn queue_depth(state: &AppState) -> Option<u64> {
    pipeline::probe::redis("health", || {
        let mut conn = state.redis.clone();
        async move { pipeline::depth::queue_depth(&mut conn, &state.keys, state.queue_shards).await }
    })
    .await
}
