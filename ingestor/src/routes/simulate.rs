//! `POST /simulate {"count": n}`: queues n made-up messages (1..=1,000,000) and reports the queue after.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use pipeline::api::{SimulateAccepted, SimulateRequest};
use uuid::Uuid;

use crate::domain::{check_simulate_count, simulated_message};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::queue_status::queue_depth;
use crate::startup::AppState;
use crate::telemetry;

/// Elements per `LPUSH` (about 1.5 MB): a million messages go as 100 commands, never one giant one.
pub const CHUNK: u64 = 10_000;

/// 202 once every message is in Redis. If Redis fails part-way, the chunks already pushed stay queued
/// (and counted as accepted) and the answer is a 503.
pub async fn simulate(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SimulateRequest>,
) -> Result<(StatusCode, Json<SimulateAccepted>), ApiError> {
    let count = check_simulate_count(request.count)?;
    // Varies user and channel ids between requests; any 64 bits will do.
    let seed = Uuid::new_v4().as_u64_pair().0;
    let mut tracking_ids = Vec::with_capacity(count as usize);
    for start in (0..count).step_by(CHUNK as usize) {
        let end = count.min(start + CHUNK);
        let created_at = Utc::now();
        let mut command = redis::cmd("LPUSH");
        command.arg(state.keys.pending());
        for index in start..end {
            let id = Uuid::now_v7();
            tracking_ids.push(id);
            let element = serde_json::to_vec(
                &simulated_message(index, count, seed).into_queued(id, created_at),
            )
            .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))?;
            command.arg(element);
        }
        super::query::<i64>(&state.redis, &command).await?;
        telemetry::accepted(end - start);
    }
    let current_queue = queue_depth(&state).await?;
    let batch_size = state.batch_size;
    let body = SimulateAccepted {
        status: "accepted".into(),
        messages_count: count,
        tracking_ids,
        current_queue,
        expected_complete_batches: current_queue / batch_size,
        expected_remaining_queued: current_queue % batch_size,
        batch_threshold: batch_size,
        message: format!("Queued {count} messages"),
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}
