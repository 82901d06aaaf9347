//! One module per endpoint, plus what the handlers share: the timeouts and error mapping for Redis and
//! PostgreSQL, and the Redis calls of `Idempotency-Key` requests (admission under `MAX_QUEUE_DEPTH` is
//! [`crate::backpressure`]'s).

pub mod batch;
pub mod channel_messages;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod queue_status;
pub mod ready;
pub mod reset;
pub mod root;
pub mod simulate;
pub mod simulate_answer;
pub mod ws_stats;

use std::future::Future;
use std::time::Duration;

use pipeline::connection::RedisConn;

use crate::error::ApiError;
use crate::idempotency::{self, Kind, PushOnce, Remembered};
use crate::state::AppState;

/// Longest wait for one Redis command of a handler (the group commit has its own, `pusher::PUSH_TIMEOUT`).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one PostgreSQL operation of a handler, connecting from the pool included.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one Redis operation (made by `op`, again if the connection had broken) within [`REDIS_TIMEOUT`];
/// any failure is a 503 (`redis_unavailable`).
pub async fn redis<T, F, Fut>(op: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    match tokio::time::timeout(REDIS_TIMEOUT, pipeline::connection::retry_once(op)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::RedisUnavailable(error.to_string())),
        Err(_) => Err(ApiError::RedisUnavailable(format!(
            "no answer within {REDIS_TIMEOUT:?}"
        ))),
    }
}

/// Sends `command` on a clone of `conn`, as [`redis`] does.
pub async fn query<T: redis::FromRedisValue>(
    conn: &RedisConn,
    command: &redis::Cmd,
) -> Result<T, ApiError> {
    redis(|| {
        let mut conn = conn.clone();
        async move { command.query_async(&mut conn).await }
    })
    .await
}

/// Pushes `parts` onto their shards (see [`crate::enqueue::push`]) within [`REDIS_TIMEOUT`]; one outcome per
/// part, or a 503 if Redis did not answer in time.
pub async fn push_parts(
    state: &AppState,
    parts: &[crate::enqueue::Part<Vec<u8>>],
) -> Result<Vec<Result<(), crate::enqueue::EnqueueError>>, ApiError> {
    let push = crate::enqueue::push(&state.redis, &state.keys, parts, state.wait, |shard| {
        state.backpressure.check(shard)
    });
    tokio::time::timeout(REDIS_TIMEOUT, push)
        .await
        .map_err(|_| ApiError::RedisUnavailable(format!("no answer within {REDIS_TIMEOUT:?}")))
}

/// With `REDIS_WAIT_REPLICAS`: waits until the replicas hold what this connection pushed, else 503.
pub async fn replicated(state: &AppState) -> Result<(), ApiError> {
    crate::enqueue::replicated(&state.redis, state.wait)
        .await
        .map_err(|error| ApiError::RedisUnavailable(error.to_string()))
}

/// `pipeline::depth::queue_depth`: pending plus every batcher's processing list, of every shard.
pub async fn queue_depth(state: &AppState) -> Result<u64, ApiError> {
    redis(|| {
        let mut conn = state.redis.clone();
        async move { pipeline::depth::queue_depth(&mut conn, &state.keys, state.queue_shards).await }
    })
    .await
}

/// A pooled PostgreSQL connection for a read; 503 (`database_unavailable`) while the schema is not yet
/// applied (PostgreSQL has been unreachable since start, see [`crate::schema`]) or PostgreSQL is down.
pub async fn db_client(state: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    if !state.schema.applied() {
        return Err(ApiError::DatabaseUnavailable(
            "the schema is not applied yet: PostgreSQL has not been reachable since start".into(),
        ));
    }
    Ok(state.db.get().await?)
}

/// Runs one PostgreSQL operation with [`DB_TIMEOUT`].
pub async fn db<T>(op: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    tokio::time::timeout(DB_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::DatabaseUnavailable(format!(
                "no answer within {DB_TIMEOUT:?}"
            )))
        })
}

/// The record of an accepted request with `key` on `shard` (see [`idempotency::earlier`]), for
/// [`crate::backpressure::Backpressure::admit_or_earlier`].
pub async fn earlier(
    state: &AppState,
    shard: u32,
    kind: Kind,
    key: &str,
) -> Result<Option<Remembered>, ApiError> {
    redis(|| {
        let mut conn = state.redis.clone();
        let shard = state.keys.shard(shard);
        async move { idempotency::earlier(&mut conn, &shard, kind, key).await }
    })
    .await
}

/// Pushes `elements` (the messages of `answer` that belong to `shard`) with the `Idempotency-Key` script
/// (see [`idempotency::push_once`]), as [`redis`] does.
pub async fn push_once(
    state: &AppState,
    shard: u32,
    key: &str,
    answer: &Remembered,
    elements: &[Vec<u8>],
) -> Result<PushOnce, ApiError> {
    let keys = state.keys.shard(shard);
    let room = state.backpressure.room(shard);
    redis(|| {
        let mut conn = state.redis.clone();
        let (keys, ttl) = (&keys, state.idempotency_ttl);
        async move { idempotency::push_once(&mut conn, keys, key, answer, elements, ttl, room).await }
    })
    .await
}
