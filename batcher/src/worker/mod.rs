//! The fill/flush loop of one shard, run while this batcher holds the shard's lease.
//!
//! The worker fills a batch from the shard's pending list on its own connection and hands each full (or
//! timed-out) batch to a [`Flusher`] on a spawned task, then goes on filling the next batch while that one
//! commits. At most one flush is in flight, so commits happen in the order the elements were taken, which
//! keeps "the batch is the k oldest elements of the processing list" true (see `queue`), and a channel's
//! messages committed in the order they were queued.
//!
//! Whenever the worker cannot be sure its memory matches its processing list (a Redis call failed midway, or
//! a clear found the list's oldest end different), it forgets what it holds and *recovers*: it re-reads the
//! list from its oldest end and flushes it in chunks of `BATCH_SIZE`. Rows are idempotent on `tracking_id`, so
//! re-flushing is always safe; clearing the wrong elements would not be, so that is what every check guards.
//!
//! The worker ends when told to stop (shutdown, or the shard is handed to another batcher): it stops taking,
//! flushes what it holds and releases the lease. It ends at once when its lease turns out lost (fenced): what
//! it holds is in its processing list, which the lease's next holder moves back to pending.

mod flush_task;
pub mod step;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use pipeline::connection::RedisTarget;
use pipeline::shutdown::pause;
use tokio::{sync::Notify, task::JoinError, time::Instant};
use tokio_util::sync::CancellationToken;

use self::{
    flush_task::FlushTask,
    step::{Course, Situation, Step},
};
use crate::{
    backoff::retry_backoff,
    flush::{FlushJob, FlushOutcome, Flusher},
    group_commit::GroupCommit,
    link::{QueueError, RedisLink},
    policy::{Batch, FlushPolicy, FlushReason},
    queue::{Queue, Taken},
    store::Store,
};

/// What one shard's worker needs.
#[derive(Clone)]
pub struct Settings {
    pub policy: FlushPolicy,
    /// The shard's keys, this batcher's id and the lease token.
    pub queue: Queue,
    pub redis: RedisTarget,
    pub database_url: String,
    /// Elements the lease's takeover moved back to pending (they are taken first): flushed with reason
    /// `recovery`.
    pub reclaimed: u64,
    /// The batcher's group commit, with several queue shards (see `group_commit`).
    pub group: Option<GroupCommit>,
}

/// Debug output ends up in logs: the database URL's password is left out.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("policy", &self.policy)
            .field("queue", &self.queue)
            .field("redis", &self.redis)
            .field(
                "database_url",
                &pipeline::redact::redact(&self.database_url),
            )
            .field("reclaimed", &self.reclaimed)
            .field("group", &self.group.is_some())
            .finish()
    }
}

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Told to stop: everything it held is committed and the lease released (or, if the release failed, left
    /// to expire).
    Released,
    /// The lease was lost; the next holder reclaims what this worker held.
    Fenced,
    /// Shutdown's grace ran out with something uncommitted; it stays in the processing list.
    GaveUp,
}

/// Why the worker stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("a flush task failed: {0}")]
    FlushTask(#[from] JoinError),
    #[error("the flush task ended while the worker still needed it")]
    FlushTaskEnded,
}

/// Runs the worker until `stop` is cancelled (then flushes and releases), the lease is lost (`fenced` is
/// notified and confirmed), or `give_up` ends shutdown's grace.
pub async fn run(
    settings: Settings,
    stop: CancellationToken,
    give_up: CancellationToken,
    fenced: Arc<Notify>,
) -> Result<Ended, WorkerError> {
    let mut worker = Worker::new(settings, stop, give_up, fenced);
    let ended = worker.work().await?;
    if ended == Ended::Released {
        let queue = &worker.queue;
        let shard = queue.shard.index();
        match crate::lease::release(&mut worker.control, &queue.shard, &queue.id, &queue.token)
            .await
        {
            Ok(_) => tracing::info!(shard, "released the shard"),
            Err(error) => {
                tracing::warn!(%error, shard, "cannot release the shard; its lease will expire");
            }
        }
    }
    Ok(ended)
}

/// What woke the worker while it was idle.
enum Event {
    Stop,
    Fenced,
    FlushDone(Result<FlushOutcome, WorkerError>),
    Deadline,
    Ready(Result<bool, QueueError>),
}

type Wait = Pin<Box<dyn Future<Output = Result<bool, QueueError>> + Send>>;

