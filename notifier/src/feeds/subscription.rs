//! One subscriber of one channel, whatever the transport: a stream of its channel's messages from a resume
//! point on, in offset order, with no gap and no duplicate.
//!
//! It registers for live messages first (in [`Hub::subscribe`]), then replays from PostgreSQL in pages until
//! a page comes back short, then takes live messages, delivering only offset `last + 1` ([`resume::accept`]):
//! older ones are dropped, and a jump (a lost event, or this subscriber lagging behind the broadcast) sends
//! it back to PostgreSQL for the gap. So the switch from replay to live, a lost event and a slow subscriber
//! can delay messages but never skip or repeat one.
//!
//! When the hub sees the channel start over from offset 1 (a reset), the subscription says so
//! ([`Item::Reset`]), forgets what it had, and continues from offset 1: replayed, then live.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures_util::Stream;
use pipeline::backoff::Backoff;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    watch,
};

use super::{
    hub::{Hub, Joined},
    protocol::Delivered,
    resume::{self, Accept},
    store::{ReadError, Store},
};

/// Rows per replay query.
const PAGE: i64 = 500;
/// Replay reads tried before the subscription gives up (the client resumes later): about 3 s of backoff.
const READ_TRIES: u32 = 5;
/// The waits between those reads: 200, 400, 800 and 1,600 ms.
const READ_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(1600));

/// What a subscription yields.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// The next message, `offset == last + 1`.
    Message(Arc<Delivered>),
    /// The subscriber fell more than [`super::hub::FEED_CAPACITY`] messages behind the live feed; it is
    /// caught up from PostgreSQL next, from `last_offset + 1`.
    Lagged { last_offset: i64 },
    /// PostgreSQL could not be read for the replay; the subscription ends after this (resume from
    /// `last_offset`).
    Failed { last_offset: i64, error: String },
    /// The channel started over from offset 1 (the data was reset): what was delivered before is another
    /// history; the messages that follow are the channel's from offset 1.
    Reset,
}

/// Counts a subscription in `notifier_feed_subscriptions` for as long as it lives.
#[derive(Debug)]
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!("notifier_feed_subscriptions").increment(1.0);
        Self
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("notifier_feed_subscriptions").decrement(1.0);
    }
}

/// One channel's subscriber.
#[derive(Debug)]
pub(crate) struct Subscription {
    channel_id: i64,
    /// The last offset delivered (or the resume point).
    last: i64,
    live: broadcast::Receiver<Arc<Delivered>>,
    /// Changes when the channel starts over (see [`Joined::restarts`]).
    restarts: watch::Receiver<u64>,
    /// Whether to read PostgreSQL before taking live messages again.
    catching_up: bool,
    /// Rows read from PostgreSQL, not yet delivered.
    replayed: VecDeque<Arc<Delivered>>,
    store: Store,
    transport: &'static str,
    /// `notifier_feed_deliveries_total` for this transport, looked up once: the recorder hashes the labels on
    /// every lookup, and this counts every message to every subscriber.
    deliveries: metrics::Counter,
    failed: bool,
    _counted: Counted,
}

impl Subscription {
    /// Subscribes to `channel_id` from after `after` (`None`: from its head, live only). Returns the
    /// channel's head too; `after` past it is the caller's error to report (nothing is subscribed then).
    pub(crate) async fn start(
        hub: &Hub,
        channel_id: i64,
        after: Option<i64>,
        transport: &'static str,
    ) -> Result<(Self, i64), ReadError> {
        let Joined {
            live,
            restarts,
            head,
        } = hub.subscribe(channel_id).await?;
        let subscription = Self {
            channel_id,
            last: after.unwrap_or(head),
            live,
            restarts,
            // Even live-only subscribers replay once: rows committed since their head may have been fanned
            // out before they registered.
            catching_up: true,
            replayed: VecDeque::new(),
            store: hub.store().clone(),
            transport,
            deliveries: metrics::counter!("notifier_feed_deliveries_total", "transport" => transport),
            failed: false,
            _counted: Counted::new(),
        };
        Ok((subscription, head))
    }

    pub(crate) fn channel_id(&self) -> i64 {
        self.channel_id
    }

    /// The next item; `None` once the subscription is over (a failure was reported, or shutdown).
    pub(crate) async fn next(&mut self) -> Option<Item> {
        if self.failed {
            return None;
        }
        loop {
            // Checked before anything is delivered: the hub tells a restart before it fans out a message of
            // the new history, so a message taken after that is never mistaken for the old one's next.
            if self.restarts.has_changed().unwrap_or(false) {
                self.restarts.borrow_and_update();
                return Some(self.start_over());
            }
            if let Some(message) = self.replayed.pop_front() {
                match resume::accept(self.last, message.offset) {
                    Accept::Deliver => return Some(self.deliver(message)),
                    Accept::Duplicate => continue,
                    // A page is contiguous; this can only mean rows vanished (a reset): read again.
                    Accept::Gap => {
                        self.replayed.clear();
                        self.catching_up = true;
                    }
                }
            }
            if self.catching_up {
                match self.read_page().await {
                    Ok(rows) => {
                        self.catching_up = rows.len() as i64 == PAGE;
                        self.replayed.extend(rows);
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some(Item::Failed {
                            last_offset: self.last,
                            error: error.to_string(),
                        });
                    }
                }
                continue;
            }
            let received = tokio::select! {
                biased;
                // Marks the restart seen. A closed sender (never while this holds the feed's broadcast)
                // disables this branch.
                Ok(()) = self.restarts.changed() => None,
                received = self.live.recv() => Some(received),
            };
            let Some(received) = received else {
                return Some(self.start_over());
            };
            match received {
                // A restart told meanwhile: the loop's first check handles it (and drops this message).
                Ok(_) if self.restarts.has_changed().unwrap_or(false) => {}
                Ok(message) => match resume::accept(self.last, message.offset) {
                    Accept::Deliver => return Some(self.deliver(message)),
                    Accept::Duplicate => {}
                    Accept::Gap => self.catching_up = true,
                },
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("notifier_feed_lagged_total", "transport" => self.transport)
                        .increment(1);
                    self.catching_up = true;
                    return Some(Item::Lagged {
                        last_offset: self.last,
                    });
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Forgets the old history: from offset 1 on, read from PostgreSQL first; live messages queued before
    /// the restart are dropped with the old receiver.
    fn start_over(&mut self) -> Item {
        self.live = self.live.resubscribe();
        self.replayed.clear();
        self.last = 0;
        self.catching_up = true;
        Item::Reset
    }

    fn deliver(&mut self, message: Arc<Delivered>) -> Item {
        self.last = message.offset;
        self.deliveries.increment(1);
        Item::Message(message)
    }

    /// The next page after `last`, retrying a few times with backoff.
    async fn read_page(&self) -> Result<Vec<Arc<Delivered>>, ReadError> {
        let mut backoff = READ_BACKOFF;
        let mut tries = 0;
        loop {
            match self.store.page(self.channel_id, self.last, PAGE).await {
                Ok(rows) => {
                    return Ok(rows
                        .iter()
                        .map(|row| Arc::new(Delivered::new(row)))
                        .collect());
                }
                Err(error) if tries + 1 >= READ_TRIES => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, channel_id = self.channel_id, "replay read failed; retrying");
                    tries += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// The subscription as a stream of its items.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Item> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let item = subscription.next().await?;
            Some((item, subscription))
        })
    }
}
