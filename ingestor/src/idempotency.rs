//! `Idempotency-Key` on `POST /messages`: the same key yields the same `message_id` and one element in Redis.
//!
//! One Lua script remembers the key's answer (`SET NX EX`) and pushes the element atomically, so two
//! concurrent requests with the same key cannot both push. Such requests bypass the group commit.

use std::sync::LazyLock;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use pipeline::keys::Keys;
use uuid::Uuid;

use crate::domain::FieldError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// How long a key is remembered: a day, as the usual retry horizon of clients.
pub const KEY_TTL_SECONDS: u64 = 86_400;

/// KEYS[1] = idempotency key, KEYS[2] = pending list; ARGV[1] = answer to remember, ARGV[2] = element,
/// ARGV[3] = TTL in seconds. Returns the remembered answer of an earlier request, or nil after pushing.
const PUSH_ONCE: &str = r"
local earlier = redis.call('GET', KEYS[1])
if earlier then
  return earlier
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[2])
return false
";

/// The `Idempotency-Key` of a request, if any: 1..=128 visible ASCII characters.
pub fn key_of(headers: &HeaderMap) -> Result<Option<&str>, FieldError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || FieldError {
        field: "Idempotency-Key",
        message: format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
    };
    let key = value.to_str().map_err(|_| bad())?;
    let valid =
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    if valid { Ok(Some(key)) } else { Err(bad()) }
}

/// What a first push with a key answered; a repeat gets the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub message_id: Uuid,
    pub queued_at: DateTime<Utc>,
}

impl Remembered {
    fn encode(&self) -> String {
        format!("{} {}", self.message_id, self.queued_at.to_rfc3339())
    }

    fn decode(raw: &str) -> Option<Self> {
        let (id, at) = raw.split_once(' ')?;
        Some(Self {
            message_id: id.parse().ok()?,
            queued_at: DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        })
    }
}

/// The outcome of [`push_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOnce {
    /// The element was pushed now.
    Pushed,
    /// An earlier request with this key was accepted with this answer; nothing was pushed.
    Earlier(Remembered),
}

/// Pushes `element` (the message accepted as `answer`) unless `key` was seen within the TTL.
pub async fn push_once<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    key: &str,
    answer: &Remembered,
    element: &str,
) -> redis::RedisResult<PushOnce> {
    static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PUSH_ONCE));
    let earlier: Option<String> = SCRIPT
        .key(keys.idempotency(key))
        .key(keys.pending())
        .arg(answer.encode())
        .arg(element)
        .arg(KEY_TTL_SECONDS)
        .invoke_async(conn)
        .await?;
    match earlier {
        None => Ok(PushOnce::Pushed),
        Some(raw) => Remembered::decode(&raw)
            .map(PushOnce::Earlier)
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "unreadable idempotency record",
                    raw,
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn keys_are_visible_ascii_up_to_128() {
        assert_eq!(key_of(&HeaderMap::new()), Ok(None));
        let headers_ok = headers("order-17/a:b");
        assert_eq!(key_of(&headers_ok), Ok(Some("order-17/a:b")));
        let longest = "k".repeat(MAX_KEY_LEN);
        let headers_longest = headers(&longest);
        assert_eq!(key_of(&headers_longest), Ok(Some(longest.as_str())));
        for bad in ["", "a b", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert_eq!(
                key_of(&headers(bad)).unwrap_err().field,
                "Idempotency-Key",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn remembered_answers_round_trip() {
        let answer = Remembered {
            message_id: Uuid::now_v7(),
            queued_at: Utc::now(),
        };
        assert_eq!(Remembered::decode(&answer.encode()), Some(answer));
        assert_eq!(Remembered::decode("garbage"), None);
    }
}
