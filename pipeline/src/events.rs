//! Events the notifier sends to WebSocket clients on `GET /ws/stats` (seed-compatible field names).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Everything a `/ws/stats` client receives, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// Every 500 ms.
    StatsUpdate(Stats),
    /// After every commit.
    BatchPersisted(BatchPersisted),
}

/// The pipeline's numbers, as `stats_update` carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Rows in `messages`.
    pub total_messages: u64,
    /// Messages waiting in Redis plus held by batchers (the seed's "unified pipeline view").
    pub queue_depth: u64,
    /// Rows persisted per second over the last few seconds, rounded to a whole number (as the original sends it).
    pub messages_per_second: u64,
    pub total_batches: u64,
    /// `total_messages / total_batches`, rounded to 1 decimal (as the original).
    pub avg_batch_size: f64,
    /// `BATCH_SIZE`.
    pub batch_threshold: u64,
    /// `queue_depth % batch_threshold`.
    pub batch_progress: u64,
    /// `batch_progress` as a percentage of `batch_threshold`, rounded to 1 decimal (as the original).
    pub batch_progress_percent: f64,
    /// `queue_depth / batch_threshold`.
    pub batches_ready: u64,
    /// Elements that could not become rows.
    #[serde(default)]
    pub dead_letters: u64,
}

/// A batch is committed: these ids are durable in PostgreSQL.
///
/// The batcher publishes it on the `{prefix}:events` channel after the commit; the notifier relays it as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPersisted {
    /// Tracking ids of the batch's rows that are in `messages`, including ones a replay found already
    /// persisted; dead letters are not listed (an undecodable element has no id).
    pub ids: Vec<Uuid>,
    /// `batches.id`.
    pub batch_id: i64,
    /// Elements in the batch, dead letters included.
    pub batch_size: u64,
    /// When the batch committed.
    pub worker_timestamp: DateTime<Utc>,
    /// `size`, `timeout`, `shutdown` or `recovery`.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub batcher_id: String,
    /// Elements sent to `dead_letters` by this batch.
    #[serde(default)]
    pub dead_letters: u64,
}

/// What a batcher publishes after a commit: a [`BatchPersisted`] (what `/ws/stats` clients have always read)
/// plus `channels`, each channel's committed offsets, which is all a notifier needs to fan the batch's rows
/// out to the channel feeds (it reads them from PostgreSQL with one query per batch; see docs/feeds.md for
/// why ranges and not the rows themselves). On the wire it is a `batch_persisted` event with one more field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "batch_persisted")]
pub struct BatchAnnouncement {
    #[serde(flatten)]
    pub batch: BatchPersisted,
    /// Per channel, the offsets of the batch's rows in `messages`, ascending by channel. A replay lists the
    /// offsets of the rows it found already persisted (their first commit's batcher announced nothing).
    #[serde(default)]
    pub channels: Vec<ChannelRange>,
}

/// Offsets `first..=last` of one channel, committed by one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRange {
    pub channel_id: i64,
    pub first: i64,
    pub last: i64,
}

/// Merges `more` into `ranges` (both by channel): a channel in both keeps the lowest `first` and the highest
/// `last`. Used when a batch is committed in pieces.
pub fn merge_ranges(ranges: &mut Vec<ChannelRange>, more: &[ChannelRange]) {
    for range in more {
        match ranges.iter_mut().find(|r| r.channel_id == range.channel_id) {
            Some(known) => {
                known.first = known.first.min(range.first);
                known.last = known.last.max(range.last);
            }
            None => ranges.push(*range),
        }
    }
    ranges.sort_unstable_by_key(|r| r.channel_id);
}

/// Where the queue stands against the flush threshold (`BATCH_SIZE`): the one formula behind `/health`,
/// `/queue/status`, `/simulate` and `stats_update` (which report it under the original's names:
/// `batch_progress`, `batches_ready`, `batches_pending` or `expected_complete_batches` and
/// `expected_remaining_queued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    /// The flush threshold, at least 1.
    pub threshold: u64,
    /// Messages toward the next full batch: `queue_depth % threshold`.
    pub progress: u64,
    /// Full batches waiting: `queue_depth / threshold`.
    pub ready: u64,
}

