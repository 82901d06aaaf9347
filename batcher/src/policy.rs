//! The flush policy, as a pure type: when a batch must be flushed, and why.
//!
//! A batch is flushed when it holds `BATCH_SIZE` elements (reason `size`) or when `BATCH_TIMEOUT` has passed
//! since its FIRST element arrived (reason `timeout`). The timer is per batch, not per flush: an idle batcher
//! whose last flush was long ago still waits the full timeout after a new first element, so a lone message is
//! not flushed the instant it arrives just because the previous batch ended a while back.
//!
//! No sockets here; the worker feeds it `Instant`s, and the tests drive it with tokio's paused clock.

use std::{fmt, time::Duration};

use tokio::time::Instant;

/// Why a batch was flushed; the `reason` label of `batcher_flushes_total` and `batches.reason`. Its names
/// (`size`, `timeout`, …) come from the variants, so the metric's label list cannot miss one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum FlushReason {
    /// The batch reached `BATCH_SIZE`.
    Size,
    /// `BATCH_TIMEOUT` passed since the batch's first element.
    Timeout,
    /// The service is stopping and flushes what it holds.
    Shutdown,
    /// Elements found in the processing list at start (or after losing track of it) are flushed again.
    Recovery,
}

impl FlushReason {
    /// The name used in metrics, the `batches` table and events.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `BATCH_SIZE` and `BATCH_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// The flush threshold (`BATCH_SIZE`, at least 1): the volume trigger, and the most a batch holds.
    pub threshold: usize,
    /// Time trigger, counted from the first element of the batch.
    pub timeout: Duration,
}

/// The elements taken for the next flush, oldest first, with the time the first of them arrived.
#[derive(Debug)]
pub struct Batch<T> {
    policy: FlushPolicy,
    items: Vec<T>,
    /// When the time trigger fires: `BATCH_TIMEOUT` after the first element arrived, or sooner if brought
    /// forward; `None` while the batch is empty.
    deadline: Option<Instant>,
}

impl<T> Batch<T> {
    /// An empty batch under `policy`.
    pub fn new(policy: FlushPolicy) -> Self {
        Self {
            policy,
            items: Vec::with_capacity(policy.threshold),
            deadline: None,
        }
    }

    /// Adds elements that arrived at `now`; the first element of an empty batch starts its timer.
    pub fn extend(&mut self, items: impl IntoIterator<Item = T>, now: Instant) {
        let before = self.items.len();
        self.items.extend(items);
        if before == 0 && !self.items.is_empty() {
            self.deadline = Some(now + self.policy.timeout);
        }
    }

