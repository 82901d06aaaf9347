//! Command line: `bench run` (the benchmark) and `bench ceiling-server` (the bare HTTP ceiling, spawned by
//! `run`). Every size and duration has a full-run default and a `--smoke` default, and any flag overrides
//! either; [`Plan`] is the resolved result.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Benchmark of the ingestion pipeline against its ceilings (run it through scripts/bench).
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the pipeline from built binaries, run the scenarios, print and write the report.
    Run(Box<RunArgs>),
    /// Serve the bare HTTP ceiling (axum JSON POST /messages, no I/O) until SIGTERM.
    CeilingServer {
        /// Loopback address to listen on.
        #[arg(long)]
        addr: SocketAddr,
    },
}

/// The parts of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Ceiling: bare axum JSON POST, same generator.
    HttpCeiling,
    /// Ceiling: multi-value LPUSH with redis-benchmark.
    RedisCeiling,
    /// Ceiling: psql \copy of the same rows into a scratch copy of `messages`.
    CopyCeiling,
    /// (1) single-message POST /messages, closed loop.
    Single,
    /// (2) POST /messages/batch, closed loop.
    Bulk,
    /// (3) POST /simulate, time until fully persisted.
    Simulate,
    /// (4) fixed-rate open-loop POST /messages, HTTP and creation→commit latency.
    Latency,
    /// (5) channel fan-out: WebSocket subscribers on /ws/channels, fixed-rate POST /messages/batch over their
    /// channels; deliveries/s, creation→delivered latency, notifier CPU and RSS.
    Fanout,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seconds-long run with tiny counts: proves every scenario works end to end.
    #[arg(long)]
    pub smoke: bool,
    /// Directory holding the built `ingestor`, `batcher` and `notifier`.
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: PathBuf,
    /// Redis (loopback). The run uses its own key prefix and deletes its keys at the end.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Seed nodes (`host:port`, comma-separated, loopback) of a Redis Cluster: the single-message, bulk and
    /// fan-out scenarios then run again on it, with `--queue-shards` shards, after the single-Redis ones, and
    /// each cluster throughput figure is shown as a ratio to the same run's single-Redis figure. Repeat the
    /// flag for several clusters (each gets its rows, in the order given). scripts/bench passes two unless
    /// given `--no-cluster`: 3 masters alone, and the 3 masters + 3 replicas of `scripts/cluster`.
    #[arg(long, env = "BENCH_CLUSTER_NODES", action = clap::ArgAction::Append)]
    pub cluster_nodes: Vec<String>,
    /// QUEUE_SHARDS of the services on the cluster.
    #[arg(long, default_value_t = 6)]
    pub queue_shards: u32,
    /// Any database on the PostgreSQL server (loopback); the run creates `bench_<random>` next to it and
    /// drops it at the end.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Where the Markdown report goes (its directory also gets `logs/` and the CSV of the COPY ceiling).
    #[arg(long, default_value = "target/bench/report.md")]
    pub out: PathBuf,
    /// Only these parts (comma-separated); ceilings missing from the run leave their ratios out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Scenario>,
    /// Keep the run's database (for looking at `batches` afterwards); its name is printed.
    #[arg(long)]
    pub keep_database: bool,
    /// RUST_LOG of the services under test (their logs go to `<out dir>/logs/`); `info` logs every flush
    /// of the batcher with its duration.
    #[arg(long, default_value = "warn")]
    pub service_log: String,
    /// The load generator's worker threads (it shares the machine with what it measures).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// BATCH_SIZE of the batcher under test. [default: 10000; smoke 1000]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// BATCH_TIMEOUT (seconds) of the batcher under test. [default: 0.05]
    #[arg(long)]
    pub batch_timeout: Option<f64>,
    /// MAX_QUEUE_DEPTH of the ingestor under test (backpressure); above the /simulate count so that one
    /// fits. [default: 2000000]
    #[arg(long)]
    pub max_queue_depth: Option<u64>,
    /// Keep-alive connections of the single-message load and the HTTP ceiling. [default: 64; smoke 8]
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds of single-message load (and of the HTTP ceiling). [default: 20; smoke 1]
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per POST /messages/batch. [default: 5000; smoke 100]
    #[arg(long)]
    pub bulk_size: Option<u64>,
    /// Connections of the bulk load. [default: 4; smoke 2]
    #[arg(long)]
    pub bulk_connections: Option<usize>,
    /// After the closed-loop bulk load, offer this fraction of the measured COPY ceiling in bulk, open
    /// loop, to show whether it is sustained (0 skips it). [default: 0.6]
    #[arg(long)]
    pub bulk_sustain: Option<f64>,
    /// Seconds of bulk load. [default: 20; smoke 1]
    #[arg(long)]
    pub bulk_duration: Option<f64>,
    /// Messages queued by POST /simulate (in requests of at most 1,000,000). [default: 1000000; smoke 5000]
    #[arg(long)]
    pub simulate_count: Option<u64>,
    /// Fixed rates (msg/s) of the latency scenario, comma-separated. [default: 10000,20000; smoke 200,500]
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Seconds per rate of the latency scenario. [default: 20; smoke 1]
    #[arg(long)]
    pub latency_duration: Option<f64>,
    /// WebSocket subscribers of the fan-out scenario, each on one channel (round-robin). [default: 1000;
    /// smoke 20]
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Channels the fan-out scenario's load and subscribers are spread over. [default: 100; smoke 4]
    #[arg(long)]
    pub channels: Option<u64>,
    /// Fixed rate (msg/s) of the fan-out scenario's load, for --duration seconds. [default: 20000;
    /// smoke 200]
    #[arg(long)]
    pub fanout_rate: Option<f64>,
    /// Messages per request of the fan-out scenario's load: POST /messages/batch of this many, open loop at
    /// --fanout-rate / N requests per second (1: single POST /messages). [default: 100; smoke 10]
    #[arg(long)]
    pub fanout_batch: Option<u64>,
    /// `LPUSH` commands redis-benchmark sends. [default: 10000; smoke 100]
    #[arg(long)]
    pub redis_requests: Option<u64>,
    /// Values per `LPUSH` in the Redis ceiling. [default: 100]
    #[arg(long)]
    pub redis_values: Option<u32>,
    /// Rows of the psql \copy ceiling. [default: 1000000; smoke 5000]
    #[arg(long)]
    pub copy_rows: Option<u64>,
    /// Longest wait (seconds) for a scenario's backlog to drain before it counts as failed. [default: 180; smoke 30]
    #[arg(long)]
    pub drain_timeout: Option<f64>,
}

