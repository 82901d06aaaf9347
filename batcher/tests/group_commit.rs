//! The group commit on a real PostgreSQL: several shards' batches in one transaction, each keeping its own
//! `batches` row, id, totals and channel offsets; and a group that fails commits nothing, after which each
//! batch commits on its own under its group id (a replay among them adding nothing).

mod common;

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use batcher::{
    flush::FlushJob,
    group_commit::GroupCommit,
    policy::FlushReason,
    row::Row,
    store::{Attempts, BatchToCommit, Committed, Store},
};
use chrono::{SubsecRound, Utc};
use pipeline::{events::ChannelRange, queued::QueuedMessage};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn row(channel_id: i64, content: String) -> Row<'static> {
    Row {
        tracking_id: Uuid::now_v7(),
        user_id: 1,
        channel_id,
        content: Cow::Owned(content),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

/// `n` rows over `channels`, in turn, contents `"<tag> <i>"`.
fn rows(n: usize, channels: &[i64], tag: &str) -> Vec<Row<'static>> {
    (0..n)
        .map(|i| row(channels[i % channels.len()], format!("{tag} {i}")))
        .collect()
}

fn batch<'a>(shard: i32, rows: &'a [Row<'a>], raws: &'a [&'a [u8]]) -> BatchToCommit<'a> {
    BatchToCommit {
        batcher_id: "group-test",
        shard,
        reason: FlushReason::Timeout,
        size: rows.len(),
        rows,
        row_raws: raws,
        rejected: &[],
    }
}

/// Every channel's contents in offset order, after checking the offsets are exactly 1..=n.
async fn by_channel(env: &TestEnv) -> BTreeMap<i64, Vec<String>> {
    let rows = env
        .rows(
            "SELECT channel_id, content, channel_offset FROM messages ORDER BY channel_id, channel_offset",
            |row| (row.get::<_, i64>(0), row.get::<_, String>(1), row.get::<_, i64>(2)),
        )
        .await;
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (channel, content, offset) in rows {
        let contents = out.entry(channel).or_default();
        contents.push(content);
        assert_eq!(offset, contents.len() as i64, "channel {channel}");
    }
    out
}

fn range(channel_id: i64, first: i64, last: i64) -> ChannelRange {
    ChannelRange {
        channel_id,
        first,
        last,
    }
}

#[tokio::test]
async fn several_shards_batches_commit_in_one_transaction_each_with_its_own_row_totals_and_offsets()
{
    let env = TestEnv::with_schema().await;
    let mut store = Store::new(&env.database_url);
    // Channel 2 is in two of the batches (as while an old shard layout drains): numbered in group order.
    let (a, b, c) = (
        rows(6, &[1, 2], "a"),
        rows(4, &[2, 3], "b"),
        rows(3, &[4], "c"),
    );
    let raws: Vec<&[u8]> = vec![b"raw"; 6];
    let batches = [
        batch(0, &a, &raws[..6]),
        batch(1, &b, &raws[..4]),
        batch(2, &c, &raws[..3]),
    ];
    let ids = store.next_batch_ids(3).await.unwrap();
    assert_eq!(ids.len(), 3);
    let committed = store.commit_group(&batches, &ids).await.unwrap();

    let expected = |batch_id, inserted, channels| Committed {
        batch_id,
        inserted,
        refused: Vec::new(),
        channels,
    };
    assert_eq!(
        committed,
        [
            expected(ids[0], 6, vec![range(1, 1, 3), range(2, 1, 3)]),
            expected(ids[1], 4, vec![range(2, 4, 5), range(3, 1, 2)]),
            expected(ids[2], 3, vec![range(4, 1, 3)]),
        ]
    );
    let channels = by_channel(&env).await;
    assert_eq!(channels[&2], ["a 1", "a 3", "a 5", "b 0", "b 2"]);
    assert_eq!(channels.values().map(Vec::len).sum::<usize>(), 13);

    // One transaction: the three `batches` rows share the transaction id that wrote them.
    let batches_rows = env
        .rows(
            "SELECT id, inserted, xmin::text FROM batches ORDER BY id",
            |row| {
                (
                    row.get::<_, i64>(0),
                    row.get::<_, i32>(1),
                    row.get::<_, String>(2),
                )
            },
        )
        .await;
    assert_eq!(batches_rows.len(), 3);
    assert_eq!(
        batches_rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(ids[0], 6), (ids[1], 4), (ids[2], 3)]
    );
    assert!(batches_rows.iter().all(|r| r.2 == batches_rows[0].2));
    let totals = env
        .rows(
            "SELECT shard, messages, batches FROM shard_totals ORDER BY shard",
            |row| {
                (
                    row.get::<_, i32>(0),
                    row.get::<_, i64>(1),
                    row.get::<_, i64>(2),
                )
            },
        )
        .await;
    assert_eq!(totals, [(0, 6, 1), (1, 4, 1), (2, 3, 1)]);
    assert_eq!(env.totals().await, (13, 3, 0));
}

#[tokio::test]
async fn a_group_that_fails_commits_nothing_and_its_batches_then_commit_alone_under_their_ids() {
    let env = TestEnv::with_schema().await;
    let mut store = Store::new(&env.database_url);
    let raws: Vec<&[u8]> = vec![b"raw"; 5];
    let replayed = rows(5, &[7], "replayed");
    let mut attempts = Attempts::default();
    store
        .commit(&batch(1, &replayed, &raws), &mut attempts)
        .await
        .unwrap();

    // The second batch is a replay (a batcher that crashed after its commit): the group's COPY meets it.
    let (a, c) = (rows(5, &[7, 8], "a"), rows(2, &[9], "c"));
    let batches = [
        batch(0, &a, &raws),
        batch(1, &replayed, &raws),
        batch(2, &c, &raws[..2]),
    ];
    let ids = store.next_batch_ids(3).await.unwrap();
    assert!(store.commit_group(&batches, &ids).await.is_err());
    store.reset();
    assert_eq!(env.count("messages").await, 5, "the group added nothing");
    assert_eq!(env.count("batches").await, 1);

    // Each alone, first asking whether the group's COMMIT happened: it did not, so each commits now.
    let mut inserted = Vec::new();
    for (batch, &id) in batches.iter().zip(&ids) {
        let mut attempts = Attempts::after_group(id);
        let committed = store.commit(batch, &mut attempts).await.unwrap();
        assert_eq!(committed.batch_id, id);
        inserted.push(committed.inserted);
    }
    assert_eq!(inserted, [5, 0, 2], "the replay adds nothing");
    let channels = by_channel(&env).await;
    assert_eq!(channels[&7].len(), 8);
    assert_eq!(channels.values().map(Vec::len).sum::<usize>(), 12);
    assert_eq!(env.totals().await, (12, 4, 0));
}

/// The element the ingestor queues for `row`.
fn element(channel_id: i64, content: &str) -> Vec<u8> {
    serde_json::to_vec(&QueuedMessage {
        tracking_id: Uuid::now_v7(),
        user_id: 3,
        channel_id,
        content: content.to_owned(),
        created_at: Utc::now(),
    })
    .unwrap()
}

#[tokio::test]
async fn batches_handed_over_together_share_one_transaction_and_each_gets_its_own_report() {
    let env = TestEnv::with_schema().await;
    let give_up = CancellationToken::new();
    let group = GroupCommit::spawn(
        Store::new(&env.database_url),
        "group-test".into(),
        give_up.clone(),
    );
    let job = |shard: i64, n: usize, seq| FlushJob {
        elements: (0..n)
            .map(|i| element(shard * 10 + 1, &format!("s{shard} {i}")))
            .chain([b"not json".to_vec()])
            .collect(),
        reason: FlushReason::Timeout,
        seq,
    };
    // On the test's one thread the committing task runs only once all three are handed over.
    let (first, second, third) = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join3(
            group.commit(job(0, 3, 1), 0),
            group.commit(job(1, 4, 1), 1),
            group.commit(job(2, 5, 1), 2),
        ),
    )
    .await
    .expect("the group commits within 30 s");

    let mut batch_ids = Vec::new();
    for ((job, report), (shard, n)) in
        [first, second, third]
            .into_iter()
            .zip([(0, 3), (1, 4), (2, 5)])
    {
        let report = report.expect("committed");
        assert_eq!(job.elements.len(), n + 1, "the job comes back whole");
        assert_eq!(
            (report.inserted, report.size, report.dead_letters),
            (n as u64, n + 1, 1)
        );
        let event: serde_json::Value = serde_json::from_str(&report.event).unwrap();
        assert_eq!(event["batch_id"], report.batch_id);
        assert_eq!(event["ids"].as_array().unwrap().len(), n);
        assert_eq!(
            event["channels"],
            serde_json::json!([{"channel_id": shard * 10 + 1, "first": 1, "last": n}])
        );
        batch_ids.push(report.batch_id);
    }
    let transactions = env
        .column::<String>("SELECT DISTINCT xmin::text FROM batches")
        .await;
    assert_eq!(transactions.len(), 1, "one transaction for the three");
    assert_eq!(
        env.column::<i64>("SELECT id FROM batches ORDER BY id")
            .await,
        batch_ids
    );
    assert_eq!(env.count("dead_letters").await, 3);
    assert_eq!(env.totals().await, (12, 3, 3));
}

