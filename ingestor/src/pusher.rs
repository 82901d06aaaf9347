//! Group commit: many concurrent `POST /messages` share one multi-value `LPUSH`.
//!
//! Handlers send (element, reply) into a bounded channel; one task takes everything waiting (up to
//! [`MAX_GROUP`]), sends it as one `LPUSH`, and answers every waiter with the outcome. Every 201 still waits
//! for Redis to acknowledge its element; Redis round trips no longer grow with the request rate.
//!
//! Shutdown needs no signal: when the server has finished its in-flight requests it drops the last
//! [`Pusher`], the channel closes, and the task pushes what it still holds before it ends.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// Most elements in one `LPUSH` (about 0.5–1 MB of typical messages).
pub const MAX_GROUP: usize = 4096;
/// Requests that may wait for the pusher; beyond it handlers wait for room (backpressure), within
/// their timeout.
const CHANNEL_CAPACITY: usize = 16_384;
/// How long a request waits for its element to be acknowledged, queueing included, before a 503.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an element was not acknowledged. The element may still have reached Redis when the timeout
/// fired: a 503 means "retry", never "certainly not queued"; a 201 always means "queued".
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    #[error("Redis refused the push: {0}")]
    Redis(String),
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    #[error("the pusher has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<(), PushError>>;

/// The handlers' side of the group commit.
#[derive(Debug, Clone)]
pub struct Pusher {
    sender: mpsc::Sender<(String, Reply)>,
}

impl Pusher {
    /// Starts the pushing task on `conn`, pushing onto `key`.
    pub fn spawn(conn: ConnectionManager, key: String) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(push_groups(receiver, conn, key));
        (Self { sender }, task)
    }

    /// Queues one element (JSON) and waits until Redis has it, at most [`PUSH_TIMEOUT`].
    pub async fn push(&self, element: String) -> Result<(), PushError> {
        let (reply, answer) = oneshot::channel();
        let round_trip = async {
            self.sender
                .send((element, reply))
                .await
                .map_err(|_| PushError::Stopped)?;
            answer.await.map_err(|_| PushError::Stopped)?
        };
        tokio::time::timeout(PUSH_TIMEOUT, round_trip)
            .await
            .unwrap_or(Err(PushError::Timeout(PUSH_TIMEOUT)))
    }
}

async fn push_groups(
    mut receiver: mpsc::Receiver<(String, Reply)>,
    conn: ConnectionManager,
    key: String,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // `recv_many` returns 0 only once every sender is gone and the channel is empty.
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A waiter that gave up (timeout, client gone) already answered its client with an error or nothing;
        // leaving its element out keeps "no 201" and "queued" as close as they can be.
        group.retain(|(_, reply)| !reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let outcome = lpush(&conn, &key, &group).await;
        if let Err(error) = &outcome {
            tracing::warn!(%error, elements = group.len(), "group push failed");
        }
        for (_, reply) in group.drain(..) {
            // The waiter may have timed out in the meantime; nothing to tell it then.
            let _ = reply.send(outcome.clone());
        }
    }
    tracing::debug!("pusher stopped: every sender is gone");
}

/// One `LPUSH key e1 e2 …`: e1 ends up nearest the right end, so the oldest element stays rightmost.
async fn lpush(
    conn: &ConnectionManager,
    key: &str,
    group: &[(String, Reply)],
) -> Result<(), PushError> {
    let mut command = redis::cmd("LPUSH");
    command.arg(key);
    for (element, _) in group {
        command.arg(element.as_str());
    }
    let push = crate::reconnect::retry_once(|| {
        let (mut conn, command) = (conn.clone(), &command);
        async move { command.query_async::<i64>(&mut conn).await }
    });
    match tokio::time::timeout(PUSH_TIMEOUT, push).await {
        Ok(Ok(_length)) => Ok(()),
        Ok(Err(error)) => Err(PushError::Redis(error.to_string())),
        Err(_) => Err(PushError::Timeout(PUSH_TIMEOUT)),
    }
}
