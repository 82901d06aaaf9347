//! When to try the WebSocket again: the pipeline's capped exponential backoff ([`Backoff`]) with jitter, so
//! a notifier restart is not met by every open dashboard at the same instant.

use std::time::Duration;

use pipeline::backoff::Backoff;

/// First delay.
pub const BASE: Duration = Duration::from_millis(250);
/// Largest delay: a notifier that comes back is noticed within this (plus jitter).
pub const CAP: Duration = Duration::from_secs(8);
/// Jitter spreads each delay over ±this fraction.
pub const JITTER: f64 = 0.2;

/// The delays before jitter: from [`BASE`], doubling, up to [`CAP`].
const RECONNECT: Backoff = Backoff::new(BASE, CAP);

/// The delay before reconnection attempt `attempt` (0 for the first), given `random` in `0.0..1.0`.
pub fn delay(attempt: u32, random: f64) -> Duration {
    let capped = RECONNECT.delay(attempt);
    let factor = 1.0 + JITTER * (2.0 * random.clamp(0.0, 1.0) - 1.0);
    capped.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let middle: Vec<u128> = (0..8).map(|a| delay(a, 0.5).as_millis()).collect();
        assert_eq!(middle, [250, 500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(delay(u32::MAX, 0.5), CAP);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        assert_eq!(delay(0, 0.0).as_millis(), 200);
        assert_eq!(delay(0, 1.0).as_millis(), 300);
        assert_eq!(delay(5, 7.0), CAP.mul_f64(1.2));
    }
}
