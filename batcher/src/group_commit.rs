//! Group commit: one PostgreSQL transaction for the time-triggered batches of all the shards a batcher holds.
//!
//! With `QUEUE_SHARDS` > 1 each shard's worker fills its own batch and, under a steady trickle, every one of
//! them flushes on `BATCH_TIMEOUT` with a sixth (for six shards) of what one shard would hold: six
//! transactions, six WAL flushes and six lock rounds where one would do. Measured on the 3-master cluster with
//! 6 shards, a `BATCH_TIMEOUT` six times longer (batches the size of one shard's) made single POSTs 14% faster,
//! which is what those transactions cost.
//!
//! So the flushers of one batcher hand their time-triggered batches to one task, which commits everything
//! waiting in one transaction ([`Store::commit_group`]) and hands each flusher its batch back with its
//! [`Report`]; each flusher then clears its own shard and publishes its own event, as before.
//!
//! For the shards' batches to be ready together, their time triggers are aligned in **rounds** ([`Round`]):
//! a batch that starts while another shard's batch of this batcher waits for its deadline takes that deadline
//! (which is sooner than its own), so every batch started within one `BATCH_TIMEOUT` flushes at the same
//! instant, and the task waits [`LINGER`] after the first one for the others. No batch is ever flushed later
//! than `BATCH_TIMEOUT` after its first element; a batch may be flushed earlier (smaller), which costs
//! little in a group. Measured: without rounds, three in four transactions held one batch.
//!
//! What stays as it was: each shard has at most one flush in flight (its worker waits for the report), so a
//! shard's batches commit in the order they were taken; each batch has its own `batches` row, id, event and
//! dead letters. A batch that reached `BATCH_SIZE` commits on its own connection, so full batches of several
//! shards still COPY side by side. If the group's transaction fails, each of its batches is committed on its
//! own, with the usual retries, knowing its group id (a COMMIT whose reply was lost is found, not repeated).

use std::sync::{Arc, Mutex};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    flush::{self, COMMIT_TRY_TIMEOUT, Decoded, FlushJob, Report},
    store::{Attempts, BatchToCommit, Committed, Store, StoreError},
};

/// Most batches in one transaction (a batcher rarely holds more shards).
const MAX_GROUP: usize = 64;
/// How long the task waits, after a batch is handed over, for the other batches of its round: they are due at
/// the same instant, and each first takes what gathered in its shard (a Redis round trip).
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// The time trigger the shards of one batcher share: when the batches started now are due.
#[derive(Debug, Default)]
pub struct Round {
    due: Mutex<Option<Instant>>,
}

impl Round {
    /// The deadline of a batch that started at `now` with its own deadline `own` (`BATCH_TIMEOUT` later):
    /// the current round's if that is still ahead and no later than `own`; else `own`, which starts a round.
    pub fn deadline(&self, now: Instant, own: Instant) -> Instant {
        let mut due = self.due.lock().expect("round lock");
        match *due {
            Some(round) if now < round && round <= own => round,
            _ => {
                *due = Some(own);
                own
            }
        }
    }
}

/// A batch handed over, and where its report goes (with the job back, for the clear).
struct Handed {
    job: FlushJob,
    shard: i32,
    reply: oneshot::Sender<(FlushJob, Option<Report>)>,
}

/// The flushers' side of the batcher's group commit.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    sender: mpsc::Sender<Handed>,
    round: Arc<Round>,
}

impl std::fmt::Debug for Handed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handed")
            .field("shard", &self.shard)
            .field("elements", &self.job.elements.len())
            .finish()
    }
}

impl GroupCommit {
    /// Starts the committing task on `store`; it ends once every handle is dropped. `give_up` ends its
    /// retries when shutdown's grace is over.
    pub fn spawn(store: Store, batcher_id: String, give_up: CancellationToken) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_GROUP);
        tokio::spawn(commit_groups(receiver, store, batcher_id, give_up));
        Self {
            sender,
            round: Arc::default(),
        }
    }

    /// The deadline of a batch that started at `now` with its own deadline `own`: see [`Round`].
    pub fn align(&self, now: Instant, own: Instant) -> Instant {
        self.round.deadline(now, own)
    }

    /// Commits `job` (of `shard`) with whatever other batches are waiting; gives the job back with its
    /// report, or `None` if shutdown's grace ran out first.
    pub async fn commit(&self, job: FlushJob, shard: i32) -> (FlushJob, Option<Report>) {
        let (reply, report) = oneshot::channel();
        let handed = Handed { job, shard, reply };
        self.sender
            .send(handed)
            .await
            .expect("the group commit runs while a flusher holds its handle");
        report
            .await
            .expect("the group commit answers every batch it takes")
    }
}

