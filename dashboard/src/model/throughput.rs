//! Throughput over the last minutes, sampled from `stats_update`s into a ring buffer.
//!
//! - **persisted**: rows committed per second, from the change of `total_messages`;
//! - **accepted**: messages entering the pipeline per second, from the change of
//!   `total_messages + queue_depth + dead_letters` (whatever entered is either persisted, still queued, or a
//!   dead letter), so no extra counter is needed from the services.

use std::collections::VecDeque;

use pipeline::events::Stats;

/// One point of the chart: rates over the second before `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at_ms: f64,
    pub accepted: f64,
    pub persisted: f64,
}

/// Running totals at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals {
    at_ms: f64,
    accepted: u64,
    persisted: u64,
}

/// The ring buffer of points, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    points: VecDeque<Point>,
    last: Option<Totals>,
}

impl Throughput {
    /// One point per this many milliseconds at most (stats arrive every 500 ms).
    pub const RESOLUTION_MS: f64 = 1_000.0;
    /// Points kept: three minutes at one per second.
    pub const CAPACITY: usize = 180;
    /// The time span the chart shows.
    pub const WINDOW_MS: f64 = Self::RESOLUTION_MS * Self::CAPACITY as f64;

    /// Takes one `stats_update` received at `at_ms`; adds a point when a resolution step has passed.
    pub fn observe(&mut self, at_ms: f64, stats: &Stats) {
        let now = Totals {
            at_ms,
            accepted: stats.total_messages + stats.queue_depth + stats.dead_letters,
            persisted: stats.total_messages,
        };
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        let elapsed_ms = at_ms - last.at_ms;
        if elapsed_ms < Self::RESOLUTION_MS {
            return;
        }
        let per_second = |later: u64, earlier: u64| {
            // A reset makes the totals drop: that second counts as zero, not as a negative rate.
            later.saturating_sub(earlier) as f64 * 1_000.0 / elapsed_ms
        };
        self.push(Point {
            at_ms,
            accepted: per_second(now.accepted, last.accepted),
            persisted: per_second(now.persisted, last.persisted),
        });
        self.last = Some(now);
    }

    fn push(&mut self, point: Point) {
        if self.points.len() == Self::CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Points, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = &Point> {
        self.points.iter()
    }

    /// The newest point.
    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }

    /// The highest rate (either series) in the buffer.
    pub fn peak(&self) -> f64 {
        self.points
            .iter()
            .map(|point| point.accepted.max(point.persisted))
            .fold(0.0, f64::max)
    }

    /// Starts over (after a reset).
    pub fn clear(&mut self) {
        self.points.clear();
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(total: u64, queued: u64) -> Stats {
        Stats {
            total_messages: total,
            queue_depth: queued,
            ..Stats::default()
        }
    }

    #[test]
    fn rates_come_from_the_change_of_the_totals() {
        let mut throughput = Throughput::default();
        throughput.observe(0.0, &stats(0, 0));
        throughput.observe(500.0, &stats(10, 90)); // too soon for a point
        assert_eq!(throughput.points().len(), 0);
        throughput.observe(1_000.0, &stats(50, 70));
        throughput.observe(3_000.0, &stats(150, 0));
        let points: Vec<Point> = throughput.points().copied().collect();
        assert_eq!(
            points,
            [
                Point {
                    at_ms: 1_000.0,
                    accepted: 120.0,
                    persisted: 50.0
                },
                Point {
                    at_ms: 3_000.0,
                    accepted: 15.0,
                    persisted: 50.0
                },
            ]
        );
        assert_eq!(throughput.peak(), 120.0);
    }

    #[test]
    fn a_reset_counts_as_zero_not_negative() {
        let mut throughput = Throughput::default();
        throughput.observe(0.0, &stats(500, 10));
        throughput.observe(1_000.0, &stats(0, 0));
        let point = throughput.latest().unwrap();
        assert_eq!((point.accepted, point.persisted), (0.0, 0.0));
    }

    #[test]
    fn the_buffer_keeps_the_last_three_minutes() {
        let mut throughput = Throughput::default();
        for second in 0..1_000_u64 {
            throughput.observe(second as f64 * 1_000.0, &stats(second, 0));
        }
        assert_eq!(throughput.points().len(), Throughput::CAPACITY);
        assert_eq!(throughput.latest().unwrap().at_ms, 999_000.0);
        throughput.clear();
        assert_eq!(throughput.points().len(), 0);
    }
}
