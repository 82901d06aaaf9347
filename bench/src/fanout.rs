//! (5) Channel fan-out: `subscribers` WebSockets on the notifier's `GET /ws/channels`, spread round-robin
//! over `channels` channels and subscribed live (no `after`) before the load starts, then a fixed message
//! rate offered open loop as `POST /messages/batch` requests of `--fanout-batch` messages (1: single
//! `POST /messages`), spread evenly over those channels. Every message must reach every subscriber of its
//! channel; the row shows deliveries per second, creation → delivered latency, the notifier's CPU and RSS.
//!
//! The subscriber side shares two cores with the services: one task per socket, each parsing only the
//! fields it needs from a frame (borrowed) and keeping its own counts and samples, merged at the end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};
use tokio_util::sync::CancellationToken;

use crate::corpus;
use crate::load::Workload;
use crate::measure::{OPEN_LOOP_GRACE, saturation};
use crate::report::{self, Row, rate};
use crate::run::{Bench, say};
use crate::samples::Samples;

/// How long one subscriber may take to connect and get its `subscribed` answer.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Subscribers connecting at once: the notifier's accept loop and PostgreSQL (each subscription reads the
/// channel's head) are not flooded with a thousand handshakes at the same moment.
const CONNECTING_AT_ONCE: usize = 32;
/// After the drain, how long the last deliveries may take to arrive (a lagged subscriber is caught up
/// from PostgreSQL first).
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
/// Polling period while waiting for the last deliveries.
const DELIVERY_POLL: Duration = Duration::from_millis(20);
/// Beyond the load, the drain and the grace, how long a subscriber task may live at most.
const TASK_SLACK: Duration = Duration::from_secs(60);
/// Each subscriber socket's read buffer. tungstenite zero-fills the free part of its read buffer before every
/// read, 128 KiB by default, while a read here brings a frame or two of ~300 bytes: most of the subscribers'
/// CPU went to that. A larger frame still arrives whole (the buffer grows for it).
const READ_BUFFER: usize = 8 * 1024;
/// Latency goal beyond `BATCH_TIMEOUT` (issue 11).
const GOAL_SLACK: Duration = Duration::from_millis(50);

/// The fields of a `/ws/channels` frame the bench reads; the rest (`content`, …) is skipped unparsed.
#[derive(Debug, serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    head: Option<i64>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    /// When the batch's transaction began (`messages.inserted_at` is `now()`).
    #[serde(default)]
    inserted_at: Option<DateTime<Utc>>,
    /// An error's text: owned only if it has escapes (`missing field \"type\"`).
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// What one subscriber saw, from its `subscribed` answer on.
#[derive(Debug, Default)]
pub struct Tally {
    /// The channel's head when the subscription started: messages after it are due.
    pub head: i64,
    /// The last offset received.
    pub last: i64,
    /// Messages received.
    pub delivered: u64,
    /// Messages whose offset was not the one after the last (a gap, a duplicate or a reorder).
    pub out_of_order: u64,
    /// `lagged` frames (caught up from PostgreSQL afterwards: not a loss).
    pub lagged: u64,
    /// `error` frames, the first one kept.
    pub errors: u64,
    pub first_error: Option<String>,
    /// creation (`created_at`) → frame read, µs on this machine's clock.
    pub latencies: Samples,
    /// creation → the batch's transaction began (`inserted_at`): the part spent queued and batching.
    pub to_insert: Samples,
    /// the batch's transaction began → frame read: the commit, the event and the fan-out.
    pub from_insert: Samples,
    /// When the last message arrived.
    pub last_received: Option<Instant>,
    /// The socket ended before the scenario stopped it.
    pub closed: bool,
}

impl Tally {
    fn new(head: i64) -> Self {
        Self {
            head,
            last: head,
            ..Self::default()
        }
    }

