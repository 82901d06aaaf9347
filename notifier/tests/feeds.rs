//! The channel feeds against a real notifier, PostgreSQL and Redis: `/ws/channels` (every bad input answered,
//! replay then live with no gap and no duplicate, lost events caught up from the heads) and
//! `/sse/channels/{id}` (resume after the header or the query parameter, a resume point past the head), and
//! access with `API_KEYS`. Rows are committed as a batcher commits them (testkit::feeds::commit_rows) and
//! announced by publishing the batcher's event.

mod common;

use std::time::Duration;

use common::feeds::{
    connect, offsets, read_from_start, sse_messages, start, start_with_rows, subscribed_from_start,
    ws_url,
};
use futures_util::SinkExt;
use serde_json::{Value, json};
use testkit::{
    TestEnv,
    feeds::{FeedSse, FeedWs, announcement, commit_padded, commit_rows},
};
use tokio_tungstenite::tungstenite::Message;

/// Bound of each wait for a frame or event.
const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to be sure nothing more comes.
const QUIET: Duration = Duration::from_millis(300);

fn error(message: &str) -> Value {
    json!({"type": "error", "message": message})
}

#[tokio::test]
async fn every_bad_request_is_answered_and_the_connection_stays_usable() {
    let (_env, notifier, _db) = start_with_rows("", 7, 3).await;
    let mut ws = connect(&notifier).await;

    let expected = [
        (
            "not json",
            error(
                r#"bad JSON: send an object such as {"type":"subscribe","channel_id":7,"after":0}"#,
            ),
        ),
        ("[1,2]", error(r#"expected a JSON object with a "type""#)),
        (r#"{"channel_id":7}"#, error(r#"missing field "type""#)),
        (
            r#"{"type":"publish","channel_id":7}"#,
            error(r#"unknown type: expected "subscribe" or "unsubscribe""#),
        ),
        (
            r#"{"type":"subscribe"}"#,
            error(r#"missing field "channel_id""#),
        ),
        (
            r#"{"type":"subscribe","channel_id":"7"}"#,
            error(r#""channel_id" must be a positive integer"#),
        ),
        (
            r#"{"type":"subscribe","channel_id":0}"#,
            error(r#""channel_id" must be a positive integer"#),
        ),
        (
            r#"{"type":"subscribe","channel_id":7,"after":-1}"#,
            error(r#""after" must be an integer from 0 (the start) up"#),
        ),
        (
            r#"{"type":"unsubscribe","channel_id":7}"#,
            json!({"type": "error", "message": "not subscribed to channel 7", "channel_id": 7}),
        ),
        (
            r#"{"type":"subscribe","channel_id":7,"after":4}"#,
            json!({"type": "error", "message": "after 4 is past the head of channel 7: 3", "channel_id": 7}),
        ),
    ];
    for (frame, answer) in expected {
        ws.send_text(frame).await;
        assert_eq!(ws.expect(WAIT, frame).await, answer, "{frame}");
    }
    ws.ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        ws.expect(WAIT, "the binary frame's error").await,
        error("frames must be text: JSON requests")
    );

    // Still usable: a subscription works, a second one to the same channel does not.
    ws.subscribe(7, Some(3)).await;
    assert_eq!(
        ws.expect(WAIT, "subscribed").await,
        json!({"type": "subscribed", "channel_id": 7, "head": 3})
    );
    ws.subscribe(7, None).await;
    assert_eq!(
        ws.expect(WAIT, "the second subscribe's error").await,
        json!({"type": "error", "message": "already subscribed to channel 7", "channel_id": 7})
    );
    // The cap: 100 subscriptions per connection.
    for channel in 1000..1099 {
        ws.subscribe(channel, None).await;
        assert_eq!(
            ws.expect(WAIT, "subscribed").await,
            json!({"type": "subscribed", "channel_id": channel, "head": 0})
        );
    }
    ws.subscribe(2000, None).await;
    assert_eq!(
        ws.expect(WAIT, "the cap's error").await,
        json!({"type": "error", "message": "at most 100 subscriptions per connection", "channel_id": 2000})
    );
    ws.send_text(r#"{"type":"unsubscribe","channel_id":1000}"#)
        .await;
    assert_eq!(
        ws.expect(WAIT, "unsubscribed").await,
        json!({"type": "unsubscribed", "channel_id": 1000})
    );
    ws.subscribe(2000, None).await;
    assert_eq!(ws.expect(WAIT, "subscribed").await["type"], "subscribed");
    assert_eq!(ws.next(QUIET).await, None, "nothing else was sent");
    notifier.stop().await;
}

#[tokio::test]
async fn a_subscriber_gets_the_replay_then_live_messages_with_no_gap_and_no_duplicate() {
    let (env, notifier, db) = start_with_rows("", 5, 30).await;
    commit_rows(&db, 6, 2).await;

    let mut ws = connect(&notifier).await;
    ws.subscribe(5, Some(10)).await;
    assert_eq!(
        ws.expect(WAIT, "subscribed").await,
        json!({"type": "subscribed", "channel_id": 5, "head": 30})
    );
    assert_eq!(offsets(&mut ws, 5, 20).await, (11..=30).collect::<Vec<_>>());

    // Live: announced batches.
    commit_rows(&db, 5, 5).await;
    common::publish(&env, &announcement(1, 5, 31, 35)).await;
    assert_eq!(offsets(&mut ws, 5, 5).await, (31..=35).collect::<Vec<_>>());

    // A second connection from the start, and a live-only subscriber on a third.
    let mut from_start = connect(&notifier).await;
    from_start.subscribe(5, Some(0)).await;
    assert_eq!(from_start.expect(WAIT, "subscribed").await["head"], 35);
    let mut live = connect(&notifier).await;
    live.subscribe(5, None).await;
    assert_eq!(live.expect(WAIT, "subscribed").await["head"], 35);

    // A lost event (never published): the heads' safety net finds the rows.
    commit_rows(&db, 5, 3).await;
    // Out of order: the later batch is announced first, then the earlier one.
    commit_rows(&db, 5, 2).await;
    common::publish(&env, &announcement(3, 5, 39, 40)).await;
    common::publish(&env, &announcement(2, 5, 36, 38)).await;

    assert_eq!(offsets(&mut ws, 5, 5).await, (36..=40).collect::<Vec<_>>());
    assert_eq!(
        offsets(&mut from_start, 5, 40).await,
        (1..=40).collect::<Vec<_>>()
    );
    assert_eq!(
        offsets(&mut live, 5, 5).await,
        (36..=40).collect::<Vec<_>>()
    );

    // Many channels on one connection; unsubscribing stops a channel.
    read_from_start(&mut ws, 6, 2).await;
    ws.send_text(r#"{"type":"unsubscribe","channel_id":5}"#)
        .await;
    assert_eq!(
        ws.expect(WAIT, "unsubscribed").await["type"],
        "unsubscribed"
    );
    commit_rows(&db, 5, 1).await;
    commit_rows(&db, 6, 1).await;
    common::publish(&env, &announcement(4, 5, 41, 41)).await;
    common::publish(&env, &announcement(5, 6, 3, 3)).await;
    assert_eq!(offsets(&mut ws, 6, 1).await, [3]);
    assert_eq!(offsets(&mut live, 5, 1).await, [41]);
    for client in [&mut ws, &mut from_start, &mut live] {
        let frame = client.next(QUIET).await;
        assert!(
            frame.as_ref().is_none_or(|f| f["offset"] == 41),
            "no duplicate: {frame:?}"
        );
    }
    notifier.stop().await;
}

#[tokio::test]
async fn when_rows_vanish_without_a_reset_subscribers_start_over_and_new_ones_get_the_new_offsets()
{
    let (env, notifier, db) = start_with_rows("", 8, 5).await;
    let mut old = subscribed_from_start(&notifier, 8, 5).await;

    // The tables emptied without counting a reset (not DELETE /reset: see feeds_faults.rs for that); offsets
    // start again at 1. The hub sees the head below what it fanned out (within its 1 s re-read).
    db.batch_execute("TRUNCATE messages; TRUNCATE channel_heads")
        .await
        .unwrap();
    commit_rows(&db, 8, 2).await;
    assert_eq!(
        old.expect(WAIT, "the reset").await,
        json!({"type": "reset", "channel_id": 8})
    );
    assert_eq!(offsets(&mut old, 8, 2).await, [1, 2]);
    let mut new = subscribed_from_start(&notifier, 8, 2).await;
    commit_rows(&db, 8, 1).await;
    common::publish(&env, &announcement(9, 8, 3, 3)).await;
    assert_eq!(offsets(&mut new, 8, 1).await, [3]);
    assert_eq!(offsets(&mut old, 8, 1).await, [3]);
    notifier.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_is_never_silently_skipped() {
    let env = TestEnv::new().await;
    let notifier = start(&env, "").await;
    let db = env.db().await;
    let mut ws = FeedWs::connect_with_tiny_buffer(notifier.addr).await;
    ws.subscribe(9, Some(0)).await;
    assert_eq!(ws.expect(WAIT, "subscribed").await["head"], 0);
    // 10,000 messages of 2 KB (20 MB) announced while the client reads nothing: far more than the live feed
    // (1,024 messages), the connection's queue and the sockets' buffers hold for it.
    for batch in 0..20 {
        let first = batch * 500 + 1;
        commit_padded(&db, 9, 500, 2_000).await;
        common::publish(&env, &announcement(batch + 1, 9, first, first + 499)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = Vec::new();
    let mut lagged = 0;
    while got.len() < 10_000 {
        let frame = ws.expect(WAIT, "a message").await;
        match frame["type"].as_str() {
            Some("message") => got.push(frame["offset"].as_i64().unwrap()),
            Some("lagged") => {
                lagged += 1;
                // It names the last offset delivered before it; the next message continues from there.
                assert_eq!(frame["last_offset"], got.last().copied().unwrap_or(0));
            }
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
    assert_eq!(got, (1..=10_000).collect::<Vec<_>>());
    assert!(
        lagged > 0,
        "the client fell behind the live feed and was told so"
    );
    assert_eq!(ws.next(QUIET).await, None, "nothing more");
    notifier.stop().await;
}

#[tokio::test]
async fn sse_resumes_after_the_header_or_the_query_parameter() {
    let (env, notifier, db) = start_with_rows("", 4, 10).await;
    let url = |query: &str| format!("http://{}/sse/channels/4{query}", notifier.addr);

    // The query parameter (EventSource's first connect).
    let mut sse = FeedSse::connect(&url("?last_event_id=6"), &[])
        .await
        .unwrap();
    let retry = sse.next(WAIT).await.unwrap();
    assert_eq!(retry.retry, Some(1000));
    assert_eq!(sse_messages(&mut sse, 4).await, [7, 8, 9, 10]);
    commit_rows(&db, 4, 2).await;
    common::publish(&env, &announcement(1, 4, 11, 12)).await;
    assert_eq!(sse_messages(&mut sse, 2).await, [11, 12]);

    // The header wins over the query parameter (a reconnecting EventSource keeps its URL).
    let headers = [("last-event-id", "10".to_owned())];
    let mut sse = FeedSse::connect(&url("?last_event_id=2"), &headers)
        .await
        .unwrap();
    assert_eq!(sse_messages(&mut sse, 2).await, [11, 12]);

    // Neither: live from the head on.
    let mut live = FeedSse::connect(&url(""), &[]).await.unwrap();
    assert_eq!(live.next(WAIT).await.unwrap().retry, Some(1000));
    commit_rows(&db, 4, 1).await;
    common::publish(&env, &announcement(2, 4, 13, 13)).await;
    assert_eq!(sse_messages(&mut live, 1).await, [13]);

    // Past the head: an error event naming the head, and the stream ends.
    let mut past = FeedSse::connect(&url("?last_event_id=99"), &[])
        .await
        .unwrap();
    assert_eq!(past.next(WAIT).await.unwrap().retry, Some(1000));
    let error = past.next(WAIT).await.unwrap();
    assert_eq!(error.event.as_deref(), Some("error"));
    assert_eq!(
        serde_json::from_str::<Value>(&error.data).unwrap(),
        json!({"message": "last_event_id 99 is past the head of channel 4: 13", "channel_id": 4, "head": 13})
    );
    assert_eq!(past.next(WAIT).await, None, "the stream ends");

    // Bad parameters: 422 naming the field.
    for (query, headers, field) in [
        ("?last_event_id=x", vec![], "last_event_id"),
        (
            "",
            vec![("last-event-id", "-1".to_owned())],
            "Last-Event-ID",
        ),
    ] {
        let (status, body) = FeedSse::connect(&url(query), &headers).await.unwrap_err();
        assert_eq!(status, 422);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["field"], field);
    }
    let bad_channel = format!("http://{}/sse/channels/0", notifier.addr);
    assert_eq!(
        FeedSse::connect(&bad_channel, &[]).await.unwrap_err().0,
        422
    );
    notifier.stop().await;
}

#[tokio::test]
async fn with_api_keys_the_feeds_need_a_key_and_ws_stats_stays_open() {
    let (_env, notifier, _db) = start_with_rows("k1,k2", 3, 2).await;

    assert_eq!(
        FeedWs::connect(&ws_url(&notifier, ""), None)
            .await
            .unwrap_err(),
        401
    );
    assert_eq!(
        FeedWs::connect(&ws_url(&notifier, "?access_token=k3"), None)
            .await
            .unwrap_err(),
        401
    );
    assert_eq!(
        FeedWs::connect(&ws_url(&notifier, ""), Some("nope"))
            .await
            .unwrap_err(),
        401
    );
    for (query, bearer) in [("?access_token=k2", None), ("", Some("k1"))] {
        let mut ws = FeedWs::connect(&ws_url(&notifier, query), bearer)
            .await
            .unwrap();
        read_from_start(&mut ws, 3, 2).await;
    }

    let sse = |query: &str| format!("http://{}/sse/channels/3{query}", notifier.addr);
    let (status, body) = FeedSse::connect(&sse("?last_event_id=0"), &[])
        .await
        .unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unauthorized"
    );
    let mut by_query = FeedSse::connect(&sse("?last_event_id=0&access_token=k1"), &[])
        .await
        .unwrap();
    assert_eq!(sse_messages(&mut by_query, 2).await, [1, 2]);
    let bearer = [("authorization", "Bearer k2".to_owned())];
    let mut by_header = FeedSse::connect(&sse("?last_event_id=1"), &bearer)
        .await
        .unwrap();
    assert_eq!(sse_messages(&mut by_header, 1).await, [2]);

    // /ws/stats carries ids, not content: open as before.
    let mut stats = notifier.connect().await;
    common::next_matching(&mut stats, "a stats update", |v| {
        v["type"] == "stats_update"
    })
    .await;
    notifier.stop().await;
}
