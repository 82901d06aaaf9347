//! The page's state: one signal per concern, shared by every component through the context, and how the
//! WebSocket's events update it.

use leptos::prelude::*;
use pipeline::events::{BatchPersisted, ServerEvent, Stats};

use crate::model::{
    batches::{BatchRow, BatchTimer, RecentBatches},
    channel::ChannelFeed,
    config::ClientConfig,
    connection::Connection,
    feed::{Commit, Feed},
    health::{BatcherWatch, ServiceHealth},
    latency::LatencyWindow,
    throughput::Throughput,
};
use crate::net::{clock::now_ms, socket::SocketEvent};

/// Every signal of the page. `Copy`, so closures take it by value.
#[derive(Debug, Clone, Copy)]
pub struct Store {
    pub config: RwSignal<ClientConfig>,
    pub connection: RwSignal<Connection>,
    /// The latest `stats_update` (`None` before the first).
    pub stats: RwSignal<Option<Stats>>,
    /// How many `stats_update`s arrived (shown as `data-stats-seq`, so tests can tell updates apart).
    pub stats_seq: RwSignal<u64>,
    pub feed: RwSignal<Feed>,
    pub throughput: RwSignal<Throughput>,
    pub latency: RwSignal<LatencyWindow>,
    pub batches: RwSignal<RecentBatches>,
    pub timer: RwSignal<BatchTimer>,
    pub batchers: RwSignal<BatcherWatch>,
    pub ingestor_health: RwSignal<ServiceHealth>,
    pub notifier_health: RwSignal<ServiceHealth>,
    /// `API_KEYS`: the bearer token for sending and bursts, when the ingestor requires one (empty: none).
    pub api_key: RwSignal<String>,
    /// The channel view (`None` until a channel is picked).
    pub channel: RwSignal<Option<ChannelFeed>>,
    /// The `/ws/channels` connection, started with the first channel picked.
    pub channel_connection: RwSignal<Connection>,
    /// The time, ticking a few times a second, for countdowns and "ago" texts.
    pub now: RwSignal<f64>,
}

impl Store {
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config: RwSignal::new(config),
            connection: RwSignal::new(Connection::Connecting),
            stats: RwSignal::new(None),
            stats_seq: RwSignal::new(0),
            feed: RwSignal::new(Feed::default()),
            throughput: RwSignal::new(Throughput::default()),
            latency: RwSignal::new(LatencyWindow::default()),
            batches: RwSignal::new(RecentBatches::default()),
            timer: RwSignal::new(BatchTimer::default()),
            batchers: RwSignal::new(BatcherWatch::default()),
            ingestor_health: RwSignal::new(ServiceHealth::Checking),
            notifier_health: RwSignal::new(ServiceHealth::Checking),
            api_key: RwSignal::new(String::new()),
            channel: RwSignal::new(None),
            channel_connection: RwSignal::new(Connection::Connecting),
            now: RwSignal::new(now_ms()),
        }
    }

    /// The store of the page (provided by the app).
    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Applies what the socket reports; returns `true` when a reconnection just opened (the caller then
    /// recovers what was missed).
    pub fn on_socket(&self, event: SocketEvent) -> bool {
        match event {
            SocketEvent::Text(text) => {
                match serde_json::from_str::<ServerEvent>(&text) {
                    Ok(ServerEvent::StatsUpdate(stats)) => self.on_stats(stats),
                    Ok(ServerEvent::BatchPersisted(batch)) => self.on_batch(&batch),
                    // A frame of a newer protocol: nothing the page can show.
                    Err(_) => {}
                }
                false
            }
            other => track(self.connection, &other) == Some(true),
        }
    }

    fn on_stats(&self, stats: Stats) {
        let now = now_ms();
        self.throughput.update(|t| t.observe(now, &stats));
        self.timer.update(|t| t.observe(now, &stats));
        self.batchers.update(|b| b.stats(now, stats.queue_depth));
        self.stats.set(Some(stats));
        self.stats_seq.update(|seq| *seq += 1);
    }

    fn on_batch(&self, batch: &BatchPersisted) {
        let committed_ms = batch.worker_timestamp.timestamp_millis();
        self.latency
            .update(|l| l.record_batch(&batch.ids, committed_ms));
        self.feed.update(|f| {
            f.persist(
                &batch.ids,
                Commit {
                    batch_id: Some(batch.batch_id),
                    committed_ms,
                },
            );
        });
        self.batches.update(|b| b.push(BatchRow::from(batch)));
        self.timer.update(BatchTimer::committed);
        self.batchers.update(|b| b.commit(now_ms()));
    }

    /// After `DELETE /reset`: everything the page accumulated is gone from the pipeline too.
    pub fn forget_history(&self) {
        self.feed.update(Feed::clear);
        self.throughput.update(Throughput::clear);
        self.latency.update(LatencyWindow::clear);
        self.batches.update(RecentBatches::clear);
        self.timer.update(BatchTimer::committed);
    }
}

/// Shows a socket's state changes in `connection`; `Some(reconnected)` when a connection just opened.
pub fn track(connection: RwSignal<Connection>, event: &SocketEvent) -> Option<bool> {
    match *event {
        SocketEvent::Connecting => {
            // While reconnecting, keep saying so (with the attempt number) rather than "connecting".
            if !connection.get_untracked().is_reconnecting() {
                connection.set(Connection::Connecting);
            }
        }
        SocketEvent::Open { reconnected } => {
            connection.set(Connection::Connected);
            return Some(reconnected);
        }
        SocketEvent::Lost { attempt, retry_in } => {
            connection.set(Connection::Reconnecting {
                attempt,
                retry_at_ms: now_ms() + retry_in.as_secs_f64() * 1_000.0,
            });
        }
        SocketEvent::Text(_) => {}
    }
    None
}
