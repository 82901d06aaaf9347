//! Watching the pipeline from outside: rows committed (the running totals, updated in each batch's
//! transaction) and the backlog (`queue_depth`: pending plus held by batchers), sampled while a load runs
//! and polled until it drains.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pipeline::connection::{RedisConn, RedisTarget, Timeouts};
use pipeline::keys::Keys;
use tokio_util::sync::CancellationToken;

use crate::report::rate;
use crate::trend::Point;

/// Backlog sampling period while a load runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Polling period while waiting for the drain (its resolution bounds the persisted rate's precision).
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// A drain that makes no progress for this long has failed, whatever the timeout.
const STALL: Duration = Duration::from_secs(15);

/// The pipeline at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    pub persisted: u64,
    pub dead_letters: u64,
    pub depth: u64,
}

/// The batches of one scenario, by flush reason: (reason, batches, elements).
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub by_reason: Vec<(String, u64, u64)>,
}

impl std::fmt::Display for BatchStats {
    /// `batches: 120, avg 2,600 (size 100, timeout 20)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let batches: u64 = self.by_reason.iter().map(|r| r.1).sum();
        if batches == 0 {
            return Ok(());
        }
        let elements: u64 = self.by_reason.iter().map(|r| r.2).sum();
        let reasons: Vec<String> = self
            .by_reason
            .iter()
            .map(|(r, n, _)| format!("{r} {n}"))
            .collect();
        write!(
            f,
            "{batches} batches, avg {} ({})",
            rate(elements as f64 / batches as f64),
            reasons.join(", ")
        )
    }
}

#[derive(Debug)]
pub struct Monitor {
    pg: tokio_postgres::Client,
    redis: RedisConn,
    keys: Keys,
    /// QUEUE_SHARDS of the services watched: the backlog is every shard's.
    shards: u32,
}

/// The monitor's Redis connection: never blocks, so every command is bounded.
const REDIS_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(10)),
};

impl Monitor {
    /// Watches the services of `keys` with `shards` shards on `redis` (one server or a cluster).
    pub async fn connect(
        database_url: &str,
        redis: &RedisTarget,
        keys: Keys,
        shards: u32,
    ) -> anyhow::Result<Self> {
        let pg = pipeline::schema::connect(database_url).await?;
        let redis = redis
            .connect(REDIS_TIMEOUTS)
            .await
            .context("Failed to connect to Redis")?;
        Ok(Self {
            pg,
            redis,
            keys,
            shards,
        })
    }

    /// How many masters serve the queue (1 for a single server).
    pub async fn masters(&mut self) -> anyhow::Result<usize> {
        let answers = self
            .redis
            .on_every_master(redis::cmd("PING"))
            .await
            .context("cannot reach every master")?;
        Ok(answers.len())
    }

    /// How many replicas the masters have in all (`connected_slaves` of `INFO replication`).
    pub async fn replicas(&mut self) -> anyhow::Result<usize> {
        let answers = self
            .redis
            .on_every_master(redis::cmd("INFO").arg("replication").to_owned())
            .await
            .context("cannot reach every master")?;
        let mut replicas = 0;
        for answer in answers {
            let text: String = redis::from_redis_value(answer).context("INFO is text")?;
            replicas += connected_replicas(&text);
        }
        Ok(replicas)
    }

