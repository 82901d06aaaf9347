//! `POST /messages/batch`: a JSON array of 1..=10,000 messages, queued with one `LPUSH` per queue shard their
//! channels map to. With one shard (the default `QUEUE_SHARDS=1`), or all messages in one shard, all are
//! queued or none. Across shards each shard's part is all-or-none, and a 503 says how many were queued; an
//! `Idempotency-Key` (for the whole batch) makes a retry queue exactly the missing parts, under the same
//! `message_ids`, and a repeat answers the same `message_ids`.
//!
//! A refusal names the first bad item's field (`[3].content`) and lists every bad index in
//! `invalid_indexes`, so a client can fix them all in one go.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pipeline::api::NewMessage;
use pipeline::keys::shard_of;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::marker::PhantomData;
use uuid::Uuid;

use crate::auth::WriteAccess;
use crate::backpressure::Admitted;
use crate::domain::{MAX_BATCH_MESSAGES, ValidMessage};
use crate::enqueue::{self, EnqueueError, Part};
use crate::error::{ApiError, BatchErrorBody, PartRefused};
use crate::extract::{BATCH_BODY_LIMIT, JsonBytes, parse};
use crate::idempotency::{self, IdempotencyHeader, Kind, PushOnce, Remembered};
use crate::state::AppState;
use crate::telemetry;

/// `POST /messages/batch` → 201: every message is in Redis.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    /// One per message, in request order.
    pub message_ids: Vec<Uuid>,
    /// Always `"queued"`.
    pub status: &'static str,
    pub queued_at: DateTime<Utc>,
}

/// The body of `POST /messages/batch`: 1 to 10,000 messages.
// Only its schema is used: `parse_batch` reads the body, so that every bad item can be named.
#[derive(Debug, utoipa::ToSchema)]
#[schema(min_items = 1, max_items = 10_000)]
pub struct MessageBatch(pub Vec<NewMessage>);

#[utoipa::path(
    post,
    path = "/messages/batch",
    tag = "messages",
    summary = "Queue many messages at once",
    description = "Every message is queued (one Redis round trip per queue shard), or, within each shard, \
                   none is. With an `Idempotency-Key`, \
                   a repeat answers the first request's `message_ids` and queues nothing.",
    security(("api_key" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = MessageBatch, content_type = "application/json"),
    responses(
        (status = 201, description = "All queued.", body = BatchAccepted),
        (status = 400, description = "The body is not JSON.", body = BatchErrorBody),
        (status = 401, description = "API_KEYS is set and no listed key was sent as a bearer token.",
            body = BatchErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "The body is over 32 MiB.", body = BatchErrorBody),
        (status = 415, description = "The content type is not JSON.", body = BatchErrorBody),
        (status = 422, description = "Not an array of 1 to 10,000 messages, or items are invalid \
                                      (all listed in `invalid_indexes`, the first named in `field`); \
                                      or the `Idempotency-Key` is invalid. Nothing was queued.",
            body = BatchErrorBody),
        (status = 429, description = "The queue is over MAX_QUEUE_DEPTH; nothing was queued.",
            body = BatchErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait."))),
        (status = 500, description = "A bug; details are in the ingestor's log.", body = BatchErrorBody),
        (status = 503, description = "`redis_unavailable`: Redis is unavailable; retry. `partly_queued`: the batch \
                                      spans queue shards and only some of them took their part (a full queue \
                                      or Redis failing for the rest); `queued` says how many messages were \
                                      queued, and a retry with the same `Idempotency-Key` queues exactly the \
                                      rest.", body = BatchErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    )
)]
pub async fn create_batch(
    _: WriteAccess,
    State(state): State<AppState>,
    IdempotencyHeader(idempotency_key): IdempotencyHeader,
    JsonBytes(body, budget): JsonBytes<BATCH_BODY_LIMIT>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let messages = parse_batch(&body)?;
    drop((body, budget));
    let idempotency_key = idempotency_key?;
    let count = messages.len() as u64;
    let answer = Remembered {
        kind: Kind::Batch,
        message_ids: messages.iter().map(|_| Uuid::now_v7()).collect(),
        queued_at: Utc::now(),
    };
    // Each message with its index in the request, grouped by shard (request order within a shard).
    let parts = enqueue::by_shard(messages.into_iter().enumerate(), |(_, message)| {
        shard_of(message.channel_id(), state.queue_shards)
    });
    let first_shard = parts.first().map_or(0, |part| part.shard);
    let earlier = (idempotency_key.as_deref())
        .map(|key| super::earlier(&state, first_shard, Kind::Batch, key));
    // Held until the push has finished, so the queue depth estimate accounts for it.
    let _admission = match state.backpressure.admit_or_earlier(count, earlier).await? {
        Admitted::New(admission) => admission,
        Admitted::Earlier(earlier) => return accepted(earlier),
    };
    let answer = match idempotency_key.as_deref() {
        None => push_all(&state, parts, answer).await?,
        Some(key) => push_all_once(&state, key, &parts, answer).await?,
    };
    accepted(answer)
}

/// Pushes every part onto its shard, all at once. With one shard involved (always, with `QUEUE_SHARDS=1`)
/// that is one `LPUSH`: all queued or none. Across shards each part is, and a failure of some part is a 503
/// saying how much was queued (an `Idempotency-Key` makes the retry queue exactly the rest).
async fn push_all(
    state: &AppState,
    parts: Vec<Part<(usize, ValidMessage)>>,
    answer: Remembered,
) -> Result<Remembered, ApiError> {
    let parts = parts
        .into_iter()
        .map(|part| part.encode(|(index, message)| encode(message, &answer, index)))
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = super::push_parts(state, &parts).await?;
    let queued: usize = parts
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(part, _)| part.elements.len())
        .sum();
    telemetry::accepted(queued as u64);
    match outcomes.into_iter().find_map(Result::err) {
        None => Ok(answer),
        Some(error) if queued == 0 => Err(state
            .backpressure
            .not_queued(&error, answer.message_ids.len() as u64)),
        Some(error) => Err(ApiError::PartlyQueued {
            queued,
            total: answer.message_ids.len(),
            cause: (&error).into(),
            keyed: false,
        }),
    }
}

