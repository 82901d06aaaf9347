//! One flush, end to end: decode, commit (retrying transient failures), clear the processing list, publish.
//!
//! A [`Flusher`] owns its own PostgreSQL and Redis connections, so the worker can run it on a spawned task
//! while it keeps filling the next batch on its own connection. With several queue shards, a time-triggered
//! batch is committed by the batcher's [`GroupCommit`] instead, in one transaction with the batches other
//! shards have ready (see `group_commit`); the clear and the event stay the flusher's.

use std::{
    collections::{HashSet, VecDeque},
    time::Duration,
};

use chrono::Utc;
use pipeline::events::{BatchAnnouncement, BatchPersisted, merge_ranges};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::retry_backoff,
    group_commit::GroupCommit,
    link::RedisLink,
    policy::FlushReason,
    queue::{Cleared, Queue},
    row::{self, Row},
    store::{Attempts, BatchToCommit, Committed, Store, StoreError},
};

/// Longest one commit try may take before its connection is presumed dead and the try is redone.
pub const COMMIT_TRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Failures in a row that a smaller batch could avoid before a batch is halved. Five (about 0.75 s of backoff
/// plus the failed tries) rides out a lock held for a moment, which a smaller batch would wait for just the
/// same, without halving.
pub const SPLIT_AFTER: u32 = 5;

/// How committing one piece of a batch ended.
enum Piece {
    Committed(Committed),
    /// It kept failing as if too large: halve it.
    TooLarge,
    /// Shutting down and out of time.
    GaveUp,
}

/// A batch to flush.
#[derive(Debug)]
pub struct FlushJob {
    /// Raw elements, oldest first: the oldest elements of the processing list.
    pub elements: Vec<Vec<u8>>,
    pub reason: FlushReason,
    /// Number of this flush under the worker's lease; makes a retried clear harmless.
    pub seq: u64,
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// Committed, cleared from the processing list, event published.
    Done,
    /// Committed, but the shard's lease is someone else's now (this batcher was presumed dead).
    Fenced,
    /// Committed, but the list's oldest end is not this batch: the worker must re-read its list.
    Mismatch,
    /// Shutting down and out of time: the batch may be uncommitted and stays in the processing list.
    GaveUp,
}

/// Flushes batches; owns the connections it needs.
#[derive(Debug)]
pub struct Flusher {
    store: Store,
    redis: RedisLink,
    queue: Queue,
    /// Cancelled when shutdown's grace period is over: retries stop.
    give_up: CancellationToken,
    /// The batcher's group commit, with several queue shards.
    group: Option<GroupCommit>,
}

impl Flusher {
    pub fn new(
        store: Store,
        redis: RedisLink,
        queue: Queue,
        give_up: CancellationToken,
        group: Option<GroupCommit>,
    ) -> Self {
        Self {
            store,
            redis,
            queue,
            give_up,
            group,
        }
    }

    /// Flushes one batch. Never drops it: transient failures are retried with capped backoff until they
    /// succeed or, at shutdown, the grace period ends.
    pub async fn flush(&mut self, job: FlushJob) -> FlushOutcome {
        let started = Instant::now();
        let shard = i32::try_from(self.queue.shard.index()).expect("shard indexes are small");
        let (job, report) = match &self.group {
            // A batch due by time is small, and its transaction costs about what a full one's does; a full
            // batch commits on its own, so several shards' COPYs of full batches still run side by side.
            Some(group) if matches!(job.reason, FlushReason::Timeout | FlushReason::Shutdown) => {
                group.commit(job, shard).await
            }
            _ => {
                let report =
                    commit_job(&mut self.store, &self.give_up, &job, &self.queue.id, shard).await;
                (job, report)
            }
        };
        let Some(report) = report else {
            return FlushOutcome::GaveUp;
        };
        // Test builds only: `FAILPOINTS=batcher::after_commit=return` kills the process right here, committed and
        // not cleared, the window a replay must cover (`batcher/tests/crash_after_commit.rs`).
        #[cfg(feature = "failpoints")]
        fail::fail_point!("batcher::after_commit", |_| -> FlushOutcome {
            std::process::abort()
        });
        let outcome = self.clear(&job, &report.event).await;

        let elapsed = started.elapsed();
        metrics::counter!("batcher_messages_persisted_total").increment(report.inserted);
        metrics::counter!("batcher_flushes_total", "reason" => job.reason.as_str()).increment(1);
        metrics::counter!("batcher_dead_letters_total").increment(report.dead_letters as u64);
        metrics::histogram!("batcher_batch_size").record(report.size as f64);
        metrics::histogram!("batcher_flush_duration_seconds").record(elapsed.as_secs_f64());
        tracing::info!(
            batch_id = report.batch_id,
            size = report.size,
            inserted = report.inserted,
            dead_letters = report.dead_letters,
            reason = %job.reason,
            duration_ms = %format_args!("{:.1}", elapsed.as_secs_f64() * 1000.0),
            outcome = ?outcome,
            "batch committed"
        );
        outcome
    }

    /// Clears the batch from the processing list and publishes the event, with retries.
    async fn clear(&mut self, job: &FlushJob, event: &str) -> FlushOutcome {
        let mut backoff = retry_backoff();
        loop {
            match self
                .queue
                .clear(&mut self.redis, job.seq, &job.elements, event)
                .await
            {
                Ok(Cleared::Done) => return FlushOutcome::Done,
                Ok(Cleared::Fenced) => return FlushOutcome::Fenced,
                Ok(Cleared::Mismatch) => return FlushOutcome::Mismatch,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot clear the committed batch; retrying");
                    metrics::counter!("batcher_retries_total").increment(1);
                    if !self.pause(delay).await {
                        return FlushOutcome::GaveUp;
                    }
                }
            }
        }
    }

    /// Sleeps `delay`; `false` if the grace period ended meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        pipeline::shutdown::pause(delay, &self.give_up).await
    }
}

