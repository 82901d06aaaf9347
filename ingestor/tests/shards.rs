//! `QUEUE_SHARDS`: each message goes to its channel's shard, in order; a batch spread over shards is queued
//! per shard, and its `Idempotency-Key` makes a retry after a partial failure queue exactly the missing part.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use pipeline::{keys::shard_of, queued::QueuedMessage};
use testkit::TestEnv;
use uuid::Uuid;

const SHARDS: u32 = 4;

/// Every shard's pending list, oldest first.
async fn shards(env: &TestEnv) -> BTreeMap<u32, Vec<QueuedMessage>> {
    shards_except(env, None).await
}

/// [`shards`], leaving out `broken` (whose key is not a list).
async fn shards_except(env: &TestEnv, broken: Option<u32>) -> BTreeMap<u32, Vec<QueuedMessage>> {
    let mut out = BTreeMap::new();
    for shard in env.keys().shards(SHARDS) {
        if Some(shard.index()) == broken {
            continue;
        }
        let elements: Vec<Vec<u8>> = env
            .redis_query(redis::cmd("LRANGE").arg(shard.pending()).arg(0).arg(-1))
            .await;
        let messages = elements
            .iter()
            .rev()
            .map(|element| serde_json::from_slice(element).unwrap())
            .collect();
        out.insert(shard.index(), messages);
    }
    out
}

/// A batch of `n` messages over channels 1..=12, and the contents each shard must then hold, oldest first.
fn batch(n: usize) -> (String, BTreeMap<u32, Vec<String>>) {
    let mut expected: BTreeMap<u32, Vec<String>> = (0..SHARDS).map(|s| (s, Vec::new())).collect();
    let items: Vec<String> = (0..n)
        .map(|i| {
            let channel = (i % 12 + 1) as i64;
            let content = format!("m{i}");
            expected
                .get_mut(&shard_of(channel, SHARDS))
                .unwrap()
                .push(content.clone());
            message(1, channel, &content)
        })
        .collect();
    (format!("[{}]", items.join(",")), expected)
}

fn contents(shards: &BTreeMap<u32, Vec<QueuedMessage>>) -> BTreeMap<u32, Vec<String>> {
    shards
        .iter()
        .map(|(shard, messages)| {
            let contents = messages.iter().map(|m| m.content.clone()).collect();
            (*shard, contents)
        })
        .collect()
}

#[tokio::test]
async fn messages_go_to_their_channels_shard_in_order() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.redis.queue_shards = SHARDS).await;
    let mut expected: BTreeMap<u32, Vec<String>> = (0..SHARDS).map(|s| (s, Vec::new())).collect();
    for i in 0..24 {
        let channel = i % 6 + 1;
        let content = format!("single {i}");
        let response = app
            .post_json("/messages", message(2, channel, &content))
            .await;
        assert_eq!(response.status(), 201);
        expected
            .get_mut(&shard_of(channel, SHARDS))
            .unwrap()
            .push(content);
    }
    assert_eq!(contents(&shards(&env).await), expected);
    // The shard-0 list of earlier versions is shard 0; the channels above use at least two shards.
    assert!(expected.values().filter(|c| !c.is_empty()).count() >= 2);

    let status: serde_json::Value = app.get_json("/queue/status").await;
    assert_eq!(status["queue_length"], 24, "the depth counts every shard");
    assert_eq!(status["queued_message_ids"].as_array().unwrap().len(), 24);
    app.stop().await;
}

#[tokio::test]
async fn a_batch_over_shards_is_queued_per_shard_in_request_order() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.redis.queue_shards = SHARDS).await;
    let (body, expected) = batch(40);
    let response = app.post_json("/messages/batch", body).await;
    assert_eq!(response.status(), 201);
    let answer: serde_json::Value = response.json().await.unwrap();
    let ids: Vec<Uuid> = serde_json::from_value(answer["message_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 40);
    let queued = shards(&env).await;
    assert_eq!(contents(&queued), expected);
    // Each message under the id the answer gave it, at its index.
    for messages in queued.values() {
        for m in messages {
            let index: usize = m.content[1..].parse().unwrap();
            assert_eq!(m.tracking_id, ids[index]);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_batch_that_failed_in_one_shard_is_completed_exactly_once_by_its_retry() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.redis.queue_shards = SHARDS).await;
    let (body, expected) = batch(40);
    // Shard 2 refuses pushes: its pending list's key holds a string.
    let broken = env.keys().shard(2).pending();
    let _: () = env
        .redis_query(redis::cmd("SET").arg(&broken).arg("not a list"))
        .await;

    let key = [("Idempotency-Key", "batch-7")];
    let response = app
        .post_json_with("/messages/batch", body.clone(), &key)
        .await;
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "partly_queued", "{error}");
    assert_eq!(error["queued"], expected[&0].len() + expected[&1].len());
    let before = contents(&shards_except(&env, Some(2)).await);
    assert_eq!(
        before[&0], expected[&0],
        "the shards before the failure were queued"
    );
    assert_eq!(before[&1], expected[&1]);

    // Repaired, the same request with the same key queues exactly what is missing, under the same ids.
    let _: () = env.redis_query(redis::cmd("DEL").arg(&broken)).await;
    let response = app
        .post_json_with("/messages/batch", body.clone(), &key)
        .await;
    assert_eq!(response.status(), 201);
    let first: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        contents(&shards(&env).await),
        expected,
        "every message once"
    );
    let ids: Vec<Uuid> = serde_json::from_value(first["message_ids"].clone()).unwrap();
    for messages in shards(&env).await.values() {
        for m in messages {
            let index: usize = m.content[1..].parse().unwrap();
            assert_eq!(m.tracking_id, ids[index]);
        }
    }
    // A third try is a plain repeat.
    let response = app.post_json_with("/messages/batch", body, &key).await;
    assert_eq!(response.status(), 201);
    let again: serde_json::Value = response.json().await.unwrap();
    assert_eq!(again["message_ids"], first["message_ids"]);
    assert_eq!(contents(&shards(&env).await), expected);
    app.stop().await;
}

