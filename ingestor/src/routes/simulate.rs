//! `POST /simulate {"count": n}`: queues n made-up messages (1..=1,000,000) and reports the queue after. What
//! it holds is bounded by the ids (16 bytes each) plus one chunk of [`CHUNK`] messages; the answer is
//! streamed ([`SimulateAnswer`]).

use axum::extract::State;
use chrono::Utc;
use pipeline::api::{ErrorBody, SimulateAccepted, SimulateRequest};
use pipeline::keys::shard_of;
use uuid::Uuid;

use crate::auth::WriteAccess;
use crate::domain::{check_simulate_count, simulated_message};
use crate::enqueue::{self, EnqueueError};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::routes::queue_depth;
use crate::routes::simulate_answer::SimulateAnswer;
use crate::state::AppState;
use crate::telemetry;

/// Elements per `LPUSH` (about 1.5 MB): a million messages go as 100 commands, never one giant one.
pub const CHUNK: u64 = 10_000;

/// 202 once every message is in Redis. If Redis fails part-way, the chunks already pushed stay queued
/// (and counted as accepted) and the answer is a 503.
#[utoipa::path(
    post,
    path = "/simulate",
    tag = "messages",
    summary = "Queue made-up messages",
    security(("api_key" = [])),
    request_body(content = SimulateRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "All queued; `status` is `simulation_started`, as the original \
                                      answers.", body = SimulateAccepted),
        (status = 422, description = "`count` is not an integer from 1 to 1,000,000, or exceeds \
                                      MAX_QUEUE_DEPTH.", body = ErrorBody),
        crate::openapi::WriteRefusals,
        (status = 503, description = "`redis_unavailable`: Redis is unavailable; nothing was queued. \
                                      `partly_queued`: the queue filled up (other ingestors' submissions) or \
                                      Redis failed part-way; the chunks of 10,000 pushed before stay queued, \
                                      and the message says how many.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    )
)]
pub async fn simulate(
    _: WriteAccess,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SimulateRequest>,
) -> Result<SimulateAnswer, ApiError> {
    let count = check_simulate_count(request.count)?;
    // Held until every chunk is pushed, so the queue depth estimate accounts for them.
    let _admission = state.backpressure.admit_request(count, Some("count"))?;
    // Varies user and channel ids between requests; any 64 bits will do.
    let seed = Uuid::new_v4().as_u64_pair().0;
    let mut tracking_ids = Vec::with_capacity(count as usize);
    let mut queued = 0;
    for start in (0..count).step_by(CHUNK as usize) {
        let end = count.min(start + CHUNK);
        let created_at = Utc::now();
        let mut messages = Vec::with_capacity((end - start) as usize);
        for index in start..end {
            let id = Uuid::now_v7();
            tracking_ids.push(id);
            messages.push(simulated_message(index, count, seed).into_queued(id, created_at));
        }
        let parts = enqueue::by_shard(messages, |message| {
            shard_of(message.channel_id, state.queue_shards)
        })
        .into_iter()
        .map(|part| part.encode(|message| serde_json::to_vec(&message)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))?;
        let outcomes = super::push_parts(&state, &parts).await?;
        for (part, outcome) in parts.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    telemetry::accepted(part.elements.len() as u64);
                    queued += part.elements.len();
                }
                // Another ingestor filled the queue since the admission: a 429 if nothing is queued yet.
                Err(error @ EnqueueError::Full { .. }) if queued == 0 => {
                    return Err(state.backpressure.not_queued(&error, count));
                }
                Err(error) if queued == 0 => {
                    return Err(ApiError::RedisUnavailable(error.to_string()));
                }
                Err(error) => {
                    return Err(ApiError::PartlyQueued {
                        queued,
                        total: count as usize,
                        cause: (&error).into(),
                        keyed: false,
                    });
                }
            }
        }
    }
    // Everything is queued now, so the answer is a 202 whatever happens next: a 503 here would invite a
    // retry that queues it all again. Without a fresh reading, the admission estimate stands in.
    let depth = match queue_depth(&state).await {
        Ok(depth) => depth,
        Err(error) => {
            tracing::warn!(%error, "cannot read the queue depth after /simulate; answering with the estimate");
            state.backpressure.depth()
        }
    };
    Ok(SimulateAnswer::new(
        tracking_ids,
        depth,
        state.flush_threshold,
    ))
}
