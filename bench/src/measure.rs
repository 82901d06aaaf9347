//! Measuring one load from outside: the backlog sampled while it runs, CPU and peak RSS per phase, the
//! drain waited for, and the check that every accepted message became exactly one row.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::ceilings::failures_note;
use crate::load::{Outcome, Workload, open_loop};
use crate::monitor::{BatchStats, Snapshot};
use crate::pacing::Schedule;
use crate::prometheus::{self, Flushes};
use crate::report::{Row, mib, rate};
use crate::resources::{Probe, Usage};
use crate::run::Bench;
use crate::trend::{self, Point};

/// What a sustained load may leave to drain when it stops, beyond two batch timeouts: a flush or two.
const DRAIN_ALLOWANCE: Duration = Duration::from_secs(1);

/// Beyond its duration, how long an open-loop load may run late before its unsent requests are dropped.
pub const OPEN_LOOP_GRACE: Duration = Duration::from_secs(10);
/// An open-loop load that achieves less than this share of its target rate is saturated.
pub const SATURATED: f64 = 0.95;

/// A load, measured from outside.
#[derive(Debug)]
pub struct Measured {
    pub outcome: Outcome,
    pub points: Vec<Point>,
    pub start: Instant,
    pub before: Snapshot,
    pub drained: Snapshot,
    /// While the load ran.
    pub usage: Usage,
    /// From the end of the load to the drain (peak RSS: of the whole scenario).
    pub drain_usage: Usage,
    pub batches: BatchStats,
    /// The batcher's flush timings over the scenario (from its `/metrics`).
    pub flushes: String,
}

impl Measured {
    /// From the end of the load (its last answer) to the drain.
    pub fn drain_time(&self) -> Duration {
        self.drained
            .at
            .duration_since(self.start)
            .saturating_sub(self.outcome.elapsed)
    }

    /// Rows committed per second, from the load's start to the drain.
    pub fn persisted_rate(&self) -> f64 {
        let rows = self.drained.persisted - self.before.persisted;
        rows as f64
            / self
                .drained
                .at
                .duration_since(self.start)
                .as_secs_f64()
                .max(1e-9)
    }
}

impl Bench {
    /// Runs `load`, sampling the backlog meanwhile, then waits for the drain; fails if what was accepted
    /// did not become rows.
    pub async fn measure<F, Fut>(&mut self, load: F) -> anyhow::Result<Measured>
    where
        F: FnOnce(Arc<AtomicU64>) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let before = self.monitor.snapshot().await?;
        let before_batch = self.monitor.last_batch_id().await?;
        let flushes_before = self.batcher_flushes().await;
        let probe = Probe::start(self.services.tracked());
        let progress = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let start = Instant::now();
        let running = load(progress.clone());
        let load = async {
            let outcome = running.await;
            stop.cancel();
            outcome
        };
        let (outcome, points) =
            tokio::join!(load, self.monitor.sample_until(start, &stop, &progress));
        let points = points?;
        if outcome.accepted == 0 {
            bail!("nothing was accepted; failures: {:?}", outcome.failures);
        }
        let usage = probe.finish();
        let target = before.persisted + outcome.accepted;
        let drain_probe = Probe::start_keeping_peaks(self.services.tracked(), usage.peaks_reset);
        let drained = self.monitor.drain(target, self.drain_timeout()).await?;
        let drain_usage = drain_probe.finish();
        if drained.dead_letters > before.dead_letters {
            bail!(
                "{} messages were dead-lettered",
                drained.dead_letters - before.dead_letters
            );
        }
        if self.plan.smoke && (outcome.failed() > 0 || outcome.unsent > 0) {
            bail!(
                "smoke run: {} requests failed ({:?}), {} unsent",
                outcome.failed(),
                outcome.failures,
                outcome.unsent
            );
        }
        let batches = self.monitor.batches_since(before_batch).await?;
        let wall = drained.at.duration_since(start).as_secs_f64();
        let flushes = match (flushes_before, self.batcher_flushes().await) {
            (Some(before), Some(after)) => before.describe_until(&after, wall, self.shards()),
            _ => String::new(),
        };
        Ok(Measured {
            outcome,
            points,
            start,
            before,
            drained,
            usage,
            drain_usage,
            batches,
            flushes,
        })
    }

    /// A row with the common columns filled from `measured`.
    pub fn row(&mut self, name: String, measured: &Measured, notes: Vec<String>) -> Row {
        let latency = measured.outcome.latencies.clone().summary();
        let extra =
            measured.drained.persisted - measured.before.persisted - measured.outcome.accepted;
        let mut notes = notes;
        if extra > 0 {
            notes.push(format!(
                "{extra} rows beyond the accepted (from failed requests that reached Redis)"
            ));
        }
        notes.push(failures_note(&measured.outcome.failures));
        notes.push(measured.batches.to_string());
        notes.push(measured.flushes.clone());
        self.record_usage(&format!("{name} (load)"), &measured.usage);
        let drain = measured.drain_time();
        if drain >= Duration::from_secs(1) {
            self.record_usage(
                &format!("{name} (drain, {:.1} s)", drain.as_secs_f64()),
                &measured.drain_usage,
            );
        }
        Row {
            scenario: name,
            accepted: Some(measured.outcome.accepted_rate()),
            persisted: Some(measured.persisted_rate()),
            p50: latency.map(|l| l.p50),
            p99: latency.map(|l| l.p99),
            peak_rss: rss_cell(&measured.drain_usage),
            notes: notes
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            ..Row::default()
        }
    }
}

