//! The query of `GET /channels/{channel_id}/messages`, checked: pure, so every bad input is unit-tested here.

use crate::domain::{FieldError, parse_limit};

/// `limit` when none is given.
pub use pipeline::api::DEFAULT_HISTORY_LIMIT;
/// Largest `limit`.
pub use pipeline::api::MAX_HISTORY_LIMIT;

/// Which page of a channel's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPage {
    pub channel_id: i64,
    pub cursor: Cursor,
    pub limit: i64,
}

/// Where the page starts, and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Offsets above this one, oldest first (0: from the start).
    After(i64),
    /// Offsets below this one, newest first (scrolling back).
    Before(i64),
}

impl HistoryPage {
    /// Checks the path's `channel_id` and the query's `after`, `before` and `limit` (as sent, text), naming
    /// the first field that is wrong.
    pub fn parse(
        channel_id: &str,
        after: Option<&str>,
        before: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Self, FieldError> {
        let channel_id = digits(channel_id)
            .filter(|id| *id > 0)
            .ok_or_else(|| FieldError::new("channel_id", "must be a positive integer"))?;
        let cursor = match (after, before) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "before",
                    "cannot be combined with `after`: give one of them",
                ));
            }
            (Some(after), None) => Cursor::After(digits(after).ok_or_else(|| {
                FieldError::new("after", "must be an integer from 0 (the start) up")
            })?),
            (None, Some(before)) => Cursor::Before(
                digits(before)
                    .filter(|before| *before > 0)
                    .ok_or_else(|| FieldError::new("before", "must be a positive integer"))?,
            ),
            (None, None) => Cursor::After(0),
        };
        let limit = parse_limit(limit, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
        Ok(Self {
            channel_id,
            cursor,
            // At most MAX_HISTORY_LIMIT.
            limit: limit as i64,
        })
    }
}

/// A non-negative `i64` written in ASCII digits only (no sign, no blanks: `i64::from_str` takes `+7`).
fn digits(raw: &str) -> Option<i64> {
    let all_digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    all_digits.then(|| raw.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<HistoryPage, FieldError>) -> &'static str {
        result.map_or_else(|error| error.field, |_| "ok")
    }

    #[test]
    fn defaults_are_from_the_start_and_a_hundred() {
        assert_eq!(
            HistoryPage::parse("7", None, None, None).unwrap(),
            HistoryPage {
                channel_id: 7,
                cursor: Cursor::After(0),
                limit: 100
            }
        );
    }

    #[test]
    fn after_and_before_and_limit_are_read() {
        let page = HistoryPage::parse("9", Some("42"), None, Some("1000")).unwrap();
        assert_eq!((page.cursor, page.limit), (Cursor::After(42), 1000));
        let page = HistoryPage::parse("9", None, Some("43"), Some("1")).unwrap();
        assert_eq!((page.cursor, page.limit), (Cursor::Before(43), 1));
    }

    #[test]
    fn every_bad_value_names_its_field() {
        for channel in ["0", "-3", "x", "", "+4", "1.5", "9223372036854775808"] {
            assert_eq!(
                field(HistoryPage::parse(channel, None, None, None)),
                "channel_id",
                "{channel:?}"
            );
        }
        for after in ["-1", "x", "", "+1", "1e3", "9223372036854775808"] {
            assert_eq!(
                field(HistoryPage::parse("1", Some(after), None, None)),
                "after",
                "{after:?}"
            );
        }
        for before in ["0", "-1", "x", ""] {
            assert_eq!(
                field(HistoryPage::parse("1", None, Some(before), None)),
                "before",
                "{before:?}"
            );
        }
        for limit in ["0", "1001", "x", "", "-5"] {
            assert_eq!(
                field(HistoryPage::parse("1", None, None, Some(limit))),
                "limit",
                "{limit:?}"
            );
        }
        assert_eq!(
            field(HistoryPage::parse("1", Some("1"), Some("5"), None)),
            "before"
        );
    }
}
