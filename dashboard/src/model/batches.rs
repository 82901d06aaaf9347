//! The recent batches list and the estimate of the open batch's time left on `BATCH_TIMEOUT`.

use std::collections::VecDeque;

use pipeline::events::{BatchPersisted, Stats};

/// One committed batch, as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub batch_id: i64,
    pub size: u64,
    /// `size`, `timeout`, `shutdown` or `recovery`.
    pub reason: String,
    pub batcher_id: String,
    pub dead_letters: u64,
    pub committed_ms: i64,
}

impl From<&BatchPersisted> for BatchRow {
    fn from(event: &BatchPersisted) -> Self {
        Self {
            batch_id: event.batch_id,
            size: event.batch_size,
            reason: if event.reason.is_empty() {
                "unknown".into()
            } else {
                event.reason.clone()
            },
            batcher_id: event.batcher_id.clone(),
            dead_letters: event.dead_letters,
            committed_ms: event.worker_timestamp.timestamp_millis(),
        }
    }
}

/// The last few batches, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentBatches {
    rows: VecDeque<BatchRow>,
}

impl RecentBatches {
    /// Rows kept (and shown).
    pub const CAPACITY: usize = 12;

    pub fn push(&mut self, row: BatchRow) {
        self.rows.push_front(row);
        self.rows.truncate(Self::CAPACITY);
    }

    /// Rows, newest first.
    pub fn rows(&self) -> impl Iterator<Item = &BatchRow> {
        self.rows.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

/// When the batch now filling started, as far as the page can tell: the batcher's timer starts at a batch's
/// first message, which is about when `queue_depth` turns non-zero after being zero or after a commit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchTimer {
    opened_ms: Option<f64>,
}

impl BatchTimer {
    /// A `stats_update` received at `now_ms`.
    pub fn observe(&mut self, now_ms: f64, stats: &Stats) {
        if stats.queue_depth == 0 {
            self.opened_ms = None;
        } else if self.opened_ms.is_none() {
            self.opened_ms = Some(now_ms);
        }
    }

    /// A batch committed: what is left (if anything) opens a new batch at the next stats update.
    pub fn committed(&mut self) {
        self.opened_ms = None;
    }

    /// Milliseconds left until the open batch times out, or `None` when no batch is open.
    pub fn left_ms(&self, now_ms: f64, timeout_ms: f64) -> Option<f64> {
        self.opened_ms
            .map(|opened| (timeout_ms - (now_ms - opened)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;

    fn event(batch_id: i64, reason: &str) -> BatchPersisted {
        BatchPersisted {
            ids: vec![Uuid::nil()],
            batch_id,
            batch_size: 50,
            worker_timestamp: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            reason: reason.into(),
            batcher_id: "b1".into(),
            dead_letters: 0,
        }
    }

    #[test]
    fn the_list_keeps_the_newest_batches() {
        let mut recent = RecentBatches::default();
        for id in 1..=20 {
            recent.push(BatchRow::from(&event(id, "size")));
        }
        let ids: Vec<i64> = recent.rows().map(|row| row.batch_id).collect();
        assert_eq!(ids, (9..=20).rev().collect::<Vec<_>>());
        let newest = recent.rows().next().unwrap();
        assert_eq!(newest.committed_ms, 1_700_000_000_123);
        assert_eq!(newest.reason, "size");
    }

    #[test]
    fn an_event_without_a_reason_says_unknown() {
        assert_eq!(BatchRow::from(&event(1, "")).reason, "unknown");
    }

    #[test]
    fn the_timer_runs_from_the_first_queued_message() {
        let queued = |n| Stats {
            queue_depth: n,
            ..Stats::default()
        };
        let mut timer = BatchTimer::default();
        timer.observe(0.0, &queued(0));
        assert_eq!(timer.left_ms(0.0, 30_000.0), None);
        timer.observe(1_000.0, &queued(3));
        timer.observe(1_500.0, &queued(7));
        assert_eq!(timer.left_ms(11_000.0, 30_000.0), Some(20_000.0));
        assert_eq!(timer.left_ms(99_000.0, 30_000.0), Some(0.0));
        timer.committed();
        assert_eq!(timer.left_ms(12_000.0, 30_000.0), None);
        timer.observe(12_000.0, &queued(2));
        assert_eq!(timer.left_ms(12_500.0, 1_000.0), Some(500.0));
    }
}
