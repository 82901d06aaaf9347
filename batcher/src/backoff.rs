//! Capped exponential backoff between retries of a batch that PostgreSQL or Redis could not take.
//!
//! A batch is never dropped for a transient error, so retries go on for as long as it takes; the cap keeps
//! the batcher polling a recovered database within [`MAX_DELAY`], and the doubling keeps a down database
//! from being hammered.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// First delay after a failure.
pub const MIN_DELAY: Duration = Duration::from_millis(50);
/// Largest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Delays 50 ms, 100 ms, 200 ms, … doubling up to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: MIN_DELAY }
    }
}

impl Backoff {
    /// The delay to wait now; the one after it is twice as long, up to [`MAX_DELAY`].
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }

    /// Back to [`MIN_DELAY`] after a success.
    pub fn reset(&mut self) {
        self.next = MIN_DELAY;
    }
}

/// Sleeps `delay`; `false` if `stop` was cancelled first (the retry loops' one way to wait).
pub async fn pause(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stop.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_50_ms_up_to_a_5_s_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), MIN_DELAY);
    }
}
