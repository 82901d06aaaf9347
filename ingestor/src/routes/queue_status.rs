//! `GET /queue/status`: how many messages are in the pipeline, the oldest waiting ids, and the last batch.

use axum::Json;
use axum::extract::State;
use pipeline::api::{BatchSummary, QUEUED_IDS_SHOWN, QueueStatus};
use serde::Deserialize;
use uuid::Uuid;

use super::queue_depth;
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/queue/status",
    tag = "messages",
    summary = "Messages in the pipeline, the oldest waiting ids, and the last batch",
    responses(
        (status = 200, description = "The queue now.", body = QueueStatus),
        crate::openapi::StoresFailures,
    )
)]
pub async fn queue_status(State(state): State<AppState>) -> Result<Json<QueueStatus>, ApiError> {
    let (queue, last_batch) = tokio::try_join!(queue(&state), last_batch(&state))?;
    let (depth, oldest) = queue;
    let progress = pipeline::events::BatchProgress::of(depth, state.flush_threshold);
    Ok(Json(QueueStatus {
        queue_length: depth,
        batch_threshold: progress.threshold,
        batch_progress: progress.progress,
        batches_ready: progress.ready,
        queued_message_ids: oldest,
        last_batch,
    }))
}

/// `queue_depth`, and the tracking ids of the oldest waiting messages, oldest first: the right end of the
/// pending list, or of every shard's, merged.
async fn queue(state: &AppState) -> Result<(u64, Vec<Uuid>), ApiError> {
    let (depth, shards) = tokio::try_join!(queue_depth(state), shards_in_use(state))?;
    let reads = state.keys.shards(shards).map(|shard| {
        let mut command = redis::cmd("LRANGE");
        command
            .arg(shard.pending())
            .arg(-(QUEUED_IDS_SHOWN as i64))
            .arg(-1);
        async move { super::query::<Vec<Vec<u8>>>(&state.redis, &command).await }
    });
    let mut oldest: Vec<Uuid> = futures_util::future::try_join_all(reads)
        .await?
        .iter()
        .flat_map(|elements| tracking_ids(elements))
        .collect();
    if shards > 1 {
        // Ids are UUID v7, ordered by creation time: the oldest waiting over all shards come first.
        oldest.sort_unstable();
    }
    oldest.truncate(QUEUED_IDS_SHOWN);
    Ok((depth, oldest))
}

/// How many shards may hold messages (see `pipeline::depth::shards_in_use`).
async fn shards_in_use(state: &AppState) -> Result<u32, ApiError> {
    super::redis(|| {
        let mut conn = state.redis.clone();
        async move { pipeline::depth::shards_in_use(&mut conn, &state.keys, state.queue_shards).await }
    })
    .await
}

/// Tracking ids of `elements` (LRANGE order: oldest last), oldest first; elements that do not parse are
/// skipped (anything can be pushed onto a Redis list; the batcher dead-letters those).
pub fn tracking_ids(elements: &[Vec<u8>]) -> Vec<Uuid> {
    #[derive(Deserialize)]
    struct Tracked {
        tracking_id: Uuid,
    }
    elements
        .iter()
        .rev()
        .filter_map(|element| serde_json::from_slice::<Tracked>(element).ok())
        .map(|tracked| tracked.tracking_id)
        .collect()
}

async fn last_batch(state: &AppState) -> Result<Option<BatchSummary>, ApiError> {
    let row = super::db(async {
        let client = state.db.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT id, size, reason, batcher_id, committed_at FROM batches ORDER BY id DESC LIMIT 1",
            )
            .await?;
        Ok(client.query_opt(&statement, &[]).await?)
    })
    .await?;
    Ok(row.map(|row| {
        let size = u64::try_from(row.get::<_, i32>("size")).unwrap_or(0);
        let committed_at = row.get("committed_at");
        BatchSummary {
            batch_id: row.get("id"),
            batch_size: size,
            reason: row.get("reason"),
            batcher_id: row.get("batcher_id"),
            committed_at,
            size,
            completed_at: Some(committed_at),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_oldest_first_and_garbage_is_skipped() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        // LRANGE order: newest on the left, oldest on the right.
        let elements = vec![
            format!(r#"{{"tracking_id": "{b}", "user_id": 1}}"#).into_bytes(),
            b"not json".to_vec(),
            format!(r#"{{"tracking_id": "{a}"}}"#).into_bytes(),
        ];
        assert_eq!(tracking_ids(&elements), vec![a, b]);
    }
}
