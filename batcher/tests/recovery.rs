//! Nothing lost, nothing duplicated: a batcher's own list at start, a dead batcher's list, a list nobody
//! registered, and a batcher whose shard was taken over while it was only paused.

mod common;

use std::time::Duration;

use common::*;
use testkit::TestEnv;

/// Puts `messages` in `batcher`'s processing list as if it had taken them (oldest at the right end).
async fn fill_processing(
    env: &TestEnv,
    batcher: &str,
    messages: &[pipeline::queued::QueuedMessage],
) {
    let elements: Vec<Vec<u8>> = messages.iter().map(raw).collect();
    lpush(env, &env.keys().shard(0).processing(batcher), &elements).await;
}

#[tokio::test]
async fn a_restarted_batcher_reflushes_its_own_list_without_duplicating_committed_rows() {
    let env = TestEnv::with_schema().await;
    let held = messages(25);
    fill_processing(&env, "b1", &held).await;
    // The crash came between the commit of the 8 oldest and clearing them from the list.
    let db = env.db().await;
    for m in &held[..8] {
        db.execute(
            "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&m.tracking_id, &m.user_id, &m.channel_id, &m.content, &m.created_at],
        )
        .await
        .unwrap();
    }

    let batcher = start(&env, config(&env, "b1", 10, 30.0)).await;
    wait_rows(&env, 25).await;
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    assert_eq!(row_counts(&env).await, (25, 25));
    assert_eq!(persisted(&env).await, held);
    let batches = batches(&env).await;
    let shapes: Vec<_> = batches
        .iter()
        .map(|b| (b.reason.as_str(), b.size, b.inserted))
        .collect();
    assert_eq!(
        shapes,
        [
            ("recovery", 10, 2),
            ("recovery", 10, 10),
            ("recovery", 5, 5)
        ]
    );
    assert!(registered(&env, "b1").await);
    batcher.stop().await;
    assert!(!registered(&env, "b1").await, "a clean stop leaves the set");
}

#[tokio::test]
async fn the_list_of_a_dead_batcher_is_reclaimed_first_by_the_shards_next_holder() {
    let env = TestEnv::new().await;
    let ghost_held = messages(20);
    fill_processing(&env, "ghost", &ghost_held).await;
    let redis_key = env.keys().shard(0).batchers();
    let _: i64 = env
        .redis_query(redis::cmd("SADD").arg(&redis_key).arg("ghost"))
        .await;
    // Newer messages wait in pending; the reclaimed (older) ones go before them.
    let newer = messages(3);
    push(&env, &newer).await;

    let batcher = start(&env, config(&env, "live", 10, 0.1)).await;
    testkit::eventually(Duration::from_secs(5), "23 rows and ghost gone", || async {
        (env.count("messages").await == 23 && !registered(&env, "ghost").await).then_some(())
    })
    .await;
    assert_eq!(row_counts(&env).await, (23, 23));
    assert_eq!(
        llen(&env, &env.keys().shard(0).processing("ghost")).await,
        0
    );
    let expected: Vec<_> = ghost_held.iter().chain(&newer).cloned().collect();
    assert_eq!(persisted(&env).await, expected, "reclaimed first, in order");
    batcher.stop().await;
}

#[tokio::test]
async fn a_processing_list_that_no_batcher_registered_is_persisted_while_the_shard_is_held() {
    let (env, batcher) = start_new("live", 10, 0.1).await;
    testkit::eventually(WAIT, "live holds the shard", || async {
        registered(&env, "live").await.then_some(())
    })
    .await;
    // A list that appears out of nowhere (an older version's, or put there by hand), with no lease and in no
    // set: the holder's periodic scan finds it.
    let held = messages(7);
    fill_processing(&env, "ghost", &held).await;
    testkit::eventually(Duration::from_secs(30), "7 rows", || async {
        (env.count("messages").await == 7).then_some(())
    })
    .await;
    wait_empty(&env, &env.keys().shard(0).processing("ghost")).await;
    assert_eq!(row_counts(&env).await, (7, 7));
    assert_eq!(persisted(&env).await, held);
    batcher.stop().await;
}

