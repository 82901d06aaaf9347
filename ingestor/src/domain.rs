//! The rules a message must pass before it is queued, as pure functions (no I/O), and the messages
//! `POST /simulate` makes up.

use chrono::{DateTime, Utc};
use pipeline::api::{MAX_SIMULATE_COUNT, NewMessage};
use pipeline::queued::QueuedMessage;
use uuid::Uuid;

/// Most messages one `POST /messages/batch` may carry.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

/// A message that passed every rule of `pipeline::rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidMessage {
    user_id: i64,
    channel_id: i64,
    content: String,
}

/// Why a value was refused: the field (a JSON path relative to the value checked) and a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl ValidMessage {
    /// Checks `message`, reporting the first field that breaks a rule (in the order user_id, channel_id, content).
    pub fn parse(message: NewMessage) -> Result<Self, FieldError> {
        let NewMessage {
            user_id,
            channel_id,
            content,
        } = message;
        pipeline::rules::check(user_id, channel_id, &content)
            .map_err(|violation| FieldError::new(violation.field, violation.rule.to_string()))?;
        Ok(Self {
            user_id,
            channel_id,
            content,
        })
    }

    /// The channel, which decides the message's queue shard.
    pub fn channel_id(&self) -> i64 {
        self.channel_id
    }

    /// The Redis element for this message, accepted as `tracking_id` at `created_at`.
    pub fn into_queued(self, tracking_id: Uuid, created_at: DateTime<Utc>) -> QueuedMessage {
        QueuedMessage {
            tracking_id,
            user_id: self.user_id,
            channel_id: self.channel_id,
            content: self.content,
            created_at,
        }
    }
}

/// `POST /simulate`'s `count`: 1..=[`MAX_SIMULATE_COUNT`].
pub fn check_simulate_count(count: u64) -> Result<u64, FieldError> {
    if (1..=MAX_SIMULATE_COUNT).contains(&count) {
        Ok(count)
    } else {
        Err(FieldError::new(
            "count",
            format!("must be an integer from 1 to {MAX_SIMULATE_COUNT}"),
        ))
    }
}

/// `GET /messages`'s `limit`: absent means the default, otherwise an integer in 1..=`max`.
pub fn parse_limit(raw: Option<&str>, default: u64, max: u64) -> Result<u64, FieldError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    // Digits only: `u64::from_str` would also take `+7`, which the OpenAPI document calls no integer.
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Ok(limit) if digits && (1..=max).contains(&limit) => Ok(limit),
        _ => Err(FieldError::new(
            "limit",
            format!("must be an integer from 1 to {max}"),
        )),
    }
}

/// The `index`-th (0-based) of `count` simulated messages. `seed` varies the ids between requests; the
/// values only need to look varied on the dashboard, not be random.
pub fn simulated_message(index: u64, count: u64, seed: u64) -> ValidMessage {
    let bits = splitmix64(seed ^ index);
    ValidMessage {
        user_id: 1 + (bits % 1000) as i64,
        channel_id: 1 + ((bits >> 32) % 10) as i64,
        content: format!("Simulated message {} of {count}", index + 1),
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::api::MAX_CONTENT_CHARS;

    fn message(user_id: i64, channel_id: i64, content: &str) -> NewMessage {
        NewMessage {
            user_id,
            channel_id,
            content: content.into(),
        }
    }

    fn refused_field(m: NewMessage) -> &'static str {
        ValidMessage::parse(m).expect_err("should be refused").field
    }

    #[test]
    fn a_plain_message_is_valid_and_keeps_its_fields() {
        let valid = ValidMessage::parse(message(1, 2, "hello")).unwrap();
        let id = Uuid::now_v7();
        let queued = valid.into_queued(id, DateTime::UNIX_EPOCH);
        assert_eq!(
            (
                queued.tracking_id,
                queued.user_id,
                queued.channel_id,
                queued.content.as_str()
            ),
            (id, 1, 2, "hello")
        );
    }

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(refused_field(message(0, 1, "x")), "user_id");
        assert_eq!(refused_field(message(-1, 1, "x")), "user_id");
        assert_eq!(refused_field(message(1, 0, "x")), "channel_id");
        assert_eq!(refused_field(message(1, i64::MIN, "x")), "channel_id");
        assert!(ValidMessage::parse(message(i64::MAX, i64::MAX, "x")).is_ok());
    }

    #[test]
    fn the_first_bad_field_is_reported() {
        assert_eq!(refused_field(message(0, 0, "")), "user_id");
        assert_eq!(refused_field(message(1, 0, "")), "channel_id");
    }

    #[test]
    fn content_length_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_CONTENT_CHARS);
        assert_eq!(at_limit.len(), 2 * MAX_CONTENT_CHARS);
        assert!(ValidMessage::parse(message(1, 1, &at_limit)).is_ok());
        let over = "é".repeat(MAX_CONTENT_CHARS + 1);
        let error = ValidMessage::parse(message(1, 1, &over)).unwrap_err();
        assert_eq!(error.field, "content");
        assert!(error.message.contains("2000"), "{}", error.message);
    }

    #[test]
    fn empty_blank_and_nul_content_are_refused() {
        for bad in ["", " ", "\t\n ", "\u{3000}", "a\0b", "\0"] {
            assert_eq!(refused_field(message(1, 1, bad)), "content", "{bad:?}");
        }
        assert!(ValidMessage::parse(message(1, 1, " x ")).is_ok());
    }

    #[test]
    fn simulate_count_must_be_within_range() {
        assert!(check_simulate_count(0).is_err());
        assert_eq!(check_simulate_count(1), Ok(1));
        assert_eq!(
            check_simulate_count(MAX_SIMULATE_COUNT),
            Ok(MAX_SIMULATE_COUNT)
        );
        assert_eq!(
            check_simulate_count(MAX_SIMULATE_COUNT + 1)
                .unwrap_err()
                .field,
            "count"
        );
    }

    #[test]
    fn limit_defaults_and_is_bounded() {
        assert_eq!(parse_limit(None, 50, 1000), Ok(50));
        assert_eq!(parse_limit(Some("7"), 50, 1000), Ok(7));
        assert_eq!(parse_limit(Some("1000"), 50, 1000), Ok(1000));
        for bad in ["0", "1001", "-1", "x", "", "1.5", "+7", " 7"] {
            assert_eq!(
                parse_limit(Some(bad), 50, 1000).unwrap_err().field,
                "limit",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn simulated_messages_are_valid_and_numbered() {
        for index in 0..1000 {
            let m = simulated_message(index, 1000, 42);
            assert!((1..=1000).contains(&m.user_id));
            assert!((1..=10).contains(&m.channel_id));
            assert_eq!(
                m.content,
                format!("Simulated message {} of 1000", index + 1)
            );
            let back = ValidMessage::parse(message(m.user_id, m.channel_id, &m.content));
            assert_eq!(back, Ok(m));
        }
    }
}
