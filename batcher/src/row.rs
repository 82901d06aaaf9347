//! Decoding one Redis element into a row, or the reason it must go to `dead_letters`.
//!
//! Anything can be pushed onto a Redis list, so every element is untrusted bytes: it must be the JSON of a
//! `pipeline::queued::QueuedMessage` and pass `pipeline::rules`, the rules the ingestor applies. Decoding borrows the
//! content from the element when it has no JSON escapes, so a batch costs no allocation per row for it.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// A validated message, ready for COPY. Field names and meaning as `pipeline::queued::QueuedMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Row<'a> {
    pub tracking_id: Uuid,
    pub user_id: i64,
    pub channel_id: i64,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
    pub created_at: DateTime<Utc>,
}

/// Why an element cannot become a row; its `Display` is the `dead_letters.error` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The bytes are not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a message: a field is missing or has the wrong type.
    #[error("not a queued message: {0}")]
    Shape(String),
    /// A message whose values break the rules.
    #[error("invalid {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// Earliest and latest `created_at` accepted: well inside PostgreSQL's `timestamptz` range, so a value that
/// decodes here can always be sent.
const MIN_YEAR: i32 = 1;
const MAX_YEAR: i32 = 9999;

/// Decodes and validates one element.
pub fn decode(raw: &[u8]) -> Result<Row<'_>, Rejected> {
    let row: Row<'_> = serde_json::from_slice(raw).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => Rejected::Shape(error.to_string()),
        _ => Rejected::NotJson(error.to_string()),
    })?;
    validate(&row)?;
    Ok(row)
}

fn validate(row: &Row<'_>) -> Result<(), Rejected> {
    let invalid = |field, problem: String| Err(Rejected::Invalid { field, problem });
    pipeline::rules::check(row.user_id, row.channel_id, &row.content).map_err(|violation| {
        Rejected::Invalid {
            field: violation.field,
            problem: violation.rule.to_string(),
        }
    })?;
    let year = row.created_at.year();
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return invalid(
            "created_at",
            format!("year {year} is outside {MIN_YEAR}..={MAX_YEAR}"),
        );
    }
    Ok(())
}

/// Error text fit for a PostgreSQL `text` column: no NUL (which `text` cannot hold, and which a serde message
/// may quote from the input), at most 2000 characters.
pub fn error_text(text: &str) -> String {
    text.replace('\0', "\\0").chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::api::MAX_CONTENT_CHARS;
    use pipeline::queued::QueuedMessage;

    fn message(content: &str) -> QueuedMessage {
        QueuedMessage {
            tracking_id: Uuid::now_v7(),
            user_id: 1,
            channel_id: 2,
            content: content.into(),
            created_at: Utc::now(),
        }
    }

    fn rejected(raw: &[u8]) -> String {
        decode(raw).expect_err("should be rejected").to_string()
    }

    #[test]
    fn a_queued_message_decodes_to_the_same_values() {
        let message = message("hello \"world\" ☃");
        let raw = serde_json::to_vec(&message).unwrap();
        let row = decode(&raw).unwrap();
        assert_eq!(row.tracking_id, message.tracking_id);
        assert_eq!((row.user_id, row.channel_id), (1, 2));
        assert_eq!(row.content, message.content);
        assert_eq!(row.created_at, message.created_at);
    }

    #[test]
    fn content_without_escapes_is_borrowed_not_copied() {
        let raw = serde_json::to_vec(&message("plain")).unwrap();
        assert!(matches!(
            decode(&raw).unwrap().content,
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn bytes_that_are_not_json_are_rejected_as_such() {
        assert!(rejected(b"not json").starts_with("not JSON: "));
        assert!(rejected(b"").starts_with("not JSON: "));
        assert!(rejected(b"{\"tracking_id\":").starts_with("not JSON: "));
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let mut value = serde_json::to_value(message("hi")).unwrap();
        value["user_id"] = "x".into();
        let error = rejected(&serde_json::to_vec(&value).unwrap());
        assert!(
            error.starts_with("not a queued message: invalid type: string \"x\""),
            "{error}"
        );

        let mut value = serde_json::to_value(message("hi")).unwrap();
        value.as_object_mut().unwrap().remove("channel_id");
        assert!(
            rejected(&serde_json::to_vec(&value).unwrap()).contains("missing field `channel_id`")
        );

        assert!(rejected(b"[1,2]").starts_with("not a queued message: "));
        let mut value = serde_json::to_value(message("hi")).unwrap();
        value["user_id"] = serde_json::json!(u64::MAX);
        assert!(
            rejected(&serde_json::to_vec(&value).unwrap()).starts_with("not a queued message: ")
        );
    }

    #[test]
    fn ids_must_be_positive() {
        for (field, value) in [("user_id", 0), ("channel_id", -3)] {
            let mut value_json = serde_json::to_value(message("hi")).unwrap();
            value_json[field] = value.into();
            let error = rejected(&serde_json::to_vec(&value_json).unwrap());
            assert_eq!(
                error,
                format!("invalid {field}: must be a positive integer")
            );
        }
    }

    #[test]
    fn content_with_nul_blank_or_too_long_is_rejected() {
        let nul = serde_json::to_vec(&message("a\0b")).unwrap();
        assert_eq!(
            rejected(&nul),
            "invalid content: must not contain NUL characters"
        );
        let blank = serde_json::to_vec(&message(" \n\t")).unwrap();
        assert_eq!(rejected(&blank), "invalid content: must not be blank");
        let long = serde_json::to_vec(&message(&"é".repeat(MAX_CONTENT_CHARS + 1))).unwrap();
        assert_eq!(
            rejected(&long),
            "invalid content: must be at most 2000 characters"
        );
        // The limit counts characters, not bytes: 2000 two-byte characters are fine.
        let at_limit = serde_json::to_vec(&message(&"é".repeat(MAX_CONTENT_CHARS))).unwrap();
        assert!(decode(&at_limit).is_ok());
    }

    #[test]
    fn timestamps_postgresql_cannot_store_are_rejected() {
        let mut value = serde_json::to_value(message("hi")).unwrap();
        value["created_at"] = "+200000-01-01T00:00:00Z".into();
        assert!(rejected(&serde_json::to_vec(&value).unwrap()).starts_with("invalid created_at: "));
    }

    #[test]
    fn error_text_never_holds_a_nul() {
        assert_eq!(error_text("bad \0 byte"), "bad \\0 byte");
        assert_eq!(error_text(&"x".repeat(5000)).len(), 2000);
    }
}