/// Pushes the parts one shard after another, each with the `Idempotency-Key` script, the first shard first.
/// If the first shard already has the key's record, an earlier request was accepted at least in part: its
/// answer's ids are reused, and only the parts whose shards lack the record are pushed now.
async fn push_all_once(
    state: &AppState,
    key: &str,
    parts: &[Part<(usize, ValidMessage)>],
    mut answer: Remembered,
) -> Result<Remembered, ApiError> {
    // Messages queued by this request, and by an earlier one with the same key.
    let (mut queued, mut queued_before) = (0, 0);
    for (position, part) in parts.iter().enumerate() {
        let elements = part
            .elements
            .iter()
            .map(|(index, message)| encode(message.clone(), &answer, *index))
            .collect::<Result<Vec<_>, _>>()?;
        let total = answer.message_ids.len();
        let refused = match super::push_once(state, part.shard, key, &answer, &elements).await {
            Ok(PushOnce::Pushed) => {
                queued += elements.len();
                continue;
            }
            Ok(PushOnce::Earlier(earlier)) if position == 0 => {
                let same_request =
                    earlier.kind == Kind::Batch && earlier.message_ids.len() == total;
                answer = earlier;
                if !same_request {
                    // The key names another request: answer that one, queue nothing.
                    return Ok(answer);
                }
                queued_before += elements.len();
                continue;
            }
            // This part was queued by the earlier request.
            Ok(PushOnce::Earlier(_)) => {
                queued_before += elements.len();
                continue;
            }
            Ok(PushOnce::Full { depth }) => {
                let full = EnqueueError::Full { depth };
                if queued + queued_before == 0 {
                    return Err(state.backpressure.not_queued(&full, total as u64));
                }
                PartRefused::from(&full)
            }
            Err(ApiError::RedisUnavailable(detail)) if queued + queued_before > 0 => {
                PartRefused::RedisUnavailable(detail)
            }
            Err(error) => return Err(error),
        };
        telemetry::accepted(queued as u64);
        return Err(ApiError::PartlyQueued {
            queued: queued + queued_before,
            total,
            cause: refused,
            keyed: true,
        });
    }
    if queued > 0 {
        telemetry::accepted(queued as u64);
        super::replicated(state).await?;
    }
    Ok(answer)
}

