//! The pipeline scenarios (1) single-message POSTs, (2) bulk POSTs and (3) a /simulate drain; (4) is in
//! [`crate::latency`]. Each is measured by [`Bench::measure`]: load, drain, check.

use std::sync::Arc;

use anyhow::bail;
use axum::http::StatusCode;
use bytes::Bytes;
use pipeline::api::MAX_SIMULATE_COUNT;

use crate::corpus;
use crate::load::{Body, Workload, closed_loop, sequential};
use crate::measure::{Measured, saturation, sustained};
use crate::report::{Row, rate, ratio, ratio_to_single};
use crate::run::{Bench, RedisSide, say};

impl Bench {
    /// (1) `POST /messages`, one message per request, closed loop on keep-alive connections.
    pub async fn single(&mut self) -> anyhow::Result<()> {
        let (connections, duration) = (self.plan.connections, self.plan.duration);
        say(&format!(
            "(1) single-message POST /messages, {connections} connections for {duration:?}"
        ));
        let addr = self.services.ingestor.addr();
        let workload = Arc::new(Workload::singles(
            "/messages",
            corpus::single_bodies(1024),
            false,
        ));
        let measured = self
            .measure(|progress| closed_loop(addr, workload, connections, duration, progress))
            .await?;
        let verdict = sustained(&measured, duration, self.plan.batch_timeout);
        let mut row = self.row(
            format!(
                "(1) single POST /messages, {connections} conns{}",
                self.redis_label()
            ),
            &measured,
            vec![verdict],
        );
        row.ratio = ratios(&[
            ratio(measured.outcome.accepted_rate(), self.ceilings.http, "HTTP"),
            ratio(measured.persisted_rate(), self.ceilings.copy, "COPY"),
        ]);
        self.compare("single", &mut row);
        self.rows.push(row);
        Ok(())
    }

    /// (2) `POST /messages/batch` arrays, closed loop.
    pub async fn bulk(&mut self) -> anyhow::Result<()> {
        let plan = &self.plan;
        let (size, connections, duration) =
            (plan.bulk_size, plan.bulk_connections, plan.bulk_duration);
        say(&format!(
            "(2) bulk POST /messages/batch of {size}, {connections} connections for {duration:?}"
        ));
        let addr = self.services.ingestor.addr();
        let workload = Arc::new(bulk_workload(size));
        let measured = self
            .measure(|progress| {
                closed_loop(addr, workload.clone(), connections, duration, progress)
            })
            .await?;
        let verdict = sustained(&measured, duration, self.plan.batch_timeout);
        let name = format!(
            "(2) bulk POST /messages/batch ×{size}, {connections} conns{}",
            self.redis_label()
        );
        let mut row = self.row(name, &measured, vec![verdict, "latency per request".into()]);
        row.ratio = self.bulk_ratios(&measured);
        self.compare("bulk", &mut row);
        self.rows.push(row);

        // The goal is a share of the COPY ceiling *sustained*: offer exactly that, open loop.
        let Some(copy) = self.ceilings.copy.filter(|_| self.plan.bulk_sustain > 0.0) else {
            return Ok(());
        };
        let target = self.plan.bulk_sustain * copy;
        say(&format!(
            "(2b) bulk at {:.0}% of the COPY ceiling: {} msg/s open loop for {duration:?}",
            100.0 * self.plan.bulk_sustain,
            rate(target)
        ));
        let measured = self
            .measure_open_loop(workload, connections, target, duration)
            .await?;
        let mut notes = vec![sustained(&measured, duration, self.plan.batch_timeout)];
        notes.extend(saturation(&measured, target));
        let name = format!(
            "(2b) bulk ×{size} at {:.0}% of COPY, open loop{}",
            100.0 * self.plan.bulk_sustain,
            self.redis_label()
        );
        let mut row = self.row(name, &measured, notes);
        row.ratio = self.bulk_ratios(&measured);
        self.compare("bulk-sustain", &mut row);
        self.rows.push(row);
        Ok(())
    }

