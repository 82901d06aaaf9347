//! The hub: one per notifier. For each channel that has subscribers it knows the last offset it has fanned
//! out (`delivered`) and the highest offset it has heard of (`target`); whenever a channel is behind, it reads
//! the missing rows `(delivered, target]` from PostgreSQL (one query per round for every such channel) and
//! puts them, in order, on the channel's broadcast, which every subscriber of the channel reads.
//!
//! Targets come from the batchers' `batch_persisted` events (`channels`: each channel's committed offsets),
//! and, as a safety net for an event that was lost (a relay reconnect) or that came from an older batcher,
//! from `channel_heads`, re-read after each relay reconnect and every [`HEADS_EVERY`].
//!
//! The same re-read notices a reset (`DELETE /reset`: `pipeline_totals.resets` changed, or a head below what
//! was fanned out): offsets start again at 1, so the hub fans the channel out again from its start and
//! tells its subscribers to start over (each feed's `restarts`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;
use pipeline::events::ChannelRange;
use serde::Deserialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    protocol::Delivered,
    resume,
    store::{Heads, Ranges, ReadError, Store},
};

/// Messages a channel's broadcast keeps for subscribers that have not taken them yet; one further behind
/// gets `lagged` and is caught up from PostgreSQL.
pub(crate) const FEED_CAPACITY: usize = 1024;
/// Most rows the hub reads per channel per query (a channel further behind takes several rounds).
const FETCH_CAP: i64 = 1000;
/// Most query rounds per wake-up, so events and the heads timer are heard between long catch-ups.
const MAX_ROUNDS: usize = 16;
/// How often the heads of subscribed channels are re-read, in case an event was lost.
pub(crate) const HEADS_EVERY: Duration = Duration::from_secs(1);
/// Events taken at once before reading, so a burst of events costs one query.
const EVENTS_PER_ROUND: usize = 1024;

/// One channel with subscribers.
#[derive(Debug)]
struct Feed {
    sender: broadcast::Sender<Arc<Delivered>>,
    /// The last offset put on `sender`; `None` until the channel's head is read.
    delivered: Option<i64>,
    /// The highest offset known to be committed.
    target: i64,
    /// Counts the channel's restarts from offset 1 (resets) seen by this hub.
    restarts: watch::Sender<u64>,
}

/// A subscriber's hold on a channel's feed.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The channel's live messages.
    pub(crate) live: broadcast::Receiver<Arc<Delivered>>,
    /// Changes when the channel starts over from offset 1 (a reset): what was delivered is another history.
    pub(crate) restarts: watch::Receiver<u64>,
    /// The channel's head when it was joined.
    pub(crate) head: i64,
}

/// The channels with subscribers; shared by the hub's task and the subscribing connections.
#[derive(Debug)]
pub(crate) struct Hub {
    feeds: Mutex<HashMap<i64, Feed>>,
    /// `pipeline_totals.resets` at the last heads re-read (`None` before the first).
    resets: Mutex<Option<i64>>,
    store: Store,
}

/// The part of a `batch_persisted` event the hub reads (the ids are skipped, not collected).
#[derive(Debug, Deserialize)]
struct Announced {
    #[serde(default)]
    channels: Vec<ChannelRange>,
}