/// A job's elements decoded: the rows to insert, and the elements that go to `dead_letters`.
#[derive(Debug)]
pub struct Decoded<'a> {
    rows: Vec<Row<'a>>,
    /// The raw element of each row (same index).
    row_raws: Vec<&'a [u8]>,
    rejected: Vec<(&'a [u8], String)>,
    /// What the batch holds: every element but the second copies.
    size: usize,
}

impl<'a> Decoded<'a> {
    pub fn new(elements: &'a [Vec<u8>]) -> Self {
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(elements.len());
        let mut row_raws: Vec<&[u8]> = Vec::with_capacity(elements.len());
        let mut rejected: Vec<(&[u8], String)> = Vec::new();
        // A group push retried after its reply was lost can queue an element twice: the second copy is the
        // same message, persisted once, announced once and counted once.
        let mut seen = HashSet::with_capacity(elements.len());
        let mut copies = 0;
        for raw in elements {
            match row::decode(raw) {
                Ok(row) if !seen.insert(row.tracking_id) => copies += 1,
                Ok(row) => {
                    rows.push(row);
                    row_raws.push(raw);
                }
                Err(reason) => rejected.push((raw, row::error_text(&reason.to_string()))),
            }
        }
        Self {
            rows,
            row_raws,
            rejected,
            size: elements.len() - copies,
        }
    }

    /// The batch to commit: these rows, from `shard`, flushed for `reason`.
    pub fn batch(
        &'a self,
        batcher_id: &'a str,
        shard: i32,
        reason: FlushReason,
    ) -> BatchToCommit<'a> {
        BatchToCommit {
            batcher_id,
            shard,
            reason,
            size: self.size,
            rows: &self.rows,
            row_raws: &self.row_raws,
            rejected: &self.rejected,
        }
    }

    /// What `committed` (this batch's commit) leaves to announce and to count.
    pub fn report(&self, committed: Committed, reason: FlushReason, batcher_id: &str) -> Report {
        let committed_at = Utc::now();
        let ids = persisted_ids(&self.rows, &committed.refused, committed_at);
        let dead_letters = self.rejected.len() + committed.refused.len();
        let event = BatchAnnouncement {
            batch: BatchPersisted {
                ids,
                batch_id: committed.batch_id,
                batch_size: self.size as u64,
                worker_timestamp: committed_at,
                reason: reason.as_str().to_owned(),
                batcher_id: batcher_id.to_owned(),
                dead_letters: dead_letters as u64,
            },
            channels: committed.channels,
        };
        Report {
            batch_id: committed.batch_id,
            inserted: committed.inserted,
            size: self.size,
            dead_letters,
            event: serde_json::to_string(&event).expect("events serialize"),
        }
    }
}

/// A committed job: the event its clear publishes and the figures its flush records.
#[derive(Debug, Clone)]
pub struct Report {
    pub batch_id: i64,
    /// Rows added (a replay adds fewer than it holds).
    pub inserted: u64,
    pub size: usize,
    pub dead_letters: usize,
    /// The `batch_persisted` event (JSON).
    pub event: String,
}

/// Decodes and commits one job on `store` (retrying, see [`commit`]); `None` if shutdown's grace ran out first.
pub async fn commit_job(
    store: &mut Store,
    give_up: &CancellationToken,
    job: &FlushJob,
    batcher_id: &str,
    shard: i32,
) -> Option<Report> {
    let decoded = Decoded::new(&job.elements);
    let batch = decoded.batch(batcher_id, shard, job.reason);
    let committed = commit(store, give_up, &batch, Attempts::default()).await?;
    Some(decoded.report(committed, job.reason, batcher_id))
}