    /// Counts one frame read at `received` (monotonic) and `now` (wall clock); whether it was a message.
    fn frame(&mut self, text: &str, received: Instant, now: DateTime<Utc>) -> bool {
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            self.error("an unreadable frame".into());
            return false;
        };
        match frame.kind {
            "message" => {
                let offset = frame.offset.unwrap_or(0);
                if offset != self.last + 1 {
                    self.out_of_order += 1;
                }
                self.last = self.last.max(offset);
                self.delivered += 1;
                self.last_received = Some(received);
                let micros = |from: DateTime<Utc>, to: DateTime<Utc>| {
                    (to - from).num_microseconds().unwrap_or(i64::MAX)
                };
                if let Some(created_at) = frame.created_at {
                    self.latencies.record_signed_micros(micros(created_at, now));
                    if let Some(inserted_at) = frame.inserted_at {
                        self.to_insert
                            .record_signed_micros(micros(created_at, inserted_at));
                        self.from_insert
                            .record_signed_micros(micros(inserted_at, now));
                    }
                }
                true
            }
            "lagged" => {
                self.lagged += 1;
                false
            }
            "error" => {
                let message = frame.message.unwrap_or(Cow::Borrowed("an error frame"));
                self.error(message.into_owned());
                false
            }
            _ => false,
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// All subscribers' tallies, added up.
#[derive(Debug, Default)]
pub struct Delivery {
    pub delivered: u64,
    pub expected: u64,
    pub out_of_order: u64,
    pub lagged: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub closed: usize,
    pub latencies: Samples,
    pub to_insert: Samples,
    pub from_insert: Samples,
    pub last_received: Option<Instant>,
}

/// Adds up the tallies of the subscribers, given with their channel; what they were owed is [`owed`].
pub fn merge(tallies: Vec<(i64, Tally)>, heads: &HashMap<i64, i64>) -> Delivery {
    let mut total = Delivery::default();
    for (channel, tally) in tallies {
        total.expected += owed(&[(channel, tally.head)], heads);
        total.delivered += tally.delivered;
        total.out_of_order += tally.out_of_order;
        total.lagged += tally.lagged;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.closed += usize::from(tally.closed);
        total.latencies.merge(tally.latencies);
        total.to_insert.merge(tally.to_insert);
        total.from_insert.merge(tally.from_insert);
        total.last_received = total.last_received.max(tally.last_received);
    }
    total
}

/// Messages owed to subscribers given as (channel, head at subscription): each is owed every message
/// between its head and its channel's final head (`heads`, from PostgreSQL after the drain).
pub fn owed(subscribers: &[(i64, i64)], heads: &HashMap<i64, i64>) -> u64 {
    subscribers
        .iter()
        .map(|(channel, head)| {
            let last = heads.get(channel).copied().unwrap_or(0);
            u64::try_from(last - head).unwrap_or(0)
        })
        .sum()
}

/// The goal of issue 11, and which parts of it were missed: `goal: …: met` or `… : missed (…)`.
pub fn goal(
    delivered: u64,
    expected: u64,
    p99: Option<Duration>,
    batch_timeout: Duration,
    notifier_cores: Option<f64>,
) -> String {
    let bound = batch_timeout + GOAL_SLACK;
    let mut missed = Vec::new();
    if delivered != expected {
        missed.push("not all delivered".to_owned());
    }
    if p99.is_none_or(|p99| p99 > bound) {
        missed.push(format!("p99 above {}", report::duration(bound)));
    }
    if notifier_cores.is_none_or(|cores| cores >= 1.0) {
        missed.push("notifier not under one core".to_owned());
    }
    let text = format!(
        "goal: all delivered, p99 ≤ BATCH_TIMEOUT + 50 ms = {}, notifier < 1 core",
        report::duration(bound)
    );
    if missed.is_empty() {
        format!("{text}: met")
    } else {
        format!("{text}: missed ({})", missed.join(", "))
    }
}

/// The load over `channels` channels in requests of `size` messages: `POST /messages/batch`, or single
/// `POST /messages` when `size` is 1. Bodies for about 1,024 messages or more, a whole number of rounds
/// over the channels, so that used in turn they give every channel the same share.
fn fanout_workload(size: u64, channels: u64) -> Workload {
    let rounds = (1024 / channels).max(1);
    // Bodies in multiples of `per_round`, so that `bodies × size` is a multiple of `channels`.
    let per_round = channels / gcd(channels, size);
    let bodies = (rounds * channels).div_ceil(size).div_ceil(per_round) * per_round;
    let encoded = corpus::channel_bodies(bodies, size, channels);
    if size == 1 {
        Workload::singles("/messages", encoded, false)
    } else {
        Workload::batches(encoded, size)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How the load was offered: `20,000 msg/s as 200 × POST /messages/batch of 100 per second`.
fn offered(target: f64, size: u64) -> String {
    if size == 1 {
        format!("{} msg/s as single POST /messages", rate(target))
    } else {
        format!(
            "{} msg/s as {} × POST /messages/batch of {size} per second",
            rate(target),
            rate(target / size as f64)
        )
    }
}

/// The channel of subscriber `index`: round-robin over `1..=channels`.
pub fn channel_of(index: usize, channels: u64) -> i64 {
    1 + (index as u64 % channels) as i64
}

/// The open WebSockets, each read by its own task until stopped.
#[derive(Debug)]
struct Subscribers {
    stop: CancellationToken,
    /// Messages received by all, so far: the scenario waits on it for the last deliveries.
    delivered: Arc<AtomicU64>,
    tasks: Vec<(i64, JoinHandle<Tally>)>,
    /// Each subscriber's (channel, head at subscription).
    heads: Vec<(i64, i64)>,
}

impl Subscribers {
    /// Opens `count` subscribers over `channels` channels; returns once every one got its `subscribed`
    /// (on a failure, the others are stopped: their tasks end at once).
    async fn open(
        notifier: SocketAddr,
        count: usize,
        channels: u64,
        lifetime: Duration,
    ) -> anyhow::Result<Self> {
        let url = format!("ws://{notifier}/ws/channels");
        let stop = CancellationToken::new();
        let delivered = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        let deadline = tokio::time::Instant::now() + lifetime;
        let mut tasks = Vec::with_capacity(count);
        let mut ready = Vec::with_capacity(count);
        for index in 0..count {
            let channel = channel_of(index, channels);
            let (tell, told) = oneshot::channel();
            ready.push(told);
            let task = tokio::spawn(subscriber(
                url.clone(),
                channel,
                gate.clone(),
                tell,
                stop.clone(),
                delivered.clone(),
                deadline,
            ));
            tasks.push((channel, task));
        }
        let mut heads = Vec::with_capacity(count);
        for ((channel, _), told) in tasks.iter().zip(ready) {
            match told.await.unwrap_or_else(|_| Err("its task ended".into())) {
                Ok(head) => heads.push((*channel, head)),
                Err(error) => {
                    stop.cancel();
                    bail!("a subscriber of channel {channel} could not subscribe: {error}");
                }
            }
        }
        Ok(Self {
            stop,
            delivered,
            tasks,
            heads,
        })
    }

    /// Stops every subscriber; each one's channel and tally.
    async fn close(mut self) -> anyhow::Result<Vec<(i64, Tally)>> {
        self.stop.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let mut tallies = Vec::with_capacity(tasks.len());
        for (channel, task) in tasks {
            tallies.push((channel, task.await.context("a subscriber task panicked")?));
        }
        Ok(tallies)
    }
}

impl Drop for Subscribers {
    /// A scenario that fails half-way does not leave a thousand sockets open until their deadline.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One subscriber: connects (gated), subscribes live, says so on `ready`, then reads until stopped, closed
/// or `deadline`.
async fn subscriber(
    url: String,
    channel: i64,
    gate: Arc<Semaphore>,
    ready: oneshot::Sender<Result<i64, String>>,
    stop: CancellationToken,
    delivered: Arc<AtomicU64>,
    deadline: tokio::time::Instant,
) -> Tally {
    let opened = {
        let _permit = gate.acquire().await;
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe(&url, channel)).await
    };
    let (mut socket, head) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            let _ = ready.send(Err(format!("{error:#}")));
            return Tally::default();
        }
        Err(_) => {
            let _ = ready.send(Err(format!(
                "no subscribed answer within {SUBSCRIBE_TIMEOUT:?}"
            )));
            return Tally::default();
        }
    };
    let _ = ready.send(Ok(head));
    let mut tally = Tally::new(head);
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => break,
            frame = socket.next() => frame,
        };
        let received = Instant::now();
        match frame {
            Some(Ok(Message::Text(text))) => {
                if tally.frame(text.as_str(), received, Utc::now()) {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                tally.closed = true;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tally.error(format!("WebSocket: {error}"));
                tally.closed = true;
                break;
            }
        }
    }
    if !tally.closed {
        let _ = socket.close(None).await;
    }
    tally
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and subscribes to `channel` live; the socket and the channel's head.
async fn subscribe(url: &str, channel: i64) -> anyhow::Result<(Socket, i64)> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let request = format!(r#"{{"type":"subscribe","channel_id":{channel}}}"#);
    socket.send(Message::text(request)).await?;
    // Only the answer can come before any message of the channel; bounded by the caller's timeout.
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
        match frame.kind {
            "subscribed" => return Ok((socket, frame.head.unwrap_or(0))),
            "error" => bail!(
                "{}",
                frame.message.unwrap_or(Cow::Borrowed("an error frame"))
            ),
            _ => {}
        }
    }
    bail!("the notifier closed the socket before answering the subscription")
}

impl Bench {
    /// (5) Channel fan-out: subscribers first, then the fixed-rate load, then every delivery waited for.
    pub async fn fanout(&mut self) -> anyhow::Result<()> {
        let plan = &self.plan;
        let (subscribers, channels, target, size) = (
            plan.subscribers,
            plan.channels,
            plan.fanout_rate,
            plan.fanout_batch,
        );
        let (connections, duration) = (plan.connections, plan.duration);
        say(&format!(
            "(5) fan-out: {subscribers} WebSocket subscribers over {channels} channels, {} open loop \
             for {duration:?}",
            offered(target, size)
        ));
        let lifetime = SUBSCRIBE_TIMEOUT
            + duration
            + OPEN_LOOP_GRACE
            + plan.drain_timeout
            + DELIVERY_GRACE
            + TASK_SLACK;
        let opened = Subscribers::open(
            self.services.notifier.addr(),
            subscribers,
            channels,
            lifetime,
        )
        .await?;
        let workload = Arc::new(fanout_workload(size, channels));
        let measured = self
            .measure_open_loop(workload, connections, target, duration)
            .await?;
        let heads = self.monitor.channel_heads(channels).await?;
        // Every due message reached its subscribers, or the grace ran out.
        let due = owed(&opened.heads, &heads);
        let waited = Instant::now();
        while opened.delivered.load(Ordering::Relaxed) < due && waited.elapsed() < DELIVERY_GRACE {
            tokio::time::sleep(DELIVERY_POLL).await;
        }
        let delivery = merge(opened.close().await?, &heads);
        let span = delivery.last_received.map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(measured.start)
        });
        let per_second = delivery.delivered as f64 / span.as_secs_f64().max(1e-9);
        let latency = delivery.latencies.clone().summary();
        let notifier_cores = measured
            .usage
            .cpu
            .iter()
            .find(|(name, _)| name == "notifier")
            .map(|(_, pct)| pct / 100.0);
        let mut notes = vec![
            offered(target, size),
            format!(
                "{} deliveries/s; delivered {} of {} expected",
                rate(per_second),
                delivery.delivered,
                delivery.expected
            ),
            notifier_cores.map_or_else(String::new, |c| format!("notifier {c:.2} cores")),
            goal(
                delivery.delivered,
                delivery.expected,
                latency.map(|l| l.p99),
                self.plan.batch_timeout,
                notifier_cores,
            ),
        ];
        if let Some(http) = measured.outcome.latencies.clone().summary() {
            notes.push(format!(
                "HTTP p50 {} p99 {}",
                report::duration(http.p50),
                report::duration(http.p99)
            ));
        }
        let stages = (
            delivery.to_insert.clone().summary(),
            delivery.from_insert.clone().summary(),
        );
        if let (Some(to), Some(from)) = stages {
            notes.push(format!(
                "creation → transaction start p50 {} p99 {}; transaction start → delivered p50 {} p99 {}",
                report::duration(to.p50),
                report::duration(to.p99),
                report::duration(from.p50),
                report::duration(from.p99)
            ));
        }
        notes.extend(saturation(&measured, target));
        if delivery.out_of_order > 0 {
            notes.push(format!("{} out of order", delivery.out_of_order));
        }
        if delivery.lagged > 0 {
            notes.push(format!("{} lagged (caught up)", delivery.lagged));
        }
        if delivery.closed > 0 {
            notes.push(format!("{} sockets closed early", delivery.closed));
        }
        if delivery.errors > 0 {
            notes.push(format!(
                "{} error frames, first: {}",
                delivery.errors,
                delivery.first_error.as_deref().unwrap_or("")
            ));
        }
        let name = format!(
            "(5) fan-out {} msg/s → {subscribers} subscribers / {channels} channels: creation→delivered{}",
            rate(target),
            self.redis_label()
        );
        let mut row: Row = self.row(name, &measured, notes);
        (row.p50, row.p99) = (latency.map(|l| l.p50), latency.map(|l| l.p99));
        self.rows.push(row);
        if self.plan.smoke && (delivery.delivered != delivery.expected || delivery.out_of_order > 0)
        {
            bail!(
                "delivered {} of {} expected ({} out of order)",
                delivery.delivered,
                delivery.expected,
                delivery.out_of_order
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"type":"message","channel_id":7,"offset":43,"message_id":"0193a1b2-0000-7000-8000-000000000001","user_id":3,"content":"a \"quoted\" line","created_at":"2026-11-29T12:00:00.100000Z","inserted_at":"2026-11-29T12:00:00.150000Z"}"#;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_message_frame_counts_with_its_latency_from_creation_split_at_its_transaction() {
        let mut tally = Tally::new(42);
        let now = Instant::now();
        assert!(tally.frame(MESSAGE, now, at("2026-11-29T12:00:00.180000Z")));
        assert_eq!(
            (tally.delivered, tally.last, tally.out_of_order),
            (1, 43, 0)
        );
        assert_eq!(tally.last_received, Some(now));
        let max = |samples: Samples| samples.summary().unwrap().max;
        assert_eq!(max(tally.latencies), Duration::from_millis(80));
        assert_eq!(
            max(tally.to_insert),
            Duration::from_millis(50),
            "until inserted_at"
        );
        assert_eq!(
            max(tally.from_insert),
            Duration::from_millis(30),
            "since inserted_at"
        );
    }

