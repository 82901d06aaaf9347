//! Elements that cannot become rows go to `dead_letters`; the rest of their batch commits.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use testkit::TestEnv;

/// `dead_letters` as raw element → error text.
async fn dead_letters(env: &TestEnv) -> BTreeMap<Vec<u8>, String> {
    let sql = "SELECT raw, error, batcher_id, batch_id FROM dead_letters";
    let rows = env
        .rows(sql, |row| {
            assert_eq!(row.get::<_, String>(2), "b1");
            assert!(row.get::<_, Option<i64>>(3).is_some());
            (row.get(0), row.get(1))
        })
        .await;
    rows.into_iter().collect()
}

#[tokio::test]
async fn poison_elements_are_dead_lettered_verbatim_and_the_good_ones_commit() {
    let (env, mut events, batcher) = start_watched("b1", 100, 0.1).await;

    let good = messages(5);
    let not_json = b"not json".to_vec();
    let mut mistyped = serde_json::to_value(message(90)).unwrap();
    mistyped["user_id"] = "x".into();
    let mistyped = serde_json::to_vec(&mistyped).unwrap();
    let with_nul = raw(&pipeline::queued::QueuedMessage {
        content: "a\0b".into(),
        ..message(91)
    });
    let elements = vec![
        raw(&good[0]),
        not_json.clone(),
        raw(&good[1]),
        raw(&good[2]),
        mistyped.clone(),
        raw(&good[3]),
        with_nul.clone(),
        raw(&good[4]),
    ];
    push_raw(&env, &elements).await;

    wait_rows(&env, 5).await;
    assert_eq!(persisted(&env).await, good);
    let dead = dead_letters(&env).await;
    assert_eq!(dead.keys().cloned().collect::<Vec<_>>(), {
        let mut raws = vec![not_json.clone(), mistyped.clone(), with_nul.clone()];
        raws.sort();
        raws
    });
    assert!(
        dead[&not_json].starts_with("not JSON"),
        "{}",
        dead[&not_json]
    );
    assert!(dead[&mistyped].contains("user_id") || dead[&mistyped].contains("invalid type"));
    assert_eq!(
        dead[&with_nul],
        "invalid content: must not contain NUL characters"
    );
    assert_eq!(env.totals().await, (5, 1, 3));
    let batches = batches(&env).await;
    assert_eq!(
        (
            batches[0].size,
            batches[0].inserted,
            batches[0].dead_letters
        ),
        (8, 5, 3)
    );

    let (_, event) = next_batch_event(&mut events).await;
    assert_eq!(
        event.ids,
        good.iter().map(|m| m.tracking_id).collect::<Vec<_>>()
    );
    assert_eq!((event.batch_size, event.dead_letters), (8, 3));
    batcher.stop().await;
}

#[tokio::test]
async fn rows_postgresql_refuses_are_isolated_and_dead_lettered_with_its_error() {
    let env = TestEnv::new().await;
    // A rule the batcher does not know about: only PostgreSQL can refuse these rows.
    forbid_content(&env).await;
    let batcher = start(&env, config(&env, "b1", 100, 0.1)).await;

    let mut sent = messages(10);
    for i in [2, 7] {
        sent[i].content = "forbidden".into();
    }
    push(&env, &sent).await;

    testkit::eventually(WAIT, "one batch", || async {
        (batches(&env).await.len() == 1).then_some(())
    })
    .await;
    let good: Vec<_> = sent
        .iter()
        .filter(|m| m.content != "forbidden")
        .cloned()
        .collect();
    assert_eq!(persisted(&env).await, good);
    let dead = dead_letters(&env).await;
    assert_eq!(dead.len(), 2);
    for i in [2, 7] {
        let error = &dead[&raw(&sent[i])];
        assert!(
            error.contains("no_forbidden") && error.contains("23514"),
            "{error}"
        );
    }
    assert_eq!(env.totals().await, (8, 1, 2));
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    batcher.stop().await;
}

#[tokio::test]
async fn a_batch_survives_its_postgresql_connection_being_terminated() {
    let (env, batcher) = start_persisted("b1", 1000, 0.3, 1).await;

    // Kill every other session of the test database (the batcher's), then give it a batch to commit.
    let sent = messages(6);
    push(&env, &sent).await;
    let terminated: i64 = env
        .db()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated >= 1);

    wait_rows(&env, 7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row_counts(&env).await, (7, 7));
    assert_eq!(&persisted(&env).await[1..], &sent[..]);
    wait_empty(&env, &env.keys().shard(0).processing("b1")).await;
    batcher.stop().await;
}
