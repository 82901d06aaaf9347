//! A whole run: a fresh database and key prefix, the services started, every planned scenario, then
//! everything stopped and removed, whatever happened, and the report printed and written.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pipeline::connection::RedisTarget;
use uuid::Uuid;

use crate::db::{BenchDatabase, redis_host_port};
use crate::monitor::Monitor;
use crate::options::{CLUSTER_SCENARIOS, Plan, RunArgs, Scenario};
use crate::report::{self, Align, Row};
use crate::resources::Usage;
use crate::services::{ServiceConfig, Services, check_binaries};

/// The ceilings measured so far, for the ratios.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ceilings {
    /// Bare axum JSON POST, requests/s.
    pub http: Option<f64>,
    /// Multi-value LPUSH, items/s.
    pub redis: Option<f64>,
    /// psql \copy, rows/s.
    pub copy: Option<f64>,
}

/// Everything a scenario needs, and what the scenarios found.
#[derive(Debug)]
pub struct Bench {
    pub plan: Plan,
    pub services: Services,
    pub monitor: Monitor,
    pub database_url: String,
    pub prefix: String,
    pub redis_host: String,
    pub redis_port: u16,
    pub out_dir: PathBuf,
    pub log_dir: PathBuf,
    pub ceilings: Ceilings,
    pub rows: Vec<Row>,
    pub cpu_rows: Vec<Vec<String>>,
    /// Why the run failed (a scenario did not persist what it sent, or broke).
    pub failures: Vec<String>,
    /// Where the services under test keep their queue now.
    pub redis: RedisSide,
    /// The single-Redis figures (accepted, persisted msg/s) by row key, for the cluster rows' ratios.
    pub baseline: Vec<(&'static str, f64, f64)>,
}

/// The Redis the services under test use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisSide {
    /// One server (`--redis-url`), one shard.
    Single,
    /// The cluster of `--cluster-nodes`, with this many masters, replicas (in all) and `QUEUE_SHARDS`.
    Cluster {
        masters: usize,
        replicas: usize,
        shards: u32,
    },
}

/// Runs the benchmark; `Ok(false)` when it ran but some scenario failed.
pub async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let plan = Plan::resolve(&args).map_err(anyhow::Error::msg)?;
    let (redis_host, redis_port) = redis_host_port(&args.redis_url)?;
    check_binaries(&args.bin_dir)?;
    let out_dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let log_dir = out_dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let prefix = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..12]);

    let database = BenchDatabase::create(&args.database_url).await?;
    say(&format!(
        "database {}, Redis prefix {{{prefix}}}, logs in {}",
        database.name,
        log_dir.display()
    ));
    let config = ServiceConfig {
        bin_dir: args.bin_dir.clone(),
        database_url: database.url.clone(),
        redis_url: args.redis_url.clone(),
        cluster_nodes: Vec::new(),
        queue_shards: 1,
        prefix: prefix.clone(),
        batch_size: plan.batch_size,
        batch_timeout: plan.batch_timeout,
        max_queue_depth: plan.max_queue_depth,
        max_ws_clients: plan.max_ws_clients(),
        log_dir: log_dir.clone(),
        log_filter: args.service_log.clone(),
    };
    let single_redis = RedisTarget::new(&args.redis_url, &[])?;
    let outcome = async {
        say("starting ingestor, batcher, notifier (single Redis)");
        let services = Services::start(&config).await?;
        let monitor =
            Monitor::connect(&database.url, &single_redis, config_keys(&prefix), 1).await?;
        let mut bench = Bench {
            plan,
            services,
            monitor,
            database_url: database.url.clone(),
            prefix: prefix.clone(),
            redis_host,
            redis_port,
            out_dir,
            log_dir,
            ceilings: Ceilings::default(),
            rows: Vec::new(),
            cpu_rows: Vec::new(),
            failures: Vec::new(),
            redis: RedisSide::Single,
            baseline: Vec::new(),
        };
        let scenarios = bench.plan.scenarios.clone();
        let interrupted = bench.run_interruptible(&scenarios).await;
        bench.stop_services().await;
        if !interrupted && bench.plan.cluster_part() {
            for seeds in bench.plan.clusters.clone() {
                bench.cluster_part(&config, seeds).await;
            }
        }
        anyhow::Ok(bench)
    }
    .await;
    if args.keep_database {
        say(&format!(
            "kept database {} ({})",
            database.name,
            pipeline::schema::redact(&database.url)
        ));
    } else if let Err(error) = database.drop_database().await {
        eprintln!("warning: {error:#}");
    }
    let bench = outcome?;
    let text = bench.report();
    println!("\n{text}");
    std::fs::write(&args.out, &text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    say(&format!("report written to {}", args.out.display()));
    for failure in &bench.failures {
        eprintln!("FAILED: {failure}");
    }
    Ok(bench.failures.is_empty())
}

fn config_keys(prefix: &str) -> pipeline::keys::Keys {
    pipeline::keys::Keys::new(prefix)
}

