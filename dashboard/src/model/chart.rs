//! Geometry of the throughput chart: SVG path data from the points, on a scale with a round maximum.
//!
//! The right edge is the newest point and the chart spans [`Throughput::WINDOW_MS`], so it scrolls left by
//! itself as points arrive.

use super::{
    format::fixed,
    throughput::{Point, Throughput},
};

/// Width and height of the SVG's `viewBox`; the SVG is scaled to its box with CSS.
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 160.0;

/// The smallest "round" number (1, 2 or 5 × 10ⁿ) ≥ `value`, and at least 10: the top of the y axis.
pub fn nice_max(value: f64) -> f64 {
    if !value.is_finite() || value <= 10.0 {
        return 10.0;
    }
    // Powers of ten by multiplication: `powf` would pull in libm's pow.
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= value {
        magnitude *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&top| top >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Everything the chart draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPaths {
    /// Line of accepted msg/s.
    pub accepted: String,
    /// Line of persisted msg/s.
    pub persisted: String,
    /// The area under the persisted line, closed along the bottom.
    pub persisted_area: String,
    /// The rate at the top of the y axis.
    pub y_max: f64,
}

/// Paths for `points` (oldest first); empty paths when there are fewer than two points.
pub fn paths(points: &[Point]) -> ChartPaths {
    let y_max = nice_max(
        points
            .iter()
            .map(|p| p.accepted.max(p.persisted))
            .fold(0.0, f64::max),
    );
    let Some(newest) = points.last().map(|p| p.at_ms) else {
        return ChartPaths {
            accepted: String::new(),
            persisted: String::new(),
            persisted_area: String::new(),
            y_max,
        };
    };
    let start = newest - Throughput::WINDOW_MS;
    let x = |at_ms: f64| ((at_ms - start) / Throughput::WINDOW_MS * WIDTH).clamp(0.0, WIDTH);
    let y = |rate: f64| HEIGHT - (rate / y_max * HEIGHT).clamp(0.0, HEIGHT);
    let line = |rate: fn(&Point) -> f64| {
        if points.len() < 2 {
            return String::new();
        }
        let mut d = String::with_capacity(points.len() * 16);
        for (i, point) in points.iter().enumerate() {
            let command = if i == 0 { 'M' } else { 'L' };
            d.push_str(&format!(
                "{command}{},{}",
                fixed(x(point.at_ms), 1),
                fixed(y(rate(point)), 1)
            ));
        }
        d
    };
    let persisted = line(|p| p.persisted);
    let persisted_area = if persisted.is_empty() {
        String::new()
    } else {
        let bottom = fixed(HEIGHT, 1);
        format!(
            "{persisted}L{},{bottom}L{},{bottom}Z",
            fixed(x(newest), 1),
            fixed(x(points[0].at_ms), 1)
        )
    };
    ChartPaths {
        accepted: line(|p| p.accepted),
        persisted,
        persisted_area,
        y_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_top_is_a_round_number() {
        assert_eq!(nice_max(0.0), 10.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(10.5), 20.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(499.0), 500.0);
        assert_eq!(nice_max(500.0), 500.0);
        assert_eq!(nice_max(501.0), 1_000.0);
        assert_eq!(nice_max(41_000.0), 50_000.0);
        assert_eq!(nice_max(f64::INFINITY), 10.0);
    }

    #[test]
    fn fewer_than_two_points_draw_nothing() {
        assert_eq!(paths(&[]).accepted, "");
        let one = [Point {
            at_ms: 5.0,
            accepted: 1.0,
            persisted: 1.0,
        }];
        assert_eq!(paths(&one).persisted_area, "");
    }

    #[test]
    fn points_are_placed_from_the_right_edge_and_scaled_to_the_top() {
        let points = [
            Point {
                at_ms: Throughput::WINDOW_MS - 1_000.0 * 90.0,
                accepted: 100.0,
                persisted: 0.0,
            },
            Point {
                at_ms: Throughput::WINDOW_MS,
                accepted: 50.0,
                persisted: 100.0,
            },
        ];
        let drawn = paths(&points);
        assert_eq!(drawn.y_max, 100.0);
        assert_eq!(drawn.accepted, "M300.0,0.0L600.0,80.0");
        assert_eq!(drawn.persisted, "M300.0,160.0L600.0,0.0");
        assert_eq!(
            drawn.persisted_area,
            "M300.0,160.0L600.0,0.0L600.0,160.0L300.0,160.0Z"
        );
    }
}