    /// Moves the time trigger to `deadline` if that is sooner (a batch may be flushed early, never late);
    /// nothing while the batch is empty.
    pub fn bring_forward(&mut self, deadline: Instant) {
        if let Some(own) = &mut self.deadline {
            *own = (*own).min(deadline);
        }
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many more elements fit before the volume trigger fires.
    pub fn room(&self) -> usize {
        self.policy.threshold.saturating_sub(self.items.len())
    }

    /// When the time trigger fires; `None` while the batch is empty (an empty batch has no timer).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the batch must be flushed at `now`, and why. The volume trigger wins when both hold.
    pub fn should_flush(&self, now: Instant) -> Option<FlushReason> {
        if self.items.len() >= self.policy.threshold {
            Some(FlushReason::Size)
        } else if self.deadline().is_some_and(|deadline| now >= deadline) {
            Some(FlushReason::Timeout)
        } else {
            None
        }
    }

    /// Takes at most `threshold` of the oldest elements. The worker never adds more than [`Batch::room`], so
    /// this is the whole batch; should a caller add more, the elements left over keep the timer running,
    /// since they have waited at least that long.
    pub fn take(&mut self) -> Vec<T> {
        if self.items.len() <= self.policy.threshold {
            self.deadline = None;
            return std::mem::replace(&mut self.items, Vec::with_capacity(self.policy.threshold));
        }
        let rest = self.items.split_off(self.policy.threshold);
        std::mem::replace(&mut self.items, rest)
    }

    /// Forgets every element (they stay in the processing list and are recovered from there).
    pub fn clear(&mut self) {
        self.items.clear();
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_named_in_snake_case_and_all_listed() {
        use strum::VariantNames;
        let named: Vec<&str> = [
            FlushReason::Size,
            FlushReason::Timeout,
            FlushReason::Shutdown,
            FlushReason::Recovery,
        ]
        .into_iter()
        .map(FlushReason::as_str)
        .collect();
        assert_eq!(named, ["size", "timeout", "shutdown", "recovery"]);
        assert_eq!(FlushReason::VARIANTS, named);
    }

    fn policy(threshold: usize, timeout_ms: u64) -> FlushPolicy {
        FlushPolicy {
            threshold,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// Asserts that `batch`'s timer fires at `deadline` and not a millisecond before, advancing the paused
    /// clock to it.
    async fn times_out_at<T>(batch: &Batch<T>, deadline: Instant) {
        assert_eq!(batch.deadline(), Some(deadline));
        tokio::time::advance(deadline - Duration::from_millis(1) - Instant::now()).await;
        assert_eq!(batch.should_flush(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            batch.should_flush(Instant::now()),
            Some(FlushReason::Timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_batch_has_no_timer_and_never_flushes() {
        let batch = Batch::<u32>::new(policy(3, 100));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(batch.deadline(), None);
        assert_eq!(batch.should_flush(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_volume_trigger_fires_at_exactly_the_threshold() {
        let mut batch = Batch::new(policy(3, 100));
        batch.extend([1, 2], Instant::now());
        assert_eq!(batch.should_flush(Instant::now()), None);
        assert_eq!(batch.room(), 1);
        batch.extend([3], Instant::now());
        assert_eq!(batch.should_flush(Instant::now()), Some(FlushReason::Size));
        assert_eq!(batch.take(), vec![1, 2, 3]);
        assert!(batch.is_empty());
        assert_eq!(batch.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_trigger_fires_timeout_after_the_first_element() {
        let mut batch = Batch::new(policy(10, 100));
        let first = Instant::now();
        batch.extend([1], first);
        tokio::time::advance(Duration::from_millis(60)).await;
        // A later element does not push the deadline back.
        batch.extend([2], Instant::now());
        times_out_at(&batch, first + Duration::from_millis(100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_starts_at_the_first_message_not_at_the_last_flush() {
        let mut batch = Batch::new(policy(10, 100));
        batch.extend([1], Instant::now());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(
            batch.should_flush(Instant::now()),
            Some(FlushReason::Timeout)
        );
        assert_eq!(batch.take(), vec![1]);

        // Idle for much longer than the timeout after that flush…
        tokio::time::advance(Duration::from_millis(500)).await;
        let arrived = Instant::now();
        batch.extend([2], arrived);
        // …the new element still waits its full timeout.
        assert_eq!(batch.should_flush(Instant::now()), None);
        times_out_at(&batch, arrived + Duration::from_millis(100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_batch_is_taken_in_pieces_of_the_threshold_keeping_its_timer() {
        let mut batch = Batch::new(policy(2, 100));
        let start = Instant::now();
        batch.extend([1, 2, 3, 4, 5], start);
        assert_eq!(batch.take(), vec![1, 2]);
        assert_eq!(batch.deadline(), Some(start + Duration::from_millis(100)));
        assert_eq!(batch.take(), vec![3, 4]);
        assert_eq!(batch.take(), vec![5]);
        assert_eq!(batch.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_can_be_brought_forward_never_back_and_not_before_the_batch_starts() {
        let mut batch = Batch::new(policy(10, 100));
        let start = Instant::now();
        batch.bring_forward(start);
        assert_eq!(batch.deadline(), None, "an empty batch has no timer");
        batch.extend([1], start);
        batch.bring_forward(start + Duration::from_millis(150));
        assert_eq!(batch.deadline(), Some(start + Duration::from_millis(100)));
        batch.bring_forward(start + Duration::from_millis(40));
        batch.extend([2], start + Duration::from_millis(10));
        times_out_at(&batch, start + Duration::from_millis(40)).await;
        batch.take();
        assert_eq!(batch.deadline(), None);
    }

    #[test]
    fn reasons_have_the_metric_label_names() {
        let names: Vec<_> = [
            FlushReason::Size,
            FlushReason::Timeout,
            FlushReason::Shutdown,
            FlushReason::Recovery,
        ]
        .iter()
        .map(|r| r.to_string())
        .collect();
        assert_eq!(names, ["size", "timeout", "shutdown", "recovery"]);
    }
}