/// A progress line.
pub fn say(text: &str) {
    eprintln!("==> {text}");
}

impl Bench {
    /// Runs `scenarios` unless interrupted (Ctrl-C); whether it was.
    async fn run_interruptible(&mut self, scenarios: &[Scenario]) -> bool {
        tokio::select! {
            () = self.run_all(scenarios) => false,
            _ = tokio::signal::ctrl_c() => {
                self.failures.push("interrupted".into());
                true
            }
        }
    }

    /// Stops the services and deletes the run's keys from the Redis they used.
    async fn stop_services(&mut self) {
        say("stopping the services");
        for problem in self.services.stop().await {
            self.failures.push(problem);
        }
        if let Err(error) = self.monitor.delete_keys().await {
            eprintln!("warning: could not delete the run's Redis keys: {error:#}");
        }
    }

    /// The single-message, bulk and fan-out scenarios again, with the services on the Redis Cluster of
    /// `seeds`.
    async fn cluster_part(&mut self, single: &ServiceConfig, seeds: Vec<String>) {
        let port = seeds[0].rsplit(':').next().unwrap_or("cluster").to_owned();
        let config = ServiceConfig {
            cluster_nodes: seeds,
            queue_shards: self.plan.queue_shards,
            log_dir: self.log_dir.join(format!("cluster-{port}")),
            ..single.clone()
        };
        let started = async {
            std::fs::create_dir_all(&config.log_dir)
                .with_context(|| format!("cannot create {}", config.log_dir.display()))?;
            let target = RedisTarget::new("", &config.cluster_nodes)?;
            let mut monitor = Monitor::connect(
                &self.database_url,
                &target,
                config_keys(&self.prefix),
                config.queue_shards,
            )
            .await?;
            let masters = monitor.masters().await?;
            let replicas = monitor.replicas().await?;
            say(&format!(
                "starting ingestor, batcher, notifier on the Redis Cluster ({masters} masters, \
                 QUEUE_SHARDS={})",
                config.queue_shards
            ));
            let services = Services::start(&config).await?;
            anyhow::Ok((services, monitor, masters, replicas))
        }
        .await;
        let (services, monitor, masters, replicas) = match started {
            Ok(started) => started,
            Err(error) => {
                eprintln!("FAILED: cluster: {error:#}");
                self.failures.push(format!("cluster: {error:#}"));
                return;
            }
        };
        self.services = services;
        self.monitor = monitor;
        self.redis = RedisSide::Cluster {
            masters,
            replicas,
            shards: config.queue_shards,
        };
        let scenarios: Vec<Scenario> = self
            .plan
            .scenarios
            .iter()
            .copied()
            .filter(|s| CLUSTER_SCENARIOS.contains(s))
            .collect();
        self.run_interruptible(&scenarios).await;
        self.stop_services().await;
    }

    async fn run_all(&mut self, scenarios: &[Scenario]) {
        for &scenario in scenarios {
            // Every scenario starts from the same state: what earlier ones left dirty (a COPY ceiling writes
            // hundreds of MB) is written out now, not by the checkpointer in the middle of the next load.
            if !self.plan.smoke && !self.monitor.checkpoint().await {
                say("(CHECKPOINT refused: earlier scenarios' writes may land in the next one)");
            }
            let result = match scenario {
                Scenario::HttpCeiling => self.http_ceiling().await,
                Scenario::RedisCeiling => self.redis_ceiling().await,
                Scenario::CopyCeiling => self.copy_ceiling().await,
                Scenario::Single => self.single().await,
                Scenario::Bulk => self.bulk().await,
                Scenario::Simulate => self.simulate().await,
                Scenario::Latency => self.latency().await,
                Scenario::Fanout => self.fanout().await,
            };
            if let Err(error) = result {
                let name = format!("{scenario:?}{}", self.redis_label());
                eprintln!("FAILED: {name}: {error:#}");
                self.failures.push(format!("{name}: {error:#}"));
                self.rows.push(Row {
                    scenario: name,
                    notes: format!("FAILED: {error:#}"),
                    ..Row::default()
                });
            }
        }
    }

