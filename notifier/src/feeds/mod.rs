//! Channel feeds: each persisted message delivered to its channel's subscribers, in offset order, resumable,
//! over `GET /ws/channels` (WebSocket, many channels) and `GET /sse/channels/{channel_id}` (Server-Sent
//! Events, one channel). The protocol, resume semantics and limits are in docs/feeds.md.
//!
//! - `hub`: per subscribed channel, what this notifier has fanned out; reads what the batchers' events
//!   announce from PostgreSQL, one query per round for all channels, and broadcasts it.
//! - `subscription`: one subscriber, any transport: replay from PostgreSQL, then live, no gap, no duplicate.
//! - `resume`: the pure decisions (deliver / drop / read the gap, what the hub reads, SSE resume points).
//! - `protocol`: `/ws/channels` requests (checked) and replies.
//! - `store`: the PostgreSQL reads.
//! - `ws`, `sse`: the endpoints.

pub(crate) mod hub;
pub(crate) mod protocol;
pub(crate) mod resume;
pub(crate) mod sse;
pub(crate) mod store;
pub(crate) mod subscription;
pub(crate) mod ws;