impl Hub {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            feeds: Mutex::new(HashMap::new()),
            resets: Mutex::new(None),
            store,
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Feed>> {
        // A panic while holding the lock leaves a map that is still consistent (every update is one step).
        self.feeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers for the channel's live messages, then reads its head: every message fanned out after this
    /// returns is in the receiver, and every one fanned out before has an offset at most `head`.
    pub(crate) async fn subscribe(&self, channel_id: i64) -> Result<Joined, ReadError> {
        let (live, restarts) = {
            let mut feeds = self.feeds();
            let feed = feeds.entry(channel_id).or_insert_with(|| Feed {
                sender: broadcast::channel(FEED_CAPACITY).0,
                delivered: None,
                target: 0,
                restarts: watch::channel(0).0,
            });
            (feed.sender.subscribe(), feed.restarts.subscribe())
        };
        let (resets, head) = self.store.head(channel_id).await?;
        // The first subscriber since the hub last looked tells it where the resets counter stands, so a
        // reset from now on is noticed before any row of the new history is fanned out.
        self.resets().get_or_insert(resets);
        if let Some(feed) = self.feeds().get_mut(&channel_id) {
            // The hub fans out from the first subscriber's head; later subscribers skip what they already
            // have, and each one's own catch-up covers anything between.
            feed.delivered.get_or_insert(head);
            feed.target = feed.target.max(head);
        }
        Ok(Joined {
            live,
            restarts,
            head,
        })
    }

    /// Raises the targets of subscribed channels.
    fn raise(&self, heads: impl IntoIterator<Item = (i64, i64)>) {
        let mut feeds = self.feeds();
        for (channel_id, head) in heads {
            if let Some(feed) = feeds.get_mut(&channel_id) {
                feed.target = feed.target.max(head);
            }
        }
    }

    /// Takes an event's ranges; an event that does not parse is ignored (the relay only passes
    /// `batch_persisted` events, and the heads timer covers anything missed).
    fn note(&self, event: &str) {
        if let Ok(announced) = serde_json::from_str::<Announced>(event) {
            self.raise(announced.channels.iter().map(|r| (r.channel_id, r.last)));
        }
    }

    /// Forgets channels nobody subscribes to any more; returns the ones left and where each one stands.
    fn standing(&self) -> Vec<(i64, Option<i64>, i64)> {
        let mut feeds = self.feeds();
        feeds.retain(|_, feed| feed.sender.receiver_count() > 0);
        feeds
            .iter()
            .map(|(channel, feed)| (*channel, feed.delivered, feed.target))
            .collect()
    }

    fn resets(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.resets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `resets` (read from PostgreSQL) differs from the value the last heads re-read saw.
    fn resets_changed(&self, resets: i64) -> bool {
        self.resets().is_some_and(|seen| seen != resets)
    }

    /// Re-reads the heads of every subscribed channel (the safety net), and starts over the channels that
    /// were reset.
    async fn reread_heads(&self) -> Result<(), ReadError> {
        let channels: Vec<i64> = self.standing().iter().map(|(c, ..)| *c).collect();
        if channels.is_empty() {
            // Nobody to tell: a reset from now on is new to subscribers that come later.
            *self.resets() = None;
            return Ok(());
        }
        let Heads { resets, heads } = self.store.heads(&channels).await?;
        let seen = self.resets().replace(resets);
        let everything_reset = seen.is_some_and(|seen| seen != resets);
        // A channel read but missing from channel_heads has no message (0).
        let mut read: HashMap<i64, i64> = channels.iter().map(|channel| (*channel, 0)).collect();
        read.extend(heads);
        let mut feeds = self.feeds();
        for (channel_id, feed) in feeds.iter_mut() {
            // `None`: subscribed since the list was taken, so not read this time.
            let head = read.get(channel_id).copied();
            if resume::restarted(feed.delivered, head, everything_reset) {
                // Fan the channel out again from its start, since what was committed since the reset is
                // unknown; told first, so a subscriber that takes a message of the new history has heard.
                feed.restarts.send_modify(|restarts| *restarts += 1);
                if feed.delivered.is_some() {
                    feed.delivered = Some(0);
                }
                feed.target = head.unwrap_or(0);
            } else if let Some(head) = head {
                feed.target = feed.target.max(head);
            }
        }
        Ok(())
    }

    /// Reads and fans out what subscribed channels miss, at most [`MAX_ROUNDS`] queries; `true` if some
    /// channel is still behind.
    async fn fan_out(&self) -> Result<bool, ReadError> {
        for _ in 0..MAX_ROUNDS {
            let fetches = resume::plan(self.standing(), FETCH_CAP);
            if fetches.is_empty() {
                return Ok(false);
            }
            let Ranges { resets, rows } = self.store.ranges(&fetches).await?;
            if resets.is_some_and(|resets| self.resets_changed(resets)) {
                // These rows may belong to the history that started after a reset, and subscribers are at
                // offsets of the old one: start the channels over first.
                self.reread_heads().await?;
                continue;
            }
            // Encoded before taking the lock, which subscribing connections wait for.
            let rows: Vec<Arc<Delivered>> = rows
                .iter()
                .map(|row| Arc::new(Delivered::new(row)))
                .collect();
            let mut feeds = self.feeds();
            for fetch in &fetches {
                let Some(feed) = feeds.get_mut(&fetch.channel_id) else {
                    continue;
                };
                // Only if nobody moved it meanwhile (it cannot: only this task fans out).
                if feed.delivered != Some(fetch.after) {
                    continue;
                }
                let of_channel = rows.iter().filter(|row| row.channel_id == fetch.channel_id);
                let usable = resume::contiguous(fetch.after, of_channel.clone().map(|r| r.offset));
                for row in of_channel.take(usable) {
                    feed.delivered = Some(row.offset);
                    // An error only means no subscriber is left.
                    let _ = feed.sender.send(row.clone());
                }
                if usable == 0 {
                    // Committed offsets are visible in order, so this means the target was wrong (a forged
                    // event, or a reset): fall back to the head.
                    tracing::debug!(
                        channel_id = fetch.channel_id,
                        "no row where the hub expected one"
                    );
                    feed.target = fetch.after;
                }
            }
        }
        Ok(true)
    }
}

/// Runs the hub until `shutdown`: wakes for events, relay reconnects and the heads timer, then fans out.
pub(crate) async fn run(
    hub: Arc<Hub>,
    mut events: broadcast::Receiver<Utf8Bytes>,
    reconnected: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut heads_timer = tokio::time::interval(HEADS_EVERY);
    heads_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind = false;
    loop {
        let mut reread = false;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(text) => {
                    hub.note(&text);
                    for _ in 0..EVENTS_PER_ROUND {
                        match events.try_recv() {
                            Ok(text) => hub.note(&text),
                            Err(broadcast::error::TryRecvError::Lagged(_)) => reread = true,
                            Err(_) => break,
                        }
                    }
                }
                // Events were overwritten before the hub read them: the heads say where channels are.
                Err(broadcast::error::RecvError::Lagged(_)) => reread = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = reconnected.notified() => reread = true,
            _ = heads_timer.tick() => reread = true,
            // More to read than one wake-up reads.
            () = std::future::ready(()), if behind => {}
        }
        if reread && let Err(error) = hub.reread_heads().await {
            tracing::warn!(%error, "cannot read the channel heads; the feeds wait for PostgreSQL");
        }
        behind = match hub.fan_out().await {
            Ok(behind) => behind,
            Err(error) => {
                tracing::warn!(%error, "cannot read the channels' new messages; retrying with the next event or in a second");
                false
            }
        };
    }
}
