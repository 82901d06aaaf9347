//! `queue_depth`: messages waiting in Redis plus messages held by batchers (the seed's "unified pipeline
//! view"). A batcher holds exactly what its processing list holds, so one script reads it all atomically.

use redis::aio::ConnectionLike;

use crate::keys::Keys;

/// KEYS[1] = pending list, KEYS[2] = set of batcher ids, ARGV[1] = processing-list key prefix.
///
/// The processing lists are not declared in KEYS because the set of batchers is only known inside the script;
/// they share the hash tag of KEYS[1], so they sit in the same Redis Cluster slot.
const DEPTH_SCRIPT: &str = r"
local depth = redis.call('LLEN', KEYS[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  depth = depth + redis.call('LLEN', ARGV[1] .. id)
end
return depth
";

/// Messages accepted but not yet committed: the pending list plus every batcher's processing list.
pub async fn queue_depth(conn: &mut impl ConnectionLike, keys: &Keys) -> redis::RedisResult<u64> {
    static SCRIPT: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(DEPTH_SCRIPT));
    SCRIPT
        .key(keys.pending())
        .key(keys.batchers())
        .arg(keys.processing(""))
        .invoke_async(conn)
        .await
}