impl Bench {
    /// Offers `target` messages per second of `workload` for `duration`, open loop on `connections`
    /// connections (requests paced at `target` / messages per request), measured by [`Bench::measure`].
    /// Requests not sent [`OPEN_LOOP_GRACE`] after the duration count as unsent.
    pub async fn measure_open_loop(
        &mut self,
        workload: Arc<Workload>,
        connections: usize,
        target: f64,
        duration: Duration,
    ) -> anyhow::Result<Measured> {
        let addr = self.services.ingestor.addr();
        let requests = target / workload.messages_per_request() as f64;
        let schedule = Schedule::new(requests, duration);
        let deadline = duration + OPEN_LOOP_GRACE;
        self.measure(|progress| {
            open_loop(addr, workload, connections, schedule, deadline, progress)
        })
        .await
    }

    /// The batcher's flush counters, if its `/metrics` answers (a diagnostic: never fails a scenario).
    async fn batcher_flushes(&self) -> Option<Flushes> {
        let text = prometheus::scrape(self.services.batcher.addr())
            .await
            .ok()?;
        Some(Flushes::read(&text))
    }
}

/// "sustained", or why not.
pub fn sustained(measured: &Measured, duration: Duration, batch_timeout: Duration) -> String {
    let backlog = trend::judge(
        &measured.points,
        duration.as_secs_f64(),
        measured.outcome.accepted_rate(),
    );
    let drain = measured.drain_time().as_secs_f64();
    let allowance = (DRAIN_ALLOWANCE + 2 * batch_timeout).as_secs_f64();
    trend::verdict(backlog, measured.outcome.failed(), drain, allowance)
}

/// `saturated: 16,034 of 20,000 msg/s` if an open-loop load achieved less than [`SATURATED`] of its
/// `target` rate.
pub fn saturation(measured: &Measured, target: f64) -> Option<String> {
    let achieved = measured.outcome.accepted_rate();
    (achieved < SATURATED * target)
        .then(|| format!("saturated: {} of {} msg/s", rate(achieved), rate(target)))
}

/// `ing 45 / bat 30 / not 12 MiB`.
fn rss_cell(usage: &Usage) -> String {
    let short = |name: &str| match name {
        "ingestor" => "ing",
        "batcher" => "bat",
        "notifier" => "not",
        _ => "",
    };
    let cells: Vec<String> = usage
        .peaks
        .iter()
        .filter(|(name, _)| !short(name).is_empty())
        .map(|(name, bytes)| format!("{} {}", short(name), mib(*bytes)))
        .collect();
    let mut cell = cells.join(" / ");
    if !usage.peaks_reset && !cell.is_empty() {
        cell.push_str(" (since start)");
    }
    cell
}
