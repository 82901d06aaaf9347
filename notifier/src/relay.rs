//! The Redis pub/sub subscriber: every valid `batch_persisted` payload the batchers publish goes, unchanged,
//! onto the broadcast channel the WebSocket clients and the channel feeds read.
//!
//! On one Redis it subscribes to `{prefix}:events` on a RESP3 connection (Redis 6 or newer), named
//! `notifier-<prefix>` (`CLIENT SETNAME`) so operators and tests can find it in `CLIENT LIST`.
//!
//! On a Redis Cluster the batchers publish each shard's events with `SPUBLISH` on the shard's own channel
//! (`pipeline::keys::Events`), and the relay subscribes (`SSUBSCRIBE`) to every shard's channel through
//! redis-rs's cluster connection, which sends each subscription to the master holding the channel's slot and
//! subscribes again after a failover or a slot move. Events then never cross the cluster bus, whose links
//! Redis 7.0 leaves without `TCP_NODELAY` (one event in ten arrived 30–35 ms late that way).

use std::{sync::Arc, time::Duration};

use axum::extract::ws::Utf8Bytes;
use futures_util::future::try_join_all;
use pipeline::{
    connection::RedisTarget,
    events::ServerEvent,
    keys::{Events, Keys},
    streak::FailureStreak,
};
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, cluster::ClusterClient};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// First wait before reconnecting; doubled after each failed attempt up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds connecting and each command, so a hung Redis ends the attempt instead of stalling the relay.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the events are subscribed to.
#[derive(Debug)]
enum Source {
    /// One Redis: every shard publishes on one channel.
    Single {
        client: redis::Client,
        channel: String,
    },
    /// A Redis Cluster: each shard publishes on its own channel (sharded pub/sub).
    Cluster {
        seeds: Vec<String>,
        channels: Vec<String>,
    },
}

/// A session's subscribed connection.
enum Subscription {
    Single(
        #[expect(
            dead_code,
            reason = "held, never read: dropping it ends the subscription"
        )]
        redis::aio::MultiplexedConnection,
    ),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Everything the subscriber needs.
#[derive(Debug)]
pub(crate) struct Relay {
    source: Source,
    client_name: String,
    events: broadcast::Sender<Utf8Bytes>,
    /// Notified after every (re)subscription: events published while the relay was away are lost, and the
    /// channel feeds then re-read the heads from PostgreSQL.
    subscribed: Arc<Notify>,
}

impl Relay {
    /// A subscriber of the batch events of `keys` on `target`, whose connection (on one Redis) is named
    /// `client_name`.
    pub(crate) fn new(
        target: &RedisTarget,
        keys: &Keys,
        client_name: String,
        events: broadcast::Sender<Utf8Bytes>,
        subscribed: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let source = match target {
            RedisTarget::Single(client) => {
                let info = client.get_connection_info().clone();
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                Source::Single {
                    client: redis::Client::open(info.set_redis_settings(resp3))?,
                    channel: keys.events(),
                }
            }
            RedisTarget::Cluster(_, seeds) => Source::Cluster {
                seeds: seeds.clone(),
                channels: Events::sharded_channels(keys),
            },
        };
        Ok(Self {
            source,
            client_name,
            events,
            subscribed,
        })
    }