#[tokio::test]
async fn an_unkeyed_batch_that_failed_in_one_shard_says_how_much_was_queued() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| config.redis.queue_shards = SHARDS).await;
    let (body, expected) = batch(40);
    let redis_key = env.keys().shard(3).pending();
    let _: () = env
        .redis_query(redis::cmd("SET").arg(&redis_key).arg("not a list"))
        .await;
    let response = app.post_json("/messages/batch", body).await;
    assert_eq!(response.status(), 503);
    let error: serde_json::Value = response.json().await.unwrap();
    let queued = 40 - expected[&3].len();
    assert_eq!(error["error"], "partly_queued", "{error}");
    assert_eq!(error["queued"], queued);
    let said = format!(
        "{queued} of the 40 messages were queued (Redis is unavailable for the rest); a retry queues all of \
         them again"
    );
    assert!(
        error["message"].as_str().unwrap().contains(&said),
        "{error}"
    );
    let held = contents(&shards_except(&env, Some(3)).await);
    for shard in 0..3 {
        assert_eq!(held[&shard], expected[&shard]);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_keyed_batch_whose_last_shard_filled_up_meanwhile_says_how_much_was_queued_and_its_retry_completes_it()
 {
    // The admission checks the ingestor's estimate of the queue (read every 100 ms); each shard's push checks
    // that shard's exact depth. Another ingestor filling shard 3 between a reading and this batch leaves the
    // batch admitted and shard 3's part refused, after shards 0 to 2 took theirs.
    const LIMIT: u64 = 40;
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.redis.queue_shards = SHARDS;
        config.max_queue_depth = LIMIT;
    })
    .await;
    let (body, expected) = batch(12);
    assert!(expected.values().all(|contents| !contents.is_empty()));
    let last = env.keys().shard(SHARDS - 1).pending();
    let others: usize = expected.range(..SHARDS - 1).map(|(_, c)| c.len()).sum();
    let fill = |n: u64| {
        redis::cmd("LPUSH")
            .arg(&last)
            .arg(vec!["x"; n as usize])
            .clone()
    };
    // Past half of the limit, so every shard's push is the checking script.
    let _: i64 = env.redis_query(&fill(24)).await;
    let key = [("Idempotency-Key", "filled-meanwhile")];
    let mut answer = None;
    // A reading that lands between the fill and the request turns it into a plain 429 (nothing queued):
    // undo the fill and try again, a bounded number of times.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Room for shards 0 to 2 by the estimate (24 + 12 <= 40), none for shard 3's part (39 + 3 > 40).
        let _: i64 = env.redis_query(&fill(LIMIT - 1 - 24)).await;
        let response = app
            .post_json_with("/messages/batch", body.clone(), &key)
            .await;
        let status = response.status().as_u16();
        let error: serde_json::Value = response.json().await.unwrap();
        if status == 429 {
            assert_eq!(error["error"], "queue_full", "{error}");
            let _: () = env
                .redis_query(redis::cmd("LTRIM").arg(&last).arg(LIMIT - 1 - 24).arg(-1))
                .await;
            continue;
        }
        answer = Some((status, error));
        break;
    }
    let (status, error) = answer.expect("one of ten tries fell between two readings");
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"], "partly_queued", "{error}");
    assert_eq!(error["queued"], others);
    let said = format!(
        "{others} of the 12 messages were queued (the queue is full for the rest); retry with the same \
         Idempotency-Key to queue the rest exactly once"
    );
    assert_eq!(error["message"], said.as_str());

    // Once the queue drained (here: the filler's elements deleted), the keyed retry queues exactly the rest.
    let _: () = env.redis_query(redis::cmd("DEL").arg(&last)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app.post_json_with("/messages/batch", body, &key).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        contents(&shards(&env).await),
        expected,
        "every message once"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_several_shards_max_queue_depth_still_holds_below_and_above_half_full() {
    // Up to half of the limit the shards' pushes are plain LPUSHes, past it the script checks each shard's
    // room: one ingestor admits exactly up to the limit either way.
    const LIMIT: usize = 40;
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.redis.queue_shards = SHARDS;
        config.max_queue_depth = LIMIT as u64;
    })
    .await;
    // Let the depth be read once, so the ingestor knows it has several shards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A reading taken while a push is in flight counts it twice until the next one (the estimate errs high), so
    // a 429 is tried again once after two readings: only a second 429 means full.
    let mut accepted = 0;
    for n in 0..LIMIT + 5 {
        let channel = (n % 12 + 1) as i64;
        let post = || app.post_json("/messages", message(1, channel, &format!("m{n}")));
        let mut status = post().await.status().as_u16();
        if status == 429 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            status = post().await.status().as_u16();
        }
        match status {
            201 => accepted += 1,
            429 => break,
            other => panic!("message {n}: {other}"),
        }
    }
    assert_eq!(accepted, LIMIT);
    let queued: usize = shards(&env).await.values().map(Vec::len).sum();
    assert_eq!(queued, LIMIT);
    app.stop().await;
}