struct Worker {
    queue: Queue,
    policy: FlushPolicy,
    /// The connection that waits for and moves elements (it blocks in `BLMOVE`).
    fill: RedisLink,
    /// Recovery reads and the release.
    control: RedisLink,
    batch: Batch<Vec<u8>>,
    /// The outstanding wait for pending elements, kept across flushes (see `Queue::wait_for_pending`).
    wait: Option<Wait>,
    flusher: FlushTask,
    /// Number of the last flush under this lease.
    seq: u64,
    /// The batcher's group commit, whose rounds align this worker's time trigger with the other shards'.
    group: Option<GroupCommit>,
    /// Reclaimed elements not yet flushed (see [`Settings::reclaimed`]).
    replaying: u64,
    /// After a take that left room: no new take before this (see [`step::gather_until`]).
    gather_until: Option<Instant>,
    /// When the last take was made: the rate it saw sets the next gathering.
    last_take: Option<Instant>,
    course: Course,
    stop: CancellationToken,
    /// Shutdown's grace ran out: stop retrying and leave the rest in Redis.
    give_up: CancellationToken,
    fenced_notice: Arc<Notify>,
}

impl Worker {
    fn new(
        settings: Settings,
        stop: CancellationToken,
        give_up: CancellationToken,
        fenced_notice: Arc<Notify>,
    ) -> Self {
        let flusher = Flusher::new(
            Store::new(&settings.database_url),
            RedisLink::new(settings.redis.clone()),
            settings.queue.clone(),
            give_up.clone(),
            settings.group.clone(),
        );
        Self {
            fill: RedisLink::new(settings.redis.clone()),
            control: RedisLink::new(settings.redis),
            batch: Batch::new(settings.policy),
            policy: settings.policy,
            queue: settings.queue,
            wait: None,
            flusher: FlushTask::spawn(flusher),
            seq: 0,
            group: settings.group,
            replaying: settings.reclaimed,
            gather_until: None,
            last_take: None,
            // A list left by an earlier holder under this id was reclaimed with the lease, so the worker
            // starts with an empty processing list.
            course: Course::Steady,
            stop,
            give_up,
            fenced_notice,
        }
    }

    /// The main loop, then the final flush.
    async fn work(&mut self) -> Result<Ended, WorkerError> {
        while !self.stop.is_cancelled() && self.course.goes_on() {
            let situation = Situation {
                now: Instant::now(),
                course: self.course,
                batch: &self.batch,
                replaying: self.replaying,
                gather_until: self.gather_until,
                waiting: self.wait.is_some(),
            };
            match step::next(&situation) {
                Step::Recover => self.recover().await?,
                Step::Flush(reason) => self.dispatch(reason).await?,
                Step::Take => {
                    self.gather_until = None;
                    self.take().await;
                }
                Step::Wait(block) => {
                    self.gather_until = None;
                    match self.fill.conn().await {
                        Ok(conn) => {
                            self.wait = Some(Box::pin(self.queue.wait_for_pending(conn, block)));
                        }
                        Err(error) => self.redis_failed(&error),
                    }
                }
                Step::Idle(until) => {
                    let event = tokio::select! {
                        biased;
                        () = self.stop.cancelled() => Event::Stop,
                        result = self.flusher.finished() => Event::FlushDone(result),
                        () = self.fenced_notice.notified() => Event::Fenced,
                        () = sleep_until(until) => Event::Deadline,
                        result = maybe(self.wait.as_mut()) => Event::Ready(result),
                    };
                    self.on_event(event).await?;
                }
            }
        }
        self.finish().await
    }

    async fn on_event(&mut self, event: Event) -> Result<(), WorkerError> {
        match event {
            Event::Stop | Event::Deadline => {}
            Event::Fenced => self.fence(),
            Event::FlushDone(outcome) => self.on_outcome(outcome?),
            Event::Ready(result) => {
                self.wait = None;
                match result {
                    Ok(true) => self.take().await,
                    Ok(false) => {}
                    Err(error) => self.redis_failed(&error),
                }
            }
        }
        Ok(())
    }

    /// Pending has elements: move as many as fit, in one round trip.
    async fn take(&mut self) {
        let room = self.batch.room();
        match self.queue.take(&mut self.fill, room).await {
            Ok(Taken::Moved(items)) => {
                let now = Instant::now();
                let took = items.len();
                let since_previous = self.last_take.map(|previous| now - previous);
                self.last_take = Some(now);
                let was_empty = self.batch.is_empty();
                self.batch.extend(items, now);
                // A batch that starts now joins the batcher's round (see `group_commit`).
                if was_empty
                    && let Some(group) = &self.group
                    && let Some(own) = self.batch.deadline()
                {
                    self.batch.bring_forward(group.align(now, own));
                }
                self.gather_until = step::gather_until(
                    now,
                    took,
                    since_previous,
                    self.batch.room(),
                    self.batch.deadline(),
                    self.policy.timeout,
                );
            }
            Ok(Taken::Fenced) => self.fence(),
            Err(error) => self.redis_failed(&error),
        }
    }

    /// Hands the batch to the flusher's task, after the previous flush (if any) is done.
    async fn dispatch(&mut self, reason: FlushReason) -> Result<(), WorkerError> {
        self.settle().await?;
        if self.course != Course::Steady {
            // The batch is re-read from the processing list by the recovery, or left to the next holder.
            return Ok(());
        }
        let elements = self.batch.take();
        let job = self.job(elements, reason);
        if let Some(outcome) = self.flusher.start(job).await? {
            self.on_outcome(outcome);
        }
        Ok(())
    }

