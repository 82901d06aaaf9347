//! The state of the WebSocket connection, as the page shows it.

use super::format::duration_ms;

/// Where the `/ws/stats` connection stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Connection {
    /// The first attempt is under way.
    Connecting,
    Connected,
    /// The connection was lost; attempt `attempt` starts at `retry_at_ms` (or is under way when past).
    Reconnecting {
        attempt: u32,
        retry_at_ms: f64,
    },
}

impl Connection {
    /// The `data-state` attribute and CSS modifier: `connecting`, `connected` or `reconnecting`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }

    /// Human text at `now_ms`.
    pub fn label(&self, now_ms: f64) -> String {
        match *self {
            Self::Connecting => "Connecting…".into(),
            Self::Connected => "Live".into(),
            Self::Reconnecting {
                attempt,
                retry_at_ms,
            } if retry_at_ms > now_ms => format!(
                "Reconnecting in {} (attempt {attempt})",
                duration_ms(retry_at_ms - now_ms)
            ),
            Self::Reconnecting { attempt, .. } => format!("Reconnecting… (attempt {attempt})"),
        }
    }

    /// A connection attempt after a loss is under way or scheduled.
    pub fn is_reconnecting(&self) -> bool {
        matches!(self, Self::Reconnecting { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_count_down_to_the_next_attempt() {
        let state = Connection::Reconnecting {
            attempt: 3,
            retry_at_ms: 2_500.0,
        };
        assert_eq!(state.as_str(), "reconnecting");
        assert_eq!(state.label(500.0), "Reconnecting in 2.00 s (attempt 3)");
        assert_eq!(state.label(3_000.0), "Reconnecting… (attempt 3)");
        assert_eq!(Connection::Connected.label(0.0), "Live");
        assert!(!Connection::Connecting.is_reconnecting());
    }
}
