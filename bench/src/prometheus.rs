//! Reading a service's own `/metrics` (Prometheus text format): the batcher's flush timings tell whether
//! persisting (the flush) or taking from Redis (the fill) is what limits a scenario.

use std::net::SocketAddr;

use anyhow::bail;

use crate::client::Connection;

/// The `/metrics` text of the service at `addr`.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let answer = Connection::new(addr).get("/metrics").await?;
    if !answer.status.is_success() {
        bail!("GET /metrics on {addr}: {}", answer.status);
    }
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}

/// The sum over every series of metric `name` (any labels), or `None` if it has none.
pub fn value(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `x_sum` must not match `x_sum_total`.
        let rest = match rest.chars().next() {
            Some('{') => rest.split_once('}').map_or("", |(_, after)| after),
            Some(' ') => rest,
            _ => continue,
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The batcher's flush counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flushes {
    pub count: f64,
    /// Seconds spent flushing (decode, COPY, commit, clear, publish).
    pub seconds: f64,
}

impl Flushes {
    pub fn read(text: &str) -> Self {
        Self {
            count: value(text, "batcher_flush_duration_seconds_count").unwrap_or(0.0),
            seconds: value(text, "batcher_flush_duration_seconds_sum").unwrap_or(0.0),
        }
    }

    /// `flush avg 82 ms, flushing 95% of the time` for the flushes between `self` and `later`, over
    /// `wall` seconds, by a batcher of `shards` shards (whose workers each have a flush of their own in
    /// flight: the share is per shard); nothing if there were none.
    pub fn describe_until(&self, later: &Flushes, wall: f64, shards: u32) -> String {
        let count = later.count - self.count;
        let seconds = later.seconds - self.seconds;
        if count < 1.0 || wall <= 0.0 {
            return String::new();
        }
        let share = 100.0 * seconds / wall / f64::from(shards.max(1));
        let per_shard = if shards > 1 { " per shard" } else { "" };
        format!(
            "flush avg {:.0} ms, flushing {share:.0}% of the time{per_shard}",
            1000.0 * seconds / count,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE batcher_flush_duration_seconds summary
batcher_flush_duration_seconds{quantile=\"0.5\"} 0.08
batcher_flush_duration_seconds_sum 12.5
batcher_flush_duration_seconds_count 150
batcher_flushes_total{reason=\"size\"} 100
batcher_flushes_total{reason=\"timeout\"} 50
batcher_flushes_total_extra 7
";

    #[test]
    fn values_are_summed_over_labels_and_names_match_exactly() {
        assert_eq!(value(TEXT, "batcher_flushes_total"), Some(150.0));
        assert_eq!(
            value(TEXT, "batcher_flush_duration_seconds_sum"),
            Some(12.5)
        );
        assert_eq!(value(TEXT, "batcher_flush_duration_seconds"), Some(0.08));
        assert_eq!(value(TEXT, "absent"), None);
    }

    #[test]
    fn flush_share_is_computed_between_two_readings() {
        let before = Flushes::default();
        let after = Flushes::read(TEXT);
        assert_eq!(
            after,
            Flushes {
                count: 150.0,
                seconds: 12.5
            }
        );
        assert_eq!(
            before.describe_until(&after, 25.0, 1),
            "flush avg 83 ms, flushing 50% of the time"
        );
        assert_eq!(
            before.describe_until(&after, 5.0, 4),
            "flush avg 83 ms, flushing 62% of the time per shard"
        );
        assert_eq!(after.describe_until(&after, 25.0, 1), "");
    }
}
