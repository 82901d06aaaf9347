//! Who drains which shard: batcher membership, and one lease per shard.
//!
//! **Membership.** Every batcher keeps its id in the sorted set `keys.members()`, scored by when its
//! membership expires (Redis's clock, so batchers' clocks do not matter), renewing it every
//! [`LEASE_INTERVAL`] for [`LEASE_TTL`]. The live members decide, each on its own and all alike, which
//! shards each one should hold (`assignment`).
//!
//! **Leases.** A shard is drained only by the holder of its lease, `<tag>:lease`, a random token set with
//! `NX` and an expiry of [`LEASE_TTL`], renewed every [`LEASE_INTERVAL`]. Taking a lease and reclaiming the
//! shard are one atomic script: every processing list of the shard (its batcher ids are in `<tag>:batchers`)
//! goes back onto the oldest end of pending, so the new holder takes those elements first, in their order,
//! and nothing an earlier holder moved is left behind. Since a holder's moves check the lease atomically
//! (`queue`), nothing can be moved by an earlier holder after that. A shard is handed over either by release
//! (its holder flushed what it held and deleted the lease) or by expiry (the holder died or was cut off for
//! longer than the TTL).

use std::time::Duration;

use pipeline::{
    connection::RedisConn,
    keys::{Keys, LUA_CHUNK, ShardKeys},
};

use crate::link::{QueueError, RedisLink};

/// How often leases and membership are renewed.
pub const LEASE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lease or a membership lives without renewal: after that, the shard may be taken over.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// Longest wait for one renewal: well under the TTL, so a slow call cannot let a live lease lapse unnoticed.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(1);

/// Moves every processing list named in KEYS[2] (ids, processing-list prefix ARGV[p]) back onto pending's
/// RIGHT (oldest) end. A processing list holds newest..oldest; appending it in chunks from its left end puts
/// its oldest element rightmost, so the reclaimed elements are taken next, oldest first.
const RECLAIM_LISTS: &str = r"
local function reclaim(set, pending, prefix, chunk)
  local moved = 0
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    local list = prefix .. id
    while true do
      local items = redis.call('LRANGE', list, 0, chunk - 1)
      if #items == 0 then break end
      redis.call('RPUSH', pending, unpack(items))
      redis.call('LTRIM', list, #items, -1)
      moved = moved + #items
    end
    redis.call('DEL', list .. ':cleared')
    redis.call('SREM', set, id)
  end
  return moved
end
";

/// KEYS: 1 lease, 2 batcher set, 3 pending. ARGV: 1 token, 2 ttl ms, 3 this batcher's id, 4 processing-list
/// prefix, 5 chunk, 6.. ids of processing lists found by a scan (added to the set first).
/// Returns the elements reclaimed, or -1 if the lease is held.
fn acquire_source() -> String {
    format!(
        "{RECLAIM_LISTS}
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return -1 end
for i = 6, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
local moved = reclaim(KEYS[2], KEYS[3], ARGV[4], tonumber(ARGV[5]))
redis.call('SADD', KEYS[2], ARGV[3])
return moved
"
    )
}

/// KEYS: 1 lease, 2 batcher set, 3 pending, 4 a scratch set. ARGV: 1 token, 2 processing-list prefix,
/// 3 chunk, 4.. ids of foreign processing lists found by a scan. While holding the lease: reclaims those lists
/// (left by a batcher of an earlier version, or by hand). Returns the elements reclaimed, -1 if not holder.
fn sweep_source() -> String {
    format!(
        "{RECLAIM_LISTS}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[4])
for i = 4, #ARGV do redis.call('SADD', KEYS[4], ARGV[i]) end
local moved = reclaim(KEYS[4], KEYS[3], ARGV[2], tonumber(ARGV[3]))
redis.call('DEL', KEYS[4])
for i = 4, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
return moved
"
    )
}

/// KEYS: 1 lease. ARGV: 1 token, 2 ttl ms. 1 = renewed, 0 = the lease is not ours (fenced).
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS: 1 lease, 2 batcher set, 3 processing, 4 cleared marker. ARGV: 1 token, 2 id.
/// Deletes the lease if it is ours, so the next holder can take the shard at once; leaves the set when the
/// processing list is empty (else the next holder reclaims it).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[4])
end
return 1
";

/// KEYS: 1 members. ARGV: 1 id, 2 ttl ms. Renews this batcher's membership, drops expired ones, and returns
/// the live members.
const JOIN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

fn ttl_ms() -> u64 {
    LEASE_TTL.as_millis() as u64
}

/// Tries to take `shard`'s lease under `token` for batcher `id`, reclaiming every processing list of the shard
/// (those registered, and `found` by a scan). `Some(reclaimed elements)` if taken, `None` if it is held.
pub async fn acquire(
    link: &mut RedisLink,
    shard: &ShardKeys,
    id: &str,
    token: &str,
    found: &[String],
) -> Result<Option<u64>, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(&acquire_source()));
    let keys = [shard.lease(), shard.batchers(), shard.pending()];
    let args = [
        token.to_owned(),
        ttl_ms().to_string(),
        id.to_owned(),
        shard.processing(""),
        LUA_CHUNK.to_string(),
    ];
    reclaim(link, &SCRIPT, &keys, &args, found).await
}

