//! Our own JSON body extractor, so every way a body can be wrong comes back as an [`ApiError`] in the API's
//! JSON shape (axum's `Json` answers in plain text), in this order:
//!
//! 1. 415 when the content type is missing or not JSON (`application/json`, parameters such as `charset`
//!    allowed, or `application/<anything>+json`);
//! 2. 413 when the body is over the endpoint's limit (`LIMIT`, checked on `Content-Length` and while reading);
//! 3. 400 when it is not JSON (syntax error, empty body, trailing garbage);
//! 4. 422 naming the field (a JSON path, via serde_path_to_error) when it is JSON of the wrong shape.
//!
//! Unknown fields are ignored, as the seed's clients may send more than we read.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// Body limit of `POST /messages` and `POST /simulate`: 64 KiB, far above the largest valid message
/// (2,000 characters of up to 12 JSON-escaped bytes each).
pub const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Body limit of `POST /messages/batch`: 32 MiB (10,000 messages of ~3 KiB).
pub const BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Bytes of request bodies over [`SMALL_BODY_LIMIT`] (batches) held in memory at once, by all requests
/// together: 32 MiB, one body of the limit. A body reserves its `Content-Length` (the whole
/// [`BATCH_BODY_LIMIT`] when it sends none) before it is read, and waits for room while the budget is spent, so
/// however many large bodies arrive together, the ingestor holds at most this much of them (a typical batch,
/// 10,000 short messages, is about 1 MiB: ~32 at once; a body of the limit is read and parsed in tens of
/// milliseconds). The allocator keeps freed memory for a while (mimalloc frees a block freed by another thread
/// lazily), so the resident size can exceed the budget: 8 bodies of 32 MiB at once peak well under 256 MiB
/// (`ingestor/tests/memory.rs`).
pub const LARGE_BODIES_BUDGET: usize = 32 * 1024 * 1024;

/// Longest a request waits for its share of [`LARGE_BODIES_BUDGET`] before it is answered 503 `busy`. Bodies
/// are read in milliseconds on a healthy link, so a longer wait means clients uploading slowly hold the budget
/// (a client may declare 32 MiB and trickle it): the others get a clear answer to retry instead of waiting
/// with no limit.
pub const BODY_BUDGET_WAIT: Duration = Duration::from_secs(5);

/// The budget in KiB (a semaphore counts in `u32`).
static LARGE_BODIES: Semaphore = Semaphore::const_new(LARGE_BODIES_BUDGET / 1024);

/// The body, checked to be JSON by content type and at most `LIMIT` bytes, not yet parsed; and, for a large
/// body, its share of [`LARGE_BODIES_BUDGET`], to be held until what was parsed from it is dropped.
#[derive(Debug)]
pub struct JsonBytes<const LIMIT: usize>(pub Bytes, pub Option<SemaphorePermit<'static>>);

/// The body parsed as `T`.
#[derive(Debug)]
pub struct JsonBody<T, const LIMIT: usize = SMALL_BODY_LIMIT>(pub T);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBytes<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        // Refuse up front what announces itself as too large, without reading it.
        if declared.is_some_and(|length| length > LIMIT as u64) {
            return Err(ApiError::PayloadTooLarge { limit: LIMIT });
        }
        let expected = declared.map_or(LIMIT, |length| length as usize);
        let permit = if LIMIT > SMALL_BODY_LIMIT {
            let kib = expected.div_ceil(1024).max(1) as u32;
            match tokio::time::timeout(BODY_BUDGET_WAIT, LARGE_BODIES.acquire_many(kib)).await {
                // Never closed, so `acquire_many` cannot fail.
                Ok(permit) => permit.ok(),
                Err(_) => {
                    return Err(ApiError::Busy {
                        waited: BODY_BUDGET_WAIT,
                    });
                }
            }
        } else {
            None
        };
        let bytes = read_body(request.into_body(), LIMIT, expected).await?;
        Ok(Self(bytes, permit))
    }
}