    /// Records a scenario's CPU use for the second table.
    pub fn record_usage(&mut self, scenario: &str, usage: &Usage) {
        let cpu = usage
            .cpu
            .iter()
            .map(|(name, pct)| format!("{name} {pct:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let busy = usage
            .machine_busy
            .map_or_else(|| "–".into(), |b| format!("{b:.0}%"));
        // In % of one core, like the processes: interrupts (loopback networking), and what the machine
        // spent beyond the processes listed and interrupts: other work sharing the cores (noise).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let listed: f64 = usage.cpu.iter().map(|(_, pct)| pct).sum();
        let irq = usage.irq.unwrap_or(0.0) * cores;
        let others = usage.machine_busy.map_or_else(
            || "–".into(),
            |b| format!("{:.0}", (b * cores - listed - irq).max(0.0)),
        );
        let irq = usage
            .irq
            .map_or_else(|| "–".into(), |_| format!("{irq:.0}"));
        self.cpu_rows
            .push(vec![scenario.to_owned(), cpu, irq, others, busy]);
    }

    /// The whole report: settings, the main table, CPU, and how the figures are measured.
    fn report(&self) -> String {
        let plan = &self.plan;
        let mut out = String::from("## Benchmark\n\n");
        out.push_str(&format!(
            "{} run on {} ({} cores), {}. BATCH_SIZE={}, BATCH_TIMEOUT={} s, MAX_QUEUE_DEPTH={}.\n\n",
            if plan.smoke { "Smoke" } else { "Full" },
            cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            plan.batch_size,
            plan.batch_timeout.as_secs_f64(),
            plan.max_queue_depth,
        ));
        if plan.cluster_part() {
            let clusters: Vec<String> = plan.clusters.iter().map(|seeds| seeds.join(",")).collect();
            out.push_str(&format!(
                "Rows marked \"cluster\" ran after the others, in the same run, with fresh services on the \
                 Redis Cluster at {} (QUEUE_SHARDS={}; messages spread over 100 channels, so over every \
                 shard); each says how many masters and replicas its cluster has. Their ratio cell starts \
                 with each figure's ratio to the same scenario's single-Redis row (the 0.8× goal is judged \
                 on the persisted figure). One Redis has no replica: the cluster without replicas is the \
                 like-for-like comparison, and the one with them shows what replicas sharing these cores \
                 cost. In the CPU table, redis counts every redis-server of the machine: on a cluster, its \
                 masters and replicas (a cluster that is not under test idles).\n\n",
                clusters.join(" and then at "),
                plan.queue_shards
            ));
        }
        let rows: Vec<Vec<String>> = self.rows.iter().map(Row::cells).collect();
        out.push_str(&report::table(report::MAIN_COLUMNS, &rows));
        out.push_str(
            "\nCPU while each scenario ran, in % of one core (irq: interrupt handling, mostly loopback \
             networking; other: the rest of the machine's busy time, i.e. tools such as redis-benchmark \
             and psql, and anything else running); machine busy in % of all cores:\n\n",
        );
        let columns = [
            ("scenario", Align::Left),
            ("CPU by process", Align::Left),
            ("irq", Align::Right),
            ("other", Align::Right),
            ("machine busy", Align::Right),
        ];
        out.push_str(&report::table(&columns, &self.cpu_rows));
        out.push_str(METHOD);
        if !self.failures.is_empty() {
            out.push_str("\n**Failures:**\n\n");
            for failure in &self.failures {
                out.push_str(&format!("- {failure}\n"));
            }
        }
        out
    }

    /// Time the drain may take, from the plan.
    pub fn drain_timeout(&self) -> Duration {
        self.plan.drain_timeout
    }
}

const METHOD: &str = "
How: accepted = messages answered 201/202 per second of load; persisted = rows committed (the running
totals) per second from the load's start until the backlog drained, so a pipeline that cannot
keep up shows its real end-to-end rate. Sustained = the backlog did not grow over the second half of the
load, nothing was refused (429), and what was left drained within 1 s + 2 × BATCH_TIMEOUT. Closed-loop
rows (1, 2) offer as much as the ingestor accepts: their persisted column is the pipeline's capacity;
open-loop rows (2b, 4) offer a fixed rate and show whether it is sustained. Every scenario, and each rate
of (4), starts after a PostgreSQL `CHECKPOINT` (so earlier scenarios' dirty pages are not written during
it); each rate of (4) is measured after 3 s of unmeasured load at that rate and a drain (warm connections
and pools). p50/p99: HTTP latency per
request (open loop: from the request's due time, so a stall counts for every request it delayed);
creation→commit: `worker_timestamp` of the `batch_persisted` event received on `/ws/stats` minus the
`queued_at` of the message's 201 (both taken by the services on this machine's clock, µs). Fan-out (5):
WebSocket subscribers on the notifier's `/ws/channels`, each on one channel (round-robin), subscribed live
(no `after`) before an open-loop load at a fixed message rate spread evenly over those channels, in
`POST /messages/batch` requests of `--fanout-batch` messages (the row says how); p50/p99 = the time a
subscriber read the message's frame minus its `created_at` (this machine's clock, µs); delivered/expected:
messages received against, for each subscriber, its channel's head after the drain minus its head at
subscription; deliveries/s: messages received by all subscribers per second from the load's start to the
last one received; notifier cores: its CPU while the load ran. Peak RSS:
`VmHWM`, reset before each scenario. Flush figures: the batcher's `batcher_flush_duration_seconds`.
Ceilings: the same generator against a bare axum JSON endpoint (HTTP), redis-benchmark multi-value LPUSH
of the same elements (Redis), `psql \\copy` (CSV) of the same rows into
`CREATE TABLE … (LIKE messages INCLUDING ALL)` (COPY).
";

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}
