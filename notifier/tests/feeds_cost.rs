//! A measurement, not a test (`cargo test -p notifier --release --test feeds_cost -- --ignored --nocapture`):
//! what the batcher's post-commit event should carry for the channel feeds. Either each channel's offset
//! range (the notifier then reads the rows: one query per batch for every subscribed channel), or the rows
//! themselves. For a batch of 1,000 and 10,000 messages over 50 channels (100-byte contents): the event's
//! size, and the notifier's time per message to turn the event into encoded messages (parse, and for ranges
//! the PostgreSQL query, whose server time is inside the measured wait). Results are in docs/feeds.md.

use std::time::{Duration, Instant};

use chrono::Utc;
use pipeline::{
    api::ChannelMessage,
    events::{BatchAnnouncement, BatchPersisted, ChannelRange},
};
use serde::{Deserialize, Serialize};
use testkit::TestEnv;
use uuid::Uuid;

const CHANNELS: i64 = 50;
const ROUNDS: u32 = 20;

/// The "rows" option: the event with every row.
#[derive(Serialize, Deserialize)]
struct WithRows {
    #[serde(flatten)]
    batch: BatchPersisted,
    rows: Vec<ChannelMessage>,
}

/// What a notifier reads of a ranges event (the ids are skipped).
#[derive(Deserialize)]
struct RangesOnly {
    channels: Vec<ChannelRange>,
}

/// What a notifier reads of a rows event (the ids are skipped).
#[derive(Deserialize)]
struct RowsOnly {
    rows: Vec<ChannelMessage>,
}

fn encode(message: &ChannelMessage) -> usize {
    serde_json::to_string(message).unwrap().len()
}

#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn event_ranges_or_rows() {
    let env = TestEnv::with_schema().await;
    let db = env.db().await;
    for n in [1_000_i64, 10_000] {
        db.batch_execute("TRUNCATE messages; TRUNCATE channel_heads")
            .await
            .unwrap();
        // n rows, channel = i % 50 + 1, offsets 1.. per channel, as a batch commits them.
        db.execute(
            "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at, channel_offset) \
             SELECT gen_random_uuid(), 1, i % 50 + 1, repeat('x', 100), now(), i / 50 + 1 \
             FROM generate_series(0, $1::bigint - 1) AS i",
            &[&n],
        )
        .await
        .unwrap();
        db.batch_execute("ANALYZE messages").await.unwrap();
        let rows: Vec<ChannelMessage> = db
            .query(
                "SELECT channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at \
                 FROM messages ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(pipeline::schema::channel_message)
            .collect();
        let batch = BatchPersisted {
            ids: rows.iter().map(|r| r.message_id).collect::<Vec<Uuid>>(),
            batch_id: 1,
            batch_size: n as u64,
            worker_timestamp: Utc::now(),
            reason: "size".into(),
            batcher_id: "b".into(),
            dead_letters: 0,
        };
        let per_channel = n / CHANNELS;
        let channels: Vec<ChannelRange> = (1..=CHANNELS)
            .map(|channel_id| ChannelRange {
                channel_id,
                first: 1,
                last: per_channel,
            })
            .collect();
        let plain = serde_json::to_string(&batch).unwrap();
        let ranges_event = serde_json::to_string(&BatchAnnouncement {
            batch: batch.clone(),
            channels: channels.clone(),
        })
        .unwrap();
        let rows_event = serde_json::to_string(&WithRows {
            batch: batch.clone(),
            rows: rows.clone(),
        })
        .unwrap();

        // Rows: parse the rows out of the event, encode each for the subscribers.
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let parsed: RowsOnly = serde_json::from_str(&rows_event).unwrap();
            let bytes: usize = parsed.rows.iter().map(encode).sum();
            assert!(bytes > 0);
        }
        let rows_cost = started.elapsed() / ROUNDS;

        // Ranges: parse the ranges, one query for all channels, decode and encode each row.
        let statement = db
            .prepare(
                "SELECT m.* FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(channel_id, after, upto) \
                 CROSS JOIN LATERAL (SELECT channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at \
                     FROM messages WHERE channel_id = r.channel_id AND channel_offset > r.after AND channel_offset <= r.upto \
                     ORDER BY channel_offset) m ORDER BY m.channel_id, m.channel_offset",
            )
            .await
            .unwrap();
        let mut query_time = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..ROUNDS {
            let parsed: RangesOnly = serde_json::from_str(&ranges_event).unwrap();
            let ids: Vec<i64> = parsed.channels.iter().map(|r| r.channel_id).collect();
            let afters: Vec<i64> = parsed.channels.iter().map(|r| r.first - 1).collect();
            let uptos: Vec<i64> = parsed.channels.iter().map(|r| r.last).collect();
            let asked = Instant::now();
            let found = db
                .query(&statement, &[&ids, &afters, &uptos])
                .await
                .unwrap();
            query_time += asked.elapsed();
            assert_eq!(found.len() as i64, n);
            let bytes: usize = found
                .iter()
                .map(|row| encode(&pipeline::schema::channel_message(row)))
                .sum();
            assert!(bytes > 0);
        }
        let ranges_cost = started.elapsed() / ROUNDS;
        let query_cost = query_time / ROUNDS;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "BATCH {n}: event without channels {} B; +ranges {} B (+{} B); with rows {} B (+{} B, {:.0} B/message)",
            plain.len(),
            ranges_event.len(),
            ranges_event.len() - plain.len(),
            rows_event.len(),
            rows_event.len() - plain.len(),
            (rows_event.len() - plain.len()) as f64 / n as f64,
        );
        println!(
            "BATCH {n}: notifier per message: rows {:.2} µs; ranges {:.2} µs, of which the query (PostgreSQL's time included) {:.2} µs",
            per(rows_cost),
            per(ranges_cost),
            per(query_cost),
        );
    }
}
