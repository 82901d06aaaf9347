//! `queue_depth`: messages waiting in Redis plus messages held by batchers (the seed's "unified pipeline
//! view"), over every shard in use. A batcher holds exactly what its processing list holds, so one script per
//! shard reads that shard atomically; shards are read concurrently (on a cluster, from their own nodes).

use futures_util::future::try_join_all;
use redis::aio::ConnectionLike;

use crate::keys::{Keys, ShardKeys};

/// Lua that sets the local `depth` to one shard's depth. KEYS[1] = pending list, KEYS[2] = set of batcher ids,
/// ARGV[1] = processing-list key prefix. Also the start of the ingestor's admitting push, which checks the
/// depth and pushes in one script.
///
/// The processing lists are not declared in KEYS because the set of batchers is only known inside the script;
/// they share the hash tag of KEYS[1], so they sit in the same Redis Cluster slot.
pub const SHARD_DEPTH_LUA: &str = r"
local depth = redis.call('LLEN', KEYS[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  depth = depth + redis.call('LLEN', ARGV[1] .. id)
end
";

/// Messages accepted but not yet committed in one shard: its pending list plus every processing list.
pub async fn shard_depth(
    conn: &mut impl ConnectionLike,
    shard: &ShardKeys,
) -> redis::RedisResult<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(&format!("{SHARD_DEPTH_LUA}return depth")));
    SCRIPT
        .key(shard.pending())
        .key(shard.batchers())
        .arg(shard.processing(""))
        .invoke_async(conn)
        .await
}

/// Messages accepted but not yet committed, in every shard in use (see [`shards_in_use`]).
pub async fn queue_depth<C: ConnectionLike + Clone>(
    conn: &mut C,
    keys: &Keys,
    configured_shards: u32,
) -> redis::RedisResult<u64> {
    Ok(shard_depths(conn, keys, configured_shards)
        .await?
        .into_iter()
        .sum())
}

/// The depth of each shard in use, shard 0 first.
pub async fn shard_depths<C: ConnectionLike + Clone>(
    conn: &mut C,
    keys: &Keys,
    configured_shards: u32,
) -> redis::RedisResult<Vec<u64>> {
    let shards = shards_in_use(conn, keys, configured_shards).await?;
    let reads = keys.shards(shards).map(|shard| {
        let mut conn = conn.clone();
        async move { shard_depth(&mut conn, &shard).await }
    });
    try_join_all(reads).await
}

/// How many shards hold or may hold messages: `QUEUE_SHARDS`, or more while the shards of an earlier, larger
/// layout (recorded by [`record_layout`]) may still hold some. Shards are numbered from 0, so a layout of n
/// shards uses shards `0..n`.
pub async fn shards_in_use(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    configured_shards: u32,
) -> redis::RedisResult<u32> {
    let layouts: Vec<u32> = redis::cmd("SMEMBERS")
        .arg(keys.layouts())
        .query_async(conn)
        .await?;
    Ok(layouts.into_iter().fold(configured_shards, u32::max))
}

/// Records that a service runs with `configured_shards`, so the shards of this layout are drained even after
/// `QUEUE_SHARDS` is lowered.
pub async fn record_layout(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    configured_shards: u32,
) -> redis::RedisResult<()> {
    redis::cmd("SADD")
        .arg(keys.layouts())
        .arg(configured_shards)
        .query_async(conn)
        .await
}
