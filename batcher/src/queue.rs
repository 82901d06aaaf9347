//! The Redis moves of one batcher: pending → its processing list, and clearing after the commit.
//!
//! Order is the whole trick. The ingestor `LPUSH`es, so the pending list holds the oldest element at its right
//! end. Moves take from the RIGHT of pending and push onto the LEFT of the processing list, which therefore
//! keeps the same order: a batch is always the k OLDEST elements of the processing list (its right end), and
//! after the commit `LTRIM processing 0 -(k+1)` removes exactly them. Commits happen in order (at most one
//! flush is in flight), so this stays true while the next batch is being filled.
//!
//! Every element is moved, never popped: until its batch is committed it exists in Redis, in either list.

use std::{fmt, future::Future, time::Duration};

use pipeline::keys::Keys;
use redis::{AsyncConnectionConfig, aio::MultiplexedConnection};

/// How long one non-blocking Redis command may take before the connection is considered broken.
pub const REDIS_OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Elements per `LPUSH`/`RPUSH` inside a script: Lua's `unpack` fails past about 8000 values.
const LUA_CHUNK: usize = 1000;

/// KEYS[1] = pending, KEYS[2] = processing, ARGV[1] = most elements to move.
/// Moves up to ARGV[1] of the oldest pending elements in one round trip and returns them, oldest first.
const TAKE_MORE: &str = r"
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

/// KEYS: 1 processing, 2 heartbeat, 3 batcher set, 4 cleared marker.
/// ARGV: 1 id, 2 lease, 3 heartbeat ttl ms, 4 k, 5 marker (lease:seq), 6 oldest element, 7 newest element,
/// 8 events channel, 9 event payload.
///
/// Returns 1 when the k oldest elements are cleared (or were already, by an earlier try whose reply was lost),
/// 0 when this batcher no longer owns the list (fenced), -1 when the list's oldest end is not the batch
/// (the batcher lost track of its list). The rows are committed in every case, so the event is published in
/// every case except the already-cleared retry, which published it the first time.
const CLEAR: &str = r"
local cur = redis.call('GET', KEYS[2])
local owner = cur == ARGV[2] or (not cur and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1)
if not owner then
  redis.call('PUBLISH', ARGV[8], ARGV[9])
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[4]) == ARGV[5] then return 1 end
local k = tonumber(ARGV[4])
if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[6] or redis.call('LINDEX', KEYS[1], -k) ~= ARGV[7] then
  redis.call('PUBLISH', ARGV[8], ARGV[9])
  return -1
end
redis.call('LTRIM', KEYS[1], 0, -(k + 1))
redis.call('SET', KEYS[4], ARGV[5])
redis.call('PUBLISH', ARGV[8], ARGV[9])
return 1
";

/// A Redis failure; the caller resets the connection and retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// One Redis connection, made on first use and again after any failure.
///
/// redis-rs' own response timeout is off (it would cut a blocking `BLMOVE` short); every call is bounded
/// here instead, and a call that failed or timed out drops the connection, since its state is then unknown.
pub struct RedisLink {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl RedisLink {
    /// A link to the server of `client`; nothing is connected yet.
    pub fn new(client: redis::Client) -> Self {
        Self { client, conn: None }
    }

    /// The connection, made now if there is none.
    pub async fn conn(&mut self) -> Result<MultiplexedConnection, QueueError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(REDIS_OP_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection; the next call makes a new one.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// Runs `op` on the connection within `limit`, dropping the connection if it fails.
    pub async fn call<T, F, Fut>(&mut self, limit: Duration, op: F) -> Result<T, QueueError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = match self.conn().await {
            Ok(conn) => match tokio::time::timeout(limit, op(conn)).await {
                Ok(result) => result.map_err(QueueError::from),
                Err(_) => Err(QueueError::Timeout(limit)),
            },
            Err(error) => Err(error),
        };
        if result.is_err() {
            self.reset();
        }
        result
    }
}

/// What [`Queue::clear`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The batch left the processing list.
    Done,
    /// Another batcher reclaimed the list (this one was presumed dead) or took over its id.
    Fenced,
    /// The list's oldest end is not this batch; the worker must re-read its list.
    Mismatch,
}

