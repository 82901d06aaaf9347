//! [`RedisLink`]: one Redis connection of the batcher's, made on first use and again after any failure, with
//! every call bounded in time.

use std::{fmt, future::Future, time::Duration};

use pipeline::connection::{RedisConn, RedisTarget, Timeouts};

/// How long one non-blocking Redis command may take before the connection is considered broken.
pub const REDIS_OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis failure; the caller resets the connection and retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// One Redis connection (to the server, or a cluster connection), made on first use and again after any
/// failure.
///
/// redis-rs' own response timeout is off (it would cut a blocking `BLMOVE` short); every call is bounded
/// here instead, and a call that failed or timed out drops the connection, since its state is then unknown.
/// Each user gets a link of its own, so a blocking call never delays another's commands.
pub struct RedisLink {
    target: RedisTarget,
    conn: Option<RedisConn>,
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl RedisLink {
    /// A link to `target`; nothing is connected yet.
    pub fn new(target: RedisTarget) -> Self {
        Self { target, conn: None }
    }

    /// The connection, made now if there is none.
    pub async fn conn(&mut self) -> Result<RedisConn, QueueError> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let timeouts = Timeouts {
            connect: REDIS_OP_TIMEOUT,
            response: None,
        };
        let conn = tokio::time::timeout(REDIS_OP_TIMEOUT, self.target.connect(timeouts))
            .await
            .map_err(|_| QueueError::Timeout(REDIS_OP_TIMEOUT))??;
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
        F: FnOnce(RedisConn) -> Fut,
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
