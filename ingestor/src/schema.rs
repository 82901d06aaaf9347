//! The schema (`init.sql`): the write path (Redis) must not wait for PostgreSQL, so the ingestor starts and
//! answers `POST /messages` while PostgreSQL is down. It tries once at start, bounded by 2 s, then keeps
//! trying in the background. Until the schema is in place, reads (`GET /messages`, `DELETE /reset`) answer
//! 503 `database_unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest the first attempt, made before serving, may delay the start (a refused connection fails at once;
/// this bounds a PostgreSQL that hangs).
const FIRST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest one attempt (connect and apply) in the background may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait after a failed attempt; it doubles up to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between attempts: a recovered PostgreSQL is used within this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Whether `init.sql` has been applied by this process; set once, never cleared.
#[derive(Debug, Clone, Default)]
pub struct SchemaStatus(Arc<AtomicBool>);

impl SchemaStatus {
    /// Whether reads can run.
    pub fn applied(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn mark_applied(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The delays between attempts.
const RETRY: pipeline::backoff::Backoff =
    pipeline::backoff::Backoff::new(MIN_RETRY_DELAY, MAX_RETRY_DELAY);

/// The delay after `failures` failed attempts in a row (1 or more): 100 ms doubling up to 5 s.
fn retry_delay(failures: u32) -> Duration {
    RETRY.delay(failures.saturating_sub(1))
}

/// Applies the schema to `database_url`: once at once, waiting at most [`FIRST_ATTEMPT_TIMEOUT`] (so with
/// PostgreSQL up, reads work from the first request, as before); if that fails, again in the background until
/// it succeeds or `shutdown` is cancelled. `status` is marked once it is applied. The returned task ends then.
pub async fn apply(
    database_url: String,
    status: SchemaStatus,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let first = tokio::time::timeout(
        FIRST_ATTEMPT_TIMEOUT,
        pipeline::schema::connect_and_apply(&database_url),
    )
    .await;
    let error = match first {
        Ok(Ok(())) => {
            status.mark_applied();
            return tokio::spawn(async {});
        }
        Ok(Err(error)) => format!("{error:#}"),
        Err(_) => format!("no answer within {FIRST_ATTEMPT_TIMEOUT:?}"),
    };
    tracing::warn!(
        %error,
        "cannot apply the schema: reads answer 503 until PostgreSQL is reachable; writes are unaffected"
    );
    tokio::spawn(retry_until_applied(database_url, status, shutdown))
}

/// The retries after a failed first attempt: backing off, each attempt bounded by [`ATTEMPT_TIMEOUT`].
async fn retry_until_applied(
    database_url: String,
    status: SchemaStatus,
    shutdown: CancellationToken,
) {
    let mut failures = 1_u32;
    loop {
        if !pipeline::shutdown::pause(retry_delay(failures), &shutdown).await {
            return;
        }
        let attempt = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            pipeline::schema::connect_and_apply(&database_url),
        );
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(Ok(())) => {
                status.mark_applied();
                tracing::info!(
                    failures,
                    "schema applied: PostgreSQL is reachable, reads are served"
                );
                return;
            }
            Ok(Err(error)) => tracing::debug!(
                error = format!("{error:#}"),
                failures,
                "schema still not applied"
            ),
            Err(_) => tracing::debug!(
                failures,
                "schema still not applied: no answer within {ATTEMPT_TIMEOUT:?}"
            ),
        }
        failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_100_ms_doubling_to_5_s() {
        let delays: Vec<u64> = (1..=9)
            .map(|failures| retry_delay(failures).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