/// Everything a run does, resolved from the flags and the preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub smoke: bool,
    pub scenarios: Vec<Scenario>,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub max_queue_depth: u64,
    pub connections: usize,
    pub duration: Duration,
    pub bulk_size: u64,
    pub bulk_connections: usize,
    pub bulk_sustain: f64,
    pub bulk_duration: Duration,
    pub simulate_count: u64,
    pub rates: Vec<f64>,
    pub latency_duration: Duration,
    pub subscribers: usize,
    pub channels: u64,
    pub fanout_rate: f64,
    pub fanout_batch: u64,
    pub redis_requests: u64,
    pub redis_values: u32,
    pub redis_clients: u32,
    pub redis_pipeline: u32,
    pub copy_rows: u64,
    pub drain_timeout: Duration,
    /// Each cluster's seeds (`host:port`); empty: no cluster rows.
    pub clusters: Vec<Vec<String>>,
    pub queue_shards: u32,
}

/// The full-run value, or the smoke one.
fn pick<T>(smoke: bool, full: T, small: T) -> T {
    if smoke { small } else { full }
}

impl Plan {
    /// The preset (full or smoke) with every given flag applied; errors name the flag.
    pub fn resolve(args: &RunArgs) -> Result<Self, String> {
        let smoke = args.smoke;
        let secs = |value: Option<f64>, full: f64, small: f64, flag: &str| {
            let s = value.unwrap_or(pick(smoke, full, small));
            if s.is_finite() && s > 0.0 && s <= 3600.0 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(format!("--{flag} must be a number of seconds in (0, 3600]"))
            }
        };
        let mut scenarios = if args.only.is_empty() {
            Scenario::value_variants().to_vec()
        } else {
            args.only.clone()
        };
        scenarios.sort();
        scenarios.dedup();
        let rates = if args.rates.is_empty() {
            pick(smoke, vec![10_000.0, 20_000.0], vec![200.0, 500.0])
        } else {
            args.rates.clone()
        };
        if rates
            .iter()
            .any(|r| !(r.is_finite() && *r > 0.0 && *r <= 1e6))
        {
            return Err("--rates must be positive msg/s, at most 1,000,000".into());
        }
        let fanout_rate = args.fanout_rate.unwrap_or(pick(smoke, 20_000.0, 200.0));
        if !(fanout_rate.is_finite() && fanout_rate > 0.0 && fanout_rate <= 1e6) {
            return Err("--fanout-rate must be positive msg/s, at most 1,000,000".into());
        }
        if args
            .bulk_sustain
            .is_some_and(|f| !(f.is_finite() && (0.0..=10.0).contains(&f)))
        {
            return Err(
                "--bulk-sustain must be a fraction of the COPY ceiling from 0 to 10".into(),
            );
        }
        let plan = Self {
            smoke,
            scenarios,
            batch_size: args.batch_size.unwrap_or(pick(smoke, 10_000, 1_000)),
            batch_timeout: secs(args.batch_timeout, 0.05, 0.05, "batch-timeout")?,
            max_queue_depth: args.max_queue_depth.unwrap_or(2_000_000),
            connections: args.connections.unwrap_or(pick(smoke, 64, 8)),
            duration: secs(args.duration, 20.0, 1.0, "duration")?,
            bulk_size: args.bulk_size.unwrap_or(pick(smoke, 5_000, 100)),
            bulk_connections: args.bulk_connections.unwrap_or(pick(smoke, 4, 2)),
            bulk_sustain: args.bulk_sustain.unwrap_or(0.6),
            bulk_duration: secs(args.bulk_duration, 20.0, 1.0, "bulk-duration")?,
            simulate_count: args.simulate_count.unwrap_or(pick(smoke, 1_000_000, 5_000)),
            rates,
            latency_duration: secs(args.latency_duration, 20.0, 1.0, "latency-duration")?,
            subscribers: args.subscribers.unwrap_or(pick(smoke, 1_000, 20)),
            channels: args.channels.unwrap_or(pick(smoke, 100, 4)),
            fanout_rate,
            fanout_batch: args.fanout_batch.unwrap_or(pick(smoke, 100, 10)),
            redis_requests: args.redis_requests.unwrap_or(pick(smoke, 10_000, 100)),
            redis_values: args.redis_values.unwrap_or(100),
            redis_clients: pick(smoke, 50, 4),
            redis_pipeline: pick(smoke, 16, 4),
            copy_rows: args.copy_rows.unwrap_or(pick(smoke, 1_000_000, 5_000)),
            drain_timeout: secs(args.drain_timeout, 180.0, 30.0, "drain-timeout")?,
            clusters: args
                .cluster_nodes
                .iter()
                .map(|seeds| {
                    seeds
                        .split(',')
                        .map(|node| node.trim().to_owned())
                        .filter(|node| !node.is_empty())
                        .collect::<Vec<_>>()
                })
                .filter(|seeds| !seeds.is_empty())
                .collect(),
            queue_shards: args.queue_shards,
        };
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), String> {
        let within = |value: u64, low: u64, high: u64, flag: &str| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(format!("--{flag} must be from {low} to {high}"))
            }
        };
        within(
            self.batch_size as u64,
            1,
            pipeline::config::MAX_BATCH_SIZE as u64,
            "batch-size",
        )?;
        within(self.max_queue_depth, 1, 1_000_000_000, "max-queue-depth")?;
        within(self.connections as u64, 1, 1024, "connections")?;
        within(self.bulk_size, 1, 10_000, "bulk-size")?;
        within(self.bulk_connections as u64, 1, 64, "bulk-connections")?;
        within(self.simulate_count, 1, 100_000_000, "simulate-count")?;
        within(self.subscribers as u64, 1, MAX_SUBSCRIBERS, "subscribers")?;
        within(self.channels, 1, 100_000, "channels")?;
        within(self.fanout_batch, 1, 10_000, "fanout-batch")?;
        within(self.redis_requests, 1, 1_000_000, "redis-requests")?;
        within(u64::from(self.redis_values), 1, 10_000, "redis-values")?;
        within(
            u64::from(self.queue_shards),
            1,
            u64::from(pipeline::config::MAX_QUEUE_SHARDS),
            "queue-shards",
        )?;
        if let Some(node) = self
            .clusters
            .iter()
            .flatten()
            .find(|node| !is_loopback_node(node))
        {
            return Err(format!(
                "--cluster-nodes: {node} is not a loopback host:port (the benchmark only loads this machine)"
            ));
        }
        within(self.copy_rows, 1, 100_000_000, "copy-rows")
    }

    /// `MAX_WS_CLIENTS` of the notifier under test: the fan-out subscribers, `/ws/stats` and some room.
    pub fn max_ws_clients(&self) -> u32 {
        self.subscribers as u32 + 64
    }

    /// Whether the cluster part runs: seeds given and a scenario it repeats planned.
    pub fn cluster_part(&self) -> bool {
        !self.clusters.is_empty() && self.scenarios.iter().any(|s| CLUSTER_SCENARIOS.contains(s))
    }
}

