//! `batch_persisted` events, as a dashboard receives them from the notifier's `GET /ws/stats`.
//!
//! Each event names the ids it made durable and the commit time (`worker_timestamp`); joined with each id's
//! `queued_at` from its 201, that is the creation→commit latency, both timestamps taken by the services on
//! this machine's clock with microsecond precision. The receive time on our monotonic clock, against the
//! request's due time, gives the latency a client sees: due → told it is durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use pipeline::events::ServerEvent;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::load::Accepted;
use crate::samples::Samples;

/// How long connecting and the first `stats_update` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One received `batch_persisted`.
#[derive(Debug, Clone)]
pub struct Persisted {
    pub received: Instant,
    pub worker_timestamp: DateTime<Utc>,
    pub ids: Vec<Uuid>,
}

/// A WebSocket client recording every `batch_persisted` until stopped.
#[derive(Debug)]
pub struct EventLog {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<Vec<Persisted>>>,
}

impl EventLog {
    /// Connects and returns once subscribed: the notifier subscribes a client before sending its first
    /// `stats_update`, so after that message no event is missed.
    pub async fn subscribe(notifier: SocketAddr) -> anyhow::Result<Self> {
        let url = format!("ws://{notifier}/ws/stats");
        let (mut socket, _) =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(&url))
                .await
                .context("WebSocket connect timed out")?
                .with_context(|| format!("Failed to connect to {url}"))?;
        tokio::time::timeout(CONNECT_TIMEOUT, socket.next())
            .await
            .context("no first message on /ws/stats")?
            .context("/ws/stats closed at once")??;
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                let message = tokio::select! {
                    () = until.cancelled() => break,
                    message = socket.next() => message,
                };
                let Some(message) = message else {
                    bail!("the notifier closed /ws/stats");
                };
                let received = Instant::now();
                let Message::Text(text) = message? else {
                    continue;
                };
                if let Ok(ServerEvent::BatchPersisted(event)) = serde_json::from_str(&text) {
                    events.push(Persisted {
                        received,
                        worker_timestamp: event.worker_timestamp,
                        ids: event.ids,
                    });
                }
            }
            let _ = socket.close(None).await;
            Ok(events)
        });
        Ok(Self { stop, task })
    }

    /// Stops listening; every event received so far.
    pub async fn stop(self) -> anyhow::Result<Vec<Persisted>> {
        self.stop.cancel();
        self.task.await.context("event task panicked")?
    }
}

/// Latencies of the accepted messages found in `events`.
#[derive(Debug, Default)]
pub struct Latencies {
    /// `worker_timestamp − queued_at`: creation → commit.
    pub commit: Samples,
    /// Due time → event received: what a client waiting for durability sees.
    pub notified: Samples,
    /// Accepted messages no event mentioned.
    pub missing: usize,
}

/// The longest time between two consecutive commits (by `worker_timestamp`), if there were two.
pub fn longest_gap(events: &[Persisted]) -> Option<Duration> {
    let mut times: Vec<DateTime<Utc>> = events.iter().map(|e| e.worker_timestamp).collect();
    times.sort_unstable();
    times
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).to_std().unwrap_or_default())
        .max()
}

/// Joins accepted messages with the events naming them (a replayed id counts at its first event).
pub fn join(accepted: &[Accepted], events: &[Persisted]) -> Latencies {
    let mut pending: HashMap<Uuid, &Accepted> = accepted.iter().map(|a| (a.id, a)).collect();
    let mut latencies = Latencies {
        commit: Samples::with_capacity(accepted.len()),
        notified: Samples::with_capacity(accepted.len()),
        missing: 0,
    };
    for event in events {
        for id in &event.ids {
            if let Some(message) = pending.remove(id) {
                let commit = event.worker_timestamp - message.queued_at;
                latencies
                    .commit
                    .record_signed_micros(commit.num_microseconds().unwrap_or(i64::MAX));
                latencies
                    .notified
                    .record(event.received.saturating_duration_since(message.due));
            }
        }
    }
    latencies.missing = pending.len();
    latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_messages_are_joined_with_their_first_event() {
        let now = Instant::now();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let ms = chrono::Duration::milliseconds;
        let accepted: Vec<Accepted> = (0..3)
            .map(|i| Accepted {
                id: Uuid::from_u128(i),
                queued_at: t0 + ms(i as i64),
                due: now,
            })
            .collect();
        let events = [
            Persisted {
                received: now + Duration::from_millis(60),
                worker_timestamp: t0 + ms(50),
                ids: vec![Uuid::from_u128(0), Uuid::from_u128(1), Uuid::from_u128(99)],
            },
            // A replay of id 1 later does not count again.
            Persisted {
                received: now + Duration::from_millis(500),
                worker_timestamp: t0 + ms(400),
                ids: vec![Uuid::from_u128(1)],
            },
        ];
        let latencies = join(&accepted, &events);
        assert_eq!(latencies.missing, 1, "id 2 was never persisted");
        let commit = latencies.commit.summary().unwrap();
        assert_eq!(commit.count, 2);
        assert_eq!(commit.max, Duration::from_millis(50));
        assert_eq!(commit.p50, Duration::from_millis(49));
        let notified = latencies.notified.summary().unwrap();
        assert_eq!(notified.max, Duration::from_millis(60));
        assert_eq!(longest_gap(&events), Some(Duration::from_millis(350)));
        assert_eq!(longest_gap(&events[..1]), None);
    }
}
