//! The fill/flush loop.
//!
//! The worker fills a batch from Redis on its own connection and hands each full (or timed-out) batch to a
//! [`Flusher`] on a spawned task, then goes on filling the next batch while that one commits. At most one
//! flush is in flight, so commits happen in the order the elements were taken, which keeps "the batch is
//! the k oldest elements of the processing list" true (see `queue`).
//!
//! Whenever the worker cannot be sure its memory matches its processing list (a Redis call failed midway,
//! a clear found the list's oldest end different, or the list was reclaimed while this process was
//! paused), it forgets what it holds and *recovers*: it re-reads the list from its oldest end and flushes it
//! in chunks of `BATCH_SIZE`. Rows are idempotent on `tracking_id`, so re-flushing is always safe; clearing
//! the wrong elements would not be, so that is what every check guards.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use pipeline::keys::Keys;
use tokio::{
    sync::{Notify, watch},
    task::{JoinError, JoinHandle},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    flush::{FlushJob, FlushOutcome, Flusher},
    heartbeat::{self, HEARTBEAT_INTERVAL, HEARTBEAT_TTL},
    policy::{Batch, FlushPolicy, FlushReason},
    queue::{Queue, QueueError, RedisLink},
    store::Store,
};

/// Longest single `BLMOVE` wait; the loop then goes round again (and notices a dead connection).
pub const IDLE_BLOCK: Duration = Duration::from_secs(1);
/// After SIGTERM, how long failing retries may go on before the batcher exits anyway, leaving what it could
/// not commit in its processing list (re-flushed at its next start or reclaimed by another batcher).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often registration re-checks whether a predecessor's lease on this id has expired.
const LEASE_POLL: Duration = Duration::from_millis(250);

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: FlushPolicy,
    pub keys: Keys,
    pub batcher_id: String,
    pub redis: redis::Client,
    pub database_url: String,
}

/// Why the worker stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "another batcher with BATCHER_ID={0} is running (its heartbeat keeps being renewed); \
         give every batcher a distinct BATCHER_ID"
    )]
    IdInUse(String),
    #[error("a flush task failed: {0}")]
    FlushTask(#[from] JoinError),
}

type Take = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, QueueError>> + Send>>;
type InFlight = JoinHandle<(Flusher, FlushOutcome)>;

/// Runs the worker until `shutdown` is cancelled and what it holds is flushed.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let give_up = CancellationToken::new();
    let grace = {
        let (shutdown, give_up) = (shutdown.clone(), give_up.clone());
        tokio::spawn(async move {
            let grace_over = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                () = grace_over => give_up.cancel(),
                () = give_up.cancelled() => {}
            }
        })
    };
    let mut worker = Worker::new(settings, shutdown, give_up.clone());
    let result = worker.run().await;
    give_up.cancel();
    let _ = grace.await;
    result
}

enum Event {
    Shutdown,
    FenceSuspected,
    FlushDone(Box<Result<(Flusher, FlushOutcome), JoinError>>),
    Deadline,
    Took(Result<Option<Vec<u8>>, QueueError>),
}

struct Worker {
    queue: Queue,
    keys: Keys,
    policy: FlushPolicy,
    redis: redis::Client,
    /// The connection that moves elements (it blocks in `BLMOVE`).
    fill: RedisLink,
    /// Registration checks and recovery reads.
    control: RedisLink,
    batch: Batch<Vec<u8>>,
    /// The outstanding `BLMOVE`, kept across flushes (see `Queue::take_first`).
    take: Option<Take>,
    /// The flusher when idle; `None` while it runs in `in_flight`.
    flusher: Option<Flusher>,
    in_flight: Option<InFlight>,
    lease: watch::Sender<String>,
    seq: u64,
    fenced: Arc<Notify>,
    shutdown: CancellationToken,
    give_up: CancellationToken,
    needs_recovery: bool,
    needs_register: bool,
    /// Shutdown's grace ran out: stop retrying and leave the rest in Redis.
    gave_up: bool,
}

impl Worker {
    fn new(settings: Settings, shutdown: CancellationToken, give_up: CancellationToken) -> Self {
        let queue = Queue::new(&settings.keys, &settings.batcher_id);
        let flusher = Flusher::new(
            Store::new(&settings.database_url),
            RedisLink::new(settings.redis.clone()),
            queue.clone(),
            give_up.clone(),
        );
        Self {
            fill: RedisLink::new(settings.redis.clone()),
            control: RedisLink::new(settings.redis.clone()),
            redis: settings.redis,
            batch: Batch::new(settings.policy),
            policy: settings.policy,
            keys: settings.keys,
            queue,
            take: None,
            flusher: Some(flusher),
            in_flight: None,
            lease: watch::Sender::new(String::new()),
            seq: 0,
            fenced: Arc::new(Notify::new()),
            shutdown,
            give_up,
            needs_recovery: true,
            needs_register: true,
            gave_up: false,
        }
    }

