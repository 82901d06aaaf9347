//! The Redis moves of one shard's worker: pending → its processing list, and clearing after the commit.
//!
//! Order is the whole trick. The ingestor `LPUSH`es, so the pending list holds the oldest element at its right
//! end. Moves take from the RIGHT of pending and push onto the LEFT of the processing list, which therefore
//! keeps the same order: a batch is always the k OLDEST elements of the processing list (its right end), and
//! after the commit `LTRIM processing 0 -(k+1)` removes exactly them. Commits happen in order (at most one
//! flush is in flight), so this stays true while the next batch is being filled.
//!
//! Every element is moved, never popped: until its batch is committed it exists in Redis, in either list.
//!
//! **Only the shard's lease holder moves.** The moving script checks the lease in the same atomic step, so a
//! batcher that lost its lease (it was paused, or cut off from Redis, past the lease's expiry) cannot move
//! anything after the next owner took over; the next owner's takeover moved every processing list of the
//! shard back to the oldest end of pending first (see `lease`). That is what keeps a channel's messages in
//! order across a hand-over. Waiting for work uses `BLMOVE pending pending RIGHT RIGHT`, which blocks until
//! pending has an element and then leaves the list exactly as it was: a wake-up that moves nothing.

use std::{future::Future, time::Duration};

use pipeline::{
    connection::RedisConn,
    keys::{Events, ShardKeys},
};

use crate::link::{QueueError, REDIS_OP_TIMEOUT, RedisLink};

use pipeline::keys::LUA_CHUNK;

/// KEYS[1] = pending, KEYS[2] = processing, KEYS[3] = lease. ARGV[1] = most elements to move, ARGV[2] = chunk,
/// ARGV[3] = lease token. Moves up to ARGV[1] of the oldest pending elements in one round trip and returns
/// them, oldest first; false (nil) if the lease is not ARGV[3]'s.
const TAKE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return false end
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local n = #items
if n == 0 then return items end
redis.call('LTRIM', KEYS[1], 0, -(n + 1))
-- LRANGE gave newest..oldest; LPUSH the oldest first so the processing list keeps pending's order.
local oldest_first = {}
for i = n, 1, -1 do oldest_first[#oldest_first + 1] = items[i] end
for i = 1, n, tonumber(ARGV[2]) do
  redis.call('LPUSH', KEYS[2], unpack(oldest_first, i, math.min(i + tonumber(ARGV[2]) - 1, n)))
end
return oldest_first
";

/// KEYS: 1 processing, 2 lease, 3 cleared marker.
/// ARGV: 1 lease token, 2 lease ttl ms, 3 k, 4 marker (token:seq), 5 oldest element, 6 newest element,
/// 7 events channel, 8 event payload, 9 `PUBLISH` or `SPUBLISH` (see `pipeline::keys::Events`).
///
/// Returns 1 when the k oldest elements are cleared (or were already, by an earlier try whose reply was lost),
/// 0 when this worker no longer holds the shard's lease (fenced), -1 when the list's oldest end is not the
/// batch (the worker lost track of its list). The rows are committed in every case. The event is published
/// when cleared and on a mismatch, not when fenced: the batch's elements are in this worker's processing
/// list, which whoever takes the shard next moves back to pending and commits (a replay) and announces, so
/// publishing here too would announce every id of the batch twice.
const CLEAR: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[4] then return 1 end
local k = tonumber(ARGV[3])
if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[5] or redis.call('LINDEX', KEYS[1], -k) ~= ARGV[6] then
  redis.call(ARGV[9], ARGV[7], ARGV[8])
  return -1
end
redis.call('LTRIM', KEYS[1], 0, -(k + 1))
redis.call('SET', KEYS[3], ARGV[4])
redis.call(ARGV[9], ARGV[7], ARGV[8])
return 1
";

/// What [`Queue::clear`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The batch left the processing list.
    Done,
    /// The shard's lease is no longer this worker's (it was presumed dead, and another batcher took over).
    Fenced,
    /// The list's oldest end is not this batch; the worker must re-read its list.
    Mismatch,
}

/// What [`Queue::take`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// These elements moved to the processing list, oldest first (none if pending was empty).
    Moved(Vec<Vec<u8>>),
    /// The lease is not ours: nothing moved.
    Fenced,
}

