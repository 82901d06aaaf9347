//! The ceilings, measured in the same run as the pipeline: what a bare axum endpoint, Redis `LPUSH` and
//! `psql \copy` can each do on this machine with the same messages.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use uuid::Uuid;

use crate::corpus;
use crate::load::{Workload, closed_loop};
use crate::process::{Process, free_addr};
use crate::redis_ceiling::RedisBenchmark;
use crate::report::{Row, mib};
use crate::resources::{Probe, Tracked};
use crate::run::{Bench, say};

/// Longest a redis-benchmark or psql run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);
/// Scratch table of the COPY ceiling.
const SCRATCH_TABLE: &str = "bench_copy_scratch";

impl Bench {
    /// A bare axum JSON POST (`bench ceiling-server`), loaded like scenario 1.
    pub async fn http_ceiling(&mut self) -> anyhow::Result<()> {
        let plan = &self.plan;
        say(&format!(
            "ceiling: HTTP (bare axum JSON POST), {} connections for {:?}",
            plan.connections, plan.duration
        ));
        let addr = free_addr()?;
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let addr_arg = addr.to_string();
        let mut server = Process::spawn(
            "ceiling-server",
            &exe,
            &["ceiling-server", "--addr", &addr_arg],
            &[],
            addr,
            &self.log_dir,
        )?;
        server.wait_healthy(Duration::from_secs(10)).await?;
        let probe = Probe::start(vec![
            Tracked::one("ceiling-server", server.pid()),
            Tracked::one("generator", std::process::id()),
        ]);
        let workload = Arc::new(Workload::singles(
            "/messages",
            corpus::single_bodies(256),
            false,
        ));
        let outcome = closed_loop(
            addr,
            workload,
            plan.connections,
            plan.duration,
            Arc::new(AtomicU64::new(0)),
        )
        .await;
        let usage = probe.finish();
        server.stop(Duration::from_secs(5)).await?;
        if outcome.accepted == 0 {
            bail!(
                "the ceiling server accepted nothing: {:?}",
                outcome.failures
            );
        }
        let rate = outcome.accepted_rate();
        self.ceilings.http = Some(rate);
        let latency = outcome.latencies.clone().summary();
        let name = format!(
            "ceiling: HTTP, bare axum JSON POST, {} conns",
            self.plan.connections
        );
        self.rows.push(Row {
            scenario: name.clone(),
            accepted: Some(rate),
            p50: latency.map(|l| l.p50),
            p99: latency.map(|l| l.p99),
            peak_rss: usage
                .peaks
                .first()
                .map(|(_, b)| mib(*b))
                .unwrap_or_default(),
            ratio: "1 (HTTP)".into(),
            notes: failures_note(&outcome.failures),
            ..Row::default()
        });
        self.record_usage(&name, &usage);
        Ok(())
    }

    /// Multi-value `LPUSH` of real queued elements with redis-benchmark, in items/s.
    pub async fn redis_ceiling(&mut self) -> anyhow::Result<()> {
        let plan = &self.plan;
        let key = format!("{{{}}}:bench-scratch", self.prefix);
        let benchmark = RedisBenchmark {
            host: self.redis_host.clone(),
            port: self.redis_port,
            key: key.clone(),
            requests: plan.redis_requests,
            clients: plan.redis_clients,
            pipeline: plan.redis_pipeline,
            values: plan.redis_values,
        };
        say(&format!(
            "ceiling: Redis, redis-benchmark LPUSH of {} values x {} commands",
            plan.redis_values, plan.redis_requests
        ));
        let element = corpus::queued_element(0);
        let probe = Probe::start(vec![Tracked::named("redis", "redis-server")]);
        let items = benchmark.items_per_second(&element, TOOL_TIMEOUT).await;
        let usage = probe.finish();
        self.monitor.delete_key(&key).await?;
        let items = items?;
        self.ceilings.redis = Some(items);
        let name = format!(
            "ceiling: Redis LPUSH, {} values/cmd ({} B each)",
            plan.redis_values,
            element.len()
        );
        self.rows.push(Row {
            scenario: name.clone(),
            accepted: Some(items),
            ratio: "1 (LPUSH)".into(),
            notes: format!(
                "items/s; -c {} -P {}",
                plan.redis_clients, plan.redis_pipeline
            ),
            ..Row::default()
        });
        self.record_usage(&name, &usage);
        Ok(())
    }

    /// `psql \copy` of the same rows into a scratch copy of `messages` (same columns, indexes, checks).
    pub async fn copy_ceiling(&mut self) -> anyhow::Result<()> {
        let rows = self.plan.copy_rows;
        let csv = self.out_dir.join("copy-ceiling.csv");
        say(&format!(
            "ceiling: psql \\copy of {rows} rows (writing {})",
            csv.display()
        ));
        let path = csv.clone();
        tokio::task::spawn_blocking(move || write_csv(&path, rows))
            .await
            .context("CSV writer panicked")??;
        self.monitor
            .execute(&format!(
                "DROP TABLE IF EXISTS {SCRATCH_TABLE}; \
                 CREATE TABLE {SCRATCH_TABLE} (LIKE messages INCLUDING ALL)"
            ))
            .await?;
        let copy = format!(
            "\\copy {SCRATCH_TABLE} ({}) FROM '{}' WITH (FORMAT csv)",
            corpus::CSV_COLUMNS,
            csv.display()
        );
        let probe = Probe::start(vec![Tracked::named("postgres", "postgres")]);
        let start = Instant::now();
        let run = tokio::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.database_url,
                "-c",
                &copy,
            ])
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(TOOL_TIMEOUT, run)
            .await
            .context("psql \\copy timed out")?
            .context("Failed to run psql (package postgresql-client)")?;
        let elapsed = start.elapsed();
        let usage = probe.finish();
        let _ = std::fs::remove_file(&csv);
        if !output.status.success() {
            bail!(
                "psql \\copy failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let loaded = self.monitor.count(SCRATCH_TABLE).await?;
        self.monitor
            .execute(&format!("DROP TABLE {SCRATCH_TABLE}"))
            .await?;
        if loaded != rows {
            bail!("psql \\copy loaded {loaded} rows, expected {rows}");
        }
        let rate = rows as f64 / elapsed.as_secs_f64();
        self.ceilings.copy = Some(rate);
        let name = "ceiling: psql \\copy into a copy of messages".to_owned();
        self.rows.push(Row {
            scenario: name.clone(),
            persisted: Some(rate),
            ratio: "1 (COPY)".into(),
            notes: format!("{rows} rows in {:.2} s", elapsed.as_secs_f64()),
            ..Row::default()
        });
        self.record_usage(&name, &usage);
        Ok(())
    }
}

/// The CSV of the COPY ceiling: the benchmark's messages with fresh UUID v7s, as the ingestor makes them.
fn write_csv(path: &std::path::Path, rows: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(256);
    let now = Utc::now();
    for index in 0..rows {
        line.clear();
        corpus::csv_row(&mut line, index, Uuid::now_v7(), now);
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `failed: HTTP 429 ×12, connect failed ×1`, or nothing.
pub fn failures_note(failures: &std::collections::BTreeMap<String, u64>) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = failures
        .iter()
        .map(|(why, n)| format!("{why} ×{n}"))
        .collect();
    format!("failed: {}", parts.join(", "))
}