/// Reads `body` into one buffer of `expected` bytes (its `Content-Length`), so a body costs its size once;
/// collecting frames and joining them would hold it twice. Refuses it once over `limit`.
async fn read_body(body: Body, limit: usize, expected: usize) -> Result<Bytes, ApiError> {
    let mut body = Limited::new(body, limit);
    let mut buffer = BytesMut::with_capacity(expected.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                ApiError::PayloadTooLarge { limit }
            } else {
                // The client went away or sent a broken chunked body.
                ApiError::MalformedJson(format!("could not read the request body: {error}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

impl<T: DeserializeOwned, S: Send + Sync, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes, _permit) = JsonBytes::<LIMIT>::from_request(request, state).await?;
        parse(&bytes, "").map(Self)
    }
}

/// `application/json` (any parameters) or `application/<x>+json`.
fn is_json(content_type: &str) -> bool {
    // What nearly every client sends, without the parsing below.
    if content_type == "application/json" {
        return true;
    }
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix = subtype
        .len()
        .checked_sub("+json".len())
        .and_then(|at| subtype.get(at..));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

/// Parses `bytes` as `T`; on failure, says whether it was not JSON (400) or which field was wrong (422).
/// `prefix` is prepended to field paths (`[3]` for a batch item).
pub fn parse<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
    prefix: &str,
) -> Result<T, ApiError> {
    // The fast path parses without tracking paths; only a failure pays for the second, tracked parse.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => Err(explain::<T>(bytes, prefix)),
    }
}

/// The error of parsing `bytes` as `T` again, this time tracking the path of the failing field.
fn explain<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8], prefix: &str) -> ApiError {
    // Syntax first: `{} x` is malformed even though its first value also lacks every field.
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return ApiError::MalformedJson(error.to_string());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(_) => match deserializer.end() {
            Ok(()) => return ApiError::Internal("a body failed to parse only once".into()),
            Err(error) => return ApiError::MalformedJson(error.to_string()),
        },
        Err(error) => error,
    };
    let path = error.path().to_string();
    let inner = error.into_inner();
    if !inner.is_data() {
        return ApiError::MalformedJson(inner.to_string());
    }
    let message = inner.to_string();
    let parent = if path == "." { "" } else { path.as_str() };
    // serde reports a missing field at its parent (the struct), naming it only in the message.
    let relative = match missing_field(&message) {
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) => format!("{parent}.{name}"),
        None => parent.to_owned(),
    };
    match join_path(prefix, &relative) {
        Some(field) => ApiError::invalid_field(field, strip_position(&message)),
        None => ApiError::invalid_body(format!(
            "request body has the wrong shape: {}",
            strip_position(&message)
        )),
    }
}

/// `prefix` (e.g. `[3]`) joined with a path relative to it; `None` for the root itself.
fn join_path(prefix: &str, relative: &str) -> Option<String> {
    match (prefix.is_empty(), relative.is_empty()) {
        (true, true) => None,
        (true, false) => Some(relative.to_owned()),
        (false, true) => Some(prefix.to_owned()),
        (false, false) if relative.starts_with('[') => Some(format!("{prefix}{relative}")),
        (false, false) => Some(format!("{prefix}.{relative}")),
    }
}

/// `missing field `user_id`` → `user_id`.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde_json appends " at line 1 column 42"; clients do not need it.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::api::NewMessage;

    fn field_of(body: &str, prefix: &str) -> Option<String> {
        match parse::<NewMessage>(body.as_bytes(), prefix) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("expected a 422 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        for good in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            "application/VND.API+JSON; charset=utf-8",
        ] {
            assert!(is_json(good), "{good}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonx",
            "application/json+x",
            "application/json5",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in ["", "{", "{\"user_id\": 1,}", "{} x", "nope"] {
            assert!(
                matches!(
                    parse::<NewMessage>(body.as_bytes(), ""),
                    Err(ApiError::MalformedJson(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_or_missing_fields_are_named() {
        let missing = r#"{"user_id": 1, "channel_id": 2}"#;
        assert_eq!(field_of(missing, "").as_deref(), Some("content"));
        let mistyped = r#"{"user_id": "1", "channel_id": 2, "content": "x"}"#;
        assert_eq!(field_of(mistyped, "").as_deref(), Some("user_id"));
        let too_big = r#"{"user_id": 1, "channel_id": 9223372036854775808, "content": "x"}"#;
        assert_eq!(field_of(too_big, "").as_deref(), Some("channel_id"));
        assert_eq!(field_of(missing, "[3]").as_deref(), Some("[3].content"));
        assert_eq!(field_of("[]", "").as_deref(), None);
        assert_eq!(field_of("7", "[0]").as_deref(), Some("[0]"));
    }

    #[test]
    fn positions_are_stripped_from_messages() {
        assert_eq!(
            strip_position("expected i64 at line 1 column 9"),
            "expected i64"
        );
        assert_eq!(strip_position("plain"), "plain");
    }
}
