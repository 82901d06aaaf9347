//! Backpressure: `MAX_QUEUE_DEPTH` bounds the messages in the pipeline (waiting in Redis plus held by
//! batchers). A submission that would take the queue past it is refused with 429 and queues nothing; as
//! the batchers drain the queue, submissions are admitted again by themselves.
//!
//! Asking Redis for the depth on every request would cost a round trip on the hot path, so a background
//! task reads it every [`REFRESH_INTERVAL`] and requests check an estimate kept in memory: the last
//! reading, plus every message admitted since, plus those admitted before it whose push had not finished
//! when it was taken (they may or may not be in it). The estimate can only be too high, until the next
//! reading, never too low: one ingestor never admits past the limit (except for pushes that land after
//! their client went away). Several ingestors each see the others' messages once they are in Redis.
//!
//! Across ingestors the estimate alone would not hold (each admits against its own, so N ingestors could queue
//! N × `MAX_QUEUE_DEPTH` between two readings), so the push itself checks too: each shard's push is one
//! script that reads the shard's exact depth and refuses (429) when the part would take it past its
//! [`room`](Backpressure::room), `MAX_QUEUE_DEPTH` minus the other shards' depth as last read (see `enqueue`).
//! With one shard (`QUEUE_SHARDS=1`, the default) that is exact: the pipeline never holds more than
//! `MAX_QUEUE_DEPTH`, whatever the number of ingestors. With several shards a push sees its own shard exactly
//! and the others as read at most [`REFRESH_INTERVAL`] ago, so the bound is exceeded by at most what the other
//! shards gained since that reading. The cost is one script per shard push instead of an `LPUSH`: the group
//! commit pushes many messages per call.
//!
//! With several shards a group is split into one part per shard, so its scripts are small and many (on the
//! 3-master cluster with 6 shards, about 5 messages each at 64 connections), and a script costs Redis several
//! times an `LPUSH`. So while this ingestor's estimate is at most half of `MAX_QUEUE_DEPTH`, those pushes are
//! plain `LPUSH`es ([`Backpressure::check`]): the estimate includes every shard as read at most
//! [`REFRESH_INTERVAL`] ago, so the limit can be passed only if the other ingestors queue more than half of it
//! within that interval. Nearer the limit every push checks again. One shard keeps its exact bound.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline::connection::RedisConn;
use pipeline::keys::Keys;
use pipeline::shutdown::Ticks;
use pipeline::streak::FailureStreak;
use tokio_util::sync::CancellationToken;

use crate::enqueue::EnqueueError;
use crate::error::ApiError;
use crate::idempotency::Remembered;

/// How often the queue depth is read from Redis.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait for one depth read; a slower Redis keeps the last reading.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);
/// `MAX_QUEUE_DEPTH` bounds.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// `MAX_QUEUE_DEPTH`: an integer in 1..=[`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(format!("must be an integer from 1 to {MAX_LIMIT}")),
    }
}

/// Why a submission was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Retry later (429): the queue holds about `depth` messages, and `incoming` more would exceed the
    /// limit.
    Full { depth: u64, incoming: u64 },
    /// Never (422): the submission alone is larger than the limit.
    NeverFits { incoming: u64 },
}

/// The counters behind the estimate. The estimate is `offset + admitted`, where `offset` is the last
/// reading minus `completed` as it was just before that reading; so it is the reading plus everything
/// admitted and not yet completed at the reading, plus everything admitted since.
#[derive(Debug, Default)]
struct Counters {
    /// Messages ever admitted.
    admitted: AtomicU64,
    /// Messages whose push has finished (landed or failed).
    completed: AtomicU64,
    offset: AtomicI64,
    /// The last reading of each shard's depth, shard 0 first.
    shards: Mutex<Vec<u64>>,
}

/// The queue depth estimate and the limit. Cheap to clone (the counters are shared).
#[derive(Debug, Clone)]
pub struct Backpressure {
    counters: Arc<Counters>,
    limit: u64,
}

/// An admitted submission; dropping it (once the push has finished, whatever its outcome) lets the next
/// reading of the queue depth account for it.
#[derive(Debug)]
#[must_use = "hold the admission until the push has finished"]
pub struct Admission {
    counters: Arc<Counters>,
    count: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.counters
            .completed
            .fetch_add(self.count, Ordering::SeqCst);
    }
}

impl Backpressure {
    pub fn new(limit: u64) -> Self {
        Self {
            counters: Arc::default(),
            limit,
        }
    }

