//! The `pipeline_queue_depth` gauge: messages waiting in Redis plus held by batchers, over every shard, read
//! every second on a connection of its own (so a slow read never delays lease renewals or moves).

use std::time::Duration;

use pipeline::{keys::Keys, shutdown::Ticks};
use tokio_util::sync::CancellationToken;

use crate::link::RedisLink;

/// How often the gauge is read.
const INTERVAL: Duration = Duration::from_secs(1);

/// Updates the gauge every [`INTERVAL`] until `stop`; a failed read keeps the last value.
pub async fn run(mut link: RedisLink, keys: Keys, queue_shards: u32, stop: CancellationToken) {
    let mut ticks = Ticks::every(INTERVAL);
    while ticks.next(&stop).await {
        let read = link
            .call(INTERVAL, |mut conn| {
                let keys = &keys;
                async move { pipeline::depth::queue_depth(&mut conn, keys, queue_shards).await }
            })
            .await;
        if let Ok(depth) = read {
            metrics::gauge!("pipeline_queue_depth").set(depth as f64);
        }
    }
}
