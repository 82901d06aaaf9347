//! Nothing lost, nothing duplicated: a batcher's own list at start, a dead batcher's list, and a batcher
//! whose list was reclaimed while it was only paused.

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
    lpush(env, &env.keys().processing(batcher), &elements).await;
}

#[tokio::test]
async fn a_restarted_batcher_reflushes_its_own_list_without_duplicating_committed_rows() {
    let env = TestEnv::new().await;
    env.apply_schema().await;
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
    wait_empty(&env, &env.keys().processing("b1")).await;
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
async fn the_list_of_a_batcher_whose_heartbeat_expired_is_reclaimed_by_a_live_one() {
    let env = TestEnv::new().await;
    let ghost_held = messages(20);
    fill_processing(&env, "ghost", &ghost_held).await;
    let mut redis = env.redis().await;
    let _: i64 = redis::cmd("SADD")
        .arg(env.keys().batchers())
        .arg("ghost")
        .query_async(&mut redis)
        .await
        .unwrap();
    // Newer messages wait in pending; the reclaimed (older) ones must not be starved by them.
    let newer = messages(3);
    push(&env, &newer).await;

    let batcher = start(&env, config(&env, "live", 10, 0.1)).await;
    testkit::eventually(Duration::from_secs(5), "23 rows and ghost gone", || async {
        (env.count("messages").await == 23 && !registered(&env, "ghost").await).then_some(())
    })
    .await;
    assert_eq!(row_counts(&env).await, (23, 23));
    assert_eq!(llen(&env, &env.keys().processing("ghost")).await, 0);
    let mut rows = persisted(&env).await;
    rows.sort_by_key(|m| m.tracking_id);
    let mut expected: Vec<_> = ghost_held.iter().chain(&newer).cloned().collect();
    expected.sort_by_key(|m| m.tracking_id);
    assert_eq!(rows, expected);
    batcher.stop().await;
}

#[tokio::test]
async fn a_paused_batcher_whose_list_was_reclaimed_loses_and_duplicates_nothing() {
    let env = TestEnv::new().await;
    let batcher = start(&env, config(&env, "z", 1000, 1.5)).await;
    let sent = messages(5);
    push(&env, &sent).await;
    let processing = env.keys().processing("z");
    testkit::eventually(WAIT, "z holds 5", || async {
        (llen(&env, &processing).await == 5).then_some(())
    })
    .await;

    // What another batcher does when z's heartbeat expires: z's list goes back to pending, z leaves the set.
    let mut redis = env.redis().await;
    let _: () = redis::Script::new(
        r"
        local items = redis.call('LRANGE', KEYS[1], 0, -1)
        redis.call('RPUSH', KEYS[2], unpack(items))
        redis.call('DEL', KEYS[1], KEYS[4])
        redis.call('SREM', KEYS[3], 'z')
        ",
    )
    .key(&processing)
    .key(env.keys().pending())
    .key(env.keys().batchers())
    .key(env.keys().heartbeat("z"))
    .invoke_async(&mut redis)
    .await
    .unwrap();

    wait_rows(&env, 5).await;
    testkit::eventually(WAIT, "both lists empty and z registered again", || async {
        let empty =
            llen(&env, &processing).await == 0 && llen(&env, &env.keys().pending()).await == 0;
        (empty && registered(&env, "z").await).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row_counts(&env).await, (5, 5));
    assert_eq!(persisted(&env).await, sent);
    let metrics = reqwest::get(format!("http://{}/metrics", batcher.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("batcher_fenced_total ") && !l.ends_with(" 0")),
        "the batcher noticed it was fenced"
    );
    batcher.stop().await;
}
