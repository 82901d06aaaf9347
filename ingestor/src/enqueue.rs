//! Pushing elements onto their shards' pending lists: one multi-value `LPUSH` per shard, the shards
//! concurrently (on a Redis Cluster, each on its own node), then, with `REDIS_WAIT_REPLICAS`, one `WAIT` for
//! the whole group.
//!
//! Within a shard the elements keep their order: `LPUSH key e1 e2 …` leaves e1 nearest the right (oldest)
//! end. One shard's push is atomic (all or none); a group spread over several shards is not, and each part
//! reports its own outcome.
//!
//! Each shard's push is one script that first reads the shard's depth (its pending list and every processing
//! list) and refuses, pushing nothing, when the part would take it past its room: `MAX_QUEUE_DEPTH` minus the
//! other shards' depth as last read (see `backpressure`). So admission holds across ingestors: with one shard
//! exactly, whatever the number of ingestors. With several shards, while the queue is far below the limit, the
//! push is a plain `LPUSH` instead: a script costs Redis several times an `LPUSH`, and there each group is
//! split into small per-shard parts.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use futures_util::future::join_all;
use pipeline::depth::SHARD_DEPTH_LUA;
use pipeline::{connection::RedisConn, keys::Keys};
use redis::ToRedisArgs;

use pipeline::connection::retry_once;

/// `REDIS_WAIT_REPLICAS`: how many replicas must hold a pushed element before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    /// 0: acknowledge as soon as the master has it.
    pub replicas: u32,
    /// How long `WAIT` may take.
    pub timeout_ms: u64,
}

impl WaitReplicas {
    pub const NONE: Self = Self {
        replicas: 0,
        timeout_ms: 0,
    };
}

/// The Lua that pushes the elements `ARGV[first..]` (oldest first) onto KEYS[1], the shard's pending list,
/// unless they would take the shard past the room in ARGV[2]: then it returns the shard's depth, pushing
/// nothing (KEYS[2] and ARGV[1] as [`SHARD_DEPTH_LUA`] reads them). The one push-with-room of both push
/// scripts (this module's and `idempotency`'s). Pushes `LUA_CHUNK` elements per `LPUSH`, as Redis's Lua
/// cannot `unpack` more than about 8000 values at once; chunk after chunk still leaves the oldest element
/// rightmost.
pub fn push_within_room_lua(first: usize) -> String {
    let chunk = pipeline::keys::LUA_CHUNK;
    let before = first - 1;
    format!(
        "{SHARD_DEPTH_LUA}
if depth + #ARGV - {before} > tonumber(ARGV[2]) then
  return depth
end
for first = {first}, #ARGV, {chunk} do
  redis.call('LPUSH', KEYS[1], unpack(ARGV, first, math.min(first + {chunk} - 1, #ARGV)))
end
"
    )
}

/// KEYS[1] = pending list, KEYS[2] = set of batcher ids; ARGV[1] = processing-list key prefix, ARGV[2] = room,
/// ARGV[3..] = elements, oldest first. Returns -1 after pushing, or the shard's depth when the elements would
/// take it past the room (nothing pushed; see [`push_within_room_lua`]).
static PUSH_ADMITTED: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{}return -1\n", push_within_room_lua(3))));

/// Why a part was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnqueueError {
    /// The queue is full: nothing of the part was pushed.
    #[error("the shard holds {depth} messages and these would take the queue past MAX_QUEUE_DEPTH")]
    Full { depth: u64 },
    #[error("Redis refused the push: {0}")]
    Redis(String),
    #[error(
        "the element reached the master but only {acknowledged} of the {wanted} replicas REDIS_WAIT_REPLICAS \
         asks for acknowledged it within {timeout_ms} ms"
    )]
    NotReplicated {
        acknowledged: u32,
        wanted: u32,
        timeout_ms: u64,
    },
}

/// The elements of one shard, oldest first.
#[derive(Debug)]
pub struct Part<E> {
    pub shard: u32,
    pub elements: Vec<E>,
}

impl<T> Part<T> {
    /// The same part with each element turned into its Redis element by `encode`; the first error stops.
    pub fn encode<E>(
        self,
        encode: impl FnMut(T) -> Result<Vec<u8>, E>,
    ) -> Result<Part<Vec<u8>>, E> {
        let elements = self
            .elements
            .into_iter()
            .map(encode)
            .collect::<Result<_, _>>()?;
        Ok(Part {
            shard: self.shard,
            elements,
        })
    }
}

