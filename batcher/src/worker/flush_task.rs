//! The shard's [`Flusher`] on a task of its own, so the worker goes on filling the next batch while one
//! commits. At most one flush is in flight: that keeps commits in the order the elements were taken.

use tokio::{sync::mpsc, task::JoinHandle};

use super::WorkerError;
use crate::flush::{FlushJob, FlushOutcome, Flusher};

/// Whether a flush is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushSlot {
    Idle,
    Busy,
}

/// Hands jobs to the flusher's task and takes their outcomes, one at a time.
pub struct FlushTask {
    jobs: mpsc::Sender<FlushJob>,
    outcomes: mpsc::Receiver<FlushOutcome>,
    slot: FlushSlot,
    task: Option<JoinHandle<()>>,
}

impl FlushTask {
    /// Starts the flusher's task; it ends when this is dropped.
    pub fn spawn(mut flusher: Flusher) -> Self {
        let (jobs, mut job_rx) = mpsc::channel::<FlushJob>(1);
        let (outcome_tx, outcomes) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            while let Some(job) = job_rx.recv().await {
                let outcome = flusher.flush(job).await;
                if outcome_tx.send(outcome).await.is_err() {
                    break;
                }
            }
        });
        Self {
            jobs,
            outcomes,
            slot: FlushSlot::Idle,
            task: Some(task),
        }
    }

    /// Whether a flush is in flight.
    pub fn is_busy(&self) -> bool {
        self.slot == FlushSlot::Busy
    }

    /// Starts flushing `job`, after the flush in flight (if any) is done; returns that one's outcome.
    pub async fn start(&mut self, job: FlushJob) -> Result<Option<FlushOutcome>, WorkerError> {
        let previous = self.settle().await?;
        if self.jobs.send(job).await.is_err() {
            return Err(self.failure().await);
        }
        self.slot = FlushSlot::Busy;
        Ok(previous)
    }

    /// The outcome of the flush in flight; never resolves when none is (a disabled `select!` branch).
    /// Cancel-safe: the outcome stays queued if the caller stops waiting.
    pub async fn finished(&mut self) -> Result<FlushOutcome, WorkerError> {
        if self.slot == FlushSlot::Idle {
            return std::future::pending().await;
        }
        match self.outcomes.recv().await {
            Some(outcome) => {
                self.slot = FlushSlot::Idle;
                Ok(outcome)
            }
            None => Err(self.failure().await),
        }
    }

    /// Waits for the flush in flight, if any, and returns its outcome.
    pub async fn settle(&mut self) -> Result<Option<FlushOutcome>, WorkerError> {
        if self.is_busy() {
            return self.finished().await.map(Some);
        }
        Ok(None)
    }

    /// Flushes `job` and waits for it (no other flush may be in flight).
    pub async fn run(&mut self, job: FlushJob) -> Result<FlushOutcome, WorkerError> {
        debug_assert!(!self.is_busy(), "the flush in flight is settled first");
        self.start(job).await?;
        self.finished().await
    }

    /// Why the task stopped answering: it only ends early by panicking.
    async fn failure(&mut self) -> WorkerError {
        self.slot = FlushSlot::Idle;
        match self.task.take() {
            Some(task) => match task.await {
                Err(error) => WorkerError::FlushTask(error),
                Ok(()) => WorkerError::FlushTaskEnded,
            },
            None => WorkerError::FlushTaskEnded,
        }
    }
}