/// The Redis element of the message at `index` of the request, under `answer`'s id and time.
fn encode(message: ValidMessage, answer: &Remembered, index: usize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&message.into_queued(answer.message_ids[index], answer.queued_at))
        .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))
}

/// The 201 for `answer`.
fn accepted(answer: Remembered) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let answer = idempotency::expect_kind(answer, Kind::Batch)?;
    let body = BatchAccepted {
        message_ids: answer.message_ids,
        status: "queued",
        queued_at: answer.queued_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Parses and validates a whole batch: every message, or a 400/422 saying what is wrong.
pub fn parse_batch(body: &[u8]) -> Result<Vec<ValidMessage>, ApiError> {
    // Fast path: the whole array in one typed parse. Only a failure pays for splitting it into items.
    let messages = match serde_json::from_slice::<Capped<NewMessage>>(body) {
        Ok(Capped(messages)) => messages,
        Err(error) if is_too_many(&error) => return Err(too_many()),
        Err(_) => return Err(explain(body)),
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
    // Too many items is told first, without reading past the first one too many.
    let items = match serde_json::from_slice::<Capped<&RawValue>>(body) {
        Ok(Capped(items)) => items,
        Err(error) if is_too_many(&error) => return too_many(),
        Err(_) => match parse::<Capped<&RawValue>>(body, "") {
            Err(error) => return error,
            Ok(_) => return ApiError::Internal("a batch failed to parse only once".into()),
        },
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

/// A JSON array of at most `MAX_BATCH_MESSAGES` items. Reading stops at the item after the last allowed one,
/// with an error that [`is_too_many`] recognises: a body of millions of tiny items (`[0,0,0,…]`) costs the
/// memory and time of the items a batch may hold, not of the millions.
#[derive(Debug)]
struct Capped<T>(Vec<T>);

/// The start of the error [`Capped`] stops with.
const TOO_MANY: &str = "more items than a batch may hold";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Capped<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = Capped<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                // What `Vec` says, so a non-array is refused in the same words as before.
                formatter.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Capped<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX_BATCH_MESSAGES {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    items.push(item);
                }
                Ok(Capped(items))
            }
        }

        deserializer.deserialize_seq(Items(PhantomData))
    }
}

/// Whether `error` is [`Capped`]'s: the array has more items than a batch may hold.
fn is_too_many(error: &serde_json::Error) -> bool {
    error.is_data() && error.to_string().starts_with(TOO_MANY)
}

fn too_many() -> ApiError {
    ApiError::invalid_body(format!(
        "a batch holds 1 to {MAX_BATCH_MESSAGES} messages, this one has more"
    ))
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
    fn a_huge_array_is_refused_at_its_first_item_too_many() {
        let too_many_message = |body: &str| match parse_batch(body.as_bytes()) {
            Err(ApiError::InvalidField {
                field: None,
                message,
                invalid_indexes: None,
            }) => message,
            other => panic!("{other:?}"),
        };
        let zeros = format!("[{}]", vec!["0"; 1_000_000].join(","));
        let expected = "a batch holds 1 to 10000 messages, this one has more";
        assert_eq!(too_many_message(&zeros), expected);
        let many = format!("[{}]", vec![GOOD; 20_000].join(","));
        assert_eq!(too_many_message(&many), expected);
        // What follows the first item too many is not read: not even broken JSON there changes the answer.
        let broken = format!("[{}, {{]", vec!["0"; MAX_BATCH_MESSAGES + 1].join(","));
        assert_eq!(too_many_message(&broken), expected);
        // The limit itself, with broken JSON right after it, is malformed.
        let broken = format!("[{}, {{]", vec![GOOD; MAX_BATCH_MESSAGES].join(","));
        assert!(matches!(
            parse_batch(broken.as_bytes()),
            Err(ApiError::MalformedJson(_))
        ));
        // A non-array is still refused in the words of a `Vec`.
        let error = serde_json::from_str::<Capped<&RawValue>>("7").unwrap_err();
        assert!(error.to_string().contains("expected a sequence"), "{error}");
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
