//! Capped exponential backoff between retries of a batch that PostgreSQL or Redis could not take.
//!
//! A batch is never dropped for a transient error, so retries go on for as long as it takes; the cap keeps
//! the batcher polling a recovered database within [`MAX_DELAY`], and the doubling keeps a down database
//! from being hammered.

use std::time::Duration;

pub use pipeline::backoff::Backoff;

/// First delay after a failure.
pub const MIN_DELAY: Duration = Duration::from_millis(50);
/// Largest delay between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The batcher's retry backoff: 50 ms, 100 ms, 200 ms, … doubling up to 5 s.
pub fn retry_backoff() -> Backoff {
    Backoff::new(MIN_DELAY, MAX_DELAY)
}
