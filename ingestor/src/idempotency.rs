//! `Idempotency-Key` on `POST /messages` and `POST /messages/batch`: the same key yields the same
//! `message_id`(s) and one element per message in Redis, also when the retry follows a failure: the key is
//! remembered in the same script that pushes, so after a 503 either both happened (the retry gets the first
//! answer) or neither did (the retry pushes as if it were the first request).
//!
//! One Lua script remembers the key's answer (`SET EX`, only when the key is new) and pushes the elements
//! atomically, so two concurrent requests with the same key cannot both push. Before pushing, it checks the
//! shard's depth against its room as the plain push does (see `enqueue`): a full queue pushes and remembers
//! nothing. Such requests bypass the
//! group commit. Keys are scoped by endpoint: the same key on `POST /messages` and on
//! `POST /messages/batch` names two different requests.
//!
//! With several queue shards, the record lives in the shard of the request's (first) message, beside the
//! pending list the script pushes onto. A batch whose messages span shards is pushed one shard after another,
//! the first shard first, each with its own record holding the whole answer: a retry finds the first shard's
//! record if any part was pushed, takes its ids, and pushes exactly the parts that are missing (see
//! `routes::batch`).

use std::convert::Infallible;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use chrono::{DateTime, SecondsFormat, Utc};
use pipeline::keys::ShardKeys;
use uuid::Uuid;

use crate::domain::FieldError;
use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// How long a key is remembered by default (`IDEMPOTENCY_TTL`): a day, as the usual retry horizon of clients.
pub const DEFAULT_TTL_SECONDS: &str = "86400";
/// The longest `IDEMPOTENCY_TTL`: 30 days.
pub const MAX_TTL_SECONDS: u64 = 30 * 86_400;

/// `IDEMPOTENCY_TTL`: whole seconds, 1..=[`MAX_TTL_SECONDS`].
pub fn parse_ttl(value: &str) -> Result<std::time::Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(seconds) if (1..=MAX_TTL_SECONDS).contains(&seconds) => {
            Ok(std::time::Duration::from_secs(seconds))
        }
        _ => Err(format!(
            "must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"
        )),
    }
}
/// KEYS[1] = pending list, KEYS[2] = set of batcher ids, KEYS[3] = idempotency key; ARGV[1] = processing-list
/// key prefix, ARGV[2] = room (see `enqueue`), ARGV[3] = answer to remember, ARGV[4] = TTL in seconds,
/// ARGV[5..] = elements, oldest first. Returns the remembered answer of an earlier request; or, pushing nothing,
/// the shard's depth when the elements would take it past the room (see `enqueue::push_within_room_lua`); or
/// false after pushing. The key is remembered after the pushes: a script is not rolled back when a command in
/// it fails, so a push that fails (a key of the wrong type, say) must not leave the key remembered with nothing
/// queued.
static PUSH_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "local earlier = redis.call('GET', KEYS[3])
if earlier then
  return earlier
end
{}redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return false
",
        crate::enqueue::push_within_room_lua(5)
    ))
});

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

/// Extractor: the request's `Idempotency-Key` as [`key_of`] reads it. A bad key is kept, not rejected, so the
/// handler reports it after the body's errors, and only this header is copied (a `HeaderMap` extractor would
/// copy them all, on every request).
#[derive(Debug)]
pub struct IdempotencyHeader(pub Result<Option<String>, FieldError>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self(
            key_of(&parts.headers).map(|key| key.map(str::to_owned)),
        ))
    }
}

/// Which endpoint a key was first used on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /messages`: one id.
    Message,
    /// `POST /messages/batch`: one id per message, in request order.
    Batch,
}

impl Kind {
    /// The endpoint, for messages.
    pub fn endpoint(self) -> &'static str {
        match self {
            Self::Message => "POST /messages",
            Self::Batch => "POST /messages/batch",
        }
    }
}

/// What a first push with a key answered; a repeat gets the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub kind: Kind,
    pub message_ids: Vec<Uuid>,
    pub queued_at: DateTime<Utc>,
}

/// How a batch's record starts: `batch2 <queued_at> ` (RFC 3339 with nanoseconds, UTC, so always 30
/// characters), then each id as its 16 bytes. So a record is [`BATCH_RECORD_HEADER_LEN`] + 16 bytes per
/// message: 160,038 bytes for 10,000 messages (the text form before it, still read, took 37 per message).
const BATCH_RECORD: &[u8] = b"batch2 ";
/// The length of a batch record before its ids.
pub const BATCH_RECORD_HEADER_LEN: usize = BATCH_RECORD.len() + 30 + 1;

