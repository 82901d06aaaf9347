//! The channel view: one channel's messages in offset order, kept contiguous across reconnects.
//!
//! The view shows an unbroken run of offsets `first..=last`. A message is appended only when its offset is
//! `last + 1`; one at or below `last` is a duplicate (a replay overlapping what was shown) and is ignored; one
//! beyond `last + 1` means something was missed, so the view asks to subscribe again with `after = last`
//! and the notifier replays the hole from PostgreSQL. On reconnect the view subscribes with `after = last`
//! too, so a reconnect can neither skip nor repeat a message.
//!
//! The frames are those of the notifier's `GET /ws/channels` (issue 11); the message object is the shared
//! [`ChannelMessage`], the one the ingestor's history endpoint answers with.

use std::collections::VecDeque;

use pipeline::api::{ChannelMessage, FeedFrame, FeedRequest};
use serde::Deserialize;

use super::{config::encode, errors::FormError};

/// The `before` that asks for a channel's newest page: every offset is below it.
pub const NEWEST: i64 = i64::MAX;

/// `/channels/{channel_id}/messages?before=…&limit=…` for the channel id as typed. The ingestor judges the
/// id (and names `channel_id` in its 422, shown under the field like every form's); only a blank input is
/// refused here, since it would make another path.
pub fn history_path(channel_input: &str, before: i64) -> Result<String, FormError> {
    let channel = channel_input.trim();
    if channel.is_empty() {
        return Err(FormError {
            field: Some("channel_id".into()),
            message: "channel_id: enter a channel number".into(),
        });
    }
    Ok(format!(
        "/channels/{}/messages?before={before}&limit={}",
        encode(channel),
        ChannelFeed::PAGE
    ))
}

/// Reads a frame of the notifier's `/ws/channels`; `None` for a type the page does not know (a newer
/// protocol) or a malformed one.
///
/// The `type` first, then the body as that type's struct: serde's internally tagged enum would buffer
/// every frame into an intermediate tree, and that code cost ~4 KiB of the gzipped .wasm. `unsubscribed` and
/// any newer type are `None`: nothing the view needs.
pub fn parse_frame(text: &str) -> Option<FeedFrame> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Subscribed {
        channel_id: i64,
        head: i64,
    }
    #[derive(Deserialize)]
    struct Lagged {
        channel_id: i64,
        last_offset: i64,
    }
    #[derive(Deserialize)]
    struct Reset {
        channel_id: i64,
    }
    #[derive(Deserialize)]
    struct Error {
        message: String,
        channel_id: Option<i64>,
    }
    let frame = match serde_json::from_str::<Kind>(text).ok()?.kind.as_str() {
        "subscribed" => {
            let Subscribed { channel_id, head } = serde_json::from_str(text).ok()?;
            FeedFrame::Subscribed { channel_id, head }
        }
        "message" => FeedFrame::Message(serde_json::from_str(text).ok()?),
        "lagged" => {
            let Lagged {
                channel_id,
                last_offset,
            } = serde_json::from_str(text).ok()?;
            FeedFrame::Lagged {
                channel_id,
                last_offset,
            }
        }
        "reset" => {
            let Reset { channel_id } = serde_json::from_str(text).ok()?;
            FeedFrame::Reset { channel_id }
        }
        "error" => {
            let Error {
                message,
                channel_id,
            } = serde_json::from_str(text).ok()?;
            FeedFrame::Error {
                message,
                channel_id,
            }
        }
        _ => return None,
    };
    Some(frame)
}

/// What the caller must do after [`ChannelFeed::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing: the frame was shown, was a duplicate, or was about another channel.
    Nothing,
    /// Offsets are missing: unsubscribe, then send [`ChannelFeed::subscribe`] again.
    Resubscribe,
    /// The subscription was refused and the view starts over: send [`ChannelFeed::subscribe`].
    Subscribe,
}

/// One channel's view.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelFeed {
    channel_id: i64,
    /// Oldest first; offsets `last - len + 1 ..= last`, contiguous.
    messages: VecDeque<ChannelMessage>,
    /// The newest offset accounted for (0: none yet), which a (re)subscription resumes after.
    last: i64,
    /// The channel's newest offset as far as the page knows.
    head: i64,
    /// A subscription was asked for and its `subscribed` has not come yet: further holes are that
    /// subscription's to fill, not a reason to ask again.
    subscribing: bool,
    /// `lagged` frames received (the notifier caught the view up after each).
    lagged: u32,
    /// The notifier's last `error` since the last `subscribed`.
    error: Option<String>,
    /// The view started over after a refused subscription and has not been subscribed since: a second
    /// refusal is shown, not retried (a loop otherwise).
    restarted: bool,
    capacity: usize,
}