    #[test]
    fn gaps_duplicates_lagged_and_errors_are_told_apart() {
        let mut tally = Tally::new(42);
        let (now, wall) = (Instant::now(), at("2026-11-29T12:00:01Z"));
        let frame =
            |offset: i64| MESSAGE.replace(r#""offset":43"#, &format!(r#""offset":{offset}"#));
        assert!(tally.frame(&frame(43), now, wall));
        assert!(tally.frame(&frame(45), now, wall), "a gap");
        assert!(tally.frame(&frame(45), now, wall), "a duplicate");
        assert!(tally.frame(&frame(46), now, wall));
        assert!(!tally.frame(
            r#"{"type":"lagged","channel_id":7,"last_offset":46}"#,
            now,
            wall
        ));
        assert!(!tally.frame(
            r#"{"type":"error","message":"missing field \"type\""}"#,
            now,
            wall
        ));
        assert!(!tally.frame("not json", now, wall));
        assert_eq!(
            (tally.delivered, tally.out_of_order, tally.last),
            (4, 2, 46)
        );
        assert_eq!((tally.lagged, tally.errors), (1, 2));
        assert_eq!(tally.first_error.as_deref(), Some("missing field \"type\""));
    }

    #[test]
    fn each_subscriber_is_owed_its_channel_from_its_own_head() {
        let heads = HashMap::from([(1, 100), (2, 50)]);
        // Channel 3 got no message: nothing owed; a head ahead of the final one owes nothing either.
        let subscribers = [(1, 0), (1, 10), (2, 50), (3, 0), (2, 60)];
        assert_eq!(owed(&subscribers, &heads), 100 + 90);

        let tallies = subscribers
            .iter()
            .map(|&(channel, head)| {
                let mut tally = Tally::new(head);
                tally.delivered = 7;
                tally.closed = channel == 3;
                (channel, tally)
            })
            .collect();
        let delivery = merge(tallies, &heads);
        assert_eq!((delivery.delivered, delivery.expected), (35, 190));
        assert_eq!(delivery.closed, 1);
    }

    #[test]
    fn subscribers_take_the_channels_in_turn() {
        let channels: Vec<i64> = (0..5).map(|i| channel_of(i, 2)).collect();
        assert_eq!(channels, [1, 2, 1, 2, 1]);
    }

    #[test]
    fn the_load_gives_every_channel_the_same_share() {
        let channel_counts = |workload: &Workload, channels: u64| {
            let mut counts = vec![0_u64; channels as usize];
            for body in &workload.bodies {
                let messages: Vec<pipeline::api::NewMessage> = if body.messages == 1 {
                    vec![serde_json::from_slice(&body.bytes).unwrap()]
                } else {
                    serde_json::from_slice(&body.bytes).unwrap()
                };
                assert_eq!(messages.len() as u64, body.messages);
                for message in messages {
                    counts[message.channel_id as usize - 1] += 1;
                }
            }
            counts
        };
        for (size, channels) in [
            (100, 100),
            (1, 100),
            (10, 4),
            (7, 3),
            (64, 100),
            (100, 1000),
        ] {
            let workload = fanout_workload(size, channels);
            assert_eq!(workload.messages_per_request(), size);
            let counts = channel_counts(&workload, channels);
            assert!(counts[0] > 0, "{size} over {channels}");
            assert!(
                counts.iter().all(|&n| n == counts[0]),
                "{size} over {channels}: {counts:?}"
            );
        }
        assert_eq!(fanout_workload(1, 100).path, "/messages");
        assert_eq!(fanout_workload(100, 100).path, "/messages/batch");
    }

    #[test]
    fn the_notes_say_how_the_load_was_offered() {
        assert_eq!(
            offered(20_000.0, 100),
            "20,000 msg/s as 200 × POST /messages/batch of 100 per second"
        );
        assert_eq!(
            offered(20_000.0, 1),
            "20,000 msg/s as single POST /messages"
        );
    }

    #[test]
    fn the_goal_names_what_was_missed() {
        let timeout = Duration::from_millis(50);
        let p99 = Some(Duration::from_millis(80));
        assert_eq!(
            goal(10, 10, p99, timeout, Some(0.4)),
            "goal: all delivered, p99 ≤ BATCH_TIMEOUT + 50 ms = 100 ms, notifier < 1 core: met"
        );
        assert_eq!(
            goal(9, 10, Some(Duration::from_millis(101)), timeout, Some(1.2)),
            "goal: all delivered, p99 ≤ BATCH_TIMEOUT + 50 ms = 100 ms, notifier < 1 core: missed \
             (not all delivered, p99 above 100 ms, notifier not under one core)"
        );
    }
}
