//! Channel offsets, through `Store::commit` on a real PostgreSQL: 1, 2, 3, … per channel in commit order,
//! never a second offset for a row, never a hole (replays, late commits, refused rows, dead letters), and
//! concurrent batches sharing channels do not deadlock. And the running totals each batch adds to its shard's
//! row.

mod common;

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use pipeline::events::ChannelRange;

use batcher::{
    policy::FlushReason,
    row::Row,
    store::{Attempts, BatchToCommit, Committed, Store},
};
use chrono::{SubsecRound, Utc};
use testkit::TestEnv;
use uuid::Uuid;

fn row(channel_id: i64, content: &str) -> Row<'static> {
    Row {
        tracking_id: Uuid::now_v7(),
        user_id: 1,
        channel_id,
        content: Cow::Owned(content.to_owned()),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

/// `n` rows cycling over channels `1..=channels` (in a stride that mixes them), contents `"<tag> <i>"`.
fn rows(n: usize, channels: i64, tag: &str) -> Vec<Row<'static>> {
    (0..n)
        .map(|i| row((i as i64 * 7) % channels + 1, &format!("{tag} {i}")))
        .collect()
}

async fn commit(store: &mut Store, rows: &[Row<'_>], rejected: &[(&[u8], String)]) -> Committed {
    commit_from(store, 0, rows, rejected).await
}

/// Commits a batch taken from queue shard `shard`.
async fn commit_from(
    store: &mut Store,
    shard: i32,
    rows: &[Row<'_>],
    rejected: &[(&[u8], String)],
) -> Committed {
    let raws: Vec<&[u8]> = rows.iter().map(|_| b"raw".as_slice()).collect();
    let batch = BatchToCommit {
        batcher_id: "test",
        shard,
        reason: FlushReason::Size,
        size: rows.len() + rejected.len(),
        rows,
        row_raws: &raws,
        rejected,
    };
    let mut attempts = Attempts::default();
    tokio::time::timeout(Duration::from_secs(30), store.commit(&batch, &mut attempts))
        .await
        .expect("a commit takes under 30 s")
        .expect("the batch commits")
}

/// Every channel's `(content, offset)` in `id` order.
async fn offsets_by_channel(env: &TestEnv) -> BTreeMap<i64, Vec<(String, i64)>> {
    let rows = env
        .db()
        .await
        .query(
            "SELECT channel_id, content, channel_offset FROM messages ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let mut by_channel: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for row in rows {
        by_channel
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    by_channel
}

fn range(channel_id: i64, first: i64, last: i64) -> ChannelRange {
    ChannelRange {
        channel_id,
        first,
        last,
    }
}

/// Each channel's lowest and highest offset among the rows of `batch` (by content), from `by_channel`.
fn expected_ranges(
    by_channel: &BTreeMap<i64, Vec<(String, i64)>>,
    batch: &[Row<'_>],
) -> Vec<ChannelRange> {
    let mut ranges: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for row in batch {
        let (_, offset) = by_channel[&row.channel_id]
            .iter()
            .find(|(content, _)| *content == row.content)
            .expect("the row is persisted");
        let entry = ranges.entry(row.channel_id).or_insert((*offset, *offset));
        entry.0 = entry.0.min(*offset);
        entry.1 = entry.1.max(*offset);
    }
    ranges
        .into_iter()
        .map(|(channel, (first, last))| range(channel, first, last))
        .collect()
}

/// Asserts each channel's offsets are exactly 1..=n in `id` (commit) order, and its head is n.
async fn assert_contiguous(env: &TestEnv) -> BTreeMap<i64, Vec<(String, i64)>> {
    let by_channel = offsets_by_channel(env).await;
    let heads = env
        .rows("SELECT channel_id, head FROM channel_heads", |row| {
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        })
        .await;
    let heads: BTreeMap<i64, i64> = heads.into_iter().collect();
    for (channel, rows) in &by_channel {
        let offsets: Vec<i64> = rows.iter().map(|(_, offset)| *offset).collect();
        let expected: Vec<i64> = (1..=rows.len() as i64).collect();
        assert_eq!(offsets, expected, "channel {channel}");
        assert_eq!(
            heads.get(channel),
            Some(&(rows.len() as i64)),
            "head of {channel}"
        );
    }
    by_channel
}

#[tokio::test]
async fn offsets_are_contiguous_per_channel_across_batches() {
    let env = TestEnv::with_schema().await;
    let mut store = Store::new(&env.database_url);
    let mut total = 0;
    for batch in 0..6 {
        let batch_rows = rows(100 + batch * 37, 13, &format!("b{batch}"));
        total += batch_rows.len();
        let committed = commit(&mut store, &batch_rows, &[]).await;
        assert_eq!(committed.inserted, batch_rows.len() as u64);
    }
    let by_channel = assert_contiguous(&env).await;
    assert_eq!(by_channel.len(), 13);
    assert_eq!(by_channel.values().map(Vec::len).sum::<usize>(), total);
    // Within a channel, batch order is offset order: the first batch's rows come first.
    assert!(by_channel[&1][0].0.starts_with("b0 "));
}

#[tokio::test]
async fn a_replayed_batch_numbers_only_its_new_rows() {
    let env = TestEnv::with_schema().await;
    let mut store = Store::new(&env.database_url);
    let first = rows(60, 5, "first");
    let committed = commit(&mut store, &first, &[]).await;
    // The direct path announces each channel's offsets: 12 rows per channel.
    let all: Vec<_> = (1..=5).map(|channel| range(channel, 1, 12)).collect();
    assert_eq!(committed.channels, all);
    let before = offsets_by_channel(&env).await;

    // The second half of the first batch again (a replay after a crash, or a fenced batcher's late commit),
    // interleaved with new rows, and one new row twice.
    let new = rows(40, 5, "new");
    let mut replay: Vec<Row<'static>> = Vec::new();
    for (old, new) in first[30..].iter().zip(&new) {
        replay.push(old.clone());
        replay.push(new.clone());
    }
    replay.extend(new[30..].iter().cloned());
    replay.push(new[0].clone());
    let committed = commit(&mut store, &replay, &[]).await;
    assert_eq!(committed.inserted, 40);

    let after = assert_contiguous(&env).await;
    // A replay announces the rows it found as well as the ones it added: 30 old rows (offsets 7..=12 of
    // each channel) and 8 new ones per channel (13..=20).
    let replayed: Vec<_> = (1..=5).map(|channel| range(channel, 7, 20)).collect();
    assert_eq!(committed.channels, replayed);
    assert_eq!(expected_ranges(&after, &replay), replayed);
    for (channel, rows) in &before {
        assert_eq!(
            &after[channel][..rows.len()],
            &rows[..],
            "channel {channel}"
        );
        assert!(
            after[channel][rows.len()..]
                .iter()
                .all(|(c, _)| c.starts_with("new "))
        );
    }
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 100);

    // The whole of it again, on a second store (another batcher): nothing added, no offset used.
    // Its batcher was fenced and announced nothing, so this replay announces every row of it.
    let mut other = Store::new(&env.database_url);
    let again = commit(&mut other, &replay, &[]).await;
    assert_eq!(again.inserted, 0);
    assert_eq!(again.channels, replayed);
    assert_eq!(assert_contiguous(&env).await, after);
}

#[tokio::test]
async fn dead_letters_and_refused_rows_take_no_offset() {
    let env = TestEnv::new().await;
    common::forbid_content(&env).await;
    let mut store = Store::new(&env.database_url);
    commit(&mut store, &rows(10, 2, "before"), &[]).await;
    let mut batch = rows(20, 2, "ok");
    batch.insert(3, row(1, "forbidden"));
    batch.insert(11, row(2, "forbidden"));
    batch.push(row(2, "forbidden"));
    let rejected: Vec<(&[u8], String)> = vec![(b"not json".as_slice(), "not JSON".into())];
    let committed = commit(&mut store, &batch, &rejected).await;
    assert_eq!(committed.inserted, 20);
    let refused: Vec<usize> = committed.refused.iter().map(|(i, _)| *i).collect();
    assert_eq!(refused, [3, 11, 22]);
    assert_eq!(env.count("dead_letters").await, 4);
    // Refused rows and dead letters take no offset, and are in no range.
    assert_eq!(committed.channels, [range(1, 6, 15), range(2, 6, 15)]);

    let by_channel = assert_contiguous(&env).await;
    assert_eq!(by_channel[&1].len(), 15);
    assert_eq!(by_channel[&2].len(), 15);
    // A later batch continues right after: the refused rows left no hole.
    commit(&mut store, &rows(4, 2, "after"), &[]).await;
    let by_channel = assert_contiguous(&env).await;
    assert_eq!(by_channel[&1].last().unwrap(), &("after 2".to_owned(), 17));
}

#[tokio::test]
async fn each_batch_adds_to_its_shards_totals_and_a_replay_adds_no_messages() {
    let env = TestEnv::new().await;
    common::forbid_content(&env).await;
    let mut store = Store::new(&env.database_url);
    commit_from(&mut store, 0, &rows(10, 2, "a"), &[]).await;
    let replayed = rows(5, 2, "b");
    commit_from(&mut store, 3, &replayed, &[]).await;
    let mut batch = rows(4, 2, "c");
    batch.push(row(1, "forbidden"));
    let rejected: Vec<(&[u8], String)> = vec![(b"not json".as_slice(), "not JSON".into())];
    commit_from(&mut store, 3, &batch, &rejected).await;
    // The replay is one more batch of shard 3, with no new message.
    commit_from(&mut store, 3, &replayed, &[]).await;

    let shards = env
        .rows(
            "SELECT shard, messages, batches, dead_letters FROM shard_totals ORDER BY shard",
            |row| {
                let count = |i| row.get::<_, i64>(i);
                (row.get::<_, i32>(0), count(1), count(2), count(3))
            },
        )
        .await;
    assert_eq!(shards, [(0, 10, 1, 0), (3, 9, 3, 2)]);
    assert_eq!(env.totals().await, (19, 4, 2), "the shards' rows summed");
}

#[tokio::test]
async fn concurrent_batches_sharing_channels_do_not_deadlock() {
    let env = TestEnv::with_schema().await;
    let (mut a, mut b) = (Store::new(&env.database_url), Store::new(&env.database_url));
    // Each round, two stores commit at once: A's rows visit channels 1..=20 upwards, B's downwards (their
    // heads would be locked in opposite orders if they were locked in row order), and half of the rounds
    // also commit a batch of channels only one of them has.
    for round in 0..15 {
        let up: Vec<_> = (1..=20).map(|c| row(c, &format!("a{round}"))).collect();
        let mut down: Vec<_> = (1..=20)
            .rev()
            .map(|c| row(c, &format!("b{round}")))
            .collect();
        if round % 2 == 0 {
            down.extend((100..110).map(|c| row(c, "b only")));
        }
        let (ca, cb) = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join(commit(&mut a, &up, &[]), commit(&mut b, &down, &[])),
        )
        .await
        // A deadlock PostgreSQL detected would be an error (40P01) of one commit, failing `commit`.
        .expect("neither batch waits forever");
        assert_eq!((ca.inserted, cb.inserted), (20, down.len() as u64));
    }
    let by_channel = assert_contiguous(&env).await;
    assert_eq!(by_channel[&1].len(), 30);
    assert_eq!(by_channel[&105].len(), 8);
}

#[tokio::test]
async fn a_running_batcher_numbers_each_channel_in_queue_order() {
    let env = TestEnv::new().await;
    let running = common::start(&env, common::config(&env, "b1", 37, 0.05)).await;
    // 500 messages over 10 channels, pushed in 5 pieces while the batcher drains: batches of 37 and
    // timeout flushes cut the channels at arbitrary points.
    let all: Vec<_> = (0..500)
        .map(|i| {
            let mut message = common::message(i);
            message.channel_id = (i as i64 * 3) % 10 + 1;
            message
        })
        .collect();
    for piece in all.chunks(100) {
        common::push(&env, piece).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    common::wait_rows(&env, 500).await;
    running.stop().await;

    // Per channel, offset order is push order (user_id is the push index + 1), and offsets are 1..=50.
    let rows = env
        .db()
        .await
        .query(
            "SELECT channel_id, user_id FROM messages ORDER BY channel_id, channel_offset",
            &[],
        )
        .await
        .unwrap();
    let mut by_channel: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in rows {
        by_channel.entry(row.get(0)).or_default().push(row.get(1));
    }
    for (channel, user_ids) in &by_channel {
        let expected: Vec<i64> = (0..500_i64)
            .filter(|i| (i * 3) % 10 + 1 == *channel)
            .map(|i| i + 1)
            .collect();
        assert_eq!(user_ids, &expected, "channel {channel}");
    }
    assert_eq!(assert_contiguous(&env).await.len(), 10);
}

#[tokio::test]
async fn the_same_batch_committed_twice_at_once_is_numbered_once() {
    // A fenced batcher committing late while the shard's new holder replays the same elements.
    let env = TestEnv::with_schema().await;
    let (mut a, mut b) = (Store::new(&env.database_url), Store::new(&env.database_url));
    for round in 0..5 {
        let batch = rows(200, 9, &format!("r{round}"));
        let (ca, cb) = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join(commit(&mut a, &batch, &[]), commit(&mut b, &batch, &[])),
        )
        .await
        .expect("neither batch waits forever");
        // One of them inserted every row, the other none (it waited on the heads, then met the rows).
        let mut inserted = [ca.inserted, cb.inserted];
        inserted.sort_unstable();
        assert_eq!(inserted, [0, 200], "round {round}");
    }
    let by_channel = assert_contiguous(&env).await;
    assert_eq!(by_channel.values().map(Vec::len).sum::<usize>(), 1000);
}

/// The direct path's cost: 20 batches of 10,000 rows over 100 channels, through `Store::commit`.
/// `cargo test -p batcher --test offsets -- --ignored --nocapture copy_cost`
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn copy_cost() {
    let env = TestEnv::with_schema().await;
    let mut store = Store::new(&env.database_url);
    commit(&mut store, &rows(1000, 100, "warm-up"), &[]).await;
    let batches: Vec<Vec<Row<'static>>> = (0..20)
        .map(|b| rows(10_000, 100, &format!("measured {b} with some content")))
        .collect();
    let started = std::time::Instant::now();
    for batch in &batches {
        assert_eq!(commit(&mut store, batch, &[]).await.inserted, 10_000);
    }
    let elapsed = started.elapsed();
    println!(
        "copy_cost: 20 x 10,000 rows in {elapsed:?} ({:.1} µs/row)",
        elapsed.as_secs_f64() * 1e6 / 200_000.0
    );
}