impl ChannelFeed {
    /// Messages kept in view: appending beyond this drops the oldest, and scrolling back stops here.
    pub const CAPACITY: usize = 500;
    /// Messages asked for per history page (the newest when opening, then each "load older").
    pub const PAGE: u64 = 100;

    /// The view of `channel_id`, starting from its newest page of history (newest first, as
    /// `GET /channels/{channel_id}/messages?before=…` answers).
    pub fn open(channel_id: i64, newest_first: &[ChannelMessage]) -> Self {
        Self::with_capacity(channel_id, newest_first, Self::CAPACITY)
    }

    fn with_capacity(channel_id: i64, newest_first: &[ChannelMessage], capacity: usize) -> Self {
        let last = newest_first
            .first()
            .filter(|m| m.channel_id == channel_id)
            .map_or(0, |m| m.offset);
        let mut feed = Self {
            channel_id,
            messages: VecDeque::new(),
            last,
            head: last,
            subscribing: false,
            lagged: 0,
            error: None,
            restarted: false,
            capacity,
        };
        feed.add_older(newest_first);
        feed
    }

    pub fn channel_id(&self) -> i64 {
        self.channel_id
    }

    /// The newest offset shown (0 before the first).
    pub fn last(&self) -> i64 {
        self.last
    }

    pub fn head(&self) -> i64 {
        self.head
    }

