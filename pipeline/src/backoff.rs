//! Capped exponential backoff between retries, the one implementation behind the batcher's retries, the
//! notifier's relay reconnects, the ingestor's schema retries and the dashboard's WebSocket reconnects. Pure
//! and wasm-safe.

use std::time::Duration;

/// Delays `first`, `2 × first`, `4 × first`, … up to `cap`; back to `first` after [`Backoff::reset`].
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// Starts at `first` and doubles up to `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            attempt: 0,
        }
    }

    /// The delay before retry `attempt` (0 for the first): `first × 2^attempt`, at most `cap`. For callers
    /// that count their attempts themselves (the dashboard, which adds jitter).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(2_u32.saturating_pow(attempt))
            .min(self.cap)
    }

    /// The delay to wait now; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_to_the_first() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let delays: Vec<u128> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(50));
    }

    #[test]
    fn the_delay_of_an_attempt_is_the_one_next_delay_hands_out_then() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
        let mut counting = backoff.clone();
        for attempt in 0..12 {
            assert_eq!(backoff.delay(attempt), counting.next_delay(), "{attempt}");
        }
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(8));
    }
}
