//! The Redis pub/sub subscriber: every valid `batch_persisted` payload on `{prefix}:events` goes, unchanged, onto
//! the broadcast channel the WebSocket clients read.
//!
//! The subscription uses a RESP3 connection (Redis 6 or newer) because on it we can also name the connection
//! (`CLIENT SETNAME notifier-<prefix>`), which lets operators and tests find it in `CLIENT LIST`.
//!
//! On a Redis Cluster, a `PUBLISH` on any node reaches every node, so the relay subscribes on one seed node and
//! moves to the next seed when that one's connection fails.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::Utf8Bytes;
use pipeline::{connection::RedisTarget, events::ServerEvent, streak::FailureStreak};
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// First wait before reconnecting; doubled after each failed attempt up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds connecting and each command, so a hung Redis ends the attempt instead of stalling the relay.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the subscriber needs.
#[derive(Debug)]
pub(crate) struct Relay {
    /// The server, or every seed node of the cluster; sessions go round them.
    clients: Vec<redis::Client>,
    channel: String,
    client_name: String,
    events: broadcast::Sender<Utf8Bytes>,
    /// Notified after every (re)subscription: events published while the relay was away are lost, and the
    /// channel feeds then re-read the heads from PostgreSQL.
    subscribed: Arc<Notify>,
}

impl Relay {
    /// A subscriber of `channel` on `target` whose connection is named `client_name`.
    pub(crate) fn new(
        target: &RedisTarget,
        channel: String,
        client_name: String,
        events: broadcast::Sender<Utf8Bytes>,
        subscribed: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let clients = target
            .pubsub_clients()
            .into_iter()
            .map(|client| {
                let info = client.get_connection_info().clone();
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                redis::Client::open(info.set_redis_settings(resp3))
            })
            .collect::<Result<Vec<_>, _>>()?;
        anyhow::ensure!(!clients.is_empty(), "no Redis node to subscribe on");
        Ok(Self {
            clients,
            channel,
            client_name,
            events,
            subscribed,
        })
    }

    /// One connection's life: connect, name it, subscribe, relay until it drops. `subscribed` is called once the
    /// subscription is in place.
    async fn session(&self, attempt: usize, subscribed: impl FnOnce()) -> redis::RedisResult<()> {
        let client = &self.clients[attempt % self.clients.len()];
        // Unbounded only between the connection's driver and this loop, which does no I/O per message
        // (parse and a non-blocking broadcast send), so it drains as fast as Redis fills it.
        let (pushes, mut received) = mpsc::unbounded_channel::<PushInfo>();
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
        conn.subscribe(&self.channel).await?;
        tracing::info!(channel = %self.channel, "subscribed to batch events");
        subscribed();
        self.subscribed.notify_one();
        while let Some(push) = received.recv().await {
            match push.kind {
                PushKind::Message => self.relay(push),
                PushKind::Disconnection => break,
                _ => {}
            }
        }
        Ok(())
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
                tracing::warn!(channel = %self.channel, "dropped a payload that is not a batch_persisted event");
            }
        }
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
    for attempt in 0.. {
        let mut was_subscribed = false;
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = relay.session(attempt, || was_subscribed = true) => outcome,
        };
        if was_subscribed {
            backoff.reset();
            streak.succeeded();
        }
        match outcome {
            Ok(()) => tracing::warn!(channel = %relay.channel, "subscription lost; reconnecting"),
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