    /// `CHECKPOINT`: writes out what earlier scenarios left dirty, so that their writes do not stall this one.
    /// Needs a superuser or `pg_checkpoint`; without it the scenario just runs on the server as it is.
    pub async fn checkpoint(&mut self) -> bool {
        self.pg.batch_execute("CHECKPOINT").await.is_ok()
    }

    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let row = self
            .pg
            .query_one(pipeline::schema::TOTALS, &[])
            .await
            .context("cannot read the running totals")?;
        let depth = pipeline::depth::queue_depth(&mut self.redis, &self.keys, self.shards)
            .await
            .context("cannot read queue_depth")?;
        Ok(Snapshot {
            at: Instant::now(),
            persisted: row.get::<_, i64>("messages") as u64,
            dead_letters: row.get::<_, i64>("dead_letters") as u64,
            depth,
        })
    }

    /// The newest `batches.id` so far (0 without batches).
    pub async fn last_batch_id(&self) -> anyhow::Result<i64> {
        let row = self
            .pg
            .query_one("SELECT coalesce(max(id), 0) FROM batches", &[])
            .await?;
        Ok(row.get(0))
    }

    /// The batches committed after batch `after`: how many, how big, why flushed.
    pub async fn batches_since(&self, after: i64) -> anyhow::Result<BatchStats> {
        let rows = self
            .pg
            .query(
                "SELECT reason, count(*), coalesce(sum(size), 0)::bigint FROM batches \
                 WHERE id > $1 GROUP BY reason ORDER BY reason",
                &[&after],
            )
            .await?;
        let by_reason = rows
            .iter()
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    row.get::<_, i64>(1) as u64,
                    row.get::<_, i64>(2) as u64,
                )
            })
            .collect();
        Ok(BatchStats { by_reason })
    }

    /// Samples the backlog until `stop` (seconds since `start`, depth), printing progress every second.
    pub async fn sample_until(
        &mut self,
        start: Instant,
        stop: &CancellationToken,
        accepted: &AtomicU64,
    ) -> anyhow::Result<Vec<Point>> {
        let mut points = Vec::new();
        let mut next_print = start + Duration::from_secs(1);
        while !stop.is_cancelled() {
            let snapshot = self.snapshot().await?;
            let t = snapshot.at.duration_since(start).as_secs_f64();
            points.push((t, snapshot.depth as f64));
            if snapshot.at >= next_print {
                next_print += Duration::from_secs(1);
                let accepted = accepted.load(Ordering::Relaxed);
                eprintln!(
                    "    {t:5.1} s  accepted {} ({}/s)  backlog {}",
                    rate(accepted as f64),
                    rate(accepted as f64 / t.max(1e-3)),
                    rate(snapshot.depth as f64),
                );
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
        Ok(points)
    }

    /// Waits until `target` rows are committed and nothing is left in Redis, at most `timeout`.
    pub async fn drain(&mut self, target: u64, timeout: Duration) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut next_print = started + Duration::from_secs(1);
        let mut last = self.snapshot().await?;
        let mut last_change = started;
        loop {
            let snapshot = self.snapshot().await?;
            if snapshot.persisted >= target && snapshot.depth == 0 {
                return Ok(snapshot);
            }
            if (snapshot.persisted, snapshot.depth) != (last.persisted, last.depth) {
                last_change = snapshot.at;
            }
            last = snapshot;
            if snapshot.at >= next_print {
                next_print += Duration::from_secs(1);
                eprintln!(
                    "    draining: persisted {} of {}  backlog {}",
                    rate(snapshot.persisted as f64),
                    rate(target as f64),
                    rate(snapshot.depth as f64)
                );
            }
            if snapshot.at >= deadline || snapshot.at.duration_since(last_change) >= STALL {
                bail!(
                    "not drained after {:.1} s: {} of {} rows persisted, backlog {}",
                    started.elapsed().as_secs_f64(),
                    snapshot.persisted,
                    target,
                    snapshot.depth
                );
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Deletes one key (the Redis ceiling's scratch list).
    pub async fn delete_key(&mut self, key: &str) -> anyhow::Result<()> {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<u64>(&mut self.redis)
            .await?;
        Ok(())
    }

    /// Deletes every key of the run: each shard's keys (under its hash tag, so on one node of a cluster), in a
    /// bounded SCAN per shard.
    pub async fn delete_keys(&mut self) -> anyhow::Result<u64> {
        let mut deleted = 0;
        let shards =
            pipeline::depth::shards_in_use(&mut self.redis, &self.keys, self.shards).await?;
        for shard in self.keys.shards(shards) {
            let pattern = format!("{}:*", shard.tag());
            let mut cursor: u64 = 0;
            for _ in 0..10_000 {
                let (next, keys) = self
                    .redis
                    .scan_step(&shard.pending(), cursor, &pattern, 1000)
                    .await?;
                if !keys.is_empty() {
                    deleted += redis::cmd("DEL")
                        .arg(&keys)
                        .query_async::<u64>(&mut self.redis)
                        .await?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Runs SQL on the run's database (the scratch table of the COPY ceiling).
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.pg
            .batch_execute(sql)
            .await
            .with_context(|| format!("Failed: {sql}"))
    }

    /// The head (last offset) of each of the channels `1..=channels` that has a message.
    pub async fn channel_heads(&self, channels: u64) -> anyhow::Result<HashMap<i64, i64>> {
        let rows = self
            .pg
            .query(
                "SELECT channel_id, head FROM channel_heads WHERE channel_id BETWEEN 1 AND $1",
                &[&(channels as i64)],
            )
            .await
            .context("cannot read channel_heads")?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Counts rows of a table (only the scratch table: `messages` is counted through `pipeline_totals`).
    pub async fn count(&self, table: &str) -> anyhow::Result<u64> {
        let row = self
            .pg
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// `connected_slaves` of an `INFO replication` answer (0 if absent).
fn connected_replicas(info: &str) -> usize {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_read_off_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=7103\r\n";
        assert_eq!(connected_replicas(info), 1);
        assert_eq!(connected_replicas("# Replication\r\nrole:master\r\n"), 0);
    }

    #[test]
    fn batch_stats_read_as_one_note() {
        let stats = BatchStats {
            by_reason: vec![
                ("size".into(), 100, 1_000_000),
                ("timeout".into(), 20, 40_000),
            ],
        };
        assert_eq!(
            stats.to_string(),
            "120 batches, avg 8,667 (size 100, timeout 20)"
        );
        assert_eq!(BatchStats::default().to_string(), "");
    }
}
