//! Helpers of the channel-feed tests: a notifier with the schema applied and its relay subscribed, clients
//! of `/ws/channels` and `/sse/channels/{id}` that read offsets.

use serde_json::Value;
use testkit::{
    TestEnv,
    feeds::{FeedSse, FeedWs},
};

use pipeline::access::parse_api_keys;

use super::{Notifier, WAIT};

/// A notifier on this test's database (schema applied) with `API_KEYS` = `keys`, its relay subscribed.
pub async fn start(env: &TestEnv, keys: &str) -> Notifier {
    env.apply_schema().await;
    let mut config = super::config(env);
    config.api_keys = parse_api_keys(keys).unwrap();
    let notifier = Notifier::start(config).await;
    super::wait_subscribed(env).await;
    notifier
}

/// `ws://<notifier>/ws/channels<query>`.
pub fn ws_url(notifier: &Notifier, query: &str) -> String {
    format!("ws://{}/ws/channels{query}", notifier.addr)
}

/// A `/ws/channels` client without a key.
pub async fn connect(notifier: &Notifier) -> FeedWs {
    FeedWs::connect(&ws_url(notifier, ""), None).await.unwrap()
}

/// Reads `n` `message` frames of `channel_id` and returns their offsets, checking each carries its content.
pub async fn offsets(ws: &mut FeedWs, channel_id: i64, n: usize) -> Vec<i64> {
    let mut offsets = Vec::with_capacity(n);
    while offsets.len() < n {
        let frame = ws.expect(WAIT, "a message").await;
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["channel_id"], channel_id, "{frame}");
        let offset = frame["offset"].as_i64().unwrap();
        assert_eq!(frame["content"], format!("c{channel_id} m{offset}"));
        assert_eq!(frame.as_object().unwrap().len(), 8, "{frame}");
        offsets.push(offset);
    }
    offsets
}

/// Reads SSE events until `n` `message` events (others skipped); their offsets, checking each event's id.
pub async fn sse_messages(sse: &mut FeedSse, n: usize) -> Vec<i64> {
    let mut offsets = Vec::new();
    while offsets.len() < n {
        let event = sse.next(WAIT).await.expect("an event");
        if event.event.as_deref() != Some("message") {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let offset = data["offset"].as_i64().unwrap();
        assert_eq!(event.id, Some(offset.to_string()));
        assert_eq!(
            data.as_object().unwrap().len(),
            7,
            "the message object: {data}"
        );
        offsets.push(offset);
    }
    offsets
}
