//! `WS_ORIGINS`: which web pages may open a WebSocket to the notifier.
//!
//! A browser sends `Origin` with every WebSocket handshake and lets any page connect anywhere, so without this
//! check any site a user visits could read the live feed through the user's browser. Clients that send no
//! `Origin` are not browsers (scripts, load tools, other services) and are not affected. A page served by the
//! notifier itself (the dashboard) is always allowed: its origin's `host:port` is the request's `Host`.

/// The parsed `WS_ORIGINS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowedOrigins {
    /// `*` was listed: any origin.
    any: bool,
    /// Further origins, lowercase, as `scheme://host[:port]`.
    listed: Vec<String>,
}

impl AllowedOrigins {
    /// From the `WS_ORIGINS` entries (each checked by `pipeline::config::parse_origin`).
    pub(crate) fn new(entries: &[String]) -> Self {
        Self {
            any: entries.iter().any(|entry| entry == "*"),
            listed: entries
                .iter()
                .filter(|entry| *entry != "*" && !entry.is_empty())
                .map(|entry| entry.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a handshake with these `Origin` and `Host` headers may proceed.
    pub(crate) fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim().to_ascii_lowercase();
        if self.any || self.listed.contains(&origin) {
            return true;
        }
        // Same origin: the page's host:port is the one the request was sent to.
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        match (origin_host, host) {
            (Some(origin_host), Some(host)) => origin_host == host.trim().to_ascii_lowercase(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(entries: &[&str]) -> AllowedOrigins {
        AllowedOrigins::new(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn by_default_only_the_notifiers_own_origin_and_non_browsers_are_allowed() {
        let default = origins(&[]);
        assert!(default.allows(None, Some("127.0.0.1:8001")));
        assert!(default.allows(Some("http://127.0.0.1:8001"), Some("127.0.0.1:8001")));
        assert!(default.allows(Some("https://Dash.Example.com"), Some("dash.example.com")));
        assert!(!default.allows(Some("http://evil.example"), Some("127.0.0.1:8001")));
        // Same host, other port: another origin.
        assert!(!default.allows(Some("http://127.0.0.1:9999"), Some("127.0.0.1:8001")));
        assert!(!default.allows(Some("http://127.0.0.1:8001"), None));
        assert!(!default.allows(Some("null"), Some("127.0.0.1:8001")));
    }

    #[test]
    fn listed_origins_and_star_are_allowed_besides_the_own_origin() {
        let listed = origins(&["https://dash.example.com"]);
        assert!(listed.allows(Some("https://DASH.example.com"), Some("notifier:8001")));
        assert!(listed.allows(Some("http://notifier:8001"), Some("notifier:8001")));
        assert!(!listed.allows(Some("http://dash.example.com"), Some("notifier:8001")));
        assert!(origins(&["*"]).allows(Some("http://anything"), Some("notifier:8001")));
    }

    #[test]
    fn an_empty_entry_lists_nothing() {
        assert_eq!(origins(&[""]), origins(&[]));
    }
}