#[tokio::test]
async fn a_group_that_meets_a_replay_commits_each_batch_alone_and_the_replay_adds_nothing() {
    let env = TestEnv::with_schema().await;
    let give_up = CancellationToken::new();
    let group = GroupCommit::spawn(
        Store::new(&env.database_url),
        "group-test".into(),
        give_up.clone(),
    );
    let job = |elements: Vec<Vec<u8>>| FlushJob {
        elements,
        reason: FlushReason::Timeout,
        seq: 1,
    };
    let replayed: Vec<Vec<u8>> = (0..4)
        .map(|i| element(21, &format!("replayed {i}")))
        .collect();
    // The replayed batch was committed once already (its batcher crashed before clearing it).
    let (_, first) = group.commit(job(replayed.clone()), 1).await;
    assert_eq!(first.expect("committed").inserted, 4);

    let fresh = |channel, n| {
        (0..n)
            .map(|i| element(channel, &format!("c{channel} {i}")))
            .collect()
    };
    let (a, b, c) = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join3(
            group.commit(job(fresh(11, 3)), 0),
            group.commit(job(replayed), 1),
            group.commit(job(fresh(31, 2)), 2),
        ),
    )
    .await
    .expect("the group commits within 30 s");
    let inserted: Vec<u64> = [a, b, c]
        .into_iter()
        .map(|(_, report)| report.expect("committed").inserted)
        .collect();
    assert_eq!(
        inserted,
        [3, 0, 2],
        "the replay adds nothing, the others commit"
    );
    assert_eq!(env.count("messages").await, 9);
    assert_eq!(env.count("batches").await, 4);
    let offsets = env
        .column::<i64>("SELECT channel_offset FROM messages WHERE channel_id = 21 ORDER BY id")
        .await;
    assert_eq!(offsets, [1, 2, 3, 4]);
    assert_eq!(env.totals().await, (9, 4, 0));
}
