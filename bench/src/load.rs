//! The load generator: closed loop (each connection sends its next request as soon as the last is answered)
//! and open loop (requests leave on a fixed schedule; latency counts from the due time, see [`crate::pacing`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::client::{Answer, ClientError, Connection};
use crate::pacing::{Schedule, latency};
use crate::samples::Samples;

/// After a failed connection a task waits this long before trying again, so a dead server is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Longest `Retry-After` a closed-loop connection honours (429/503 say 1 s; a longer pause would only
/// stretch the run).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What to send.
#[derive(Debug)]
pub struct Workload {
    pub path: &'static str,
    /// Request bodies, used in turn.
    pub bodies: Vec<Body>,
    /// The status of an accepted request.
    pub expect: StatusCode,
    /// Keep the `message_id` and `queued_at` of every accepted message (for creation→commit latency).
    pub keep_ids: bool,
}

/// One request body and the number of messages it carries (1 for `POST /messages`).
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Bytes,
    pub messages: u64,
}

impl Workload {
    /// One message per body.
    pub fn singles(path: &'static str, bodies: Vec<Bytes>, keep_ids: bool) -> Self {
        Self {
            path,
            bodies: bodies
                .into_iter()
                .map(|bytes| Body { bytes, messages: 1 })
                .collect(),
            expect: StatusCode::CREATED,
            keep_ids,
        }
    }

    /// `POST /messages/batch` bodies of `size` messages each.
    pub fn batches(bodies: Vec<Bytes>, size: u64) -> Self {
        Self {
            path: "/messages/batch",
            bodies: bodies
                .into_iter()
                .map(|bytes| Body {
                    bytes,
                    messages: size,
                })
                .collect(),
            expect: StatusCode::CREATED,
            keep_ids: false,
        }
    }

    /// Messages per request, the same for every body of a fixed-rate load (an open loop paces requests).
    pub fn messages_per_request(&self) -> u64 {
        let size = self.bodies.first().map_or(1, |body| body.messages);
        debug_assert!(self.bodies.iter().all(|body| body.messages == size));
        size
    }

    fn body(&self, index: usize) -> &Body {
        &self.bodies[index % self.bodies.len()]
    }
}

/// One accepted message, as its 201 described it.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub id: Uuid,
    pub queued_at: DateTime<Utc>,
    /// When the request was due (open loop) or sent (closed loop).
    pub due: Instant,
}

#[derive(serde::Deserialize)]
struct Created {
    message_id: Uuid,
    queued_at: DateTime<Utc>,
}

/// What a load achieved.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered with the expected status.
    pub requests: u64,
    /// Messages those requests carried.
    pub accepted: u64,
    /// Requests that failed, by status or error.
    pub failures: BTreeMap<String, u64>,
    /// Latency of every answered request, failed ones included.
    pub latencies: Samples,
    pub ids: Vec<Accepted>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Open loop: requests still unsent when the deadline came (the server fell too far behind).
    pub unsent: u64,
}

impl Outcome {
    /// Messages accepted per second.
    pub fn accepted_rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        for (reason, count) in other.failures {
            *self.failures.entry(reason).or_default() += count;
        }
        self.latencies.merge(other.latencies);
        self.ids.extend(other.ids);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.unsent += other.unsent;
    }

    /// Counts one answer (or failure) of a request that was due at `due`.
    fn tally(
        &mut self,
        workload: &Workload,
        messages: u64,
        result: Result<Answer, ClientError>,
        latency: Duration,
        due: Instant,
        progress: &AtomicU64,
    ) {
        let Answer { status, body, .. } = match result {
            Ok(answer) => answer,
            Err(error) => {
                let reason = match error {
                    ClientError::Connect(..) => "connect failed",
                    ClientError::Io(_) | ClientError::Closed => "connection error",
                    ClientError::Protocol(_) => "unreadable answer",
                };
                *self.failures.entry(reason.to_owned()).or_default() += 1;
                return;
            }
        };
        self.latencies.record(latency);
        if status != workload.expect {
            *self
                .failures
                .entry(format!("HTTP {}", status.as_u16()))
                .or_default() += 1;
            return;
        }
        self.requests += 1;
        self.accepted += messages;
        progress.fetch_add(messages, Ordering::Relaxed);
        if workload.keep_ids {
            match serde_json::from_slice::<Created>(&body) {
                Ok(created) => self.ids.push(Accepted {
                    id: created.message_id,
                    queued_at: created.queued_at,
                    due,
                }),
                Err(_) => {
                    *self
                        .failures
                        .entry("unreadable 201 body".into())
                        .or_default() += 1
                }
            }
        }
    }
}