    /// `MAX_QUEUE_DEPTH`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many messages `shard` may hold after a push: the limit minus the other shards' depth as last read.
    /// The push script compares it with the shard's exact depth (see the module docs).
    pub fn room(&self, shard: u32) -> u64 {
        self.room_in(&self.shards(), shard)
    }

    /// What a push onto `shard` must check: the shard's [`room`](Self::room), or `None` (a plain `LPUSH`)
    /// while the queue is far below the limit and has several shards: at most half of the limit, by this
    /// ingestor's estimate, which includes every shard as last read (see the module docs).
    pub fn check(&self, shard: u32) -> Option<u64> {
        let shards = self.shards();
        if shards.len() > 1 && self.depth() <= self.limit / 2 {
            None
        } else {
            Some(self.room_in(&shards, shard))
        }
    }

    /// The last reading of each shard's depth.
    fn shards(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.counters
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The limit minus every shard's last reading but `shard`'s.
    fn room_in(&self, shards: &[u64], shard: u32) -> u64 {
        let others: u64 = shards
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != shard as usize)
            .map(|(_, depth)| depth)
            .sum();
        self.limit.saturating_sub(others)
    }

    /// The estimated queue depth (see the module docs).
    pub fn depth(&self) -> u64 {
        let admitted = self.counters.admitted.load(Ordering::SeqCst);
        estimate(self.counters.offset.load(Ordering::SeqCst), admitted)
    }

