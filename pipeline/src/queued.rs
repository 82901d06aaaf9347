//! The element that travels through Redis: one accepted message, as the ingestor pushed it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One accepted message as it waits in Redis (JSON-encoded) until a batcher persists it.
///
/// The ingestor has validated it; the batcher still treats every element it reads as untrusted bytes,
/// because anything can be pushed onto a Redis list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The `message_id` returned to the client, stored as `messages.tracking_id` (UUID v7).
    pub tracking_id: Uuid,
    pub user_id: i64,
    pub channel_id: i64,
    pub content: String,
    /// When the ingestor accepted it; `messages.created_at`, and the start of the end-to-end latency.
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
}