    /// The next flush of `elements`; reclaimed elements (taken first) flush as `recovery`.
    fn job(&mut self, elements: Vec<Vec<u8>>, reason: FlushReason) -> FlushJob {
        self.seq += 1;
        let reason = if self.replaying > 0 {
            self.replaying = self.replaying.saturating_sub(elements.len() as u64);
            FlushReason::Recovery
        } else {
            reason
        };
        FlushJob {
            elements,
            reason,
            seq: self.seq,
        }
    }

    /// Waits for the flush in flight, if any.
    async fn settle(&mut self) -> Result<(), WorkerError> {
        if let Some(outcome) = self.flusher.settle().await? {
            self.on_outcome(outcome);
        }
        Ok(())
    }

    fn on_outcome(&mut self, outcome: FlushOutcome) {
        match outcome {
            FlushOutcome::Done => {}
            FlushOutcome::Fenced => self.fence(),
            FlushOutcome::Mismatch => {
                tracing::warn!(
                    shard = self.queue.shard.index(),
                    "the processing list's oldest end is not the committed batch; re-reading it"
                );
                self.course.escalate(Course::Recovering);
            }
            FlushOutcome::GaveUp => self.course.escalate(Course::GaveUp),
        }
    }

    /// A Redis call failed: its effect is unknown, so the batch is re-read from the list.
    fn redis_failed(&mut self, error: &QueueError) {
        tracing::warn!(%error, shard = self.queue.shard.index(), "Redis failed while taking messages; recovering from the processing list");
        metrics::counter!("batcher_retries_total").increment(1);
        self.wait = None;
        self.fill.reset();
        self.course.escalate(Course::Recovering);
    }

    fn fence(&mut self) {
        if self.course != Course::Fenced {
            tracing::warn!(
                batcher_id = %self.queue.id,
                shard = self.queue.shard.index(),
                "this batcher lost the shard's lease (it was presumed dead); leaving what it held to the next holder"
            );
            metrics::counter!("batcher_fenced_total").increment(1);
        }
        self.course.escalate(Course::Fenced);
    }

    /// Gives up if shutdown's grace ran out during `delay`.
    async fn pause_or_give_up(&mut self, delay: Duration) {
        if !pause(delay, &self.give_up).await {
            self.course.escalate(Course::GaveUp);
        }
    }

    /// Forgets the batch in memory and flushes the processing list from its oldest end.
    async fn recover(&mut self) -> Result<(), WorkerError> {
        self.wait = None;
        self.fill.reset();
        self.settle().await?;
        self.batch.clear();
        // Every flush of the drain re-checks the list, so a mismatch during it is settled by the drain itself.
        self.drain(FlushReason::Recovery).await?;
        if self.course == Course::Recovering {
            self.course = Course::Steady;
        }
        Ok(())
    }

    /// Flushes the processing list, oldest first, in chunks of `BATCH_SIZE`, until it is empty.
    async fn drain(&mut self, reason: FlushReason) -> Result<(), WorkerError> {
        let mut backoff = retry_backoff();
        while self.course.goes_on() {
            let items = match self
                .queue
                .read_oldest(&mut self.control, self.policy.threshold)
                .await
            {
                Ok(items) => items,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the processing list; retrying");
                    metrics::counter!("batcher_retries_total").increment(1);
                    self.pause_or_give_up(backoff.next_delay()).await;
                    continue;
                }
            };
            backoff.reset();
            if items.is_empty() {
                break;
            }
            let job = self.job(items, reason);
            let outcome = self.flusher.run(job).await?;
            self.on_outcome(outcome);
            if outcome == FlushOutcome::Mismatch {
                // Only a concurrent change of the list's oldest end causes this; let it settle.
                self.pause_or_give_up(backoff.next_delay()).await;
            }
        }
        Ok(())
    }

    /// Stopping: stop taking, flush what is held, then anything else left in the processing list. A fenced
    /// worker only waits for its flush in flight: what it holds belongs to the lease's next holder.
    async fn finish(&mut self) -> Result<Ended, WorkerError> {
        self.wait = None;
        self.fill.reset();
        self.settle().await?;
        while self.course == Course::Steady && !self.batch.is_empty() {
            self.dispatch(FlushReason::Shutdown).await?;
            self.settle().await?;
        }
        self.batch.clear();
        if self.course != Course::Fenced {
            self.drain(FlushReason::Shutdown).await?;
        }
        Ok(match self.course {
            Course::Fenced => Ended::Fenced,
            Course::GaveUp => Ended::GaveUp,
            Course::Steady | Course::Recovering => Ended::Released,
        })
    }
}

/// Waits for `future` if there is one, else forever (a disabled `select!` branch).
async fn maybe<F: Future + Unpin>(future: Option<&mut F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline` if there is one, else forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