impl Remembered {
    /// `<id> <queued_at>` for a message (the format keys stored before batches had keys use), and
    /// [`BATCH_RECORD`]'s binary form for a batch.
    fn encode(&self) -> Vec<u8> {
        match self.kind {
            Kind::Message => {
                format!("{} {}", self.message_ids[0], self.queued_at.to_rfc3339()).into_bytes()
            }
            Kind::Batch => {
                let at = self.queued_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
                let mut out =
                    Vec::with_capacity(BATCH_RECORD_HEADER_LEN + 16 * self.message_ids.len());
                out.extend_from_slice(BATCH_RECORD);
                out.extend_from_slice(at.as_bytes());
                out.push(b' ');
                for id in &self.message_ids {
                    out.extend_from_slice(id.as_bytes());
                }
                out
            }
        }
    }

    fn decode(raw: &[u8]) -> Option<Self> {
        let at = |text: &[u8]| {
            let text = std::str::from_utf8(text).ok()?;
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.with_timezone(&Utc))
        };
        if let Some(rest) = raw.strip_prefix(BATCH_RECORD) {
            let space = rest.iter().position(|&byte| byte == b' ')?;
            let (queued_at, ids) = (at(&rest[..space])?, &rest[space + 1..]);
            if ids.is_empty() || ids.len() % 16 != 0 {
                return None;
            }
            let message_ids = ids
                .chunks_exact(16)
                .map(|id| Uuid::from_slice(id).ok())
                .collect::<Option<Vec<Uuid>>>()?;
            return Some(Self {
                kind: Kind::Batch,
                message_ids,
                queued_at,
            });
        }
        // The text forms: a message's, and a batch's as stored by earlier versions (`batch <queued_at> <id>…`).
        let raw = std::str::from_utf8(raw).ok()?;
        let mut words = raw.split(' ');
        let first = words.next()?;
        if first == "batch" {
            let queued_at = at(words.next()?.as_bytes())?;
            let message_ids = words
                .map(|id| id.parse().ok())
                .collect::<Option<Vec<Uuid>>>()?;
            return (!message_ids.is_empty()).then_some(Self {
                kind: Kind::Batch,
                message_ids,
                queued_at,
            });
        }
        let (id, queued_at) = (first.parse().ok()?, at(words.next()?.as_bytes())?);
        words.next().is_none().then_some(Self {
            kind: Kind::Message,
            message_ids: vec![id],
            queued_at,
        })
    }
}

/// `answer`, if it is of `kind`. Keys are scoped by endpoint, so anything else is a broken record (500).
pub fn expect_kind(answer: Remembered, kind: Kind) -> Result<Remembered, ApiError> {
    if answer.kind == kind {
        Ok(answer)
    } else {
        Err(ApiError::Internal(format!(
            "the idempotency record of a {} request was found for a {} request",
            answer.kind.endpoint(),
            kind.endpoint()
        )))
    }
}

/// The Redis key remembering `key` on the endpoint of `kind`, in `shard` (that of the request's first
/// message). A batch's is `…:idempotency:batch <key>`: keys have no spaces, so it cannot be a single
/// message's.
fn record_key(keys: &ShardKeys, kind: Kind, key: &str) -> String {
    match kind {
        Kind::Message => keys.idempotency(key),
        Kind::Batch => keys.idempotency(&format!("batch {key}")),
    }
}

/// The outcome of [`push_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOnce {
    /// The elements were pushed now.
    Pushed,
    /// An earlier request with this key was accepted with this answer; nothing was pushed.
    Earlier(Remembered),
    /// The shard holds `depth` messages and these would take the queue past `MAX_QUEUE_DEPTH`: nothing was
    /// pushed, nothing remembered.
    Full { depth: u64 },
}

