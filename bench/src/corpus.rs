//! The messages the benchmark sends, and the same rows for the ceilings, so every figure moves the same
//! bytes: request bodies for the load, a queued element for `redis-benchmark`, CSV rows for `psql \copy`.
//!
//! Bodies are built once before a load starts: the generator shares two cores with the pipeline, so it
//! spends them on sending, not on formatting JSON.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pipeline::api::NewMessage;
use pipeline::queued::QueuedMessage;
use uuid::Uuid;

/// Message number `index`: ids cycle over 10,000 users and 100 channels; content is ~70 characters,
/// the size of a chat line (the seed's simulated messages are of the same order).
pub fn message(index: u64) -> NewMessage {
    NewMessage {
        user_id: 1 + (index % 10_000) as i64,
        channel_id: 1 + (index % 100) as i64,
        content: format!("bench message {index}: the quick brown fox jumps over the lazy dog"),
    }
}

/// `count` distinct `POST /messages` bodies, cycled through by the load.
pub fn single_bodies(count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|index| Bytes::from(serde_json::to_vec(&message(index)).expect("a message encodes")))
        .collect()
}

/// `count` request bodies of `size` messages each, over channels `1..=channels` in turn, continuing from
/// one body to the next (the fan-out load: each subscribed channel gets its share). A body of one message
/// is a `POST /messages` object, a larger one a `POST /messages/batch` array.
pub fn channel_bodies(count: u64, size: u64, channels: u64) -> Vec<Bytes> {
    let message = |index: u64| NewMessage {
        channel_id: 1 + (index % channels) as i64,
        ..message(index)
    };
    (0..count)
        .map(|body| {
            let first = body * size;
            let encoded = if size == 1 {
                serde_json::to_vec(&message(first))
            } else {
                serde_json::to_vec(&(first..first + size).map(message).collect::<Vec<_>>())
            };
            Bytes::from(encoded.expect("messages encode"))
        })
        .collect()
}

/// A `POST /messages/batch` body of `size` messages starting at `first`.
pub fn batch_body(first: u64, size: u64) -> Bytes {
    let messages: Vec<NewMessage> = (first..first + size).map(message).collect();
    Bytes::from(serde_json::to_vec(&messages).expect("a batch encodes"))
}

/// Message `index` as the ingestor would queue it (the element `redis-benchmark` pushes).
pub fn queued_element(index: u64) -> String {
    let message = message(index);
    let queued = QueuedMessage {
        tracking_id: Uuid::now_v7(),
        user_id: message.user_id,
        channel_id: message.channel_id,
        content: message.content,
        created_at: Utc::now(),
    };
    serde_json::to_string(&queued).expect("an element encodes")
}

/// The columns a CSV row fills, in order (the others take their defaults, as the batcher's rows do).
pub const CSV_COLUMNS: &str = "tracking_id, user_id, channel_id, content, created_at";

/// Appends message `index` as one CSV row (RFC 4180: content quoted, quotes doubled).
pub fn csv_row(out: &mut String, index: u64, tracking_id: Uuid, created_at: DateTime<Utc>) {
    use std::fmt::Write;
    let message = message(index);
    let content = message.content.replace('"', "\"\"");
    let created_at = created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    writeln!(
        out,
        "{tracking_id},{},{},\"{content}\",{created_at}",
        message.user_id, message.channel_id
    )
    .expect("writing to a String cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_valid_and_vary() {
        let first = message(0);
        assert_eq!((first.user_id, first.channel_id), (1, 1));
        let other = message(10_101);
        assert_eq!((other.user_id, other.channel_id), (102, 2));
        assert!(other.content.contains("10101"));
        assert!(other.content.chars().count() <= pipeline::api::MAX_CONTENT_CHARS);
    }

    #[test]
    fn channels_spread_over_every_shard_of_the_cluster_run() {
        // The cluster rows use 6 shards: each must get work from the first 100 messages (one of each channel).
        let mut per_shard = [0_u32; 6];
        for index in 0..100 {
            per_shard[pipeline::keys::shard_of(message(index).channel_id, 6) as usize] += 1;
        }
        assert!(per_shard.iter().all(|&n| n >= 5), "{per_shard:?}");
        assert_eq!(per_shard.iter().sum::<u32>(), 100);
    }

    #[test]
    fn bodies_are_the_api_json() {
        let bodies = single_bodies(3);
        assert_eq!(bodies.len(), 3);
        let parsed: NewMessage = serde_json::from_slice(&bodies[2]).unwrap();
        assert_eq!(parsed, message(2));

        let batch: Vec<NewMessage> = serde_json::from_slice(&batch_body(5, 4)).unwrap();
        assert_eq!(batch, (5..9).map(message).collect::<Vec<_>>());
    }

    #[test]
    fn channel_bodies_take_the_channels_in_turn() {
        let channel = |message: &NewMessage| message.channel_id;
        let singles: Vec<i64> = channel_bodies(7, 1, 3)
            .iter()
            .map(|body| channel(&serde_json::from_slice(body).unwrap()))
            .collect();
        assert_eq!(singles, [1, 2, 3, 1, 2, 3, 1]);

        // Batches continue the round where the previous body left it.
        let batches: Vec<Vec<i64>> = channel_bodies(3, 2, 3)
            .iter()
            .map(|body| {
                let messages: Vec<NewMessage> = serde_json::from_slice(body).unwrap();
                messages.iter().map(channel).collect()
            })
            .collect();
        assert_eq!(batches, [[1, 2], [3, 1], [2, 3]]);
    }

    #[test]
    fn queued_elements_decode_as_the_batcher_reads_them() {
        let element: QueuedMessage = serde_json::from_str(&queued_element(7)).unwrap();
        assert_eq!(element.content, message(7).content);
    }

    #[test]
    fn csv_rows_quote_the_content() {
        let mut out = String::new();
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        csv_row(&mut out, 3, Uuid::nil(), at);
        assert_eq!(
            out,
            "00000000-0000-0000-0000-000000000000,4,4,\"bench message 3: the quick brown fox jumps over \
             the lazy dog\",2023-11-14T22:13:20.123456Z\n"
        );
    }
}
