//! Helpers of the channel-feed tests: a notifier with the schema applied and its relay subscribed, clients
//! of `/ws/channels` and `/sse/channels/{id}` that read offsets.

use serde_json::Value;
use testkit::{
    TestEnv,
    feeds::{FeedSse, FeedWs, commit_rows},
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

/// A test's environment, a notifier on it with `API_KEYS` = `keys`, a connection to its database, and `rows`
/// messages committed to channel `channel_id`.
pub async fn start_with_rows(
    keys: &str,
    channel_id: i64,
    rows: i64,
) -> (TestEnv, Notifier, tokio_postgres::Client) {
    let env = TestEnv::new().await;
    let notifier = start(&env, keys).await;
    let db = env.db().await;
    commit_rows(&db, channel_id, rows).await;
    (env, notifier, db)
}

/// Subscribes `ws` to `channel_id` from the start, and reads (checked) the channel's `head` messages.
pub async fn read_from_start(ws: &mut FeedWs, channel_id: i64, head: i64) {
    ws.subscribe(channel_id, Some(0)).await;
    assert_eq!(ws.expect(WAIT, "subscribed").await["head"], head);
    assert_eq!(
        offsets(ws, channel_id, head as usize).await,
        (1..=head).collect::<Vec<_>>()
    );
}

/// A `/ws/channels` client without a key that has read (checked) the `head` messages of `channel_id`.
pub async fn subscribed_from_start(notifier: &Notifier, channel_id: i64, head: i64) -> FeedWs {
    let mut ws = connect(notifier).await;
    read_from_start(&mut ws, channel_id, head).await;
    ws
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