async fn commit_groups(
    mut receiver: mpsc::Receiver<Handed>,
    mut store: Store,
    batcher_id: String,
    give_up: CancellationToken,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // `recv_many` returns 0 only once every handle is gone and the channel is empty.
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        // The rest of the round: until LINGER has passed, or every sender is gone.
        let linger = Instant::now() + LINGER;
        while group.len() < MAX_GROUP {
            let room = MAX_GROUP - group.len();
            let more = tokio::time::timeout_at(linger, receiver.recv_many(&mut group, room));
            if !matches!(more.await, Ok(n) if n > 0) {
                break;
            }
        }
        // Every group writes its shards' `shard_totals` rows in shard order, so two batchers' groups that
        // share shards for a moment (a hand-over) take those row locks in the same order. Stable: batches of
        // one shard keep the order they came in.
        group.sort_by_key(|handed| handed.shard);
        let reports = commit_all(&mut store, &give_up, &batcher_id, &group).await;
        for (handed, report) in group.drain(..).zip(reports) {
            // A flusher that stopped waiting has nothing left to clear.
            let _ = handed.reply.send((handed.job, report));
        }
    }
}

/// Commits every handed batch: together in one transaction when there are several, else (or if that fails)
/// each on its own with retries. One report per batch, in order; `None` for those that shutdown's grace
/// left uncommitted.
async fn commit_all(
    store: &mut Store,
    give_up: &CancellationToken,
    batcher_id: &str,
    group: &[Handed],
) -> Vec<Option<Report>> {
    if let [handed] = group {
        return vec![
            flush::commit_job(store, give_up, &handed.job, batcher_id, handed.shard).await,
        ];
    }
    let decoded: Vec<Decoded<'_>> = group
        .iter()
        .map(|handed| Decoded::new(&handed.job.elements))
        .collect();
    let batches: Vec<BatchToCommit<'_>> = decoded
        .iter()
        .zip(group)
        .map(|(decoded, handed)| decoded.batch(batcher_id, handed.shard, handed.job.reason))
        .collect();
    metrics::histogram!("batcher_group_commit_batches").record(group.len() as f64);

    // `None`: shutdown's grace ran out, on either step.
    let (ids, together) = match try_once(give_up, store.next_batch_ids(group.len())).await {
        None => (None, None),
        Some(Ok(ids)) => {
            let together = try_once(give_up, store.commit_group(&batches, &ids)).await;
            (Some(ids), together)
        }
        Some(Err(error)) => (None, Some(Err(error))),
    };
    let committed: Vec<Option<Committed>> = match together {
        None => {
            // A transaction left open by the abandoned try rolls back with its connection.
            store.reset();
            return vec![None; group.len()];
        }
        Some(Ok(committed)) => committed.into_iter().map(Some).collect(),
        Some(Err(error)) => {
            tracing::warn!(%error, batches = group.len(), "cannot commit the group; committing its batches one by one");
            store.reset();
            let mut committed = Vec::with_capacity(group.len());
            for (index, batch) in batches.iter().enumerate() {
                let first = ids
                    .as_ref()
                    .map_or_else(Attempts::default, |ids| Attempts::after_group(ids[index]));
                committed.push(flush::commit(store, give_up, batch, first).await);
            }
            committed
        }
    };
    committed
        .into_iter()
        .zip(decoded.iter().zip(group))
        .map(|(committed, (decoded, handed))| {
            committed.map(|committed| decoded.report(committed, handed.job.reason, batcher_id))
        })
        .collect()
}

/// One try of `attempt`, within [`COMMIT_TRY_TIMEOUT`]; `None` if shutdown's grace ran out first.
async fn try_once<T>(
    give_up: &CancellationToken,
    attempt: impl Future<Output = Result<T, StoreError>>,
) -> Option<Result<T, StoreError>> {
    tokio::select! {
        result = tokio::time::timeout(COMMIT_TRY_TIMEOUT, attempt) => {
            Some(result.unwrap_or(Err(StoreError::Timeout(COMMIT_TRY_TIMEOUT))))
        }
        () = give_up.cancelled() => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(50);

    #[tokio::test(start_paused = true)]
    async fn batches_started_within_a_round_are_due_with_its_first_and_the_next_round_starts_after_it()
     {
        let round = Round::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(
            round.deadline(at(0), at(0) + TIMEOUT),
            at(50),
            "the first starts a round"
        );
        assert_eq!(round.deadline(at(10), at(10) + TIMEOUT), at(50));
        assert_eq!(round.deadline(at(49), at(49) + TIMEOUT), at(50));
        // Due now or past: a new round, from this batch's own deadline.
        assert_eq!(round.deadline(at(50), at(50) + TIMEOUT), at(100));
        assert_eq!(round.deadline(at(70), at(70) + TIMEOUT), at(100));
        // A batch whose own deadline is sooner (a shorter timeout) keeps it, and starts a round.
        assert_eq!(round.deadline(at(71), at(80)), at(80));
        assert_eq!(round.deadline(at(75), at(75) + TIMEOUT), at(80));
    }
}
