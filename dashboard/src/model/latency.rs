//! End-to-end latency, computed in the browser: from a message's creation (the timestamp inside its UUID v7
//! tracking id) to the commit of its batch (`worker_timestamp` of `batch_persisted`).
//!
//! The last [`LatencyWindow::CAPACITY`] samples are kept; p50/p95/p99 use the nearest-rank method.

use std::collections::VecDeque;

use uuid::Uuid;

/// Milliseconds since the Unix epoch at which a UUID v7 was made; `None` for other versions.
pub fn uuid_v7_millis(id: &Uuid) -> Option<i64> {
    let bytes = id.as_bytes();
    if bytes[6] >> 4 != 7 {
        return None;
    }
    // The first 48 bits are the big-endian Unix time in milliseconds.
    let millis = bytes[..6]
        .iter()
        .fold(0_i64, |acc, &byte| (acc << 8) | i64::from(byte));
    Some(millis)
}

/// p50, p95 and p99 of the window, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// Samples they were computed from.
    pub count: usize,
}

/// The most recent latency samples (milliseconds), oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyWindow {
    samples: VecDeque<f64>,
}

impl LatencyWindow {
    /// Samples kept: enough for a stable p99, small enough to sort on every batch.
    pub const CAPACITY: usize = 4_096;
    /// Samples taken from one batch at most (evenly spread), so one huge batch cannot flush the window.
    pub const PER_BATCH: usize = 256;

    /// Adds one sample per id (at most [`Self::PER_BATCH`], evenly spread) of a batch committed at
    /// `committed_ms`. Ids that are not UUID v7 are skipped; clock skew never yields a negative latency.
    pub fn record_batch(&mut self, ids: &[Uuid], committed_ms: i64) {
        let stride = ids.len().div_ceil(Self::PER_BATCH).max(1);
        for id in ids.iter().step_by(stride) {
            if let Some(created_ms) = uuid_v7_millis(id) {
                self.push((committed_ms - created_ms).max(0) as f64);
            }
        }
    }

    /// Adds one sample, dropping the oldest when full.
    pub fn push(&mut self, latency_ms: f64) {
        if self.samples.len() == Self::CAPACITY {
            self.samples.pop_front();
        }
        self.samples.push_back(latency_ms);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// p50/p95/p99 of the window; `None` while it is empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Some(Percentiles {
            p50: nearest_rank(&sorted, 50.0),
            p95: nearest_rank(&sorted, 95.0),
            p99: nearest_rank(&sorted, 99.0),
            count: sorted.len(),
        })
    }
}

/// The smallest sample such that at least `p` percent of the samples are ≤ it (`sorted` must not be empty).
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UUID v7 made at `ms`, with `tail` in its random bits.
    fn v7(ms: i64, tail: u16) -> Uuid {
        let mut bytes = [0_u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6] = 0x70;
        bytes[8] = 0x80;
        bytes[14..].copy_from_slice(&tail.to_be_bytes());
        Uuid::from_bytes(bytes)
    }

    #[test]
    fn the_timestamp_of_a_uuid_v7_is_read_back() {
        let real = Uuid::parse_str("01936d4f-6e30-7cc2-9a71-1b0a4c5e6f70").unwrap();
        assert_eq!(uuid_v7_millis(&real), Some(0x0193_6d4f_6e30));
        assert_eq!(
            uuid_v7_millis(&v7(1_700_000_000_123, 1)),
            Some(1_700_000_000_123)
        );
        let v4 = Uuid::parse_str("9b2e1c44-5f1a-4d3b-8c2e-1f0a9b8c7d6e").unwrap();
        assert_eq!(uuid_v7_millis(&v4), None);
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&sorted, 50.0), 50.0);
        assert_eq!(nearest_rank(&sorted, 95.0), 95.0);
        assert_eq!(nearest_rank(&sorted, 99.0), 99.0);
        assert_eq!(nearest_rank(&sorted, 0.0), 1.0);
        assert_eq!(nearest_rank(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn a_batch_adds_latencies_from_creation_to_commit() {
        let mut window = LatencyWindow::default();
        assert_eq!(window.percentiles(), None);
        let committed = 1_700_000_010_000;
        let ids: Vec<Uuid> = (0..10)
            .map(|i| v7(committed - 100 * (i + 1), i as u16))
            .collect();
        window.record_batch(&ids, committed);
        let p = window.percentiles().unwrap();
        assert_eq!(p.count, 10);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p95, 1_000.0);
        assert_eq!(p.p99, 1_000.0);
    }

    #[test]
    fn clock_skew_gives_zero_not_negative_latency() {
        let mut window = LatencyWindow::default();
        window.record_batch(&[v7(2_000, 0)], 1_000);
        assert_eq!(window.percentiles().unwrap().p99, 0.0);
    }

    #[test]
    fn a_huge_batch_is_sampled_and_the_window_stays_bounded() {
        let mut window = LatencyWindow::default();
        let ids: Vec<Uuid> = (0..10_000).map(|i| v7(1_000, i as u16)).collect();
        window.record_batch(&ids, 1_500);
        assert!(window.len() <= LatencyWindow::PER_BATCH);
        for _ in 0..100 {
            window.record_batch(&ids, 1_500);
        }
        assert_eq!(window.len(), LatencyWindow::CAPACITY);
    }
}
