//! `POST /messages/batch`: a JSON array of 1..=10,000 messages, all queued with one `LPUSH` or none at all.
//!
//! A refusal names the first bad item's field (`[3].content`) and lists every bad index in
//! `invalid_indexes`, so a client can fix them all in one go.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pipeline::api::NewMessage;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::{MAX_BATCH_MESSAGES, ValidMessage};
use crate::error::ApiError;
use crate::extract::{BATCH_BODY_LIMIT, JsonBytes, parse};
use crate::startup::AppState;
use crate::telemetry;

/// `POST /messages/batch` → 201: every message is in Redis.
#[derive(Debug, Serialize)]
pub struct BatchAccepted {
    /// One per message, in request order.
    pub message_ids: Vec<Uuid>,
    /// Always `"queued"`.
    pub status: &'static str,
    pub queued_at: DateTime<Utc>,
}

pub async fn create_batch(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes<BATCH_BODY_LIMIT>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let messages = parse_batch(&body)?;
    drop(body);
    let queued_at = Utc::now();
    let mut message_ids = Vec::with_capacity(messages.len());
    let mut command = redis::cmd("LPUSH");
    command.arg(state.keys.pending());
    for message in messages {
        let id = Uuid::now_v7();
        message_ids.push(id);
        let element = serde_json::to_vec(&message.into_queued(id, queued_at))
            .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))?;
        command.arg(element);
    }
    super::query::<i64>(&state.redis, &command).await?;
    telemetry::accepted(message_ids.len() as u64);
    let body = BatchAccepted {
        message_ids,
        status: "queued",
        queued_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Parses and validates a whole batch: every message, or a 400/422 saying what is wrong.
pub fn parse_batch(body: &[u8]) -> Result<Vec<ValidMessage>, ApiError> {
    // Fast path: the whole array in one typed parse. Only a failure pays for splitting it into items.
    let Ok(messages) = serde_json::from_slice::<Vec<NewMessage>>(body) else {
        return Err(explain(body));
    };
    check_count(messages.len())?;
    let mut valid = Vec::with_capacity(messages.len());
    let mut refused = Refused::default();
    for (index, message) in messages.into_iter().enumerate() {
        match ValidMessage::parse(message) {
            Ok(message) => valid.push(message),
            Err(error) => refused.add(index, format!("[{index}].{}", error.field), error.message),
        }
    }
    refused.into_result().map(|()| valid)
}

/// Why a batch that failed the typed parse is wrong: not JSON (400), not an array or the wrong size
/// (422), or which items are wrong (422).
fn explain(body: &[u8]) -> ApiError {
    let items = match parse::<Vec<&RawValue>>(body, "") {
        Ok(items) => items,
        Err(error) => return error,
    };
    if let Err(error) = check_count(items.len()) {
        return error;
    }
    let mut refused = Refused::default();
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("[{index}]");
        match parse::<NewMessage>(item.get().as_bytes(), &prefix).map(ValidMessage::parse) {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                refused.add(index, format!("{prefix}.{}", error.field), error.message)
            }
            Err(ApiError::InvalidField { field, message, .. }) => {
                refused.add(index, field.unwrap_or(prefix), message);
            }
            Err(other) => return other,
        }
    }
    match refused.into_result() {
        Err(error) => error,
        Ok(()) => ApiError::Internal("a batch failed to parse only once".into()),
    }
}

fn check_count(count: usize) -> Result<(), ApiError> {
    if (1..=MAX_BATCH_MESSAGES).contains(&count) {
        Ok(())
    } else {
        Err(ApiError::invalid_body(format!(
            "a batch holds 1 to {MAX_BATCH_MESSAGES} messages, this one has {count}"
        )))
    }
}

/// The refused items of a batch: every index, and the first one's field and reason.
#[derive(Debug, Default)]
struct Refused {
    indexes: Vec<usize>,
    first: Option<(String, String)>,
}

impl Refused {
    fn add(&mut self, index: usize, field: String, message: String) {
        self.indexes.push(index);
        self.first.get_or_insert((field, message));
    }

    fn into_result(self) -> Result<(), ApiError> {
        let Some((field, message)) = self.first else {
            return Ok(());
        };
        let count = self.indexes.len();
        // A reason from `ApiError::invalid_field` already starts with the field.
        let reason = if message.starts_with(&field) {
            message
        } else {
            format!("{field}: {message}")
        };
        Err(ApiError::InvalidField {
            field: Some(field),
            message: format!("{count} message(s) of the batch are invalid, the first: {reason}"),
            invalid_indexes: Some(self.indexes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> (Option<String>, Option<Vec<usize>>) {
        match parse_batch(body.as_bytes()) {
            Err(ApiError::InvalidField {
                field,
                invalid_indexes,
                ..
            }) => (field, invalid_indexes),
            other => panic!("expected a 422 for {body}, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"user_id": 1, "channel_id": 2, "content": "hi"}"#;

    #[test]
    fn a_good_batch_keeps_its_order() {
        let body = r#"[{"user_id": 1, "channel_id": 1, "content": "a"},
                       {"user_id": 2, "channel_id": 2, "content": "b", "extra": true}]"#;
        let messages = parse_batch(body.as_bytes()).unwrap();
        let contents: Vec<_> = messages
            .into_iter()
            .map(|m| m.into_queued(Uuid::nil(), DateTime::UNIX_EPOCH).content)
            .collect();
        assert_eq!(contents, ["a", "b"]);
    }

    #[test]
    fn every_bad_item_is_listed_and_the_first_named() {
        let body = format!(
            r#"[{GOOD}, {{"user_id": 1, "channel_id": 2, "content": " "}}, {GOOD},
                {{"user_id": "x", "channel_id": 2, "content": "a"}}, {{"channel_id": 2}}]"#
        );
        let (field, indexes) = refusal(&body);
        assert_eq!(field.as_deref(), Some("[1].content"));
        assert_eq!(indexes, Some(vec![1, 3, 4]));

        let body = format!(r#"[{GOOD}, {{"user_id": 0, "channel_id": 2, "content": "a"}}]"#);
        assert_eq!(refusal(&body), (Some("[1].user_id".into()), Some(vec![1])));
        let body = format!(r#"[{GOOD}, 7]"#);
        assert_eq!(refusal(&body), (Some("[1]".into()), Some(vec![1])));
    }

    #[test]
    fn empty_oversized_and_non_array_batches_are_refused() {
        assert_eq!(refusal("[]"), (None, None));
        assert_eq!(refusal(GOOD), (None, None));
        let many = vec![GOOD; MAX_BATCH_MESSAGES + 1].join(",");
        assert_eq!(refusal(&format!("[{many}]")), (None, None));
        let most = vec![GOOD; MAX_BATCH_MESSAGES].join(",");
        assert_eq!(
            parse_batch(format!("[{most}]").as_bytes()).unwrap().len(),
            MAX_BATCH_MESSAGES
        );
    }

    #[test]
    fn broken_json_is_malformed_not_invalid() {
        for body in ["", "[", "[{}", "[] []"] {
            assert!(
                matches!(
                    parse_batch(body.as_bytes()),
                    Err(ApiError::MalformedJson(_))
                ),
                "{body:?}"
            );
        }
    }
}
