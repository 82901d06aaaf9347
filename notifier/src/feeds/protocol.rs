//! The `/ws/channels` protocol: what clients send, checked, and what the server sends back (pure, so every
//! bad input is unit-tested here).

use pipeline::api::{ChannelMessage, FeedRequest};
use serde_json::Value;

/// Most channels one connection may be subscribed to at once.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 100;

/// The answer to a frame that is not a valid request (the connection stays usable).
pub(crate) const NOT_JSON: &str =
    r#"bad JSON: send an object such as {"type":"subscribe","channel_id":7,"after":0}"#;
pub(crate) const NOT_AN_OBJECT: &str = r#"expected a JSON object with a "type""#;
pub(crate) const NO_TYPE: &str = r#"missing field "type""#;
pub(crate) const UNKNOWN_TYPE: &str = r#"unknown type: expected "subscribe" or "unsubscribe""#;
pub(crate) const NO_CHANNEL: &str = r#"missing field "channel_id""#;
pub(crate) const BAD_CHANNEL: &str = r#""channel_id" must be a positive integer"#;
pub(crate) const BAD_AFTER: &str = r#""after" must be an integer from 0 (the start) up"#;
pub(crate) const NOT_TEXT: &str = "frames must be text: JSON requests";

/// Parses one text frame.
pub(crate) fn parse(text: &str) -> Result<FeedRequest, &'static str> {
    let value: Value = serde_json::from_str(text).map_err(|_| NOT_JSON)?;
    let object = value.as_object().ok_or(NOT_AN_OBJECT)?;
    let kind = object.get("type").ok_or(NO_TYPE)?;
    let channel_id = || match object.get("channel_id") {
        None => Err(NO_CHANNEL),
        Some(id) => id.as_i64().filter(|id| *id > 0).ok_or(BAD_CHANNEL),
    };
    match kind.as_str() {
        Some("subscribe") => {
            let channel_id = channel_id()?;
            let after = match object.get("after") {
                None | Some(Value::Null) => None,
                Some(after) => Some(after.as_i64().filter(|a| *a >= 0).ok_or(BAD_AFTER)?),
            };
            Ok(FeedRequest::Subscribe { channel_id, after })
        }
        Some("unsubscribe") => Ok(FeedRequest::Unsubscribe {
            channel_id: channel_id()?,
        }),
        _ => Err(UNKNOWN_TYPE),
    }
}

/// A resume point past the channel's head: the answer names the head (both transports).
pub(crate) fn past_head(name: &str, after: i64, channel_id: i64, head: i64) -> String {
    format!("{name} {after} is past the head of channel {channel_id}: {head}")
}

/// One message of a channel, encoded once for every subscriber of every transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) channel_id: i64,
    pub(crate) offset: i64,
    /// The message object (SSE's `data`).
    pub(crate) object: String,
    /// `{"type":"message", …the message object's fields…}` (a `/ws/channels` frame).
    pub(crate) frame: axum::extract::ws::Utf8Bytes,
}