    /// One connection's life: connect, subscribe, relay until it drops. `subscribed` is called once the
    /// subscription is in place.
    async fn session(&self, subscribed: impl FnOnce()) -> redis::RedisResult<()> {
        // Unbounded only between the connection's driver and this loop, which does no I/O per message
        // (parse and a non-blocking broadcast send), so it drains as fast as Redis fills it.
        let (pushes, mut received) = mpsc::unbounded_channel::<PushInfo>();
        // Held for the session: dropping the connection ends its subscriptions.
        let mut subscription = self.subscribe(pushes).await?;
        subscribed();
        self.subscribed.notify_one();
        while let Some(push) = received.recv().await {
            match (push.kind.clone(), &mut subscription) {
                (PushKind::Message | PushKind::SMessage, _) => self.relay(push),
                // One Redis: the subscription is gone with the connection.
                (PushKind::Disconnection, Subscription::Single(_)) => break,
                // The relay never unsubscribes: a node that no longer holds a channel's slot (a failover made
                // it a replica, or the slot moved) ends the subscription itself.
                (PushKind::SUnsubscribe, Subscription::Cluster(conn)) => {
                    if let Some(channel) = unsubscribed_channel(&push) {
                        tracing::info!(%channel, "a shard's events channel moved; subscribing again");
                        // The client's slot map may still name that node, and a replica accepts sharded
                        // subscriptions (fed over the cluster bus, late). A keyed read in the channel's slot
                        // gets MOVED from it, which refreshes the map, so the subscription goes to the master.
                        let _: redis::RedisResult<bool> =
                            redis::cmd("EXISTS").arg(&channel).query_async(conn).await;
                        conn.ssubscribe(&channel).await?;
                    }
                }
                // A cluster node's connection dropped, or channels were subscribed (again): events published
                // meanwhile are lost, so the feeds re-read the heads. redis-rs reconnects and subscribes again
                // by itself.
                (PushKind::Disconnection | PushKind::SSubscribe, Subscription::Cluster(_)) => {
                    self.subscribed.notify_one()
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Connects and subscribes; pushes (messages, subscription changes, disconnection) go to `pushes`.
    async fn subscribe(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> redis::RedisResult<Subscription> {
        match &self.source {
            Source::Single { client, channel } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    .set_push_sender(pushes);
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(&self.client_name)
                    .query_async::<()>(&mut conn)
                    .await?;
                conn.subscribe(channel).await?;
                tracing::info!(%channel, "subscribed to batch events");
                Ok(Subscription::Single(conn))
            }
            Source::Cluster { seeds, channels } => {
                let client = ClusterClient::builder(seeds.iter().map(String::as_str))
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .connection_timeout(REDIS_TIMEOUT)
                    .response_timeout(REDIS_TIMEOUT)
                    .build()?;
                let conn = client.get_async_connection().await?;
                // One channel per command: a command's channels must share a slot.
                try_join_all(channels.iter().map(|channel| {
                    let mut conn = conn.clone();
                    async move { conn.ssubscribe(channel).await }
                }))
                .await?;
                tracing::info!(
                    channels = channels.len(),
                    "subscribed to every shard's batch events (sharded pub/sub)"
                );
                Ok(Subscription::Cluster(conn))
            }
        }
    }

    fn relay(&self, push: PushInfo) {
        let payload = redis::Msg::from_push_info(push).map(|msg| msg.get_payload_bytes().to_vec());
        match payload.and_then(batch_persisted) {
            Some(text) => {
                metrics::counter!("notifier_events_relayed_total").increment(1);
                // An error only means no client is connected right now.
                let _ = self.events.send(text);
            }
            None => {
                metrics::counter!("notifier_events_dropped_total").increment(1);
                tracing::warn!("dropped a payload that is not a batch_persisted event");
            }
        }
    }
}

/// The channel a `sunsubscribe` push names.
fn unsubscribed_channel(push: &PushInfo) -> Option<String> {
    match push.data.first()? {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}

/// The payload as text if it is a `batch_persisted` event, `None` otherwise (pure).
fn batch_persisted(payload: Vec<u8>) -> Option<Utf8Bytes> {
    let text = String::from_utf8(payload).ok()?;
    match serde_json::from_str::<ServerEvent>(&text) {
        Ok(ServerEvent::BatchPersisted(_)) => Some(text.into()),
        _ => None,
    }
}

/// Relays until `shutdown` is cancelled, reconnecting with capped exponential backoff. Never fails.
pub(crate) async fn run(relay: Relay, shutdown: CancellationToken) {
    let mut backoff = pipeline::backoff::Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut streak = FailureStreak::default();
    loop {
        let mut was_subscribed = false;
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = relay.session(|| was_subscribed = true) => outcome,
        };
        if was_subscribed {
            backoff.reset();
            streak.succeeded();
        }
        match outcome {
            Ok(()) => tracing::warn!("subscription to batch events lost; reconnecting"),
            // Log a failure streak once; the retries that follow are only worth a debug line.
            Err(error) if streak.failed() => {
                tracing::warn!(%error, "cannot subscribe to batch events; retrying with backoff");
            }
            Err(error) => {
                tracing::debug!(%error, "still cannot subscribe to batch events")
            }
        }
        if !pipeline::shutdown::pause(backoff.next_delay(), &shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_persisted_payload_is_kept_byte_for_byte() {
        let payload = r#"{"type":"batch_persisted","ids":["00000000-0000-0000-0000-000000000001"],"batch_id":7,"batch_size":1,"worker_timestamp":"2024-01-01T00:00:00Z","extra":true}"#;
        let text = batch_persisted(payload.as_bytes().to_vec()).expect("valid event");
        assert_eq!(text.as_str(), payload);
    }

    #[test]
    fn anything_else_is_dropped() {
        for bad in [
            &b"not json"[..],
            br#"{"type":"stats_update","total_messages":1}"#,
            br#"{"type":"batch_persisted","ids":["not-a-uuid"],"batch_id":1,"batch_size":1,"worker_timestamp":"2024-01-01T00:00:00Z"}"#,
            br#"{"ids":[],"batch_id":1}"#,
            b"\xff\xfe",
        ] {
            assert!(batch_persisted(bad.to_vec()).is_none(), "{:?} relayed", String::from_utf8_lossy(bad));
        }
    }
}