    /// ` · cluster (3 masters + 3 replicas, 6 shards)` on the cluster, nothing on the single server.
    pub fn redis_label(&self) -> String {
        match self.redis {
            RedisSide::Single => String::new(),
            RedisSide::Cluster {
                masters,
                replicas,
                shards,
            } => {
                format!(" · cluster ({masters} masters + {replicas} replicas, {shards} shards)")
            }
        }
    }

    /// `QUEUE_SHARDS` of the services under test (one batcher holds them all).
    pub fn shards(&self) -> u32 {
        match self.redis {
            RedisSide::Single => 1,
            RedisSide::Cluster { shards, .. } => shards,
        }
    }

    /// On the single server, keeps `row`'s figures under `key`; on the cluster, puts their ratios to the
    /// single server's first in `row`'s ratio cell.
    fn compare(&mut self, key: &'static str, row: &mut Row) {
        let (Some(accepted), Some(persisted)) = (row.accepted, row.persisted) else {
            return;
        };
        match self.redis {
            RedisSide::Single => self.baseline.push((key, accepted, persisted)),
            RedisSide::Cluster { .. } => {
                let Some(&(_, single_accepted, single_persisted)) =
                    self.baseline.iter().find(|(k, ..)| *k == key)
                else {
                    return;
                };
                let versus =
                    ratio_to_single((accepted, persisted), (single_accepted, single_persisted));
                row.ratio = ratios(&[
                    Some(versus),
                    Some(row.ratio.clone()).filter(|r| !r.is_empty()),
                ]);
            }
        }
    }

    fn bulk_ratios(&self, measured: &Measured) -> String {
        ratios(&[
            ratio(
                measured.outcome.accepted_rate(),
                self.ceilings.redis,
                "LPUSH",
            ),
            ratio(measured.persisted_rate(), self.ceilings.copy, "COPY"),
        ])
    }

    /// (3) `POST /simulate` of `simulate_count` messages (requests of at most 1,000,000), until persisted.
    pub async fn simulate(&mut self) -> anyhow::Result<()> {
        let count = self.plan.simulate_count;
        say(&format!(
            "(3) POST /simulate of {count} messages, until fully persisted"
        ));
        let addr = self.services.ingestor.addr();
        let mut bodies = Vec::new();
        let mut left = count;
        while left > 0 {
            let n = left.min(MAX_SIMULATE_COUNT);
            bodies.push(Body {
                bytes: Bytes::from(format!("{{\"count\":{n}}}")),
                messages: n,
            });
            left -= n;
        }
        let workload = Arc::new(Workload {
            path: "/simulate",
            bodies,
            expect: StatusCode::ACCEPTED,
            keep_ids: false,
        });
        let measured = self
            .measure(|progress| sequential(addr, workload, progress))
            .await?;
        if measured.outcome.accepted != count {
            bail!(
                "/simulate queued {} of {count} messages",
                measured.outcome.accepted
            );
        }
        let to_persisted = measured.drained.at.duration_since(measured.start);
        let notes = vec![format!(
            "202 after {:.2} s, all persisted after {:.2} s",
            measured.outcome.elapsed.as_secs_f64(),
            to_persisted.as_secs_f64()
        )];
        let mut row = self.row(
            format!("(3) POST /simulate {}", rate(count as f64)),
            &measured,
            notes,
        );
        // One or a few huge requests: their latency is in the notes, not a percentile.
        (row.p50, row.p99) = (None, None);
        row.ratio = ratios(&[
            ratio(
                measured.outcome.accepted_rate(),
                self.ceilings.redis,
                "LPUSH",
            ),
            ratio(measured.persisted_rate(), self.ceilings.copy, "COPY"),
        ]);
        self.rows.push(row);
        Ok(())
    }
}

/// Four different `POST /messages/batch` bodies of `size` messages.
fn bulk_workload(size: u64) -> Workload {
    let bodies = (0..4).map(|i| corpus::batch_body(i * size, size)).collect();
    Workload::batches(bodies, size)
}

pub fn ratios(parts: &[Option<String>]) -> String {
    parts
        .iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}
