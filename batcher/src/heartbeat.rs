//! Who owns which processing list: registration, the heartbeat, and reclaiming the lists of dead batchers.
//!
//! A batcher registers its id in the set `keys.batchers()` and keeps `keys.heartbeat(id)` alive, renewing it
//! every [`HEARTBEAT_INTERVAL`] with an expiry of [`HEARTBEAT_TTL`]. The heartbeat's value is a *lease*, a
//! random token of this registration. When a heartbeat is gone, any live batcher moves that id's processing
//! list back onto the oldest end of pending (so it is consumed first, in order) and removes the id from the
//! set, atomically, in one script that re-checks the heartbeat.
//!
//! A batcher that was only paused (not dead) for longer than the expiry comes back *fenced*: its renewals and
//! clears fail because its id left the set, so it forgets what it held and re-registers with a new lease
//! (see `worker`). A second live process with the same id is refused at start: registration waits for the
//! old lease to expire (a crashed predecessor's does) and gives up if it is still being renewed.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::queue::{Queue, QueueError, REDIS_OP_TIMEOUT, RedisLink, cleared_key};

/// How often the heartbeat is renewed (and dead batchers looked for).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a heartbeat lives without renewal: after that, the batcher's list may be reclaimed.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);

/// KEYS: 1 heartbeat, 2 batcher set. ARGV: 1 id, 2 lease, 3 ttl ms. 1 = registered, 0 = a lease is alive.
const REGISTER: &str = r"
if redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// KEYS: 1 heartbeat, 2 batcher set. ARGV: 1 id, 2 lease, 3 ttl ms. 1 = renewed, 0 = fenced.
/// An expired heartbeat is renewed only while the id is still in the set (nobody reclaimed the list).
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[2] or (not cur and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// KEYS: 1 heartbeat of the dead id, 2 batcher set, 3 its processing list, 4 pending, 5 its cleared marker.
/// ARGV: 1 the dead id, 2 chunk size. Returns the elements moved, or -1 if the heartbeat is alive after all.
///
/// The processing list holds newest..oldest; appending it in that order to pending's RIGHT end puts its
/// oldest element rightmost, so the reclaimed elements are taken next, oldest first.
const RECLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local chunk = tonumber(ARGV[2])
local moved = 0
while true do
  local items = redis.call('LRANGE', KEYS[3], 0, chunk - 1)
  if #items == 0 then break end
  redis.call('RPUSH', KEYS[4], unpack(items))
  redis.call('LTRIM', KEYS[3], #items, -1)
  moved = moved + #items
end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[5])
return moved
";

/// KEYS: 1 heartbeat, 2 batcher set, 3 processing, 4 cleared marker. ARGV: 1 id, 2 lease.
/// Deletes the heartbeat (so a non-empty list is reclaimed at once) and leaves the set only when the list is
/// empty. Does nothing if another process holds the id.
const DEREGISTER: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[4])
  return 1
end
return 2
";

fn script(source: &'static str) -> redis::Script {
    redis::Script::new(source)
}

/// Tries to register `queue.id` under `lease`; `false` while another lease on the id is alive.
pub async fn register(
    queue: &Queue,
    link: &mut RedisLink,
    lease: &str,
) -> Result<bool, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| script(REGISTER));
    lease_script(&SCRIPT, queue, link, lease).await
}

/// Renews the heartbeat; `false` when this lease is fenced (the list was reclaimed or the id taken over).
pub async fn renew(queue: &Queue, link: &mut RedisLink, lease: &str) -> Result<bool, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| script(RENEW));
    lease_script(&SCRIPT, queue, link, lease).await
}

/// Runs a script of [`register`]'s and [`renew`]'s signature (KEYS: heartbeat, batcher set; ARGV: id, lease,
/// TTL in ms); `true` when it answered 1.
async fn lease_script(
    script: &redis::Script,
    queue: &Queue,
    link: &mut RedisLink,
    lease: &str,
) -> Result<bool, QueueError> {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let answer: i64 = link
        .call(REDIS_OP_TIMEOUT, |mut conn| async move {
            script
                .key(&queue.heartbeat)
                .key(&queue.batchers)
                .arg(&queue.id)
                .arg(lease)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(answer == 1)
}

/// Leaves the set if the processing list is empty, and deletes the heartbeat either way.
pub async fn deregister(
    queue: &Queue,
    link: &mut RedisLink,
    lease: &str,
) -> Result<(), QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| script(DEREGISTER));
    let _: i64 = link
        .call(REDIS_OP_TIMEOUT, |mut conn| async move {
            SCRIPT
                .key(&queue.heartbeat)
                .key(&queue.batchers)
                .key(&queue.processing)
                .key(&queue.cleared)
                .arg(&queue.id)
                .arg(lease)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(())
}

/// Reclaims the list of every other registered id whose heartbeat is gone; returns (ids, elements) reclaimed.
pub async fn reclaim_dead(
    queue: &Queue,
    keys: &pipeline::keys::Keys,
    link: &mut RedisLink,
) -> Result<(u64, u64), QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| script(RECLAIM));
    let ids: Vec<String> = link
        .call(REDIS_OP_TIMEOUT, |mut conn| async move {
            redis::cmd("SMEMBERS")
                .arg(&queue.batchers)
                .query_async(&mut conn)
                .await
        })
        .await?;
    let (mut lists, mut elements) = (0, 0);
    for id in ids.iter().filter(|id| **id != queue.id) {
        let moved: i64 = link
            .call(REDIS_OP_TIMEOUT, |mut conn| async move {
                SCRIPT
                    .key(keys.heartbeat(id))
                    .key(&queue.batchers)
                    .key(keys.processing(id))
                    .key(&queue.pending)
                    .key(cleared_key(keys, id))
                    .arg(id)
                    .arg(1000)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if moved >= 0 {
            tracing::warn!(
                dead_batcher = %id,
                messages = moved,
                "reclaimed the processing list of a batcher whose heartbeat expired"
            );
            metrics::counter!("batcher_reclaims_total").increment(1);
            metrics::counter!("batcher_reclaimed_messages_total").increment(moved as u64);
            lists += 1;
            elements += moved as u64;
        }
    }
    Ok((lists, elements))
}

/// Runs the heartbeat until `stop`: renews the lease every [`HEARTBEAT_INTERVAL`], tells the worker through
/// `fenced` when the lease is lost, reclaims dead batchers' lists, and updates `pipeline_queue_depth`.
pub async fn run(
    queue: Queue,
    keys: pipeline::keys::Keys,
    mut link: RedisLink,
    lease: watch::Receiver<String>,
    fenced: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let current = lease.borrow().clone();
        match renew(&queue, &mut link, &current).await {
            Ok(true) => {}
            Ok(false) => fenced.notify_one(),
            Err(error) => tracing::warn!(%error, "cannot renew the heartbeat; retrying next tick"),
        }
        if let Err(error) = reclaim_dead(&queue, &keys, &mut link).await {
            tracing::warn!(%error, "cannot look for dead batchers; retrying next tick");
        }
        if let Ok(mut conn) = link.conn().await
            && let Ok(Ok(depth)) = tokio::time::timeout(
                REDIS_OP_TIMEOUT,
                pipeline::depth::queue_depth(&mut conn, &keys),
            )
            .await
        {
            metrics::gauge!("pipeline_queue_depth").set(depth as f64);
        }
    }
}
