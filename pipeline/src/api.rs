//! Bodies of the ingestor's HTTP API (seed-compatible field names).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest `content`, in characters (Unicode scalar values, not bytes).
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Largest `count` accepted by `POST /simulate`.
pub const MAX_SIMULATE_COUNT: u64 = 1_000_000;
/// Largest `limit` accepted by `GET /messages`.
pub const MAX_LIST_LIMIT: u64 = 1000;
/// `limit` of `GET /messages` when none is given.
pub const DEFAULT_LIST_LIMIT: u64 = 50;

/// `POST /messages` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewMessage {
    /// A positive integer.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub user_id: i64,
    /// A positive integer.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub channel_id: i64,
    /// 1 to 2000 characters (Unicode scalar values), not only whitespace, no NUL.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2000))]
    pub content: String,
}

/// `POST /messages` → 201: the message is in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageAccepted {
    pub message_id: Uuid,
    /// Always `"queued"`.
    pub status: String,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub queued_at: DateTime<Utc>,
}

/// `POST /simulate` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulateRequest {
    /// How many made-up messages to queue: 1 to 1,000,000 (`MAX_SIMULATE_COUNT`).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub count: u64,
}

/// `POST /simulate` → 202.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulateAccepted {
    /// Always `"accepted"`.
    pub status: String,
    pub messages_count: u64,
    pub tracking_ids: Vec<Uuid>,
    /// Messages in the pipeline (waiting in Redis and held by batchers) right after the push.
    pub current_queue: u64,
    pub expected_complete_batches: u64,
    pub expected_remaining_queued: u64,
    pub batch_threshold: u64,
    pub message: String,
}

/// One persisted row, as `GET /messages` lists them (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersistedMessage {
    pub id: i64,
    pub tracking_id: Uuid,
    pub user_id: i64,
    pub channel_id: i64,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub inserted_at: DateTime<Utc>,
}

/// `GET /queue/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStatus {
    /// Messages in the pipeline: waiting in Redis plus held by batchers (`queue_depth` elsewhere).
    pub queue_length: u64,
    pub batch_threshold: u64,
    /// `queue_length % batch_threshold`: how far the next batch is filled.
    pub batch_progress: u64,
    /// `queue_length / batch_threshold`: full batches waiting.
    pub batches_ready: u64,
    /// Tracking ids of the oldest waiting messages (at most [`QUEUED_IDS_SHOWN`]).
    pub queued_message_ids: Vec<Uuid>,
    pub last_batch: Option<BatchSummary>,
}

/// How many ids `GET /queue/status` lists.
pub const QUEUED_IDS_SHOWN: usize = 100;

/// The most recent committed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchSummary {
    pub batch_id: i64,
    pub batch_size: u64,
    pub reason: String,
    pub batcher_id: String,
    pub committed_at: DateTime<Utc>,
}

/// Every error response: `{"error": "<code>", "message": "<human text>", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_field`, `malformed_json`, `payload_too_large`.
    pub error: String,
    pub message: String,
    /// The offending field for `invalid_field` (a JSON path such as `content` or `[3].user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
