//! The rules a message's values must pass, in one place: the ingestor applies them before it queues a
//! message (a violation is a 422 naming the field), and the batcher again to every element it takes, since
//! anything can be pushed onto a Redis list (a violation sends the element to `dead_letters`). Serde-free and
//! I/O-free, so the dashboard (wasm) can use it too.

use std::fmt;

use crate::api::MAX_CONTENT_CHARS;

/// A value that breaks a rule: the field, and which rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// `user_id`, `channel_id` or `content`.
    pub field: &'static str,
    pub rule: Rule,
}

/// The rules, each with the sentence that explains it (the API's error message and the dead letter's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Ids are positive integers.
    Positive,
    /// Content has at least one character…
    NotEmpty,
    /// …at most [`MAX_CONTENT_CHARS`] characters (Unicode scalar values: "é" counts once)…
    AtMostMaxChars,
    /// …not only whitespace…
    NotBlank,
    /// …and no NUL, which PostgreSQL `text` cannot hold.
    NoNul,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Positive => f.write_str("must be a positive integer"),
            Self::NotEmpty => f.write_str("must not be empty"),
            Self::AtMostMaxChars => write!(f, "must be at most {MAX_CONTENT_CHARS} characters"),
            Self::NotBlank => f.write_str("must not be blank"),
            Self::NoNul => f.write_str("must not contain NUL characters"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

/// Checks a message's values, reporting the first that breaks a rule, in the order user_id, channel_id,
/// content (and for content: empty, too long, blank, NUL).
pub fn check(user_id: i64, channel_id: i64, content: &str) -> Result<(), Violation> {
    let violation = |field, rule| Err(Violation { field, rule });
    if user_id <= 0 {
        return violation("user_id", Rule::Positive);
    }
    if channel_id <= 0 {
        return violation("channel_id", Rule::Positive);
    }
    if content.is_empty() {
        return violation("content", Rule::NotEmpty);
    }
    // No more characters than bytes: counting is needed only when the byte length could exceed the limit,
    // which keeps the common case O(1); the count stops one past the limit.
    if content.len() > MAX_CONTENT_CHARS
        && content.chars().take(MAX_CONTENT_CHARS + 1).count() > MAX_CONTENT_CHARS
    {
        return violation("content", Rule::AtMostMaxChars);
    }
    if content.trim().is_empty() {
        return violation("content", Rule::NotBlank);
    }
    if content.contains('\0') {
        return violation("content", Rule::NoNul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(user_id: i64, channel_id: i64, content: &str) -> String {
        check(user_id, channel_id, content)
            .expect_err("breaks a rule")
            .to_string()
    }

    #[test]
    fn a_plain_message_passes() {
        assert_eq!(check(1, 1, "hello"), Ok(()));
        assert_eq!(check(i64::MAX, i64::MAX, " x "), Ok(()));
    }

    #[test]
    fn each_rule_is_named_with_its_field() {
        assert_eq!(broken(0, 1, "x"), "user_id must be a positive integer");
        assert_eq!(
            broken(1, i64::MIN, "x"),
            "channel_id must be a positive integer"
        );
        assert_eq!(broken(1, 1, ""), "content must not be empty");
        assert_eq!(broken(1, 1, " \n\t"), "content must not be blank");
        assert_eq!(
            broken(1, 1, "a\0b"),
            "content must not contain NUL characters"
        );
        assert_eq!(
            broken(1, 1, &"x".repeat(MAX_CONTENT_CHARS + 1)),
            "content must be at most 2000 characters"
        );
    }

    #[test]
    fn the_first_broken_rule_is_reported() {
        assert_eq!(check(0, 0, "").unwrap_err().field, "user_id");
        assert_eq!(check(1, 0, "").unwrap_err().field, "channel_id");
        assert_eq!(
            check(1, 1, &" ".repeat(3000)).unwrap_err().rule,
            Rule::AtMostMaxChars
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert_eq!(check(1, 1, &"é".repeat(MAX_CONTENT_CHARS)), Ok(()));
        assert_eq!(
            check(1, 1, &"é".repeat(MAX_CONTENT_CHARS + 1))
                .unwrap_err()
                .rule,
            Rule::AtMostMaxChars
        );
    }
}
