//! The Redis ceiling: multi-value `LPUSH` with `redis-benchmark`, in list items per second.
//!
//! The values are copies of a real queued element, so Redis moves as many bytes per item as it does for
//! the ingestor. They go to a scratch key under the run's own prefix, deleted afterwards.

use std::time::Duration;

use anyhow::{Context, bail};

/// How `redis-benchmark` is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBenchmark {
    pub host: String,
    pub port: u16,
    pub key: String,
    /// `LPUSH` commands in all (`-n`).
    pub requests: u64,
    /// Parallel connections (`-c`).
    pub clients: u32,
    /// Commands in flight per connection (`-P`).
    pub pipeline: u32,
    /// Values per `LPUSH`.
    pub values: u32,
}

impl RedisBenchmark {
    /// The command line after the program name, with `value` repeated [`Self::values`] times.
    pub fn args(&self, value: &str) -> Vec<String> {
        let mut args = vec![
            "-h".to_owned(),
            self.host.clone(),
            "-p".to_owned(),
            self.port.to_string(),
            "-n".to_owned(),
            self.requests.to_string(),
            "-c".to_owned(),
            self.clients.to_string(),
            "-P".to_owned(),
            self.pipeline.to_string(),
            "--csv".to_owned(),
            "LPUSH".to_owned(),
            self.key.clone(),
        ];
        args.extend((0..self.values).map(|_| value.to_owned()));
        args
    }

    /// Runs it (at most `timeout`) and returns list items pushed per second.
    pub async fn items_per_second(&self, value: &str, timeout: Duration) -> anyhow::Result<f64> {
        let run = tokio::process::Command::new("redis-benchmark")
            .args(self.args(value))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(timeout, run)
            .await
            .with_context(|| format!("redis-benchmark did not finish within {timeout:?}"))?
            .context("Failed to run redis-benchmark (package redis-tools)")?;
        if !output.status.success() {
            bail!(
                "redis-benchmark failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let rps = parse_csv_rps(&String::from_utf8_lossy(&output.stdout))?;
        Ok(rps * f64::from(self.values))
    }
}

/// Requests per second from `redis-benchmark --csv` output: the `rps` column of the last data line.
///
/// The test name (first column) is the whole command line, values included, and is not escaped, so the
/// line is read from the right: the last seven columns are numbers, `rps` the first of them.
pub fn parse_csv_rps(output: &str) -> anyhow::Result<f64> {
    let line = output
        .lines()
        .rev()
        .find(|line| line.starts_with('"') && !line.starts_with("\"test\""))
        .context("no result line in redis-benchmark's output")?;
    let columns: Vec<&str> = line.rsplitn(8, ',').collect();
    // rsplitn yields from the right: 6 numbers after rps, then rps, then the name.
    let rps = columns
        .get(6)
        .filter(|_| columns.len() == 8)
        .with_context(|| format!("unexpected redis-benchmark line: {line:.200}"))?;
    let rps: f64 = rps
        .trim_matches('"')
        .parse()
        .with_context(|| format!("rps is not a number in: {line:.200}"))?;
    if rps > 0.0 {
        Ok(rps)
    } else {
        bail!("redis-benchmark reported {rps} requests/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_repeats_the_value_after_the_key() {
        let bench = RedisBenchmark {
            host: "127.0.0.1".into(),
            port: 6379,
            key: "{b}:scratch".into(),
            requests: 10,
            clients: 2,
            pipeline: 4,
            values: 3,
        };
        let args = bench.args("v");
        assert_eq!(
            args.join(" "),
            "-h 127.0.0.1 -p 6379 -n 10 -c 2 -P 4 --csv LPUSH {b}:scratch v v v"
        );
    }

    #[test]
    fn rps_is_read_from_the_csv_result_line() {
        let output = r#""test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"LPUSH {b}:scratch a b c","199999.98","0.110","0.032","0.119","0.159","0.183","0.183"
"#;
        assert_eq!(parse_csv_rps(output).unwrap(), 199_999.98);
    }

    #[test]
    fn commas_and_quotes_inside_the_values_do_not_confuse_the_parser() {
        let output = "\"test\",\"rps\",\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"\n\
            \"LPUSH k {\"user_id\":1,\"content\":\"a, b\"}\",\"12500.00\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n";
        assert_eq!(parse_csv_rps(output).unwrap(), 12_500.0);
    }

    #[test]
    fn missing_or_garbled_results_are_errors() {
        assert!(parse_csv_rps("").is_err());
        assert!(parse_csv_rps("\"test\",\"rps\"\n").is_err());
        assert!(parse_csv_rps("\"LPUSH k v\",\"x\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"").is_err());
        assert!(parse_csv_rps("\"LPUSH k v\",\"0\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"").is_err());
    }
}
