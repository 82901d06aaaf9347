//! The channel feeds through faults, against a real notifier, PostgreSQL and Redis: the relay losing its Redis
//! connection while batches are announced, PostgreSQL lost in the middle of a replay, and a reset of the data
//! (`DELETE /reset`'s SQL) under connected WebSocket and SSE subscribers.

mod common;

use std::time::Duration;

use common::WAIT;
use common::feeds::{offsets, start, start_with_rows, subscribed_from_start};
use serde_json::{Value, json};
use testkit::{
    TestEnv,
    feeds::{FeedSse, FeedWs, announcement, commit_padded, commit_rows},
};

/// How long a test listens to be sure nothing more comes.
const QUIET: Duration = Duration::from_millis(300);
/// Kill-and-publish attempts: the relay waits 100 ms before reconnecting, so the first publish after the
/// kill is normally heard by nobody; a slow machine may need another try.
const KILL_TRIES: usize = 5;

/// PUBLISHes `payload` on this test's events channel; how many subscribers heard it.
async fn publish_heard(env: &TestEnv, payload: &str) -> u64 {
    let mut redis = env.redis().await;
    redis::cmd("PUBLISH")
        .arg(env.keys().events())
        .arg(payload)
        .query_async(&mut redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn batches_announced_while_the_relay_was_away_reach_subscribers_with_no_gap() {
    let (env, notifier, db) = start_with_rows("", 5, 3).await;
    let mut ws = subscribed_from_start(&notifier, 5, 3).await;

    // Batches committed and announced while the relay's connection is down: nobody hears the events.
    let mut relay = common::relay_connection_id(&env, None).await;
    let mut committed = 3;
    let mut heard = u64::MAX;
    for batch in 1..=KILL_TRIES as i64 {
        let killed = common::kill_redis_client(&env, &relay).await;
        assert_eq!(killed, 1, "only the relay's connection is killed");
        commit_rows(&db, 5, 2).await;
        heard = publish_heard(&env, &announcement(batch, 5, committed + 1, committed + 2)).await;
        committed += 2;
        if heard == 0 {
            break;
        }
        relay = common::relay_connection_id(&env, Some(&relay)).await;
    }
    assert_eq!(heard, 0, "an event was published while the relay was away");

    // The relay reconnects; the feed re-reads the heads and delivers what it never heard of, in order.
    common::relay_connection_id(&env, Some(&relay)).await;
    common::wait_subscribed(&env).await;
    let expected: Vec<i64> = (4..=committed).collect();
    assert_eq!(offsets(&mut ws, 5, expected.len()).await, expected);
    // And live again after that.
    commit_rows(&db, 5, 1).await;
    common::publish(&env, &announcement(99, 5, committed + 1, committed + 1)).await;
    assert_eq!(offsets(&mut ws, 5, 1).await, [committed + 1]);
    assert_eq!(ws.next(QUIET).await, None, "no duplicate");
    notifier.stop().await;
}

/// Reads `message` frames of channel 9 until one that is not a message; checks they continue `got` with no
/// gap, and returns that other frame (`None` if the connection ended or went quiet).
async fn read_until_not_a_message(ws: &mut FeedWs, got: &mut Vec<i64>) -> Option<Value> {
    loop {
        let frame = ws.next(WAIT).await?;
        if frame["type"] != "message" {
            return Some(frame);
        }
        let offset = frame["offset"].as_i64().unwrap();
        assert_eq!(offset, got.last().copied().unwrap_or(0) + 1, "{got:?}");
        got.push(offset);
    }
}

/// Reads `n` more messages of channel 9, checking they continue `got` with no gap.
async fn read_messages(ws: &mut FeedWs, got: &mut Vec<i64>, n: usize) {
    let until = got.len() + n;
    while got.len() < until {
        let frame = ws.expect(WAIT, "a message").await;
        assert_eq!(frame["type"], "message", "{frame}");
        let offset = frame["offset"].as_i64().unwrap();
        assert_eq!(offset, got.last().copied().unwrap_or(0) + 1);
        got.push(offset);
    }
}

/// The channel's length in the replay test.
const TOTAL: i64 = 12_000;

#[tokio::test]
async fn a_replay_that_loses_postgresql_continues_with_no_gap_or_ends_naming_where_to_resume() {
    let env = TestEnv::new().await;
    let notifier = start(&env, "").await;
    // 12,000 messages of 2 KB (24 pages of 500, 24 MB): far more than the sockets (loopback buffers grow to a
    // few MB) and the connection's queue hold,
    // so the replay is still reading pages while the client reads slowly.
    commit_padded(&env.db().await, 9, TOTAL, 2_000).await;
    let mut ws = FeedWs::connect_with_tiny_buffer(notifier.addr).await;
    ws.subscribe(9, Some(0)).await;
    assert_eq!(ws.expect(WAIT, "subscribed").await["head"], TOTAL);
    let mut got = Vec::new();
    read_messages(&mut ws, &mut got, 100).await;

    // The notifier's PostgreSQL sessions terminated, PostgreSQL back at once: the replay reads again.
    assert!(env.terminate_database_sessions().await >= 1);
    read_messages(&mut ws, &mut got, 1_000).await;

    // PostgreSQL refusing connections for longer than the replay's retries (about 3 s): the subscription
    // ends with an error naming the last offset delivered, after every message before it.
    env.allow_database_connections(false).await;
    env.terminate_database_sessions().await;
    let error = read_until_not_a_message(&mut ws, &mut got)
        .await
        .expect("an error frame");
    let last = *got.last().unwrap();
    assert!(last < TOTAL, "the replay was cut short: {last}");
    assert_eq!(
        error,
        json!({
            "type": "error",
            "message": format!("cannot read channel 9 from PostgreSQL; subscribe again with \"after\":{last}"),
            "channel_id": 9,
        })
    );

    // PostgreSQL back: subscribing again on the same connection with that `after` gets the rest.
    env.allow_database_connections(true).await;
    ws.subscribe(9, Some(last)).await;
    assert_eq!(
        ws.expect(WAIT, "subscribed").await,
        json!({"type": "subscribed", "channel_id": 9, "head": TOTAL})
    );
    read_messages(&mut ws, &mut got, (TOTAL - last) as usize).await;
    assert_eq!(got, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(ws.next(QUIET).await, None, "nothing more");
    notifier.stop().await;
}

/// The next SSE event that is not a keep-alive: `(event, id, data)`.
async fn sse_event(sse: &mut FeedSse) -> (String, Option<String>, Value) {
    let event = sse.next(WAIT).await.expect("an SSE event");
    let data = if event.data.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&event.data).unwrap()
    };
    (event.event.unwrap_or_default(), event.id, data)
}

/// `n` `message` events of channel 8: their offsets, checking ids and contents; any other event fails.
async fn sse_offsets(sse: &mut FeedSse, n: usize) -> Vec<i64> {
    let mut offsets = Vec::new();
    while offsets.len() < n {
        let (event, id, data) = sse_event(sse).await;
        assert_eq!(event, "message", "{data}");
        let offset = data["offset"].as_i64().unwrap();
        assert_eq!(id, Some(offset.to_string()));
        assert_eq!(data["content"], format!("c8 m{offset}"));
        offsets.push(offset);
    }
    offsets
}

#[tokio::test]
async fn after_a_reset_connected_subscribers_are_told_and_get_the_channel_from_offset_1() {
    let (env, notifier, db) = start_with_rows("", 8, 5).await;
    let mut ws = subscribed_from_start(&notifier, 8, 5).await;
    let url = format!("http://{}/sse/channels/8?last_event_id=0", notifier.addr);
    let mut sse = FeedSse::connect(&url, &[]).await.unwrap();
    assert_eq!(sse.next(WAIT).await.unwrap().retry, Some(1000));
    assert_eq!(sse_offsets(&mut sse, 5).await, [1, 2, 3, 4, 5]);

    // DELETE /reset's SQL, then more messages than before, announced at once: the new history's offsets
    // 6 and 7 must not pass for the old one's next.
    db.batch_execute(pipeline::schema::RESET_TABLES)
        .await
        .unwrap();
    commit_rows(&db, 8, 7).await;
    common::publish(&env, &announcement(1, 8, 1, 7)).await;

    assert_eq!(
        ws.expect(WAIT, "the reset").await,
        json!({"type": "reset", "channel_id": 8})
    );
    assert_eq!(offsets(&mut ws, 8, 7).await, (1..=7).collect::<Vec<_>>());
    assert_eq!(
        sse_event(&mut sse).await,
        ("reset".into(), None, json!({"channel_id": 8}))
    );
    assert_eq!(sse_offsets(&mut sse, 7).await, (1..=7).collect::<Vec<_>>());

    // Live as before.
    commit_rows(&db, 8, 1).await;
    common::publish(&env, &announcement(2, 8, 8, 8)).await;
    assert_eq!(offsets(&mut ws, 8, 1).await, [8]);
    assert_eq!(sse_offsets(&mut sse, 1).await, [8]);
    assert_eq!(ws.next(QUIET).await, None, "nothing more");
    notifier.stop().await;
}
