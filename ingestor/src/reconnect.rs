//! One retry when a Redis command failed because its connection had broken.
//!
//! The `ConnectionManager` notices a broken connection (Redis restarted) only when a command fails on it,
//! and starts reconnecting then; without a retry that first request would get a 503 although Redis is
//! back. A command that failed this way was not executed, or, if it was, its replay is harmless: pushed
//! elements keep their tracking_id, and rows are idempotent on it.

use std::future::Future;

/// Runs `op`, and once more if it failed with a connection-level error.
pub async fn retry_once<T, F, Fut>(mut op: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    match op().await {
        Err(error) if error.is_unrecoverable_error() => {
            tracing::info!(%error, "Redis connection broken; retrying once on a new one");
            op().await
        }
        outcome => outcome,
    }
}
