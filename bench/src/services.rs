//! The pipeline under test: ingestor, batcher and notifier started from their built binaries on free
//! loopback ports, against the run's own database and key prefix, and stopped with SIGTERM at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{Process, free_addr};
use crate::resources::Tracked;

/// How long a service may take to answer `/health` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a service may take to exit after SIGTERM (the batcher flushes what it holds).
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What the services are started with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub bin_dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    /// A Redis Cluster's seeds (`host:port`), used instead of `redis_url` when not empty.
    pub cluster_nodes: Vec<String>,
    /// QUEUE_SHARDS.
    pub queue_shards: u32,
    pub prefix: String,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub max_queue_depth: u64,
    /// MAX_WS_CLIENTS of the notifier (the fan-out scenario's subscribers must fit).
    pub max_ws_clients: u32,
    pub log_dir: PathBuf,
    /// RUST_LOG of the services.
    pub log_filter: String,
}

/// The three running services.
#[derive(Debug)]
pub struct Services {
    pub ingestor: Process,
    pub batcher: Process,
    pub notifier: Process,
}

/// The binaries a run needs, checked before anything starts.
pub fn check_binaries(bin_dir: &Path) -> anyhow::Result<()> {
    for name in ["ingestor", "batcher", "notifier"] {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} is missing: build it first (scripts/bench does)",
                path.display()
            );
        }
    }
    Ok(())
}

impl Services {
    pub async fn start(config: &ServiceConfig) -> anyhow::Result<Self> {
        let ingestor_addr = free_addr()?;
        let batcher_addr = free_addr()?;
        let notifier_addr = free_addr()?;
        let mut common = vec![
            ("REDIS_URL", config.redis_url.clone()),
            ("QUEUE_SHARDS", config.queue_shards.to_string()),
            ("DATABASE_URL", config.database_url.clone()),
            ("REDIS_KEY_PREFIX", config.prefix.clone()),
            ("BATCH_SIZE", config.batch_size.to_string()),
            (
                "BATCH_TIMEOUT",
                config.batch_timeout.as_secs_f64().to_string(),
            ),
            // Logging every request would measure the logger: `warn` unless asked otherwise.
            ("RUST_LOG", config.log_filter.clone()),
            ("LOG_FORMAT", "text".to_owned()),
        ];
        if !config.cluster_nodes.is_empty() {
            common.push(("REDIS_CLUSTER_NODES", config.cluster_nodes.join(",")));
        }
        let with = |extra: &[(&'static str, String)]| {
            let mut env = common.clone();
            env.extend_from_slice(extra);
            env
        };
        let bin = |name: &str| config.bin_dir.join(name);
        let mut ingestor = Process::spawn(
            "ingestor",
            &bin("ingestor"),
            &[],
            &with(&[
                ("INGESTOR_ADDR", ingestor_addr.to_string()),
                ("MAX_QUEUE_DEPTH", config.max_queue_depth.to_string()),
            ]),
            ingestor_addr,
            &config.log_dir,
        )?;
        let mut batcher = Process::spawn(
            "batcher",
            &bin("batcher"),
            &[],
            &with(&[
                ("BATCHER_ADDR", batcher_addr.to_string()),
                ("BATCHER_ID", format!("{}-1", config.prefix)),
            ]),
            batcher_addr,
            &config.log_dir,
        )?;
        let mut notifier = Process::spawn(
            "notifier",
            &bin("notifier"),
            &[],
            &with(&[
                ("NOTIFIER_ADDR", notifier_addr.to_string()),
                ("INGESTOR_URL", format!("http://{ingestor_addr}")),
                ("MAX_WS_CLIENTS", config.max_ws_clients.to_string()),
                // No dashboard needed: the notifier serves its fallback page.
                (
                    "DASHBOARD_DIR",
                    config.log_dir.join("no-dashboard").display().to_string(),
                ),
            ]),
            notifier_addr,
            &config.log_dir,
        )?;
        for process in [&mut ingestor, &mut batcher, &mut notifier] {
            process
                .wait_healthy(START_TIMEOUT)
                .await
                .with_context(|| format!("{} did not start", process.name()))?;
        }
        Ok(Self {
            ingestor,
            batcher,
            notifier,
        })
    }

    /// Everything whose CPU the report shows: the services, Redis, PostgreSQL and the generator itself.
    pub fn tracked(&self) -> Vec<Tracked> {
        vec![
            Tracked::one("ingestor", self.ingestor.pid()),
            Tracked::one("batcher", self.batcher.pid()),
            Tracked::one("notifier", self.notifier.pid()),
            Tracked::named("redis", "redis-server"),
            Tracked::named("postgres", "postgres"),
            Tracked::one("generator", std::process::id()),
        ]
    }

    /// SIGTERM to each (ingestor first, so nothing new arrives while the batcher flushes); what went wrong.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for process in [&mut self.ingestor, &mut self.batcher, &mut self.notifier] {
            match process.stop(STOP_GRACE).await {
                Ok(status) if status.success() => {}
                Ok(status) => problems.push(format!("{} exited with {status}", process.name())),
                Err(error) => problems.push(format!("{error:#}")),
            }
        }
        problems
    }
}