    pub fn lagged(&self) -> u32 {
        self.lagged
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Oldest first.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = &ChannelMessage> {
        self.messages.iter()
    }

    /// The oldest offset shown, or `last + 1` when nothing is.
    fn first(&self) -> i64 {
        self.messages.front().map_or(self.last + 1, |m| m.offset)
    }

    /// The `before` of the next older page, if the channel has older messages and the view has room.
    pub fn older_cursor(&self) -> Option<i64> {
        let first = self.first();
        (first > 1 && self.messages.len() < self.capacity).then_some(first)
    }

    /// The frame that (re)subscribes: resume after the last offset shown.
    pub fn subscribe(&mut self) -> FeedRequest {
        self.subscribing = true;
        FeedRequest::Subscribe {
            channel_id: self.channel_id,
            after: Some(self.last),
        }
    }

    pub fn unsubscribe(&self) -> FeedRequest {
        FeedRequest::Unsubscribe {
            channel_id: self.channel_id,
        }
    }

    /// Applies a frame of the socket.
    pub fn apply(&mut self, frame: FeedFrame) -> Outcome {
        match frame {
            FeedFrame::Subscribed { channel_id, head } if channel_id == self.channel_id => {
                self.subscribing = false;
                self.restarted = false;
                self.error = None;
                if head < self.last {
                    // The channel restarted from 1 (a reset): what is shown is another history.
                    self.messages.clear();
                    self.last = head;
                    self.head = head;
                    return self.resubscribe();
                }
                self.head = self.head.max(head);
                Outcome::Nothing
            }
            FeedFrame::Message(message) if message.channel_id == self.channel_id => {
                self.append(message)
            }
            FeedFrame::Lagged { channel_id, .. } if channel_id == self.channel_id => {
                self.lagged = self.lagged.saturating_add(1);
                Outcome::Nothing
            }
            FeedFrame::Reset { channel_id } if channel_id == self.channel_id => {
                // What is shown is another history; the notifier sends the channel's from offset 1 next,
                // on the same subscription.
                self.messages.clear();
                self.last = 0;
                self.head = 0;
                Outcome::Nothing
            }
            FeedFrame::Error {
                message,
                channel_id,
            } => {
                let refused = self.subscribing && channel_id == Some(self.channel_id);
                // Our subscribe may be what was refused: let the next hole ask again.
                self.subscribing = false;
                self.error = Some(message);
                if refused && !self.restarted {
                    // The id was accepted by the history endpoint, so the refusal is `after` past the head:
                    // the channel was reset since (its offsets restart from 1). Start over from its start.
                    self.restarted = true;
                    self.messages.clear();
                    self.last = 0;
                    self.head = 0;
                    return Outcome::Subscribe;
                }
                Outcome::Nothing
            }
            _ => Outcome::Nothing,
        }
    }

    fn append(&mut self, message: ChannelMessage) -> Outcome {
        self.head = self.head.max(message.offset);
        if message.offset <= self.last {
            return Outcome::Nothing;
        }
        if message.offset > self.last + 1 {
            return self.resubscribe();
        }
        self.last = message.offset;
        self.messages.push_back(message);
        if self.messages.len() > self.capacity {
            self.messages.pop_front();
        }
        Outcome::Nothing
    }

    fn resubscribe(&mut self) -> Outcome {
        if self.subscribing {
            Outcome::Nothing
        } else {
            Outcome::Resubscribe
        }
    }

    /// Adds a page of older messages (newest first, as `before=` answers): those that continue the view
    /// downwards without a hole, as many as there is room for. Returns how many were added.
    pub fn add_older(&mut self, newest_first: &[ChannelMessage]) -> usize {
        let mut added = 0;
        for message in newest_first {
            let continues = message.channel_id == self.channel_id
                && message.offset == self.first() - 1
                && message.offset >= 1;
            if !continues || self.messages.len() >= self.capacity {
                break;
            }
            self.messages.push_front(message.clone());
            added += 1;
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn message(channel_id: i64, offset: i64) -> ChannelMessage {
        let at = Utc
            .timestamp_millis_opt(1_700_000_000_000 + offset)
            .unwrap();
        ChannelMessage {
            channel_id,
            offset,
            message_id: Uuid::from_u128(offset as u128),
            user_id: 1,
            content: format!("m{offset}"),
            created_at: at,
            inserted_at: at,
        }
    }

    fn shown(feed: &ChannelFeed) -> Vec<i64> {
        feed.messages().map(|m| m.offset).collect()
    }

    /// Offsets `range`, newest first, as a `before=` page.
    fn page(channel_id: i64, range: std::ops::RangeInclusive<i64>) -> Vec<ChannelMessage> {
        range.rev().map(|o| message(channel_id, o)).collect()
    }

    fn live(feed: &mut ChannelFeed, offset: i64) -> Outcome {
        feed.apply(FeedFrame::Message(message(feed.channel_id, offset)))
    }

    /// The notifier's answer to the feed's subscription: the channel's head is `head`.
    fn subscribed(feed: &mut ChannelFeed, head: i64) -> Outcome {
        feed.apply(FeedFrame::Subscribed {
            channel_id: feed.channel_id,
            head,
        })
    }

    #[test]
    fn opening_shows_the_newest_page_and_resumes_after_its_last_offset() {
        let mut feed = ChannelFeed::open(7, &page(7, 41..=45));
        assert_eq!(shown(&feed), [41, 42, 43, 44, 45]);
        assert_eq!((feed.last(), feed.head()), (45, 45));
        assert_eq!(
            feed.subscribe().to_json(),
            r#"{"type":"subscribe","channel_id":7,"after":45}"#
        );
        assert_eq!(
            feed.unsubscribe().to_json(),
            r#"{"type":"unsubscribe","channel_id":7}"#
        );

        let mut empty = ChannelFeed::open(8, &[]);
        assert_eq!((shown(&empty), empty.last()), (vec![], 0));
        assert_eq!(
            empty.subscribe(),
            FeedRequest::Subscribe {
                channel_id: 8,
                after: Some(0)
            }
        );
        assert_eq!(empty.older_cursor(), None);
    }

    #[test]
    fn messages_are_appended_in_offset_order_and_duplicates_ignored() {
        let mut feed = ChannelFeed::open(7, &[]);
        feed.subscribe();
        let subscribed = FeedFrame::Subscribed {
            channel_id: 7,
            head: 0,
        };
        assert_eq!(feed.apply(subscribed), Outcome::Nothing);
        for offset in [1, 2, 2, 1, 3] {
            assert_eq!(live(&mut feed, offset), Outcome::Nothing);
        }
        assert_eq!(shown(&feed), [1, 2, 3]);
        // Another channel's frames change nothing.
        let other = FeedFrame::Message(message(9, 4));
        assert_eq!(feed.apply(other), Outcome::Nothing);
        assert_eq!((shown(&feed), feed.last()), (vec![1, 2, 3], 3));
    }

    #[test]
    fn a_hole_asks_once_for_a_resubscription_after_the_last_offset_and_the_replay_fills_it() {
        let mut feed = ChannelFeed::open(7, &page(7, 1..=2));
        feed.subscribe();
        subscribed(&mut feed, 2);
        assert_eq!(live(&mut feed, 3), Outcome::Nothing);
        assert_eq!(live(&mut feed, 5), Outcome::Resubscribe);
        assert_eq!(
            feed.subscribe(),
            FeedRequest::Subscribe {
                channel_id: 7,
                after: Some(3)
            }
        );
        // Until the new subscription answers, further holes are its to fill.
        assert_eq!(live(&mut feed, 6), Outcome::Nothing);
        assert_eq!(feed.head(), 6);
        subscribed(&mut feed, 6);
        for offset in 4..=6 {
            assert_eq!(live(&mut feed, offset), Outcome::Nothing);
        }
        assert_eq!(shown(&feed), [1, 2, 3, 4, 5, 6]);
        // A later hole asks again.
        assert_eq!(live(&mut feed, 9), Outcome::Resubscribe);
        assert_eq!(shown(&feed), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_reconnect_resubscribes_after_the_last_offset_and_overlaps_are_dropped() {
        let mut feed = ChannelFeed::open(7, &[]);
        feed.subscribe();
        for offset in 1..=4 {
            live(&mut feed, offset);
        }
        // The connection dropped; the new one resumes after 4; the notifier replays 5..=8.
        assert_eq!(
            feed.subscribe(),
            FeedRequest::Subscribe {
                channel_id: 7,
                after: Some(4)
            }
        );
        subscribed(&mut feed, 8);
        for offset in [3, 4, 5, 6, 7, 8, 8] {
            assert_eq!(live(&mut feed, offset), Outcome::Nothing);
        }
        assert_eq!(shown(&feed), (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_reset_frame_clears_the_view_and_the_channel_continues_from_offset_1() {
        let mut feed = ChannelFeed::open(7, &page(7, 1..=5));
        feed.subscribe();
        subscribed(&mut feed, 5);
        let reset = parse_frame(r#"{"type":"reset","channel_id":7}"#).unwrap();
        assert_eq!(reset, FeedFrame::Reset { channel_id: 7 });
        // Another channel's reset changes nothing here.
        assert_eq!(
            feed.apply(FeedFrame::Reset { channel_id: 8 }),
            Outcome::Nothing
        );
        assert_eq!(shown(&feed), [1, 2, 3, 4, 5]);
        assert_eq!(feed.apply(reset), Outcome::Nothing);
        assert_eq!((shown(&feed), feed.last(), feed.head()), (vec![], 0, 0));
        for offset in [1, 2, 3] {
            assert_eq!(live(&mut feed, offset), Outcome::Nothing);
        }
        assert_eq!((shown(&feed), feed.last()), (vec![1, 2, 3], 3));
    }

    #[test]
    fn a_head_below_the_last_offset_means_a_reset_channel_the_view_starts_over() {
        let mut feed = ChannelFeed::open(7, &page(7, 1..=5));
        feed.subscribe();
        let reset = FeedFrame::Subscribed {
            channel_id: 7,
            head: 2,
        };
        assert_eq!(feed.apply(reset), Outcome::Resubscribe);
        assert_eq!((shown(&feed), feed.last(), feed.head()), (vec![], 2, 2));
        assert_eq!(
            feed.subscribe(),
            FeedRequest::Subscribe {
                channel_id: 7,
                after: Some(2)
            }
        );
    }

    #[test]
    fn lagged_and_error_frames_are_counted_and_kept() {
        let mut feed = ChannelFeed::open(7, &[]);
        feed.subscribe();
        let lagged = FeedFrame::Lagged {
            channel_id: 7,
            last_offset: 3,
        };
        assert_eq!(feed.apply(lagged), Outcome::Nothing);
        let error = FeedFrame::Error {
            message: "unknown type".into(),
            channel_id: None,
        };
        assert_eq!(feed.apply(error), Outcome::Nothing);
        assert_eq!((feed.lagged(), feed.error()), (1, Some("unknown type")));
        // The error may have been our subscription's: it no longer holds back the next request.
        assert_eq!(live(&mut feed, 2), Outcome::Resubscribe);
        // A subscription clears the error.
        feed.subscribe();
        subscribed(&mut feed, 2);
        assert_eq!(feed.error(), None);
    }

    #[test]
    fn a_refused_resume_starts_the_view_over_from_the_channels_start_once() {
        let mut feed = ChannelFeed::open(7, &page(7, 1..=40));
        // After a reset, resuming after 40 is past the channel's head.
        feed.subscribe();
        let refused = || FeedFrame::Error {
            message: "after 40 is past the head of channel 7: 2".into(),
            channel_id: Some(7),
        };
        assert_eq!(feed.apply(refused()), Outcome::Subscribe);
        assert_eq!((shown(&feed), feed.last()), (vec![], 0));
        assert_eq!(
            feed.subscribe(),
            FeedRequest::Subscribe {
                channel_id: 7,
                after: Some(0)
            }
        );
        // Refused again: shown, not retried.
        assert_eq!(feed.apply(refused()), Outcome::Nothing);
        assert_eq!(
            feed.error(),
            Some("after 40 is past the head of channel 7: 2")
        );
        // Another channel's refusal, or one while not subscribing, changes nothing.
        let mut other = ChannelFeed::open(7, &page(7, 1..=3));
        assert_eq!(other.apply(refused()), Outcome::Nothing);
        assert_eq!(shown(&other), [1, 2, 3]);
    }

    #[test]
    fn the_view_keeps_the_newest_capacity_messages() {
        let mut feed = ChannelFeed::with_capacity(7, &[], 3);
        feed.subscribe();
        for offset in 1..=5 {
            live(&mut feed, offset);
        }
        assert_eq!((shown(&feed), feed.last()), (vec![3, 4, 5], 5));
        // Full: no room to scroll back.
        assert_eq!(feed.older_cursor(), None);
    }

    #[test]
    fn older_pages_extend_the_view_downwards_without_holes_up_to_the_capacity() {
        let mut feed = ChannelFeed::with_capacity(7, &page(7, 8..=10), 6);
        assert_eq!(feed.older_cursor(), Some(8));
        // A page that does not continue the view (offset 6 would leave a hole at 7) adds nothing.
        assert_eq!(feed.add_older(&page(7, 4..=6)), 0);
        // Only the room left is filled, newest of the page first.
        assert_eq!(feed.add_older(&page(7, 2..=7)), 3);
        assert_eq!(shown(&feed), [5, 6, 7, 8, 9, 10]);
        assert_eq!(feed.older_cursor(), None);

        let mut start = ChannelFeed::open(7, &page(7, 2..=3));
        assert_eq!(start.add_older(&page(7, 1..=1)), 1);
        // Offset 1 is the channel's first: nothing is older.
        assert_eq!(start.older_cursor(), None);
    }

    #[test]
    fn history_paths_carry_the_id_as_typed_and_refuse_only_a_blank_one() {
        assert_eq!(
            history_path(" 7 ", NEWEST).unwrap(),
            "/channels/7/messages?before=9223372036854775807&limit=100"
        );
        assert_eq!(
            history_path("a/b", 5).unwrap(),
            "/channels/a%2Fb/messages?before=5&limit=100"
        );
        let blank = history_path("  ", 5).unwrap_err();
        assert_eq!(
            blank.for_field("channel_id"),
            Some("channel_id: enter a channel number")
        );
    }

    #[test]
    fn server_frames_are_read_from_the_notifiers_json() {
        let frames = [
            r#"{"type":"subscribed","channel_id":7,"head":42}"#,
            r#"{"type":"lagged","channel_id":7,"last_offset":40}"#,
            r#"{"type":"error","message":"unknown type"}"#,
            r#"{"type":"error","message":"not subscribed to channel 7","channel_id":7}"#,
            r#"{"type":"message","channel_id":7,"offset":43,"message_id":"00000000-0000-0000-0000-00000000002b","user_id":1,"content":"m43","created_at":"2023-11-14T22:13:20.043Z","inserted_at":"2023-11-14T22:13:20.043Z"}"#,
        ];
        let parsed: Vec<FeedFrame> = frames.iter().map(|f| parse_frame(f).unwrap()).collect();
        assert_eq!(
            parsed,
            [
                FeedFrame::Subscribed {
                    channel_id: 7,
                    head: 42
                },
                FeedFrame::Lagged {
                    channel_id: 7,
                    last_offset: 40
                },
                FeedFrame::Error {
                    message: "unknown type".into(),
                    channel_id: None,
                },
                FeedFrame::Error {
                    message: "not subscribed to channel 7".into(),
                    channel_id: Some(7),
                },
                FeedFrame::Message(message(7, 43)),
            ]
        );
        assert_eq!(parse_frame(r#"{"type":"stats_update"}"#), None);
        assert_eq!(parse_frame(r#"{"type":"lagged","channel_id":7}"#), None);
        assert_eq!(parse_frame("not json"), None);
    }
}
