//! (4) Fixed-rate open-loop `POST /messages`: HTTP latency from each request's due time, and
//! creation→commit latency from the notifier's `batch_persisted` events.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::bail;

use crate::corpus;
use crate::events::{self, EventLog};
use crate::load::{Workload, open_loop};
use crate::measure::{OPEN_LOOP_GRACE, saturation, sustained};
use crate::pacing::Schedule;
use crate::report::{Row, rate};
use crate::run::{Bench, say};

/// How long after the drain the last `batch_persisted` events may take to arrive over the WebSocket.
const EVENT_GRACE: Duration = Duration::from_millis(500);
/// Unmeasured load at the same rate before each measured one, then a drain: connections, pools, allocator
/// pages and the table's first pages are warm, so one-off start-up costs do not land in the p99.
const WARMUP: Duration = Duration::from_secs(3);

impl Bench {
    /// (4) Open-loop `POST /messages` at each fixed rate: HTTP latency, and creation→commit latency from
    /// the `batch_persisted` events.
    pub async fn latency(&mut self) -> anyhow::Result<()> {
        for target in self.plan.rates.clone() {
            self.latency_at(target).await?;
        }
        Ok(())
    }

    async fn latency_at(&mut self, target: f64) -> anyhow::Result<()> {
        let (connections, duration) = (self.plan.connections, self.plan.latency_duration);
        say(&format!(
            "(4) fixed rate {} msg/s (open loop) for {duration:?}, {connections} connections",
            rate(target)
        ));
        let addr = self.services.ingestor.addr();
        let workload = Arc::new(Workload::singles(
            "/messages",
            corpus::single_bodies(1024),
            true,
        ));
        if !self.plan.smoke {
            if !self.monitor.checkpoint().await {
                say("    (CHECKPOINT refused: earlier scenarios' writes may land in this one)");
            }
            say(&format!(
                "    warm-up: {WARMUP:?} at the same rate, not measured"
            ));
            let before = self.monitor.snapshot().await?;
            let warm = open_loop(
                addr,
                workload.clone(),
                connections,
                Schedule::new(target, WARMUP),
                WARMUP + OPEN_LOOP_GRACE,
                Arc::new(AtomicU64::new(0)),
            )
            .await;
            self.monitor
                .drain(before.persisted + warm.accepted, self.drain_timeout())
                .await?;
        }
        let log = EventLog::subscribe(self.services.notifier.addr()).await?;
        let measured = self
            .measure_open_loop(workload, connections, target, duration)
            .await;
        tokio::time::sleep(EVENT_GRACE).await;
        let events = log.stop().await?;
        let measured = measured?;
        let joined = events::join(&measured.outcome.ids, &events);
        if self.plan.smoke && joined.missing > 0 {
            bail!(
                "{} accepted messages never appeared in a batch_persisted event",
                joined.missing
            );
        }
        let mut notes = vec![sustained(&measured, duration, self.plan.batch_timeout)];
        notes.extend(saturation(&measured, target));
        if measured.outcome.unsent > 0 {
            notes.push(format!(
                "{} requests unsent (saturated)",
                measured.outcome.unsent
            ));
        }
        let name = format!("(4) {} msg/s open loop: HTTP", rate(target));
        let http = self.row(name, &measured, notes);
        let commit = joined.commit.summary();
        let notified = joined.notified.summary();
        let mut event_notes = vec![format!(
            "{} of {} ids seen in events",
            rate((measured.outcome.ids.len() - joined.missing) as f64),
            rate(measured.outcome.ids.len() as f64)
        )];
        if let Some(gap) = events::longest_gap(&events) {
            event_notes.push(format!(
                "longest gap between commits {}",
                crate::report::duration(gap)
            ));
        }
        if let Some(n) = notified {
            event_notes.push(format!(
                "due→WS notified p50 {} p99 {}",
                crate::report::duration(n.p50),
                crate::report::duration(n.p99)
            ));
        }
        let commit_row = Row {
            scenario: format!("(4) {} msg/s open loop: creation→commit", rate(target)),
            p50: commit.map(|c| c.p50),
            p99: commit.map(|c| c.p99),
            notes: event_notes.join("; "),
            ..Row::default()
        };
        self.rows.push(http);
        self.rows.push(commit_row);
        Ok(())
    }
}
