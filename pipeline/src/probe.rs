//! What every service's `/health` and `/ready` check, with one timeout and one vocabulary.
//!
//! A dependency that does not answer within [`PROBE_TIMEOUT`] counts as down: probes must be quick, and
//! Kubernetes gives up on a probe after its own `timeoutSeconds` (1 s by default). Each check is logged when it
//! fails, so a 503 can be explained from the logs.

use std::{future::Future, time::Duration};

use crate::connection::{RedisConn, retry_once};

/// Longest wait for one dependency check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The word for a dependency's state in every `/health` and `/ready` body: `ok` or `unavailable`.
pub fn word(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}

/// Every service's `/health` verdict: 200 and `ok` when all its dependencies answer, 503 and `degraded`
/// otherwise (the service keeps running either way).
pub fn health(all_answer: bool) -> (http::StatusCode, &'static str) {
    if all_answer {
        (http::StatusCode::OK, "ok")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "degraded")
    }
}

/// Every service's `/ready` verdict: 200 and `ready` when what its main job needs answers, 503 and
/// `not_ready` otherwise.
pub fn ready(can_work: bool) -> (http::StatusCode, &'static str) {
    if can_work {
        (http::StatusCode::OK, "ready")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    }
}

/// Runs `op` against Redis within [`PROBE_TIMEOUT`] (retried once on a broken connection, see
/// [`retry_once`]); `None`, logged with `probe` naming the check, when it fails or is late.
pub async fn redis<T, F, Fut>(probe: &'static str, op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    within_timeout(probe, "Redis", retry_once(op)).await
}

/// `check` of `dependency` within [`PROBE_TIMEOUT`]; `None`, logged with `probe` naming the check, when it
/// fails or is late.
async fn within_timeout<T, E: std::fmt::Display>(
    probe: &'static str,
    dependency: &'static str,
    check: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, probe, "{dependency} failed");
            None
        }
        Err(_) => {
            tracing::warn!(probe, "{dependency} did not answer in time");
            None
        }
    }
}

/// Whether Redis answers `PING` on `conn` (a shared connection: probing opens none of its own).
pub async fn redis_answers(probe: &'static str, conn: &RedisConn) -> bool {
    redis(probe, || {
        let mut conn = conn.clone();
        async move { redis::cmd("PING").query_async::<String>(&mut conn).await }
    })
    .await
    .is_some()
}

/// Whether PostgreSQL answers `SELECT 1` on a connection of `pool`.
pub async fn postgres_answers(probe: &'static str, pool: &deadpool_postgres::Pool) -> bool {
    let check = async {
        let client = pool.get().await.map_err(|error| error.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|error| error.to_string())
    };
    within_timeout(probe, "PostgreSQL", check).await.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_one_spelling() {
        assert_eq!((word(true), word(false)), ("ok", "unavailable"));
        assert_eq!(health(true), (http::StatusCode::OK, "ok"));
        assert_eq!(
            health(false),
            (http::StatusCode::SERVICE_UNAVAILABLE, "degraded")
        );
        assert_eq!(ready(true), (http::StatusCode::OK, "ready"));
        assert_eq!(
            ready(false),
            (http::StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        );
    }
}
