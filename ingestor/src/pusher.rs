//! Group commit: many concurrent `POST /messages` share one multi-value `LPUSH` per shard.
//!
//! Handlers send (shard, element, reply) into a bounded channel; one task takes everything waiting (up to
//! [`MAX_GROUP`]), pushes it with one `LPUSH` per shard (see `enqueue`; with `REDIS_WAIT_REPLICAS`, then one
//! `WAIT` for the group), and answers every waiter with its shard's outcome. Every 201 still waits for Redis
//! to acknowledge its element; Redis round trips no longer grow with the request rate. Groups are pushed one
//! after another, so a message whose 201 was sent is in Redis before any message accepted after it.
//!
//! Shutdown needs no signal: when the server has finished its in-flight requests it drops the last
//! [`Pusher`], the channel closes, and the task pushes what it still holds before it ends.

use std::time::Duration;

use pipeline::{connection::RedisConn, keys::Keys};
use tokio::sync::{mpsc, oneshot};

use crate::backpressure::Backpressure;
use crate::enqueue::{self, EnqueueError, Part, WaitReplicas};

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
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    #[error("the pusher has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<(), PushError>>;

/// One element waiting for the group commit.
#[derive(Debug)]
struct Waiting {
    shard: u32,
    element: String,
    reply: Reply,
}

/// The handlers' side of the group commit.
#[derive(Debug, Clone)]
pub struct Pusher {
    sender: mpsc::Sender<Waiting>,
}

impl Pusher {
    /// Starts the pushing task on `conn`, pushing onto the pending lists of `keys`' shards.
    /// Each shard's push is refused when it would take the shard past `backpressure`'s room for it.
    pub fn spawn(
        conn: RedisConn,
        keys: Keys,
        wait: WaitReplicas,
        backpressure: Backpressure,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(push_groups(receiver, conn, keys, wait, backpressure));
        (Self { sender }, task)
    }

    /// Queues one element (JSON) onto `shard` and waits until Redis has it, at most [`PUSH_TIMEOUT`].
    pub async fn push(&self, shard: u32, element: String) -> Result<(), PushError> {
        let (reply, answer) = oneshot::channel();
        let round_trip = async {
            self.sender
                .send(Waiting {
                    shard,
                    element,
                    reply,
                })
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
    mut receiver: mpsc::Receiver<Waiting>,
    conn: RedisConn,
    keys: Keys,
    wait: WaitReplicas,
    backpressure: Backpressure,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // `recv_many` returns 0 only once every sender is gone and the channel is empty.
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A waiter that gave up (timeout, client gone) already answered its client with an error or nothing;
        // leaving its element out keeps "no 201" and "queued" as close as they can be.
        group.retain(|waiting| !waiting.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let parts = enqueue::by_shard(group.drain(..), |waiting| waiting.shard);
        let (elements, replies): (Vec<Part<String>>, Vec<Vec<Reply>>) = parts
            .into_iter()
            .map(|part| {
                let (elements, replies) = part
                    .elements
                    .into_iter()
                    .map(|waiting| (waiting.element, waiting.reply))
                    .unzip();
                (
                    Part {
                        shard: part.shard,
                        elements,
                    },
                    replies,
                )
            })
            .unzip();
        let push = enqueue::push(&conn, &keys, &elements, wait, |shard| {
            backpressure.check(shard)
        });
        let outcomes = match tokio::time::timeout(PUSH_TIMEOUT, push).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|outcome| outcome.map_err(PushError::from))
                .collect(),
            Err(_) => vec![Err(PushError::Timeout(PUSH_TIMEOUT)); elements.len()],
        };
        for ((part, replies), outcome) in elements.iter().zip(replies).zip(outcomes) {
            if let Err(error) = &outcome {
                tracing::warn!(%error, shard = part.shard, elements = part.elements.len(), "group push failed");
            }
            for reply in replies {
                // The waiter may have timed out in the meantime; nothing to tell it then.
                let _ = reply.send(outcome.clone());
            }
        }
    }
    tracing::debug!("pusher stopped: every sender is gone");
}
