//! The open-loop schedule: request `i` is due at `start + i / rate`, whatever happened to the others.
//!
//! Latency is measured from the due time, not from when the request actually left, so a stalled server
//! is charged for every request it kept waiting (no coordinated omission, as in wrk2).

use std::time::{Duration, Instant};

/// How early a request may leave. Tokio's timer fires on a 1 ms tick at or after the deadline, so a task
/// sleeps until 1 ms before the due time and sends at once; latency then counts from the actual send, so
/// leaving early never flatters the figure, and the rate stays the scheduled one.
pub const EARLY: Duration = Duration::from_millis(1);

/// A fixed rate for a fixed number of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Requests per second.
    rate: f64,
    total: u64,
}

impl Schedule {
    /// `rate` requests per second for `duration` (at least one request).
    pub fn new(rate: f64, duration: Duration) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        let total = ((rate * duration.as_secs_f64()).floor() as u64).max(1);
        Self { rate, total }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// When request `index` is due, from the start.
    pub fn due(&self, index: u64) -> Duration {
        Duration::from_nanos((index as f64 * 1e9 / self.rate).round() as u64)
    }

    /// When the task holding request `index` should wake up to send it.
    pub fn wake(&self, index: u64) -> Duration {
        self.due(index).saturating_sub(EARLY)
    }
}

/// The latency of one open-loop request: from its due time, or from when it was sent if it left early.
pub fn latency(due: Instant, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(due.min(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spread_evenly_over_the_duration() {
        let schedule = Schedule::new(20_000.0, Duration::from_secs(3));
        assert_eq!(schedule.total(), 60_000);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_micros(50));
        assert_eq!(schedule.due(20_000), Duration::from_secs(1));
        assert_eq!(schedule.due(59_999), Duration::from_micros(2_999_950));
        assert_eq!(schedule.wake(20_000), Duration::from_millis(999));
        assert_eq!(schedule.wake(1), Duration::ZERO, "never before the start");
    }

    #[test]
    fn a_short_slow_run_still_sends_one_request() {
        let schedule = Schedule::new(0.5, Duration::from_secs(1));
        assert_eq!(schedule.total(), 1);
    }

    #[test]
    fn latency_counts_from_the_due_time_when_late_and_from_the_send_when_early() {
        let due = Instant::now();
        let ms = Duration::from_millis;
        // Sent 5 ms late (the connection was busy), answered 1 ms later: 6 ms.
        assert_eq!(latency(due, due + ms(5), due + ms(6)), ms(6));
        // Sent 1 ms early, answered 2 ms after sending: 2 ms, not 1.
        let early = due.checked_sub(ms(1)).unwrap();
        assert_eq!(latency(due, early, due + ms(1)), ms(2));
    }
}