/// The key names one batcher works with.
#[derive(Debug, Clone)]
pub struct Queue {
    /// This batcher's id.
    pub id: String,
    pub pending: String,
    pub processing: String,
    pub heartbeat: String,
    pub batchers: String,
    pub events: String,
    /// The last clear applied, `lease:seq`, which makes retrying a clear harmless.
    pub cleared: String,
}

/// The cleared marker of batcher `id` (beside its processing list, under the same hash tag).
pub fn cleared_key(keys: &Keys, id: &str) -> String {
    format!("{}:cleared", keys.processing(id))
}

impl Queue {
    /// Keys of batcher `id`.
    pub fn new(keys: &Keys, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            pending: keys.pending(),
            processing: keys.processing(id),
            heartbeat: keys.heartbeat(id),
            batchers: keys.batchers(),
            events: keys.events(),
            cleared: cleared_key(keys, id),
        }
    }

    /// `BLMOVE pending processing RIGHT LEFT block`: waits up to `block` for the oldest pending element.
    ///
    /// Returns a future owning its connection, so the worker can keep it pending across a flush: Redis rounds
    /// blocking timeouts to its clock tick (100 ms at the default `hz 10`), so the batch deadline is kept on
    /// our side, and an element this call moves after the deadline simply starts the next batch.
    pub fn take_first(
        &self,
        conn: MultiplexedConnection,
        block: Duration,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, QueueError>> + Send + 'static {
        let mut conn = conn;
        let mut cmd = redis::cmd("BLMOVE");
        // Redis takes fractional seconds; round up so a short wait never becomes 0 (= forever).
        let seconds = (block.as_millis().max(1) as f64) / 1000.0;
        cmd.arg(&self.pending)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(seconds);
        let limit = block + REDIS_OP_TIMEOUT;
        async move {
            match tokio::time::timeout(limit, cmd.query_async(&mut conn)).await {
                Ok(result) => result.map_err(QueueError::from),
                Err(_) => Err(QueueError::Timeout(limit)),
            }
        }
    }

    /// Moves up to `n` more of the oldest pending elements in one round trip; returns them oldest first.
    pub async fn take_more(
        &self,
        link: &mut RedisLink,
        n: usize,
    ) -> Result<Vec<Vec<u8>>, QueueError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(TAKE_MORE));
        if n == 0 {
            return Ok(Vec::new());
        }
        link.call(REDIS_OP_TIMEOUT, |mut conn| async move {
            SCRIPT
                .key(&self.pending)
                .key(&self.processing)
                .arg(n)
                .arg(LUA_CHUNK)
                .invoke_async(&mut conn)
                .await
        })
        .await
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
    /// list and publishes `event`, in one script, if this batcher still owns the list.
    pub async fn clear(
        &self,
        link: &mut RedisLink,
        lease: &str,
        seq: u64,
        batch: &[Vec<u8>],
        event: &str,
    ) -> Result<Cleared, QueueError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CLEAR));
        let (Some(oldest), Some(newest)) = (batch.first(), batch.last()) else {
            return Ok(Cleared::Done);
        };
        let marker = format!("{lease}:{seq}");
        let ttl_ms = crate::heartbeat::HEARTBEAT_TTL.as_millis() as u64;
        let result: i64 = link
            .call(REDIS_OP_TIMEOUT, |mut conn| async move {
                SCRIPT
                    .key(&self.processing)
                    .key(&self.heartbeat)
                    .key(&self.batchers)
                    .key(&self.cleared)
                    .arg(&self.id)
                    .arg(lease)
                    .arg(ttl_ms)
                    .arg(batch.len())
                    .arg(&marker)
                    .arg(oldest.as_slice())
                    .arg(newest.as_slice())
                    .arg(&self.events)
                    .arg(event)
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
