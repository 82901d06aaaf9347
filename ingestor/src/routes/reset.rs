//! `DELETE /reset`: empties the tables and the queues, for demos and tests. Only with `ADMIN_API_KEY` set
//! and sent as a bearer token: without it anyone could wipe the data (403 while it is unset).
//!
//! Takes a PostgreSQL connection first (503 and nothing cleared while PostgreSQL is down), clears Redis
//! (pending, every registered batcher's processing list, idempotency keys), then PostgreSQL (`TRUNCATE … RESTART IDENTITY` and zero totals, in one implicit transaction). A batch a
//! batcher is committing at that very moment may still land after the reset.

use axum::Json;
use axum::extract::State;
use pipeline::api::ErrorBody;
use serde::Serialize;

use crate::auth::AdminAccess;
use crate::error::ApiError;
use crate::startup::AppState;

/// Keys deleted per `DEL`, and asked for per `SCAN` step.
const KEYS_PER_COMMAND: usize = 1000;
/// Bound on SCAN steps (each returns up to ~1000 keys), so a reset cannot loop forever.
const MAX_SCAN_STEPS: usize = 100_000;

/// `{"status": "reset", "message": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetDone {
    pub status: &'static str,
    pub message: String,
}

#[utoipa::path(
    delete,
    path = "/reset",
    tag = "admin",
    summary = "Delete every message, batch, dead letter and queued message",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Everything was deleted.", body = ResetDone),
        (status = 401, description = "The bearer token is not ADMIN_API_KEY.", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "ADMIN_API_KEY is not set on the ingestor, so reset is disabled.",
            body = ErrorBody),
        (status = 500, description = "A bug; details are in the ingestor's log.", body = ErrorBody),
        (status = 503, description = "Redis or PostgreSQL is unavailable; retry.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    )
)]
pub async fn reset(
    _: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<ResetDone>, ApiError> {
    // PostgreSQL first: while it is down nothing is cleared, rather than the queues alone.
    let client = super::db(super::db_client(&state)).await?;
    let deleted = clear_redis(&state).await?;
    super::db(async {
        client
            .batch_execute(
                "TRUNCATE messages, batches, dead_letters RESTART IDENTITY; \
                 UPDATE pipeline_totals SET messages = 0, batches = 0, dead_letters = 0",
            )
            .await?;
        Ok(())
    })
    .await?;
    tracing::info!(redis_keys = deleted, "reset: tables and queues cleared");
    Ok(Json(ResetDone {
        status: "reset",
        message: "All messages, batches, dead letters and queued messages were deleted".into(),
    }))
}

/// Deletes the pending list, every processing list and every idempotency key; returns how many keys
/// existed.
async fn clear_redis(state: &AppState) -> Result<u64, ApiError> {
    let (conn, keys) = (&state.redis, &state.keys);
    let batchers: Vec<String> =
        super::query(conn, redis::cmd("SMEMBERS").arg(keys.batchers())).await?;
    let mut doomed = vec![keys.pending()];
    doomed.extend(batchers.iter().map(|id| keys.processing(id)));

    let pattern = format!("{}*", keys.idempotency(""));
    let mut cursor = 0_u64;
    for _ in 0..MAX_SCAN_STEPS {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(KEYS_PER_COMMAND);
        let (next, found): (u64, Vec<String>) = super::query(conn, &scan).await?;
        doomed.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }

    let mut deleted = 0;
    for chunk in doomed.chunks(KEYS_PER_COMMAND) {
        deleted += super::query::<u64>(conn, redis::cmd("DEL").arg(chunk)).await?;
    }
    Ok(deleted)
}