impl Delivered {
    pub(crate) fn new(message: &ChannelMessage) -> Self {
        let object = serde_json::to_string(message).expect("messages serialize");
        // The object always starts with `{"channel_id":`, so the frame is the object with `type` first.
        let frame = format!(r#"{{"type":"message",{}"#, &object[1..]);
        Self {
            channel_id: message.channel_id,
            offset: message.offset,
            object,
            frame: frame.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use pipeline::api::FeedFrame;
    use uuid::Uuid;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(r#"{"type":"subscribe","channel_id":7,"after":42}"#),
            Ok(FeedRequest::Subscribe {
                channel_id: 7,
                after: Some(42)
            })
        );
        assert_eq!(
            parse(r#"{"channel_id":7,"type":"subscribe","extra":[1]}"#),
            Ok(FeedRequest::Subscribe {
                channel_id: 7,
                after: None
            })
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channel_id":7,"after":null}"#),
            Ok(FeedRequest::Subscribe {
                channel_id: 7,
                after: None
            })
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channel_id":1,"after":0}"#),
            Ok(FeedRequest::Subscribe {
                channel_id: 1,
                after: Some(0)
            })
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","channel_id":9223372036854775807}"#),
            Ok(FeedRequest::Unsubscribe {
                channel_id: i64::MAX
            })
        );
    }

    #[test]
    fn every_bad_request_is_named() {
        for (text, error) in [
            ("", NOT_JSON),
            ("{", NOT_JSON),
            ("subscribe 7", NOT_JSON),
            ("[1]", NOT_AN_OBJECT),
            ("7", NOT_AN_OBJECT),
            (r#"{"channel_id":7}"#, NO_TYPE),
            (r#"{"type":"publish","channel_id":7}"#, UNKNOWN_TYPE),
            (r#"{"type":7,"channel_id":7}"#, UNKNOWN_TYPE),
            (r#"{"type":"Subscribe","channel_id":7}"#, UNKNOWN_TYPE),
            (r#"{"type":"subscribe"}"#, NO_CHANNEL),
            (r#"{"type":"unsubscribe"}"#, NO_CHANNEL),
            (r#"{"type":"subscribe","channel_id":0}"#, BAD_CHANNEL),
            (r#"{"type":"subscribe","channel_id":-3}"#, BAD_CHANNEL),
            (r#"{"type":"subscribe","channel_id":"7"}"#, BAD_CHANNEL),
            (r#"{"type":"subscribe","channel_id":1.5}"#, BAD_CHANNEL),
            (
                r#"{"type":"subscribe","channel_id":9223372036854775808}"#,
                BAD_CHANNEL,
            ),
            (r#"{"type":"unsubscribe","channel_id":null}"#, BAD_CHANNEL),
            (
                r#"{"type":"subscribe","channel_id":7,"after":-1}"#,
                BAD_AFTER,
            ),
            (
                r#"{"type":"subscribe","channel_id":7,"after":"3"}"#,
                BAD_AFTER,
            ),
            (
                r#"{"type":"subscribe","channel_id":7,"after":2.5}"#,
                BAD_AFTER,
            ),
        ] {
            assert_eq!(parse(text), Err(error), "{text:?}");
        }
    }

    #[test]
    fn replies_have_the_issues_shape() {
        assert_eq!(
            FeedFrame::Subscribed {
                channel_id: 7,
                head: 42
            }
            .to_json(),
            r#"{"type":"subscribed","channel_id":7,"head":42}"#
        );
        assert_eq!(
            FeedFrame::Lagged {
                channel_id: 7,
                last_offset: 9
            }
            .to_json(),
            r#"{"type":"lagged","channel_id":7,"last_offset":9}"#
        );
        assert_eq!(
            FeedFrame::Reset { channel_id: 7 }.to_json(),
            r#"{"type":"reset","channel_id":7}"#
        );
        assert_eq!(
            FeedFrame::error(NO_TYPE, None).to_json(),
            r#"{"type":"error","message":"missing field \"type\""}"#
        );
        assert_eq!(
            FeedFrame::error("x", Some(3)).to_json(),
            r#"{"type":"error","message":"x","channel_id":3}"#
        );
        assert_eq!(
            past_head("after", 50, 7, 42),
            "after 50 is past the head of channel 7: 42"
        );
    }

    #[test]
    fn a_message_frame_is_the_object_with_its_type() {
        let message = ChannelMessage {
            channel_id: 7,
            offset: 41,
            message_id: Uuid::nil(),
            user_id: 3,
            content: "hé \"x\"".into(),
            created_at: DateTime::UNIX_EPOCH,
            inserted_at: DateTime::UNIX_EPOCH,
        };
        let delivered = Delivered::new(&message);
        let object: ChannelMessage = serde_json::from_str(&delivered.object).unwrap();
        assert_eq!(object, message);
        let frame: Value = serde_json::from_str(delivered.frame.as_str()).unwrap();
        assert_eq!(frame["type"], "message");
        assert_eq!(frame["offset"], 41);
        assert_eq!(frame["content"], "hé \"x\"");
        assert_eq!(frame.as_object().unwrap().len(), 8);
        assert_eq!(
            delivered.frame.as_str(),
            FeedFrame::Message(message).to_json(),
            "the hub's frame is the wire type's, byte for byte"
        );
    }
}
