//! Is a load sustained? It is when the backlog (`queue_depth`) stops growing: the batcher persists as fast
//! as the ingestor accepts. Judged on the slope of the backlog over the second half of the load, once the
//! pipeline has reached its steady state.

/// A backlog sample: seconds since the load started, and `queue_depth` then.
pub type Point = (f64, f64);

/// Growth below this fraction of the accepted rate is noise (a batch-sized sawtooth), not a trend.
const TOLERANCE: f64 = 0.05;

/// What the backlog did while the load ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backlog {
    /// It did not grow: sustained.
    Steady,
    /// It grew by this many messages per second: the pipeline persists slower than it accepts.
    Growing(f64),
    /// Too few samples to say (a load shorter than a second).
    Unknown,
}

/// Least-squares slope of `points` (per second), or `None` with fewer than two distinct times.
pub fn slope(points: &[Point]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Judges the backlog from samples taken during a load of `load_secs` that accepted `accepted_rate` msg/s.
pub fn judge(points: &[Point], load_secs: f64, accepted_rate: f64) -> Backlog {
    let second_half: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.0 >= load_secs / 2.0 && p.0 <= load_secs)
        .collect();
    if second_half.len() < 3 {
        return Backlog::Unknown;
    }
    match slope(&second_half) {
        Some(growth) if growth > TOLERANCE * accepted_rate => Backlog::Growing(growth),
        Some(_) => Backlog::Steady,
        None => Backlog::Unknown,
    }
}

/// A load is sustained when the backlog did not grow, nothing was refused, and what was left when the
/// load stopped drained within `allowance` (a flush or two): anything else means the pipeline persists
/// slower than it accepted, even if backpressure (429) kept the backlog flat at its cap.
pub fn verdict(
    backlog: Backlog,
    failed_requests: u64,
    drain_secs: f64,
    allowance_secs: f64,
) -> String {
    let mut why = Vec::new();
    if let Backlog::Growing(growth) = backlog {
        why.push(format!(
            "backlog grew {} msg/s",
            crate::report::rate(growth)
        ));
    }
    if failed_requests > 0 {
        why.push(format!("{failed_requests} requests refused or failed"));
    }
    if drain_secs > allowance_secs {
        why.push(format!("{drain_secs:.1} s to drain after the load"));
    }
    match (why.is_empty(), backlog) {
        (true, Backlog::Unknown) => String::new(),
        (true, _) => "sustained".into(),
        (false, _) => format!("NOT sustained: {}", why.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sustained_needs_a_flat_backlog_no_refusals_and_a_quick_drain() {
        assert_eq!(verdict(Backlog::Steady, 0, 0.2, 1.1), "sustained");
        assert_eq!(verdict(Backlog::Unknown, 0, 0.2, 1.1), "");
        assert_eq!(
            verdict(Backlog::Steady, 12, 7.14, 1.1),
            "NOT sustained: 12 requests refused or failed, 7.1 s to drain after the load"
        );
        assert_eq!(
            verdict(Backlog::Growing(30_158.0), 0, 30.0, 1.1),
            "NOT sustained: backlog grew 30,158 msg/s, 30.0 s to drain after the load"
        );
    }

    #[test]
    fn slope_of_a_line_is_exact() {
        let points: Vec<Point> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((slope(&points).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), None);
    }

    #[test]
    fn a_batch_sized_sawtooth_is_steady() {
        // 40k msg/s in, batches of 5,000 out: the backlog saws between 0 and 5,000 every 125 ms.
        let points: Vec<Point> = (0..80)
            .map(|i| {
                let t = i as f64 * 0.25;
                (t, ((t * 40_000.0) % 5_000.0).round())
            })
            .collect();
        assert_eq!(judge(&points, 20.0, 40_000.0), Backlog::Steady);
    }

    #[test]
    fn a_backlog_growing_in_the_second_half_is_reported_with_its_rate() {
        // Steady for 10 s, then 10k msg/s more in than out.
        let points: Vec<Point> = (0..=80)
            .map(|i| {
                let t = i as f64 * 0.25;
                (
                    t,
                    if t < 10.0 {
                        100.0
                    } else {
                        100.0 + (t - 10.0) * 10_000.0
                    },
                )
            })
            .collect();
        match judge(&points, 20.0, 40_000.0) {
            Backlog::Growing(rate) => assert!((rate - 10_000.0).abs() < 1.0, "{rate}"),
            other => panic!("expected growth, got {other:?}"),
        }
    }

    #[test]
    fn samples_after_the_load_do_not_count_and_too_few_say_nothing() {
        let points = [(0.6, 0.0), (0.8, 0.0), (1.0, 0.0), (2.0, 1e9)];
        assert_eq!(judge(&points, 1.0, 1_000.0), Backlog::Steady);
        assert_eq!(judge(&points[..2], 1.0, 1_000.0), Backlog::Unknown);
    }
}