#[tokio::test]
async fn a_paused_batcher_whose_shard_was_taken_over_loses_and_duplicates_nothing() {
    let (env, batcher) = start_new("z", 1000, 1.5).await;
    let sent = messages(5);
    push(&env, &sent).await;
    let shard = env.keys().shard(0);
    let processing = shard.processing("z");
    testkit::eventually(WAIT, "z holds 5", || async {
        (llen(&env, &processing).await == 5).then_some(())
    })
    .await;

    // What the next holder does when z's lease has expired (z was paused): it takes the lease and moves z's
    // list back to pending. This holder then vanishes; its lease expires in 2 s.
    let mut redis = env.redis().await;
    let _: () = redis::Script::new(
        r"
        redis.call('SET', KEYS[4], 'intruder', 'PX', 2000)
        local items = redis.call('LRANGE', KEYS[1], 0, -1)
        redis.call('RPUSH', KEYS[2], unpack(items))
        redis.call('DEL', KEYS[1])
        redis.call('SREM', KEYS[3], 'z')
        ",
    )
    .key(&processing)
    .key(shard.pending())
    .key(shard.batchers())
    .key(shard.lease())
    .invoke_async(&mut redis)
    .await
    .unwrap();

    // z notices it lost the lease, takes the shard again once the intruder's lease expires, and flushes.
    testkit::eventually(Duration::from_secs(15), "5 rows", || async {
        (env.count("messages").await == 5).then_some(())
    })
    .await;
    testkit::eventually(WAIT, "both lists empty and z registered again", || async {
        let empty = llen(&env, &processing).await == 0 && llen(&env, &shard.pending()).await == 0;
        (empty && registered(&env, "z").await).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row_counts(&env).await, (5, 5));
    assert_eq!(persisted(&env).await, sent);
    let metrics = testkit::get_text(&format!("http://{}/metrics", batcher.addr)).await;
    assert!(
        testkit::metric_value(&metrics, "batcher_fenced_total").is_some_and(|fenced| fenced > 0.0),
        "the batcher noticed it was fenced"
    );
    batcher.stop().await;
}

#[tokio::test]
async fn messages_left_in_the_shards_of_a_larger_earlier_layout_are_persisted_after_shards_are_reduced()
 {
    let env = TestEnv::new().await;
    // The ingestors ran with QUEUE_SHARDS=4 (they record it) and left messages in shards 2 and 3.
    let _: i64 = env
        .redis_query(redis::cmd("SADD").arg(env.keys().layouts()).arg(4))
        .await;
    let (two, three) = (messages(6), messages(4));
    lpush(
        &env,
        &env.keys().shard(2).pending(),
        &two.iter().map(raw).collect::<Vec<_>>(),
    )
    .await;
    lpush(
        &env,
        &env.keys().shard(3).pending(),
        &three.iter().map(raw).collect::<Vec<_>>(),
    )
    .await;

    // Now QUEUE_SHARDS=2: shards 2 and 3 are still drained, each in its own order.
    let mut config = config(&env, "b1", 100, 0.05);
    config.redis.queue_shards = 2;
    let batcher = start(&env, config).await;
    wait_rows(&env, 10).await;
    wait_empty(&env, &env.keys().shard(2).pending()).await;
    wait_empty(&env, &env.keys().shard(3).pending()).await;
    assert_eq!(row_counts(&env).await, (10, 10));
    let persisted = persisted(&env).await;
    let in_order = |sent: &[pipeline::queued::QueuedMessage]| {
        let rows: Vec<_> = persisted
            .iter()
            .filter(|m| sent.contains(m))
            .cloned()
            .collect();
        rows == sent
    };
    assert!(
        in_order(&two) && in_order(&three),
        "each shard in its order"
    );
    batcher.stop().await;
}