/// The key names one shard worker works with.
#[derive(Debug, Clone)]
pub struct Queue {
    /// This batcher's id.
    pub id: String,
    /// The shard's keys.
    pub shard: ShardKeys,
    /// The lease token this worker holds the shard under.
    pub token: String,
    pub pending: String,
    pub processing: String,
    pub lease: String,
    /// Where the batch events go.
    pub events: Events,
    /// The last clear applied, `token:seq`, which makes retrying a clear harmless.
    pub cleared: String,
}

impl Queue {
    /// Keys of batcher `id` in `shard`, held under lease `token`; events go to `events`.
    pub fn new(shard: &ShardKeys, id: &str, token: &str, events: Events) -> Self {
        Self {
            id: id.to_owned(),
            shard: shard.clone(),
            token: token.to_owned(),
            pending: shard.pending(),
            processing: shard.processing(id),
            lease: shard.lease(),
            events,
            cleared: shard.cleared(id),
        }
    }

    /// `BLMOVE pending pending RIGHT RIGHT block`: waits up to `block` until pending holds an element, and
    /// moves nothing (the element goes back where it was in the same step).
    ///
    /// Returns a future owning its connection, so the worker can keep it pending across a flush. Redis rounds
    /// blocking timeouts to its clock tick (100 ms at the default `hz 10`), so the batch deadline is kept on
    /// our side.
    pub fn wait_for_pending(
        &self,
        conn: RedisConn,
        block: Duration,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send + 'static {
        let mut conn = conn;
        let mut cmd = redis::cmd("BLMOVE");
        // Redis takes fractional seconds; round up so a short wait never becomes 0 (= forever).
        let seconds = (block.as_millis().max(1) as f64) / 1000.0;
        cmd.arg(&self.pending)
            .arg(&self.pending)
            .arg("RIGHT")
            .arg("RIGHT")
            .arg(seconds);
        let limit = block + REDIS_OP_TIMEOUT;
        async move {
            match tokio::time::timeout(limit, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await {
                Ok(result) => result
                    .map(|element| element.is_some())
                    .map_err(QueueError::from),
                Err(_) => Err(QueueError::Timeout(limit)),
            }
        }
    }

    /// Moves up to `n` of the oldest pending elements in one round trip, if the lease is still ours.
    pub async fn take(&self, link: &mut RedisLink, n: usize) -> Result<Taken, QueueError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(TAKE));
        if n == 0 {
            return Ok(Taken::Moved(Vec::new()));
        }
        let moved: Option<Vec<Vec<u8>>> = link
            .call(REDIS_OP_TIMEOUT, |mut conn| async move {
                SCRIPT
                    .key(&self.pending)
                    .key(&self.processing)
                    .key(&self.lease)
                    .arg(n)
                    .arg(LUA_CHUNK)
                    .arg(&self.token)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(moved.map_or(Taken::Fenced, Taken::Moved))
    }

    /// The `n` oldest elements of the processing list, oldest first (recovery reads it without moving).
    pub async fn read_oldest(
        &self,
        link: &mut RedisLink,
        n: usize,
    ) -> Result<Vec<Vec<u8>>, QueueError> {
        let count = isize::try_from(n).unwrap_or(isize::MAX);
        let mut items: Vec<Vec<u8>> = link
            .call(REDIS_OP_TIMEOUT, |mut conn| async move {
                redis::cmd("LRANGE")
                    .arg(&self.processing)
                    .arg(-count)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        items.reverse();
        Ok(items)
    }

    /// After the commit of `batch` (the k oldest elements, oldest first): removes it from the processing
    /// list and publishes `event`, in one script, if this worker still holds the lease.
    pub async fn clear(
        &self,
        link: &mut RedisLink,
        seq: u64,
        batch: &[Vec<u8>],
        event: &str,
    ) -> Result<Cleared, QueueError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CLEAR));
        let (Some(oldest), Some(newest)) = (batch.first(), batch.last()) else {
            return Ok(Cleared::Done);
        };
        let marker = format!("{}:{seq}", self.token);
        let ttl_ms = crate::lease::LEASE_TTL.as_millis() as u64;
        let result: i64 = link
            .call(REDIS_OP_TIMEOUT, |mut conn| async move {
                SCRIPT
                    .key(&self.processing)
                    .key(&self.lease)
                    .key(&self.cleared)
                    .arg(&self.token)
                    .arg(ttl_ms)
                    .arg(batch.len())
                    .arg(&marker)
                    .arg(oldest.as_slice())
                    .arg(newest.as_slice())
                    .arg(&self.events.channel)
                    .arg(event)
                    .arg(self.events.command)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match result {
            1 => Cleared::Done,
            0 => Cleared::Fenced,
            _ => Cleared::Mismatch,
        })
    }
}
