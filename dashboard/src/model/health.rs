//! Health of the pipeline's parts, as the page can see them.
//!
//! The ingestor and the notifier answer `GET /health` (`{"status","redis","postgres"}`, 200 or 503), which
//! also tells about Redis and PostgreSQL. The batchers have no endpoint the page may call (no CORS), so
//! their state is derived from the events: commits happen, or the queue is empty, or messages wait too long.

use serde::Deserialize;

/// What one `/health` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceHealth {
    /// Not asked yet.
    Checking,
    Up,
    /// The service answers but a dependency does not.
    Degraded {
        redis: bool,
        postgres: bool,
    },
    /// No answer (connection refused, CORS, timeout): the reason.
    Unreachable(String),
}

#[derive(Debug, Deserialize)]
struct HealthBody {
    #[serde(default)]
    redis: String,
    #[serde(default)]
    postgres: String,
}

impl ServiceHealth {
    /// Reads an answer of `/health`: its status code and body.
    pub fn from_response(status: u16, body: &str) -> Self {
        match serde_json::from_str::<HealthBody>(body) {
            Ok(health) => {
                let (redis, postgres) = (health.redis == "ok", health.postgres == "ok");
                if status == 200 && redis && postgres {
                    Self::Up
                } else {
                    Self::Degraded { redis, postgres }
                }
            }
            Err(_) => Self::Unreachable(format!("HTTP {status}, not a health report")),
        }
    }

    /// What this answer says about Redis and PostgreSQL (`None` when it says nothing).
    fn dependencies(&self) -> Option<(bool, bool)> {
        match self {
            Self::Up => Some((true, true)),
            Self::Degraded { redis, postgres } => Some((*redis, *postgres)),
            Self::Checking | Self::Unreachable(_) => None,
        }
    }
}

/// State of a dependency, combined from the services that report on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyHealth {
    Unknown,
    Up,
    Down,
}

/// Redis and PostgreSQL as seen by every reachable service: up if any of them reaches it (a dependency is
/// shared, so one service failing to reach it is that service's problem, shown on its own row).
pub fn dependencies(reports: &[&ServiceHealth]) -> (DependencyHealth, DependencyHealth) {
    let seen: Vec<(bool, bool)> = reports.iter().filter_map(|r| r.dependencies()).collect();
    let combine = |pick: fn(&(bool, bool)) -> bool| {
        if seen.is_empty() {
            DependencyHealth::Unknown
        } else if seen.iter().any(pick) {
            DependencyHealth::Up
        } else {
            DependencyHealth::Down
        }
    };
    (combine(|d| d.0), combine(|d| d.1))
}

/// What the batchers seem to be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatcherState {
    /// No stats yet.
    Unknown,
    /// Nothing queued.
    Idle,
    /// Messages are queued and commits keep coming (or the batch is still within its timeout).
    Working,
    /// Messages have waited longer than `BATCH_TIMEOUT` plus [`BatcherWatch::GRACE_MS`] without a commit.
    Stalled,
}

/// Watches the stats and commits for signs of a live batcher.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatcherWatch {
    /// Last time something showed progress: a commit, an empty queue, or the first stats.
    progress_ms: Option<f64>,
    queue_depth: Option<u64>,
    /// Last commit.
    pub last_commit_ms: Option<f64>,
}

impl BatcherWatch {
    /// Slack over `BATCH_TIMEOUT` before waiting messages count as stalled.
    pub const GRACE_MS: f64 = 5_000.0;

    pub fn stats(&mut self, now_ms: f64, queue_depth: u64) {
        if queue_depth == 0 || self.progress_ms.is_none() {
            self.progress_ms = Some(now_ms);
        }
        self.queue_depth = Some(queue_depth);
    }

    pub fn commit(&mut self, now_ms: f64) {
        self.progress_ms = Some(now_ms);
        self.last_commit_ms = Some(now_ms);
    }

    pub fn state(&self, now_ms: f64, timeout_ms: f64) -> BatcherState {
        match (self.queue_depth, self.progress_ms) {
            (None, _) | (_, None) => BatcherState::Unknown,
            (Some(0), _) => BatcherState::Idle,
            (Some(_), Some(progress)) if now_ms - progress <= timeout_ms + Self::GRACE_MS => {
                BatcherState::Working
            }
            _ => BatcherState::Stalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_answers_are_read() {
        let ok = r#"{"status":"ok","redis":"ok","postgres":"ok"}"#;
        assert_eq!(ServiceHealth::from_response(200, ok), ServiceHealth::Up);
        let degraded = r#"{"status":"degraded","redis":"unavailable","postgres":"ok"}"#;
        assert_eq!(
            ServiceHealth::from_response(503, degraded),
            ServiceHealth::Degraded {
                redis: false,
                postgres: true
            }
        );
        assert!(matches!(
            ServiceHealth::from_response(502, "<html>"),
            ServiceHealth::Unreachable(_)
        ));
    }

    #[test]
    fn a_dependency_is_up_if_any_service_reaches_it() {
        use DependencyHealth::*;
        let up = ServiceHealth::Up;
        let no_redis = ServiceHealth::Degraded {
            redis: false,
            postgres: true,
        };
        let gone = ServiceHealth::Unreachable("refused".into());
        assert_eq!(dependencies(&[&up, &no_redis]), (Up, Up));
        assert_eq!(dependencies(&[&no_redis, &gone]), (Down, Up));
        assert_eq!(
            dependencies(&[&gone, &ServiceHealth::Checking]),
            (Unknown, Unknown)
        );
    }

    #[test]
    fn batchers_are_stalled_only_when_messages_wait_past_the_timeout() {
        let mut watch = BatcherWatch::default();
        assert_eq!(watch.state(0.0, 1_000.0), BatcherState::Unknown);
        watch.stats(0.0, 0);
        assert_eq!(watch.state(0.0, 1_000.0), BatcherState::Idle);
        watch.stats(1_000.0, 10);
        assert_eq!(watch.state(6_000.0, 1_000.0), BatcherState::Working);
        assert_eq!(watch.state(6_001.0, 1_000.0), BatcherState::Stalled);
        watch.commit(6_500.0);
        assert_eq!(watch.state(7_000.0, 1_000.0), BatcherState::Working);
        assert_eq!(watch.last_commit_ms, Some(6_500.0));
    }
}
