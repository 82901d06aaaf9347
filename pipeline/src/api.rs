//! Bodies of the ingestor's HTTP API (seed-compatible field names), and of the notifier's `GET /config.json`
//! ([`ClientConfig`], what the dashboard is told).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::BatchProgress;

/// Largest `content`, in characters (Unicode scalar values, not bytes).
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Largest `count` accepted by `POST /simulate`.
pub const MAX_SIMULATE_COUNT: u64 = 1_000_000;
/// Largest `limit` accepted by `GET /messages`.
pub const MAX_LIST_LIMIT: u64 = 1000;
/// `limit` of `GET /messages` when none is given.
pub const DEFAULT_LIST_LIMIT: u64 = 50;
/// Largest `limit` of `GET /channels/{channel_id}/messages`.
pub const MAX_HISTORY_LIMIT: u64 = 1000;
/// `limit` of `GET /channels/{channel_id}/messages` when none is given.
pub const DEFAULT_HISTORY_LIMIT: u64 = 100;

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

/// `POST /simulate` → 202, with the original's fields and values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulateAccepted {
    /// Always `"simulation_started"` (the original's word; every message is in Redis when it is sent).
    pub status: String,
    pub messages_count: u64,
    pub tracking_ids: Vec<Uuid>,
    /// Messages in the pipeline (waiting in Redis and held by batchers) right after the push.
    pub current_queue: u64,
    /// The same as `current_queue`: the queue the expected batches are computed from (the original sends both).
    pub expected_total: u64,
    /// `expected_total / batch_threshold`: batches that will flush by size.
    pub expected_complete_batches: u64,
    /// `expected_total % batch_threshold`: messages left for the time trigger.
    pub expected_remaining_queued: u64,
    pub batch_threshold: u64,
    /// `"Injecting <count> messages. <batches> batch(es) will flush, <remaining> will remain queued."`
    pub message: String,
}

impl SimulateAccepted {
    /// The answer for `tracking_ids` pushed, with a queue depth of `queue_depth` right after and a flush
    /// threshold (`BATCH_SIZE`) of `threshold` (0 counts as 1).
    pub fn new(tracking_ids: Vec<Uuid>, queue_depth: u64, threshold: u64) -> Self {
        let count = tracking_ids.len() as u64;
        Self {
            tracking_ids,
            ..Self::without_ids(count, queue_depth, threshold)
        }
    }

    /// The answer for `count` messages pushed, with `tracking_ids` left empty: for a server that writes the
    /// ids itself, a piece at a time, rather than hold them all in this value and in its JSON at once.
    pub fn without_ids(count: u64, queue_depth: u64, threshold: u64) -> Self {
        let progress = BatchProgress::of(queue_depth, threshold);
        let (batches, remaining) = (progress.ready, progress.progress);
        Self {
            status: "simulation_started".into(),
            messages_count: count,
            tracking_ids: Vec::new(),
            current_queue: queue_depth,
            expected_total: queue_depth,
            expected_complete_batches: batches,
            expected_remaining_queued: remaining,
            batch_threshold: progress.threshold,
            message: format!(
                "Injecting {count} messages. {batches} batch(es) will flush, {remaining} will remain queued."
            ),
        }
    }
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

/// One persisted message of a channel, with its place in the channel: the message object of the channel
/// history (`GET /channels/{channel_id}/messages`) and of the channel feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelMessage {
    pub channel_id: i64,
    /// 1, 2, 3, … per channel, in commit order, with no hole.
    pub offset: i64,
    /// The `message_id` the ingestor answered (the row's `tracking_id`).
    pub message_id: Uuid,
    pub user_id: i64,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub inserted_at: DateTime<Utc>,
}

/// A frame a client sends on the notifier's `GET /ws/channels`. The notifier reads requests by hand
/// (`notifier/src/feeds/protocol.rs`), so its error frame can say what is wrong with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedRequest {
    /// `{"type":"subscribe","channel_id":7,"after":42}`: every message after offset `after` (replayed, then
    /// live); `after` absent: live only, from the channel's head; 0: from the start.
    Subscribe {
        channel_id: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<i64>,
    },
    /// `{"type":"unsubscribe","channel_id":7}`.
    Unsubscribe { channel_id: i64 },
}