    async fn run(&mut self) -> Result<(), WorkerError> {
        let stop = self.shutdown.clone();
        if !self.register(&stop).await? {
            return Ok(());
        }
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat::run(
            self.queue.clone(),
            self.keys.clone(),
            RedisLink::new(self.redis.clone()),
            self.lease.subscribe(),
            Arc::clone(&self.fenced),
            heartbeat_stop.clone(),
        ));
        let result = self.work().await;
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        let lease = self.lease.borrow().clone();
        if let Err(error) = heartbeat::deregister(&self.queue, &mut self.control, &lease).await {
            tracing::warn!(%error, "cannot deregister; the heartbeat will expire by itself");
        }
        tracing::info!(batcher_id = %self.queue.id, "stopped");
        result
    }

    /// The main loop, then the shutdown flush.
    async fn work(&mut self) -> Result<(), WorkerError> {
        while !self.shutdown.is_cancelled() && !self.gave_up {
            if self.needs_recovery {
                self.recover(FlushReason::Recovery).await?;
                continue;
            }
            let now = Instant::now();
            if let Some(reason) = self.batch.should_flush(now) {
                self.dispatch(reason).await?;
                continue;
            }
            if self.take.is_none() {
                let block = self.batch.deadline().map_or(IDLE_BLOCK, |deadline| {
                    deadline.saturating_duration_since(now).min(IDLE_BLOCK)
                });
                match self.fill.conn().await {
                    Ok(conn) => self.take = Some(Box::pin(self.queue.take_first(conn, block))),
                    Err(error) => {
                        self.redis_failed(&error);
                        continue;
                    }
                }
            }
            let deadline = self.batch.deadline();
            let event = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Event::Shutdown,
                result = maybe(self.in_flight.as_mut()) => Event::FlushDone(Box::new(result)),
                () = self.fenced.notified() => Event::FenceSuspected,
                () = sleep_until(deadline) => Event::Deadline,
                result = maybe(self.take.as_mut()) => Event::Took(result),
            };
            match event {
                Event::Shutdown | Event::Deadline => {}
                Event::FenceSuspected => self.check_fence().await,
                Event::FlushDone(result) => {
                    self.in_flight = None;
                    let (flusher, outcome) = (*result)?;
                    self.flusher = Some(flusher);
                    self.on_outcome(outcome);
                }
                Event::Took(result) => {
                    self.take = None;
                    match result {
                        Ok(Some(first)) => self.took(first).await,
                        Ok(None) => {}
                        Err(error) => self.redis_failed(&error),
                    }
                }
            }
        }
        self.finish().await
    }

    /// `BLMOVE` brought the first element: move as many more as fit, in one round trip.
    async fn took(&mut self, first: Vec<u8>) {
        let now = Instant::now();
        self.batch.extend([first], now);
        let room = self.batch.room();
        match self.queue.take_more(&mut self.fill, room).await {
            Ok(more) => self.batch.extend(more, now),
            Err(error) => self.redis_failed(&error),
        }
    }

    /// Hands the batch to the flusher on a task, after the previous flush (if any) is done.
    async fn dispatch(&mut self, reason: FlushReason) -> Result<(), WorkerError> {
        self.settle().await?;
        if self.needs_recovery || self.gave_up {
            // The batch is re-read from the processing list by the recovery.
            return Ok(());
        }
        let Some(mut flusher) = self.flusher.take() else {
            unreachable!("settle() returns the flusher");
        };
        self.seq += 1;
        let job = FlushJob {
            elements: self.batch.take(),
            reason,
            lease: self.lease.borrow().clone(),
            seq: self.seq,
        };
        self.in_flight = Some(tokio::spawn(async move {
            let outcome = flusher.flush(job).await;
            (flusher, outcome)
        }));
        Ok(())
    }

    /// Waits for the flush in flight, if any.
    async fn settle(&mut self) -> Result<(), WorkerError> {
        if let Some(in_flight) = self.in_flight.take() {
            let (flusher, outcome) = in_flight.await?;
            self.flusher = Some(flusher);
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
                    "the processing list's oldest end is not the committed batch; re-reading it"
                );
                self.needs_recovery = true;
            }
            FlushOutcome::GaveUp => self.gave_up = true,
        }
    }

    /// A Redis call failed: its effect is unknown, so the batch is re-read from the list.
    fn redis_failed(&mut self, error: &QueueError) {
        tracing::warn!(%error, "Redis failed while taking messages; recovering from the processing list");
        metrics::counter!("batcher_retries_total").increment(1);
        self.take = None;
        self.fill.reset();
        self.needs_recovery = true;
    }

    /// The heartbeat saw the lease lost; confirm before acting (a stale notification is harmless).
    async fn check_fence(&mut self) {
        let lease = self.lease.borrow().clone();
        if let Ok(false) = heartbeat::renew(&self.queue, &mut self.control, &lease).await {
            self.fence();
        }
    }

    fn fence(&mut self) {
        tracing::warn!(
            batcher_id = %self.queue.id,
            "this batcher's processing list was reclaimed (it was presumed dead); \
             forgetting what it held and registering again"
        );
        metrics::counter!("batcher_fenced_total").increment(1);
        self.needs_register = true;
        self.needs_recovery = true;
    }

    /// Forgets the batch in memory and flushes the processing list from its oldest end.
    async fn recover(&mut self, reason: FlushReason) -> Result<(), WorkerError> {
        self.take = None;
        self.fill.reset();
        self.settle().await?;
        self.batch.clear();
        self.drain(reason).await?;
        self.needs_recovery = self.gave_up;
        Ok(())
    }

    /// Flushes the processing list, oldest first, in chunks of `BATCH_SIZE`, until it is empty.
    async fn drain(&mut self, reason: FlushReason) -> Result<(), WorkerError> {
        let mut backoff = Backoff::default();
        while !self.gave_up {
            if self.needs_register {
                let give_up = self.give_up.clone();
                if !self.register(&give_up).await? {
                    self.gave_up = true;
                    break;
                }
            }
            let items = match self
                .queue
                .read_oldest(&mut self.control, self.policy.max_size)
                .await
            {
                Ok(items) => items,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the processing list; retrying");
                    metrics::counter!("batcher_retries_total").increment(1);
                    self.gave_up = !pause(backoff.next_delay(), &self.give_up).await;
                    continue;
                }
            };
            backoff.reset();
            if items.is_empty() {
                break;
            }
            self.seq += 1;
            let job = FlushJob {
                elements: items,
                reason,
                lease: self.lease.borrow().clone(),
                seq: self.seq,
            };
            let Some(flusher) = self.flusher.as_mut() else {
                unreachable!("no flush is in flight during a drain");
            };
            let outcome = flusher.flush(job).await;
            self.on_outcome(outcome);
            if outcome == FlushOutcome::Mismatch {
                // Only a concurrent change of the list's oldest end causes this; let it settle.
                self.gave_up = !pause(backoff.next_delay(), &self.give_up).await;
            }
        }
        Ok(())
    }

    /// Shutdown: stop taking, flush what is held, then anything else left in the processing list.
    async fn finish(&mut self) -> Result<(), WorkerError> {
        // An element a cancelled BLMOVE may still have moved is in the list, and the drain below finds it.
        self.take = None;
        self.fill.reset();
        self.settle().await?;
        while !self.gave_up && !self.needs_recovery && !self.batch.is_empty() {
            self.dispatch(FlushReason::Shutdown).await?;
            self.settle().await?;
        }
        self.batch.clear();
        self.drain(FlushReason::Shutdown).await
    }

    /// Registers under a new lease, waiting for a predecessor's lease on this id to expire (a crashed
    /// process's does within [`HEARTBEAT_TTL`]). `Ok(false)` if `stop` was cancelled first.
    async fn register(&mut self, stop: &CancellationToken) -> Result<bool, WorkerError> {
        let lease = uuid::Uuid::new_v4().simple().to_string();
        let mut backoff = Backoff::default();
        let mut lease_alive_since: Option<Instant> = None;
        loop {
            let delay = match heartbeat::register(&self.queue, &mut self.control, &lease).await {
                Ok(true) => {
                    self.lease.send_replace(lease);
                    self.needs_register = false;
                    tracing::info!(batcher_id = %self.queue.id, "registered");
                    return Ok(true);
                }
                Ok(false) => {
                    let since = *lease_alive_since.get_or_insert_with(|| {
                        tracing::info!(
                            batcher_id = %self.queue.id,
                            "another lease on this BATCHER_ID is alive; waiting for it to expire"
                        );
                        Instant::now()
                    });
                    if since.elapsed() > HEARTBEAT_TTL + HEARTBEAT_INTERVAL {
                        return Err(WorkerError::IdInUse(self.queue.id.clone()));
                    }
                    LEASE_POLL
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot register in Redis; retrying");
                    metrics::counter!("batcher_retries_total").increment(1);
                    backoff.next_delay()
                }
            };
            if !pause(delay, stop).await {
                return Ok(false);
            }
        }
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

/// Sleeps `delay`; `false` if `stop` was cancelled first.
async fn pause(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stop.cancelled() => false,
    }
}