    /// Admits `incoming` messages if the queue then holds at most the limit. Hold the admission until
    /// the push has finished.
    pub fn admit(&self, incoming: u64) -> Result<Admission, Refusal> {
        if incoming > self.limit {
            return Err(Refusal::NeverFits { incoming });
        }
        let counters = &self.counters;
        counters
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |admitted| {
                let depth = estimate(counters.offset.load(Ordering::SeqCst), admitted);
                fits(depth, incoming, self.limit).then(|| admitted + incoming)
            })
            .map(|_| Admission {
                counters: Arc::clone(counters),
                count: incoming,
            })
            .map_err(|admitted| Refusal::Full {
                depth: estimate(counters.offset.load(Ordering::SeqCst), admitted),
                incoming,
            })
    }

    /// Reads the queue depth with `read` and makes it the base of the estimate.
    /// [`refresh`](Self::refresh) from a reading of each shard's depth, kept for [`room`](Self::room).
    pub async fn refresh_shards<E>(
        &self,
        read: impl Future<Output = Result<Vec<u64>, E>>,
    ) -> Result<u64, E> {
        let depths = std::sync::Mutex::new(Vec::new());
        let total = self
            .refresh(async {
                let read = read.await?;
                let total = read.iter().sum();
                *depths.lock().unwrap_or_else(|e| e.into_inner()) = read;
                Ok(total)
            })
            .await?;
        *self
            .counters
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            depths.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(total)
    }

    pub async fn refresh<E>(&self, read: impl Future<Output = Result<u64, E>>) -> Result<u64, E> {
        // Taken before the read: whatever completes later may or may not be in the reading, so it stays
        // counted until the next one.
        let completed = self.counters.completed.load(Ordering::SeqCst);
        let depth = read.await?;
        let offset = i64::try_from(depth).unwrap_or(i64::MAX) - completed as i64;
        self.counters.offset.store(offset, Ordering::SeqCst);
        metrics::gauge!(pipeline::telemetry::QUEUE_DEPTH.name()).set(depth as f64);
        Ok(depth)
    }

    /// Refreshes the estimate from Redis (every shard in use) every [`REFRESH_INTERVAL`] until `shutdown`.
    /// While Redis is unreachable the last reading stays (pushes fail with 503 then anyway). The first
    /// successful round also records `queue_shards` as a layout in use (see `pipeline::depth::record_layout`).
    pub fn spawn_refresher(
        &self,
        conn: RedisConn,
        keys: Keys,
        queue_shards: u32,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticks = Ticks::every(REFRESH_INTERVAL);
            // Logged on change only: a Redis that is down would otherwise log ten lines a second.
            let mut streak = FailureStreak::default();
            let mut layout_recorded = false;
            while ticks.next(&shutdown).await {
                let mut conn = conn.clone();
                if !layout_recorded {
                    let record = pipeline::depth::record_layout(&mut conn, &keys, queue_shards);
                    layout_recorded = matches!(
                        tokio::time::timeout(REFRESH_TIMEOUT, record).await,
                        Ok(Ok(()))
                    );
                }
                let read = async {
                    let read = pipeline::depth::shard_depths(&mut conn, &keys, queue_shards);
                    match tokio::time::timeout(REFRESH_TIMEOUT, read).await {
                        Ok(outcome) => outcome.map_err(|error| error.to_string()),
                        Err(_) => Err(format!("no answer within {REFRESH_TIMEOUT:?}")),
                    }
                };
                match this.refresh_shards(read).await {
                    Ok(depth) if streak.succeeded() => {
                        tracing::info!(depth, "queue depth readable again");
                    }
                    Ok(_) => {}
                    Err(error) if streak.failed() => {
                        tracing::warn!(%error, "cannot read the queue depth; keeping the last reading");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// The outcome of [`Backpressure::admit_or_earlier`].
#[derive(Debug)]
pub enum Admitted {
    /// Push now, holding this.
    New(Admission),
    /// A repeat of an accepted request: answer this, push nothing.
    Earlier(Remembered),
}

/// Admission as the API answers it.
impl Backpressure {
    /// [`Backpressure::admit`], refusals as API errors: 429 while the queue is too full, 422 (naming `field`,
    /// or the body when `None`) when the submission alone exceeds the limit. Hold the admission until the
    /// push has finished.
    pub fn admit_request(&self, incoming: u64, field: Option<&str>) -> Result<Admission, ApiError> {
        let limit = self.limit;
        self.admit(incoming).map_err(|refusal| match refusal {
            Refusal::Full { depth, incoming } => ApiError::QueueFull {
                depth,
                incoming,
                limit,
            },
            Refusal::NeverFits { incoming } => {
                let message = format!(
                    "{incoming} messages can never be queued at once: MAX_QUEUE_DEPTH is {limit}"
                );
                match field {
                    Some(field) => ApiError::invalid_field(field, message),
                    None => ApiError::invalid_body(message),
                }
            }
        })
    }

    /// [`Backpressure::admit_request`], except that a repeat of an accepted request is let through even while
    /// new submissions are refused, as it queues nothing. `earlier` looks up the record of the request's
    /// `Idempotency-Key`, if it has one; it runs only when the submission is refused.
    pub async fn admit_or_earlier(
        &self,
        incoming: u64,
        earlier: Option<impl Future<Output = Result<Option<Remembered>, ApiError>>>,
    ) -> Result<Admitted, ApiError> {
        let refused = match self.admit_request(incoming, None) {
            Ok(admission) => return Ok(Admitted::New(admission)),
            Err(refused) => refused,
        };
        let Some(earlier) = earlier else {
            return Err(refused);
        };
        earlier.await?.map(Admitted::Earlier).ok_or(refused)
    }

    /// The answer to a push that queued nothing: 429 if the push script found the queue full (another
    /// ingestor filled it since this one's admission), else 503.
    pub fn not_queued(&self, error: &EnqueueError, incoming: u64) -> ApiError {
        match error {
            EnqueueError::Full { depth } => ApiError::QueueFull {
                depth: *depth,
                incoming,
                limit: self.limit,
            },
            other => ApiError::RedisUnavailable(other.to_string()),
        }
    }
}

/// `offset + admitted`, never below zero (a drained queue read while pushes were in flight).
fn estimate(offset: i64, admitted: u64) -> u64 {
    let depth = i128::from(offset) + i128::from(admitted);
    u64::try_from(depth.max(0)).unwrap_or(u64::MAX)
}

/// Whether `incoming` more messages fit on a queue of `depth` under `limit`.
fn fits(depth: u64, incoming: u64, limit: u64) -> bool {
    depth
        .checked_add(incoming)
        .is_some_and(|total| total <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_within_bounds() {
        assert_eq!(parse_limit("1"), Ok(1));
        assert_eq!(parse_limit(" 1000000 "), Ok(1_000_000));
        assert_eq!(parse_limit("1000000000"), Ok(MAX_LIMIT));
        for bad in ["0", "-1", "1000000001", "1e6", "", "x"] {
            assert!(parse_limit(bad).is_err(), "{bad:?}");
        }
    }

    async fn reading(depth: u64) -> Result<u64, ()> {
        Ok(depth)
    }

    #[tokio::test]
    async fn a_shards_room_is_the_limit_less_the_other_shards_last_read() {
        let gate = Backpressure::new(100);
        assert_eq!(gate.room(0), 100, "nothing read yet");
        let total = gate
            .refresh_shards(async { Ok::<_, ()>(vec![5, 7, 0]) })
            .await
            .unwrap();
        assert_eq!(total, 12);
        assert_eq!(gate.depth(), 12);
        assert_eq!((gate.room(0), gate.room(1), gate.room(2)), (93, 95, 88));
        assert_eq!(gate.room(7), 88, "a shard not read yet");
        gate.refresh_shards(async { Ok::<_, ()>(vec![60, 70]) })
            .await
            .unwrap();
        assert_eq!((gate.room(0), gate.room(1)), (30, 40));
        let full = Backpressure::new(10);
        full.refresh_shards(async { Ok::<_, ()>(vec![4, 11]) })
            .await
            .unwrap();
        assert_eq!(full.room(0), 0);
    }

    #[tokio::test]
    async fn with_several_shards_pushes_go_unchecked_while_the_queue_is_at_most_half_full() {
        let gate = Backpressure::new(100);
        assert_eq!(gate.check(0), Some(100), "nothing read yet: checked");
        gate.refresh_shards(async { Ok::<_, ()>(vec![20]) })
            .await
            .unwrap();
        assert_eq!(gate.check(0), Some(100), "one shard: always checked");
        gate.refresh_shards(async { Ok::<_, ()>(vec![20, 30]) })
            .await
            .unwrap();
        assert_eq!(gate.check(1), None, "50 of 100: far below the limit");
        let admitted = gate.admit(1).unwrap();
        assert_eq!(
            gate.check(1),
            Some(80),
            "51 of 100: checked again, against the shard's room"
        );
        drop(admitted);
    }

    #[tokio::test]
    async fn submissions_are_admitted_up_to_the_limit_and_counted_at_once() {
        let gate = Backpressure::new(10);
        gate.refresh(reading(7)).await.unwrap();
        let admitted = gate.admit(3).unwrap();
        assert_eq!(gate.depth(), 10);
        assert_eq!(
            gate.admit(1).unwrap_err(),
            Refusal::Full {
                depth: 10,
                incoming: 1
            }
        );
        assert_eq!(gate.depth(), 10, "a refusal reserves nothing");
        drop(admitted);
        // The queue drained: admitted again.
        gate.refresh(reading(0)).await.unwrap();
        assert_eq!(gate.depth(), 0);
        let _all = gate.admit(10).unwrap();
    }

    #[tokio::test]
    async fn a_push_still_running_at_a_reading_stays_counted_until_the_next() {
        let gate = Backpressure::new(10);
        let in_flight = gate.admit(4).unwrap();
        // Read before the push landed: 0. The estimate keeps the 4.
        gate.refresh(reading(0)).await.unwrap();
        assert_eq!(gate.depth(), 4);
        drop(in_flight);
        assert_eq!(
            gate.depth(),
            4,
            "completed after the reading: maybe not in it"
        );
        // The next reading has them.
        gate.refresh(reading(4)).await.unwrap();
        assert_eq!(gate.depth(), 4);
        // Admitted during a reading: counted on top of it.
        let during = gate.admit(2).unwrap();
        gate.refresh(async {
            drop(during);
            Ok::<_, ()>(6)
        })
        .await
        .unwrap();
        assert_eq!(
            gate.depth(),
            8,
            "too high until the next reading, never too low"
        );
        gate.refresh(reading(6)).await.unwrap();
        assert_eq!(gate.depth(), 6);
    }

    #[tokio::test]
    async fn a_failed_reading_keeps_the_estimate() {
        let gate = Backpressure::new(10);
        gate.refresh(reading(5)).await.unwrap();
        assert_eq!(
            gate.refresh(async { Err::<u64, _>("down") }).await,
            Err("down")
        );
        assert_eq!(gate.depth(), 5);
    }

    #[test]
    fn a_submission_larger_than_the_limit_never_fits() {
        let gate = Backpressure::new(10);
        assert_eq!(
            gate.admit(11).unwrap_err(),
            Refusal::NeverFits { incoming: 11 }
        );
        assert_eq!(gate.depth(), 0);
    }

    #[test]
    fn estimates_and_fits_saturate() {
        assert_eq!(estimate(-5, 3), 0);
        assert_eq!(estimate(i64::MAX, u64::MAX), u64::MAX);
        assert!(!fits(u64::MAX, 1, u64::MAX));
        assert!(fits(9, 1, 10));
    }
}
