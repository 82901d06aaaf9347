//! One module per endpoint, plus the timeouts and error mapping every handler shares for Redis and
//! PostgreSQL.

pub mod batch;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod queue_status;
pub mod reset;
pub mod simulate;

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::error::ApiError;

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
    match tokio::time::timeout(REDIS_TIMEOUT, crate::reconnect::retry_once(op)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::RedisUnavailable(error.to_string())),
        Err(_) => Err(ApiError::RedisUnavailable(format!(
            "no answer within {REDIS_TIMEOUT:?}"
        ))),
    }
}

/// Sends `command` on a clone of `conn`, as [`redis`] does.
pub async fn query<T: redis::FromRedisValue>(
    conn: &ConnectionManager,
    command: &redis::Cmd,
) -> Result<T, ApiError> {
    redis(|| {
        let mut conn = conn.clone();
        async move { command.query_async(&mut conn).await }
    })
    .await
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

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::DatabaseUnavailable(error.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// An error PostgreSQL itself reported (bad SQL, missing table) is ours: 500. Anything else (connection
    /// refused, closed, I/O) means the database is unavailable: 503.
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db_error) => Self::Internal(format!("PostgreSQL error: {db_error}")),
            None => Self::DatabaseUnavailable(error.to_string()),
        }
    }
}