impl FeedRequest {
    pub fn to_json(&self) -> String {
        // Integers only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A frame the notifier sends on `GET /ws/channels`, tagged by `type`. The notifier encodes each `message`
/// frame once for every subscriber (`Delivered`), the same bytes this type gives it; the dashboard reads
/// frames by hand (`dashboard/src/model/channel.rs`), which keeps serde's tagged-enum reader out of its wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedFrame {
    /// The subscription is in place; `head` is the channel's last offset when it started (0: no message yet).
    Subscribed {
        channel_id: i64,
        head: i64,
    },
    Unsubscribed {
        channel_id: i64,
    },
    /// `{"type":"message", …the message object…}`.
    Message(ChannelMessage),
    /// The subscriber fell behind after `last_offset`; it is caught up from PostgreSQL right after this.
    Lagged {
        channel_id: i64,
        last_offset: i64,
    },
    /// The channel started over from offset 1 (the data was reset): drop what was received of it; its
    /// messages from offset 1 follow.
    Reset {
        channel_id: i64,
    },
    /// Bad input, or a refused request about `channel_id`; the connection stays usable.
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel_id: Option<i64>,
    },
}

impl FeedFrame {
    pub fn error(message: impl Into<String>, channel_id: Option<i64>) -> Self {
        Self::Error {
            message: message.into(),
            channel_id,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames serialize")
    }
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
    /// `batch_size` under the original's name.
    #[serde(default)]
    pub size: u64,
    /// `committed_at` under the original's name.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// `DELETE /reset` → 200, as the original answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetComplete {
    /// Always `"reset_complete"`.
    pub status: String,
    /// Rows deleted from `messages`.
    pub deleted_messages: u64,
    /// Messages deleted from Redis: waiting in the queue or held by batchers (not yet persisted).
    pub cleared_queue: u64,
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

/// Body of the notifier's `GET /config.json`: where the dashboard finds the ingestor's API, and the flush
/// settings it shows. The notifier writes it, the dashboard reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// `INGESTOR_URL`: base URL of the ingestor's API (no trailing slash), where the dashboard sends
    /// `POST /messages` and friends (the ingestor allows the notifier's origin).
    pub ingestor_url: String,
    /// `BATCH_SIZE`.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// `BATCH_TIMEOUT`, in seconds.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout_seconds: f64,
}

fn default_batch_size() -> u64 {
    50
}

fn default_batch_timeout() -> f64 {
    30.0
}

impl ClientConfig {
    /// What the dashboard assumes until (or unless) `/config.json` answers: the ingestor on port 8000 of the
    /// host that served the page.
    pub fn fallback(hostname: &str) -> Self {
        Self {
            ingestor_url: format!("http://{hostname}:8000"),
            batch_size: default_batch_size(),
            batch_timeout_seconds: default_batch_timeout(),
        }
    }

    /// `BATCH_TIMEOUT` in milliseconds.
    pub fn batch_timeout_ms(&self) -> f64 {
        self.batch_timeout_seconds * 1_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulate_answer_has_the_originals_values() {
        let ids = vec![Uuid::nil(); 120];
        let answer = SimulateAccepted::new(ids, 130, 50);
        assert_eq!(answer.status, "simulation_started");
        assert_eq!(answer.messages_count, 120);
        assert_eq!(answer.tracking_ids.len(), 120);
        assert_eq!((answer.current_queue, answer.expected_total), (130, 130));
        assert_eq!(answer.expected_complete_batches, 2);
        assert_eq!(answer.expected_remaining_queued, 30);
        assert_eq!(answer.batch_threshold, 50);
        assert_eq!(
            answer.message,
            "Injecting 120 messages. 2 batch(es) will flush, 30 will remain queued."
        );
    }
}