/// Groups `items` by the shard `shard_of` gives each, keeping their order within a shard; parts come in
/// shard order.
pub fn by_shard<T>(
    items: impl IntoIterator<Item = T>,
    shard_of: impl Fn(&T) -> u32,
) -> Vec<Part<T>> {
    let mut parts: BTreeMap<u32, Vec<T>> = BTreeMap::new();
    for item in items {
        parts.entry(shard_of(&item)).or_default().push(item);
    }
    parts
        .into_iter()
        .map(|(shard, elements)| Part { shard, elements })
        .collect()
}

/// Pushes every part onto its shard's pending list; one outcome per part, in order. `room(shard)` is the room the
/// push script checks the part against (refusing it, nothing pushed, when the part would take the shard past
/// it), or `None` for a plain `LPUSH` while the queue is far below `MAX_QUEUE_DEPTH` (see `backpressure`).
pub async fn push<E: ToRedisArgs + Sync>(
    conn: &RedisConn,
    keys: &Keys,
    parts: &[Part<E>],
    wait: WaitReplicas,
    room: impl Fn(u32) -> Option<u64>,
) -> Vec<Result<(), EnqueueError>> {
    let pushes = parts.iter().map(|part| {
        let shard = keys.shard(part.shard);
        let room = room(part.shard);
        async move {
            let refused_at = match room {
                Some(room) => {
                    let mut invocation = PUSH_ADMITTED.key(shard.pending());
                    invocation
                        .key(shard.batchers())
                        .arg(shard.processing(""))
                        .arg(room);
                    for element in &part.elements {
                        invocation.arg(element);
                    }
                    retry_once(|| {
                        let (mut conn, invocation) = (conn.clone(), &invocation);
                        async move { invocation.invoke_async::<i64>(&mut conn).await }
                    })
                    .await
                }
                None => {
                    // `LPUSH key e1 e2 …` leaves e1, the oldest, nearest the right end, as the script does.
                    let mut lpush = redis::cmd("LPUSH");
                    lpush.arg(shard.pending()).arg(&part.elements);
                    retry_once(|| {
                        let (mut conn, lpush) = (conn.clone(), &lpush);
                        async move { lpush.query_async::<i64>(&mut conn).await.map(|_| -1) }
                    })
                    .await
                }
            }
            .map_err(|error| EnqueueError::Redis(error.to_string()))?;
            match u64::try_from(refused_at) {
                Ok(depth) => Err(EnqueueError::Full { depth }),
                Err(_) => Ok(()),
            }
        }
    });
    let mut outcomes = join_all(pushes).await;
    if wait.replicas > 0 && outcomes.iter().any(Result::is_ok) {
        let verdict = replicated(conn, wait).await;
        for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_ok()) {
            *outcome = verdict.clone();
        }
    }
    outcomes
}

/// One `WAIT` for everything this connection wrote: did `wait.replicas` replicas (on a cluster, of every
/// master) acknowledge it in time?
pub async fn replicated(conn: &RedisConn, wait: WaitReplicas) -> Result<(), EnqueueError> {
    if wait.replicas == 0 {
        return Ok(());
    }
    let mut conn = conn.clone();
    match conn.wait_replicas(wait.replicas, wait.timeout_ms).await {
        Ok(acknowledged) if acknowledged >= wait.replicas => Ok(()),
        Ok(acknowledged) => Err(EnqueueError::NotReplicated {
            acknowledged,
            wanted: wait.replicas,
            timeout_ms: wait.timeout_ms,
        }),
        Err(error) => Err(EnqueueError::Redis(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_with_room_reads_its_elements_from_the_argument_it_is_given() {
        let lua = push_within_room_lua(5);
        assert!(
            lua.contains("if depth + #ARGV - 4 > tonumber(ARGV[2]) then"),
            "{lua}"
        );
        assert!(lua.contains("for first = 5, #ARGV, "), "{lua}");
    }

    #[test]
    fn parts_keep_the_order_within_a_shard_and_come_in_shard_order() {
        let items = [(3, 'a'), (1, 'b'), (3, 'c'), (0, 'd'), (1, 'e')];
        let parts = by_shard(items, |(shard, _)| *shard);
        let shape: Vec<(u32, String)> = parts
            .iter()
            .map(|part| (part.shard, part.elements.iter().map(|(_, c)| *c).collect()))
            .collect();
        assert_eq!(shape, [(0, "d".into()), (1, "be".into()), (3, "ac".into())]);
        assert!(by_shard(Vec::<(u32, char)>::new(), |(shard, _)| *shard).is_empty());
    }
}