/// Commits with retries; `None` if shutdown's grace ran out first.
///
/// A batch that keeps failing in a way a smaller batch could avoid ([`StoreError::size_may_be_the_cause`],
/// e.g. a `statement_timeout` shorter than one COPY of `BATCH_SIZE` rows) is halved after
/// [`SPLIT_AFTER`] such failures in a row, and each half committed in its own transaction, first half first
/// (so a channel's rows keep their order), halving again as needed: the backlog drains whatever the limit.
pub async fn commit(
    store: &mut Store,
    give_up: &CancellationToken,
    batch: &BatchToCommit<'_>,
    first: Attempts,
) -> Option<Committed> {
    // What the first try of the whole batch starts from (a group commit's id); pieces start afresh.
    let mut first = Some(first);
    // Pieces of the batch still to commit: rows `lo..hi`, and whether the dead letters go with it.
    let mut pieces = VecDeque::from([(0, batch.rows.len(), true)]);
    let mut committed = Committed {
        batch_id: 0,
        inserted: 0,
        refused: Vec::new(),
        channels: Vec::new(),
    };
    while let Some((lo, hi, with_rejected)) = pieces.pop_front() {
        let rejected = if with_rejected { batch.rejected } else { &[] };
        let piece = BatchToCommit {
            rows: &batch.rows[lo..hi],
            row_raws: &batch.row_raws[lo..hi],
            rejected,
            size: if lo == 0 && hi == batch.rows.len() {
                batch.size
            } else {
                hi - lo + rejected.len()
            },
            ..*batch
        };
        let attempts = first.take().unwrap_or_default();
        match commit_piece(store, give_up, &piece, attempts, hi - lo > 1).await {
            Piece::Committed(done) => {
                committed.batch_id = done.batch_id;
                committed.inserted += done.inserted;
                merge_ranges(&mut committed.channels, &done.channels);
                let refused = done.refused.into_iter();
                committed
                    .refused
                    .extend(refused.map(|(index, error)| (index + lo, error)));
            }
            Piece::TooLarge => {
                let mid = lo + (hi - lo) / 2;
                tracing::warn!(
                    rows = hi - lo,
                    "a batch keeps failing as if too large; halving it"
                );
                metrics::counter!("batcher_batch_splits_total").increment(1);
                pieces.push_front((mid, hi, false));
                pieces.push_front((lo, mid, with_rejected));
            }
            Piece::GaveUp => return None,
        }
    }
    Some(committed)
}

/// Commits one piece with retries; gives it back as too large after [`SPLIT_AFTER`] failures in a row that
/// a smaller piece could avoid, if `may_split`.
async fn commit_piece(
    store: &mut Store,
    give_up: &CancellationToken,
    batch: &BatchToCommit<'_>,
    mut attempts: Attempts,
    may_split: bool,
) -> Piece {
    let mut backoff = retry_backoff();
    let mut size_failures = 0;
    loop {
        let try_commit =
            tokio::time::timeout(COMMIT_TRY_TIMEOUT, store.commit(batch, &mut attempts));
        // A try hung on a silent connection must not hold shutdown past its grace period. Dropping it
        // mid-transaction rolls back (or, after COMMIT was sent, leaves a commit the replay will see).
        let result = tokio::select! {
            result = try_commit => Some(result.unwrap_or(Err(StoreError::Timeout(COMMIT_TRY_TIMEOUT)))),
            () = give_up.cancelled() => None,
        };
        let Some(result) = result else {
            store.reset();
            return Piece::GaveUp;
        };
        match result {
            Ok(committed) => return Piece::Committed(committed),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot commit the batch; retrying");
                metrics::counter!("batcher_retries_total").increment(1);
                store.reset();
                size_failures = if error.size_may_be_the_cause() {
                    size_failures + 1
                } else {
                    0
                };
                // If the last try timed out after its COMMIT was sent, the piece may be committed
                // already: its halves are then replays, which add no row twice.
                if may_split && size_failures >= SPLIT_AFTER {
                    return Piece::TooLarge;
                }
                if !pipeline::shutdown::pause(delay, give_up).await {
                    return Piece::GaveUp;
                }
            }
        }
    }
}

/// Tracking ids of the rows that are in `messages` now (all but the refused ones, whose indexes ascend),
/// recording each one's end-to-end latency on the way.
fn persisted_ids(
    rows: &[Row<'_>],
    refused: &[(usize, String)],
    committed_at: chrono::DateTime<Utc>,
) -> Vec<uuid::Uuid> {
    let latency = metrics::histogram!("pipeline_end_to_end_latency_seconds");
    let mut refused = refused.iter().map(|(index, _)| *index).peekable();
    let mut ids = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if refused.next_if_eq(&index).is_some() {
            continue;
        }
        ids.push(row.tracking_id);
        let waited = (committed_at - row.created_at).to_std().unwrap_or_default();
        latency.record(waited.as_secs_f64());
    }
    ids
}