/// Pushes `elements` (oldest first; the messages of `answer` that belong to `keys`' shard) onto that shard's
/// pending list, unless `key` was seen there within the TTL, or the shard would then hold more than `room`.
pub async fn push_once<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &ShardKeys,
    key: &str,
    answer: &Remembered,
    elements: &[Vec<u8>],
    ttl: std::time::Duration,
    room: u64,
) -> redis::RedisResult<PushOnce> {
    let mut invocation = PUSH_ONCE.key(keys.pending());
    invocation
        .key(keys.batchers())
        .key(record_key(keys, answer.kind, key))
        .arg(keys.processing(""))
        .arg(room)
        .arg(answer.encode())
        .arg(ttl.as_secs().max(1));
    for element in elements {
        invocation.arg(element.as_slice());
    }
    match invocation.invoke_async(conn).await? {
        redis::Value::Nil => Ok(PushOnce::Pushed),
        redis::Value::Int(depth) => Ok(PushOnce::Full {
            depth: depth.max(0) as u64,
        }),
        redis::Value::BulkString(raw) => decode(&raw).map(PushOnce::Earlier),
        other => Err(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected reply of the push-once script",
            format!("{other:?}"),
        ))),
    }
}

/// The answer remembered for `key` on the endpoint of `kind`, if any: a repeat is answered with it even
/// while new submissions are refused (queue full), as it queues nothing.
pub async fn earlier<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &ShardKeys,
    kind: Kind,
    key: &str,
) -> redis::RedisResult<Option<Remembered>> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(record_key(keys, kind, key))
        .query_async(conn)
        .await?;
    raw.map(|raw| decode(&raw)).transpose()
}

fn decode(raw: &[u8]) -> redis::RedisResult<Remembered> {
    Remembered::decode(raw).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unreadable idempotency record",
            String::from_utf8_lossy(&raw[..raw.len().min(100)]).into_owned(),
        ))
    })
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
    fn ttls_are_whole_seconds_up_to_30_days() {
        assert_eq!(parse_ttl("1"), Ok(std::time::Duration::from_secs(1)));
        assert_eq!(
            parse_ttl(" 86400 "),
            Ok(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_ttl("2592000"),
            Ok(std::time::Duration::from_secs(MAX_TTL_SECONDS))
        );
        for bad in ["0", "-1", "1.5", "2592001", "", "x"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batch_keys_cannot_collide_with_message_keys() {
        let keys = pipeline::keys::Keys::new("p").shard(0);
        assert_eq!(record_key(&keys, Kind::Message, "k"), "{p}:idempotency:k");
        assert_eq!(
            record_key(&keys, Kind::Batch, "k"),
            "{p}:idempotency:batch k"
        );
        assert_ne!(
            record_key(&keys, Kind::Message, "batch:k"),
            record_key(&keys, Kind::Batch, "k")
        );
    }

    #[test]
    fn remembered_answers_round_trip() {
        let one = Remembered {
            kind: Kind::Message,
            message_ids: vec![Uuid::now_v7()],
            queued_at: Utc::now(),
        };
        assert_eq!(Remembered::decode(&one.encode()), Some(one.clone()));
        let many = Remembered {
            kind: Kind::Batch,
            message_ids: (0..3).map(|_| Uuid::now_v7()).collect(),
            ..one
        };
        let encoded = many.encode();
        assert_eq!(encoded.len(), BATCH_RECORD_HEADER_LEN + 3 * 16);
        assert_eq!(Remembered::decode(&encoded), Some(many.clone()));
        // A whole second still takes 30 characters.
        let on_the_second = Remembered {
            queued_at: "2024-01-01T00:00:00Z".parse().unwrap(),
            ..many.clone()
        };
        assert_eq!(on_the_second.encode().len(), encoded.len());
        assert_eq!(
            Remembered::decode(&on_the_second.encode()),
            Some(on_the_second)
        );
        // A record stored by an earlier version, in text.
        let ids: Vec<String> = many.message_ids.iter().map(Uuid::to_string).collect();
        let text = format!("batch {} {}", many.queued_at.to_rfc3339(), ids.join(" "));
        assert_eq!(Remembered::decode(text.as_bytes()), Some(many));
        for garbage in [
            &b"garbage"[..],
            b"batch",
            b"batch 2024-01-01T00:00:00Z",
            b"x y z",
            b"batch2 2024-01-01T00:00:00.000000000Z ",
            b"batch2 2024-01-01T00:00:00.000000000Z 0123456789abcde",
        ] {
            assert_eq!(Remembered::decode(garbage), None, "{garbage:?}");
        }
    }
}
