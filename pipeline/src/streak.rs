//! Whether a repeated operation (a poll, a reconnect) is in a failure streak, so that a service logs the first
//! failure and the recovery, not every retry: a Redis that is down would otherwise log a line per tick. The
//! one implementation behind the notifier's stats reads and relay and the ingestor's depth refresher. Pure
//! and wasm-safe; the caller logs.

/// A failure streak: begun by a failure, ended by a success.
#[derive(Debug, Clone, Default)]
pub struct FailureStreak {
    failing: bool,
}

impl FailureStreak {
    /// Records a failure; `true` when it begins a streak (the one to log).
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// Records a success; `true` when it ends a streak (the recovery to log).
    pub fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_and_the_recovery_are_news() {
        let mut streak = FailureStreak::default();
        assert!(!streak.succeeded(), "no streak to end yet");
        assert!(streak.failed());
        assert!(!streak.failed());
        assert!(!streak.failed());
        assert!(streak.succeeded());
        assert!(!streak.succeeded());
        assert!(streak.failed(), "a new streak after the recovery");
    }
}