/// The most fan-out subscribers: each is a socket on both ends, within this process's and the notifier's
/// open-file limits (scripts/bench's environment has 20,000).
pub const MAX_SUBSCRIBERS: u64 = 5_000;

/// The scenarios the cluster part runs again on the cluster.
pub const CLUSTER_SCENARIOS: [Scenario; 3] = [Scenario::Single, Scenario::Bulk, Scenario::Fanout];

/// `127.0.0.1:7100`, `localhost:7100`, `[::1]:7100`, or the same as a `redis://` URL.
fn is_loopback_node(node: &str) -> bool {
    let address = node.rsplit_once("://").map_or(node, |(_, rest)| rest);
    let address = address.rsplit_once('@').map_or(address, |(_, rest)| rest);
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["bench", "run", "--bin-dir", "/x"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_full_preset_matches_the_issue() {
        let plan = Plan::resolve(&args(&[])).unwrap();
        assert!(!plan.smoke);
        assert_eq!(plan.connections, 64);
        assert_eq!(plan.simulate_count, 1_000_000);
        assert_eq!(plan.rates, [10_000.0, 20_000.0]);
        assert_eq!(
            (
                plan.subscribers,
                plan.channels,
                plan.fanout_rate,
                plan.fanout_batch
            ),
            (1_000, 100, 20_000.0, 100)
        );
        assert!(plan.scenarios.contains(&Scenario::Fanout));
        assert_eq!(plan.scenarios.len(), Scenario::value_variants().len());
    }

    #[test]
    fn smoke_is_small_and_flags_override_either_preset() {
        let plan = Plan::resolve(&args(&["--smoke", "--simulate-count", "777"])).unwrap();
        assert!(plan.smoke);
        assert_eq!(plan.duration, Duration::from_secs(1));
        assert_eq!(plan.simulate_count, 777);
        assert!(plan.copy_rows <= 10_000);
        assert!(plan.scenarios.contains(&Scenario::Fanout));
        assert_eq!((plan.subscribers, plan.channels), (20, 4));

        let plan = Plan::resolve(&args(&["--rates", "5000,1000", "--duration", "2.5"])).unwrap();
        assert_eq!(plan.rates, [5_000.0, 1_000.0]);
        assert_eq!(plan.duration, Duration::from_millis(2_500));
    }

    #[test]
    fn only_keeps_the_run_order() {
        let plan = Plan::resolve(&args(&["--only", "latency,single,latency"])).unwrap();
        assert_eq!(plan.scenarios, [Scenario::Single, Scenario::Latency]);
    }

    #[test]
    fn the_cluster_part_needs_loopback_seeds_and_a_scenario_it_repeats() {
        let plan = Plan::resolve(&args(&[])).unwrap();
        assert!(plan.clusters.is_empty());
        assert!(!plan.cluster_part());

        let seeds = "127.0.0.1:7100, 127.0.0.1:7101,redis://localhost:7102";
        let plan = Plan::resolve(&args(&["--cluster-nodes", seeds])).unwrap();
        assert_eq!(
            plan.clusters,
            [["127.0.0.1:7100", "127.0.0.1:7101", "redis://localhost:7102"]]
        );
        let two = [
            "--cluster-nodes",
            "127.0.0.1:7200",
            "--cluster-nodes",
            seeds,
        ];
        let plan = Plan::resolve(&args(&two)).unwrap();
        assert_eq!(plan.clusters.len(), 2);
        assert_eq!(plan.clusters[0], ["127.0.0.1:7200"]);
        assert_eq!(plan.queue_shards, 6);
        assert!(plan.cluster_part());

        let only_latency = ["--cluster-nodes", seeds, "--only", "latency"];
        assert!(!Plan::resolve(&args(&only_latency)).unwrap().cluster_part());

        let error =
            Plan::resolve(&args(&["--cluster-nodes", "127.0.0.1:7100,10.0.0.5:7100"])).unwrap_err();
        assert!(error.contains("--cluster-nodes: 10.0.0.5:7100"), "{error}");
        let error = Plan::resolve(&args(&["--cluster-nodes", "127.0.0.1"])).unwrap_err();
        assert!(error.contains("--cluster-nodes"), "{error}");
        let error = Plan::resolve(&args(&["--queue-shards", "0"])).unwrap_err();
        assert!(error.contains("--queue-shards"), "{error}");
    }

    #[test]
    fn out_of_range_values_name_their_flag() {
        let error = Plan::resolve(&args(&["--bulk-size", "10001"])).unwrap_err();
        assert!(error.contains("--bulk-size"), "{error}");
        let error = Plan::resolve(&args(&["--duration", "0"])).unwrap_err();
        assert!(error.contains("--duration"), "{error}");
        let error = Plan::resolve(&args(&["--rates=-1"])).unwrap_err();
        assert!(error.contains("--rates"), "{error}");
        let error = Plan::resolve(&args(&["--subscribers", "0"])).unwrap_err();
        assert!(error.contains("--subscribers"), "{error}");
        let error = Plan::resolve(&args(&["--fanout-rate", "0"])).unwrap_err();
        assert!(error.contains("--fanout-rate"), "{error}");
        let error = Plan::resolve(&args(&["--fanout-batch", "0"])).unwrap_err();
        assert!(error.contains("--fanout-batch"), "{error}");
    }
}