/// While holding `shard` under `token`: reclaims the processing lists of `ids` (found by a scan, not ours).
/// `Some(elements)` reclaimed, `None` if the lease is not ours.
pub async fn sweep(
    link: &mut RedisLink,
    shard: &ShardKeys,
    token: &str,
    ids: &[String],
) -> Result<Option<u64>, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(&sweep_source()));
    let keys = [
        shard.lease(),
        shard.batchers(),
        shard.pending(),
        format!("{}:sweeping", shard.tag()),
    ];
    let args = [
        token.to_owned(),
        shard.processing(""),
        LUA_CHUNK.to_string(),
    ];
    reclaim(link, &SCRIPT, &keys, &args, ids).await
}

/// Runs a reclaiming script (`acquire` or `sweep`) with `keys`, then `args` followed by the processing-list
/// ids `found` by a scan. `Some(elements reclaimed)`, or `None` when the script answers -1 (not the holder).
async fn reclaim(
    link: &mut RedisLink,
    script: &redis::Script,
    keys: &[String],
    args: &[String],
    found: &[String],
) -> Result<Option<u64>, QueueError> {
    let moved: i64 = link
        .call(RENEW_TIMEOUT * 5, |mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args.iter().chain(found) {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    Ok(u64::try_from(moved).ok())
}

/// The ids of every processing list in `shard` (a scan of the shard's node, bounded), whatever their names.
pub async fn processing_lists(
    link: &mut RedisLink,
    shard: &ShardKeys,
) -> Result<Vec<String>, QueueError> {
    /// A scan of a node holding millions of keys must not hold up the caller for long.
    const MAX_STEPS: usize = 1000;
    let prefix = shard.processing("");
    let pattern = format!("{}*", escape_glob(&prefix));
    let mut ids = Vec::new();
    let mut cursor = 0;
    for _ in 0..MAX_STEPS {
        let (next, keys) = link
            .call(RENEW_TIMEOUT, |mut conn| {
                let (pattern, slot_key) = (&pattern, shard.pending());
                async move { conn.scan_step(&slot_key, cursor, pattern, 1000).await }
            })
            .await?;
        ids.extend(keys.into_iter().filter_map(|key| {
            let id = key.strip_prefix(&prefix)?;
            // `<id>:cleared` markers are not lists; ids cannot contain ':'.
            (!id.contains(':')).then(|| id.to_owned())
        }));
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// `pattern` with the glob characters of SCAN's MATCH escaped (hash tags contain `{` and `}`, which are
/// literal for MATCH, but `[`, `*`, `?` and `\` would not be).
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renews the lease `lease_key`, within [`RENEW_TIMEOUT`]; `false` when it is no longer `token`'s.
pub async fn renew(conn: &mut RedisConn, lease_key: &str, token: &str) -> Result<bool, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(RENEW));
    let mut invocation = SCRIPT.key(lease_key);
    invocation.arg(token).arg(ttl_ms());
    match tokio::time::timeout(RENEW_TIMEOUT, invocation.invoke_async::<i64>(conn)).await {
        Ok(renewed) => Ok(renewed? == 1),
        Err(_) => Err(QueueError::Timeout(RENEW_TIMEOUT)),
    }
}

/// Gives `shard` up (if `token` still holds it), so the next holder takes it without waiting for expiry.
pub async fn release(
    link: &mut RedisLink,
    shard: &ShardKeys,
    id: &str,
    token: &str,
) -> Result<bool, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(RELEASE));
    let released: i64 = link
        .call(RENEW_TIMEOUT * 5, |mut conn| async move {
            SCRIPT
                .key(shard.lease())
                .key(shard.batchers())
                .key(shard.processing(id))
                .key(shard.cleared(id))
                .arg(token)
                .arg(id)
                .invoke_async(&mut conn)
                .await
        })
        .await?;
    Ok(released == 1)
}

/// Renews batcher `id`'s membership; returns the live members, sorted.
pub async fn join(link: &mut RedisLink, keys: &Keys, id: &str) -> Result<Vec<String>, QueueError> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(JOIN));
    link.call(RENEW_TIMEOUT, |mut conn| async move {
        SCRIPT
            .key(keys.members())
            .arg(id)
            .arg(ttl_ms())
            .invoke_async(&mut conn)
            .await
    })
    .await
}

/// Ends batcher `id`'s membership, so the others take its shards at their next renewal.
pub async fn leave(link: &mut RedisLink, keys: &Keys, id: &str) -> Result<(), QueueError> {
    link.call(RENEW_TIMEOUT, |mut conn| async move {
        redis::cmd("ZREM")
            .arg(keys.members())
            .arg(id)
            .query_async(&mut conn)
            .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_match_the_prefix_literally() {
        assert_eq!(escape_glob("{p:3}:processing:"), "{p:3}:processing:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
