//! `messages_per_second`: the change of the persisted total over a sliding window of samples.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Most samples kept, whatever the sampling rate: the window is bounded in time AND in memory.
const MAX_SAMPLES: usize = 64;

/// Samples of a growing total; the rate is measured between the newest sample and the oldest one in the window.
///
/// One sample at or just before the window's start is kept as the baseline, so a steady rate reads the same
/// whether the window holds two samples or twenty.
#[derive(Debug)]
pub(crate) struct RateWindow {
    span: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// A window over the last `span`.
    pub(crate) fn new(span: Duration) -> Self {
        Self {
            span,
            samples: VecDeque::with_capacity(MAX_SAMPLES),
        }
    }

    /// Records `total` as seen at `at` (not earlier than the previous sample) and returns the rate per second.
    pub(crate) fn record(&mut self, at: Instant, total: u64) -> f64 {
        // The totals only fall when the pipeline was reset; a rate across that would be meaningless.
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            self.samples.clear();
        }
        self.samples.push_back((at, total));
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= self.span)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, v0)), Some(&(t1, v1))) => {
                let seconds = t1.duration_since(t0).as_secs_f64();
                if seconds > 0.0 {
                    v1.saturating_sub(v0) as f64 / seconds
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(500);

    /// Feeds `totals`, one per tick from `start`, and returns the last rate.
    fn feed(window: &mut RateWindow, start: Instant, totals: &[u64]) -> f64 {
        let mut rate = 0.0;
        for (i, &total) in totals.iter().enumerate() {
            rate = window.record(start + TICK * u32::try_from(i).unwrap(), total);
        }
        rate
    }

    #[test]
    fn a_single_sample_has_no_rate() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        assert_eq!(window.record(Instant::now(), 1000), 0.0);
    }

    #[test]
    fn a_steady_flow_reads_as_its_rate() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        // 50 messages per 500 ms tick = 100/s, for 20 s.
        let totals: Vec<u64> = (0..40).map(|i| i * 50).collect();
        assert!((feed(&mut window, Instant::now(), &totals) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_covers_only_the_last_five_seconds() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        // A burst of 1000 at the start, then nothing for 6 s: the burst has left the window.
        let mut totals = vec![0, 1000];
        totals.extend(std::iter::repeat_n(1000, 12));
        assert_eq!(feed(&mut window, Instant::now(), &totals), 0.0);
    }

    #[test]
    fn a_burst_inside_the_window_is_averaged_over_it() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        // Idle for 10 s, then +500 in the last tick: 500 over the 5 s window.
        let mut totals = vec![0; 21];
        totals.push(500);
        assert!((feed(&mut window, Instant::now(), &totals) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_reset_of_the_totals_never_gives_a_negative_rate() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        let start = Instant::now();
        feed(&mut window, start, &[0, 100, 200]);
        assert_eq!(window.record(start + TICK * 3, 0), 0.0);
        assert!((window.record(start + TICK * 4, 50) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn memory_stays_bounded_however_fast_samples_come() {
        let mut window = RateWindow::new(Duration::from_secs(5));
        let start = Instant::now();
        for i in 0..10_000u32 {
            window.record(start + Duration::from_micros(u64::from(i)), u64::from(i));
        }
        assert!(window.samples.len() <= MAX_SAMPLES);
    }
}