/// `connections` connections each send back to back for `duration`; requests in flight then finish.
pub async fn closed_loop(
    addr: SocketAddr,
    workload: Arc<Workload>,
    connections: usize,
    duration: Duration,
    progress: Arc<AtomicU64>,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let workload = workload.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut connection = Connection::new(addr);
                // Tasks start at different bodies so concurrent requests differ.
                let mut next = task;
                while Instant::now() < deadline {
                    let body = workload.body(next).clone();
                    next += 1;
                    let sent = Instant::now();
                    let result = connection.post(workload.path, body.bytes).await;
                    let pause = pause_after(&result);
                    let latency = sent.elapsed();
                    outcome.tally(&workload, body.messages, result, latency, sent, &progress);
                    outcome.elapsed = start.elapsed();
                    if let Some(pause) = pause {
                        // A client that honours the API: refused (429/503) means wait, not hammer.
                        let until = (Instant::now() + pause).min(deadline);
                        tokio::time::sleep_until(until.into()).await;
                    }
                }
                outcome
            })
        })
        .collect();
    join(tasks).await
}

/// Sends `schedule.total()` requests at `schedule.rate()` over `connections` connections. A request whose
/// connection is still busy waits for one (and that wait counts in its latency). Requests not sent by
/// `deadline` after the start are counted as unsent.
pub async fn open_loop(
    addr: SocketAddr,
    workload: Arc<Workload>,
    connections: usize,
    schedule: Schedule,
    deadline: Duration,
    progress: Arc<AtomicU64>,
) -> Outcome {
    let start = Instant::now();
    let hard_stop = start + deadline;
    let claimed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let workload = workload.clone();
            let progress = progress.clone();
            let claimed = claimed.clone();
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let mut connection = Connection::new(addr);
                loop {
                    let index = claimed.fetch_add(1, Ordering::Relaxed);
                    if index >= schedule.total() {
                        break;
                    }
                    if Instant::now() >= hard_stop {
                        // This one and every later index claimed by any task stays unsent.
                        outcome.unsent += 1;
                        continue;
                    }
                    let due = start + schedule.due(index);
                    tokio::time::sleep_until((start + schedule.wake(index)).into()).await;
                    let body = workload.body(index as usize).clone();
                    let sent = Instant::now();
                    let result = connection.post(workload.path, body.bytes).await;
                    let done = Instant::now();
                    let failed = result.is_err();
                    let latency = latency(due, sent, done);
                    outcome.tally(&workload, body.messages, result, latency, due, &progress);
                    outcome.elapsed = start.elapsed();
                    if failed {
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
                outcome
            })
        })
        .collect();
    join(tasks).await
}

/// Sends every body once, in order, on one connection (the simulate scenario's few long requests).
pub async fn sequential(
    addr: SocketAddr,
    workload: Arc<Workload>,
    progress: Arc<AtomicU64>,
) -> Outcome {
    let start = Instant::now();
    let mut outcome = Outcome::default();
    let mut connection = Connection::new(addr);
    for body in &workload.bodies {
        let sent = Instant::now();
        let result = connection.post(workload.path, body.bytes.clone()).await;
        outcome.tally(
            &workload,
            body.messages,
            result,
            sent.elapsed(),
            sent,
            &progress,
        );
        outcome.elapsed = start.elapsed();
    }
    outcome
}

/// How long a closed-loop connection waits before its next request: `Retry-After` (capped) after a
/// refusal, a short pause after a broken connection, none after an answer.
fn pause_after(result: &Result<Answer, ClientError>) -> Option<Duration> {
    match result {
        Ok(answer) => answer.retry_after.map(|after| after.min(MAX_RETRY_AFTER)),
        Err(_) => Some(ERROR_PAUSE),
    }
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut total = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(error) => {
                *total
                    .failures
                    .entry(format!("load task died: {error}"))
                    .or_default() += 1
            }
        }
    }
    total
}
