//! One flush, end to end: decode, commit (retrying transient failures), clear the processing list, publish.
//!
//! A [`Flusher`] owns its own PostgreSQL and Redis connections, so the worker can run it on a spawned task
//! while it keeps filling the next batch on its own connection.

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
}

impl Flusher {
    pub fn new(store: Store, redis: RedisLink, queue: Queue, give_up: CancellationToken) -> Self {
        Self {
            store,
            redis,
            queue,
            give_up,
        }
    }

    /// Flushes one batch. Never drops it: transient failures are retried with capped backoff until they
    /// succeed or, at shutdown, the grace period ends.
    pub async fn flush(&mut self, job: FlushJob) -> FlushOutcome {
        let started = Instant::now();
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(job.elements.len());
        let mut row_raws: Vec<&[u8]> = Vec::with_capacity(job.elements.len());
        let mut rejected: Vec<(&[u8], String)> = Vec::new();
        // A group push retried after its reply was lost can queue an element twice: the second copy is the
        // same message, persisted once, announced once and counted once.
        let mut seen = HashSet::with_capacity(job.elements.len());
        let mut copies = 0;
        for raw in &job.elements {
            match row::decode(raw) {
                Ok(row) if !seen.insert(row.tracking_id) => copies += 1,
                Ok(row) => {
                    rows.push(row);
                    row_raws.push(raw);
                }
                Err(reason) => rejected.push((raw, row::error_text(&reason.to_string()))),
            }
        }
        // What this batch holds: every element but the second copies.
        let size = job.elements.len() - copies;
        let batcher_id = self.queue.id.clone();
        let batch = BatchToCommit {
            batcher_id: &batcher_id,
            shard: i32::try_from(self.queue.shard.index()).expect("shard indexes are small"),
            reason: job.reason,
            size,
            rows: &rows,
            row_raws: &row_raws,
            rejected: &rejected,
        };
        let Some(committed) = self.commit(&batch).await else {
            return FlushOutcome::GaveUp;
        };
        // Test builds only: `FAILPOINTS=batcher::after_commit=return` kills the process right here, committed and
        // not cleared, the window a replay must cover (`batcher/tests/crash_after_commit.rs`).
        #[cfg(feature = "failpoints")]
        fail::fail_point!("batcher::after_commit", |_| -> FlushOutcome {
            std::process::abort()
        });
        let committed_at = Utc::now();

        let ids = persisted_ids(&rows, &committed.refused, committed_at);
        let dead_letters = rejected.len() + committed.refused.len();
        let event = BatchAnnouncement {
            batch: BatchPersisted {
                ids,
                batch_id: committed.batch_id,
                batch_size: size as u64,
                worker_timestamp: committed_at,
                reason: job.reason.as_str().to_owned(),
                batcher_id,
                dead_letters: dead_letters as u64,
            },
            channels: committed.channels,
        };
        let event = serde_json::to_string(&event).expect("events serialize");
        let outcome = self.clear(&job, &event).await;

        let elapsed = started.elapsed();
        metrics::counter!("batcher_messages_persisted_total").increment(committed.inserted);
        metrics::counter!("batcher_flushes_total", "reason" => job.reason.as_str()).increment(1);
        metrics::counter!("batcher_dead_letters_total").increment(dead_letters as u64);
        metrics::histogram!("batcher_batch_size").record(size as f64);
        metrics::histogram!("batcher_flush_duration_seconds").record(elapsed.as_secs_f64());
        tracing::info!(
            batch_id = committed.batch_id,
            size,
            inserted = committed.inserted,
            dead_letters,
            reason = %job.reason,
            duration_ms = %format_args!("{:.1}", elapsed.as_secs_f64() * 1000.0),
            outcome = ?outcome,
            "batch committed"
        );
        outcome
    }

    /// Commits with retries; `None` if shutdown's grace ran out first.
    ///
    /// A batch that keeps failing in a way a smaller batch could avoid ([`StoreError::size_may_be_the_cause`],
    /// e.g. a `statement_timeout` shorter than one COPY of `BATCH_SIZE` rows) is halved after
    /// [`SPLIT_AFTER`] such failures in a row, and each half committed in its own transaction, first half first
    /// (so a channel's rows keep their order), halving again as needed: the backlog drains whatever the limit.
    async fn commit(&mut self, batch: &BatchToCommit<'_>) -> Option<Committed> {
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
            match self.commit_piece(&piece, hi - lo > 1).await {
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
    async fn commit_piece(&mut self, batch: &BatchToCommit<'_>, may_split: bool) -> Piece {
        let mut attempts = Attempts::default();
        let mut backoff = retry_backoff();
        let mut size_failures = 0;
        loop {
            let try_commit =
                tokio::time::timeout(COMMIT_TRY_TIMEOUT, self.store.commit(batch, &mut attempts));
            // A try hung on a silent connection must not hold shutdown past its grace period. Dropping it
            // mid-transaction rolls back (or, after COMMIT was sent, leaves a commit the replay will see).
            let result = tokio::select! {
                result = try_commit => Some(result.unwrap_or(Err(StoreError::Timeout(COMMIT_TRY_TIMEOUT)))),
                () = self.give_up.cancelled() => None,
            };
            let Some(result) = result else {
                self.store.reset();
                return Piece::GaveUp;
            };
            match result {
                Ok(committed) => return Piece::Committed(committed),
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot commit the batch; retrying");
                    metrics::counter!("batcher_retries_total").increment(1);
                    self.store.reset();
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
                    if !self.pause(delay).await {
                        return Piece::GaveUp;
                    }
                }
            }
        }
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
