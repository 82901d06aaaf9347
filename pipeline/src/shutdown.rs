//! Shutdown: SIGTERM or Ctrl-C cancels one token that every task of a service watches.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or Ctrl-C.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

/// Sleeps `delay`; `false` if `stop` was cancelled first: every retry loop's one way to wait.
pub async fn pause(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stop.cancelled() => false,
    }
}

/// A periodic tick that ends with shutdown, for the services' every-so-often loops:
/// `let mut ticks = Ticks::every(period); while ticks.next(&stop).await { … }`. The first tick is at once, and a
/// tick missed while the loop's body ran long is not made up for: the next one is a whole period later.
#[derive(Debug)]
pub struct Ticks(tokio::time::Interval);

impl Ticks {
    pub fn every(period: Duration) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(interval)
    }

    /// Waits for the next tick; `false` once `stop` is cancelled.
    pub async fn next(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            _ = self.0.tick() => true,
        }
    }
}

async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_come_a_period_apart_from_at_once_and_end_with_stop() {
        let stop = CancellationToken::new();
        let mut ticks = Ticks::every(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        assert!(ticks.next(&stop).await, "the first tick");
        assert_eq!(start.elapsed(), Duration::ZERO, "the first tick is at once");
        // A body that overran two periods: the next tick is not made up for twice.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(ticks.next(&stop).await);
        assert!(ticks.next(&stop).await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(3500),
            "a whole period after the late one"
        );
        stop.cancel();
        assert!(!ticks.next(&stop).await, "none after stop");
    }
}
