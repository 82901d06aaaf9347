//! `DELETE /reset`: empties the tables and the queues, for demos and tests. Only with `ADMIN_API_KEY` set
//! and sent as a bearer token: without it anyone could wipe the data (403 while it is unset).
//!
//! Takes a PostgreSQL connection first (503 and nothing cleared while PostgreSQL is down), clears Redis
//! ([`clear_queue`]: in every queue shard, pending, every registered batcher's processing list, idempotency
//! keys), then PostgreSQL ([`pipeline::schema::RESET_TABLES`]: `TRUNCATE`, restarting message ids and
//! channel offsets but not batch ids, zero totals, one more `resets`, in one transaction). Answers as the
//! original does: `{"status": "reset_complete", "deleted_messages", "cleared_queue"}`. A batch a batcher is committing at that very moment may still land after the reset;
//! nothing accepted after the reset is lost to it.

use axum::Json;
use axum::extract::State;
use pipeline::api::{ErrorBody, ResetComplete};
use pipeline::keys::ShardKeys;

use crate::auth::AdminAccess;
use crate::error::ApiError;
use crate::state::AppState;

/// Keys deleted per `DEL`, and asked for per `SCAN` step.
const KEYS_PER_COMMAND: usize = 1000;
/// Bound on SCAN steps (each returns up to ~1000 keys), so a reset cannot loop forever.
const MAX_SCAN_STEPS: usize = 100_000;

#[utoipa::path(
    delete,
    path = "/reset",
    tag = "admin",
    summary = "Delete every message, batch, dead letter and queued message",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Everything was deleted.", body = ResetComplete),
        (status = 401, description = "The bearer token is not ADMIN_API_KEY.", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "ADMIN_API_KEY is not set on the ingestor, so reset is disabled.",
            body = ErrorBody),
        crate::openapi::StoresFailures,
    )
)]
pub async fn reset(
    _: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<ResetComplete>, ApiError> {
    // PostgreSQL first: while it is down nothing is cleared, rather than the queues alone.
    let mut client = super::db(super::db_client(&state)).await?;
    let cleared_queue = clear_queue(&state).await?;
    let deleted_messages = super::db(async {
        let transaction = client.transaction().await?;
        // The lock TRUNCATE takes anyway, taken first so that no batch commits between the count and the
        // TRUNCATE: `deleted_messages` is exactly the rows that go.
        transaction
            .batch_execute(
                "LOCK TABLE messages, batches, dead_letters, channel_heads IN ACCESS EXCLUSIVE MODE",
            )
            .await?;
        let rows: i64 = transaction
            .query_one("SELECT count(*) FROM messages", &[])
            .await?
            .get(0);
        transaction
            .batch_execute(pipeline::schema::RESET_TABLES)
            .await?;
        transaction.commit().await?;
        Ok(u64::try_from(rows).unwrap_or(0))
    })
    .await?;
    tracing::info!(
        deleted_messages,
        cleared_queue,
        "reset: tables and queues cleared"
    );
    Ok(Json(ResetComplete {
        status: "reset_complete".into(),
        deleted_messages,
        cleared_queue,
    }))
}

/// KEYS[1] = a list. Deletes it and returns how many elements it held, in one step, so a push in between is
/// neither lost uncounted nor counted twice.
const TAKE_LENGTH_AND_DELETE: &str = r"
local length = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return length
";

/// The Redis part of a reset: in every shard in use, deletes the pending list, every registered batcher's
/// processing list and every idempotency key; returns how many messages the lists held (`cleared_queue`).
/// The one place that knows which lists hold queued messages.
async fn clear_queue(state: &AppState) -> Result<u64, ApiError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(TAKE_LENGTH_AND_DELETE));
    let conn = &state.redis;
    let shards =
        super::redis(|| {
            let mut conn = conn.clone();
            async move {
                pipeline::depth::shards_in_use(&mut conn, &state.keys, state.queue_shards).await
            }
        })
        .await?;
    let mut cleared = 0;
    for shard in state.keys.shards(shards) {
        let batchers: Vec<String> =
            super::query(conn, redis::cmd("SMEMBERS").arg(shard.batchers())).await?;
        let mut lists = vec![shard.pending()];
        lists.extend(batchers.iter().map(|id| shard.processing(id)));
        for list in &lists {
            let length: u64 = super::redis(|| {
                let mut conn = conn.clone();
                async move { SCRIPT.key(list).invoke_async(&mut conn).await }
            })
            .await?;
            cleared += length;
        }
        forget_idempotency_keys(state, &shard).await?;
    }
    Ok(cleared)
}

/// Deletes every `Idempotency-Key` remembered in `shard`, so a key reused after the reset queues its message
/// again. The records live beside the shard's pending list, so on the node that holds its slot.
async fn forget_idempotency_keys(state: &AppState, shard: &ShardKeys) -> Result<(), ApiError> {
    let conn = &state.redis;
    let pattern = format!("{}*", shard.idempotency(""));
    let mut remembered = Vec::new();
    let mut cursor = 0_u64;
    for _ in 0..MAX_SCAN_STEPS {
        let (next, found) = super::redis(|| {
            let (mut conn, pattern, slot_key) = (conn.clone(), &pattern, shard.pending());
            async move {
                conn.scan_step(&slot_key, cursor, pattern, KEYS_PER_COMMAND)
                    .await
            }
        })
        .await?;
        remembered.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    // One shard's keys share a slot, so a multi-key DEL is fine on a cluster too.
    for chunk in remembered.chunks(KEYS_PER_COMMAND) {
        super::query::<u64>(conn, redis::cmd("DEL").arg(chunk)).await?;
    }
    Ok(())
}