impl BatchProgress {
    /// The progress of `queue_depth` messages toward batches of `threshold` (0 counts as 1).
    pub fn of(queue_depth: u64, threshold: u64) -> Self {
        let threshold = threshold.max(1);
        Self {
            threshold,
            progress: queue_depth % threshold,
            ready: queue_depth / threshold,
        }
    }

    /// `progress` as a percentage of `threshold`.
    pub fn percent(self) -> f64 {
        self.progress as f64 * 100.0 / self.threshold as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_the_remainder_and_ready_the_quotient() {
        let progress = BatchProgress::of(1234, 500);
        assert_eq!(
            (progress.threshold, progress.progress, progress.ready),
            (500, 234, 2)
        );
        assert_eq!(progress.percent(), 46.8);
        assert_eq!(BatchProgress::of(7, 0), BatchProgress::of(7, 1));
        assert_eq!(BatchProgress::of(0, 50).percent(), 0.0);
    }

    #[test]
    fn events_are_tagged_with_the_seeds_type_names() {
        let stats = serde_json::to_value(ServerEvent::StatsUpdate(Stats::default())).unwrap();
        assert_eq!(stats["type"], "stats_update");
        assert_eq!(stats["queue_depth"], 0);

        let persisted = ServerEvent::BatchPersisted(BatchPersisted {
            ids: vec![Uuid::nil()],
            batch_id: 7,
            batch_size: 1,
            worker_timestamp: DateTime::UNIX_EPOCH,
            reason: "size".into(),
            batcher_id: "b1".into(),
            dead_letters: 0,
        });
        let value = serde_json::to_value(&persisted).unwrap();
        assert_eq!(value["type"], "batch_persisted");
        assert_eq!(value["ids"][0], "00000000-0000-0000-0000-000000000000");
        assert_eq!(value["batch_id"], 7);
        let back: ServerEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, persisted);
    }

    #[test]
    fn an_announcement_is_a_batch_persisted_event_with_channels() {
        let ServerEvent::BatchPersisted(batch) =
            serde_json::from_str(r#"{"type":"batch_persisted","ids":[],"batch_id":3,"batch_size":2,"worker_timestamp":"2024-01-01T00:00:00Z"}"#).unwrap()
        else {
            panic!("not a batch_persisted event")
        };
        let announcement = BatchAnnouncement {
            batch,
            channels: vec![ChannelRange {
                channel_id: 7,
                first: 41,
                last: 44,
            }],
        };
        let value = serde_json::to_value(&announcement).unwrap();
        assert_eq!(value["type"], "batch_persisted");
        assert_eq!(value["batch_id"], 3);
        assert_eq!(
            value["channels"],
            serde_json::json!([{"channel_id": 7, "first": 41, "last": 44}])
        );
        // `/ws/stats` clients read it as before, ignoring the extra field.
        let old: ServerEvent = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(old, ServerEvent::BatchPersisted(announcement.batch.clone()));
        let back: BatchAnnouncement = serde_json::from_value(value).unwrap();
        assert_eq!(back, announcement);
        // An event of an older batcher has no channels.
        let older: BatchAnnouncement = serde_json::from_str(r#"{"type":"batch_persisted","ids":[],"batch_id":3,"batch_size":2,"worker_timestamp":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert!(older.channels.is_empty());
    }

    #[test]
    fn merged_ranges_span_both_pieces() {
        let range = |channel_id, first, last| ChannelRange {
            channel_id,
            first,
            last,
        };
        let mut ranges = vec![range(9, 1, 3), range(2, 5, 5)];
        merge_ranges(&mut ranges, &[range(9, 4, 6), range(1, 1, 1)]);
        assert_eq!(ranges, [range(1, 1, 1), range(2, 5, 5), range(9, 1, 6)]);
    }
}
