//! `GET /ws/stats`: one task per client, fed by the broadcast of `batch_persisted` events and the
//! watch of `stats_update`s.
//!
//! Hostile or slow clients are bounded:
//! - **Origin**: a browser page may connect only from an allowed origin ([`crate::origin`]), else 403.
//! - **Frames**: frames and messages from clients are capped at [`MAX_INCOMING`] (they only send pings and Close
//!   frames); a larger frame is refused from its header, before its payload is read or allocated.
//! - **Memory**: each client has its own queue of at most [`CLIENT_QUEUE`] messages between the fan-out and
//!   its socket. The messages are shared (reference-counted), so a client pins at most that many events; one
//!   that falls further behind is closed (1008, "too slow") rather than skipping events silently, and can
//!   reconnect. Its writer sends what is queued in one write, and gives up on a write not taken within
//!   `WS_SEND_TIMEOUT`.
//! - **Idle**: the notifier pings every third of `WS_IDLE_TIMEOUT`; a client from which nothing (not even a
//!   pong) arrives for that long is closed (1001, "idle").

use std::time::Duration;

use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code},
    },
    http::{HeaderMap, header},
    response::Response,
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use tokio::sync::{OwnedSemaphorePermit, broadcast::error::RecvError, mpsc, oneshot};
use tokio::time::Instant;

use crate::{error::ApiError, state::AppState};

/// Largest frame, and message, a client may send us: pings, Close frames and (on `/ws/channels`) small
/// subscribe messages.
pub(crate) const MAX_INCOMING: usize = 64 * 1024;
/// Read buffer per client (it grows for a larger frame, up to [`MAX_INCOMING`]).
const READ_BUFFER: usize = 4 * 1024;
/// Messages a client may have waiting for its socket; a client further behind is closed.
pub(crate) const CLIENT_QUEUE: usize = 128;
/// How long a client gets to take our Close frame at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Upgrades to a WebSocket if the origin is allowed (else 403) and a client slot is free (else 503).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let permit = admit(&state, &headers)?;
    Ok(configure(ws).on_upgrade(move |socket| serve(socket, state, permit)))
}

/// The checks of every WebSocket endpoint: the origin is allowed (else 403) and a client slot is free (else
/// 503); the slot is held as long as the permit.
pub(crate) fn admit(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<OwnedSemaphorePermit, ApiError> {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if !state
        .ws
        .origins
        .allows(text(header::ORIGIN), text(header::HOST))
    {
        metrics::counter!("notifier_ws_refused_total", "reason" => "origin").increment(1);
        return Err(ApiError::OriginNotAllowed);
    }
    state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients)
}

/// The buffer and frame caps of every WebSocket endpoint.
pub(crate) fn configure(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    // Clients send only small frames: tungstenite's 128 KiB default read buffer would cost 128 KiB per
    // client for nothing (25 MiB for 200 clients).
    ws.read_buffer_size(READ_BUFFER)
        .max_frame_size(MAX_INCOMING)
        .max_message_size(MAX_INCOMING)
}

/// Why a client's loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The client left or its connection broke: nothing to send.
    Gone,
    /// Close the connection with this frame.
    Close(Closing),
}

/// A Close frame to send, and how long the client gets to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closing {
    code: u16,
    reason: String,
    wait: Duration,
}

impl End {
    pub(crate) fn shutdown() -> Self {
        Self::Close(Closing {
            code: close_code::AWAY,
            reason: "notifier shutting down".into(),
            wait: CLOSE_TIMEOUT,
        })
    }

    /// 1008: the client fell behind; it gets `WS_SEND_TIMEOUT` to take the frame (after what it was sent).
    pub(crate) fn too_slow(why: &str, send_timeout: Duration) -> Self {
        metrics::counter!("notifier_clients_lagged_total").increment(1);
        Self::Close(Closing {
            code: close_code::POLICY,
            reason: format!("too slow: {why}; reconnect"),
            wait: send_timeout,
        })
    }

    /// 1001: nothing heard from the client for `idle_timeout`.
    pub(crate) fn idle(idle_timeout: Duration) -> Self {
        metrics::counter!("notifier_clients_disconnected_total", "reason" => "idle").increment(1);
        Self::Close(Closing {
            code: close_code::AWAY,
            reason: format!(
                "idle: nothing received for {} s",
                idle_timeout.as_secs_f64()
            ),
            wait: CLOSE_TIMEOUT,
        })
    }
}

/// Counts a client in a gauge (`notifier_ws_clients`, `notifier_feed_clients`) for as long as it lives.
pub(crate) struct Connected(&'static str);

impl Connected {
    pub(crate) fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// One client: the latest stats at once, then every event and every stats update until it leaves, falls
/// behind, goes silent, or the notifier stops. Reading and fan-out run here; writing runs in [`write`], so a
/// client that does not read never holds up this loop (nor the fan-out).
async fn serve(socket: WebSocket, state: AppState, _permit: OwnedSemaphorePermit) {
    let _connected = Connected::new("notifier_ws_clients");
    let settings = state.ws.clone();
    // Subscribe before sending anything, so no event published from now on is missed.
    let mut events = state.events.subscribe();
    let mut stats = state.stats.clone();
    let (sink, mut incoming) = socket.split();
    let outgoing = Outgoing::start(sink, settings.send_timeout);
    let queue = &outgoing.queue;

    let send_timeout = settings.send_timeout;
    let first = stats.borrow_and_update().json.clone();
    let mut end = push(queue, Message::Text(first), send_timeout);
    let mut keepalive = Keepalive::new(settings.idle_timeout);
    while end.is_none() {
        end = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => Some(End::shutdown()),
            frame = incoming.next() => match frame {
                // Pings are answered by the WebSocket layer; anything else from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => Some(End::Gone),
                Some(Ok(_)) => {
                    keepalive.heard();
                    None
                }
            },
            () = tokio::time::sleep_until(keepalive.idle_deadline()) => Some(End::idle(settings.idle_timeout)),
            event = events.recv() => match event {
                Ok(text) => push(queue, Message::Text(text), send_timeout),
                // The fan-out overwrote events this client had not taken: it would miss them silently.
                Err(RecvError::Lagged(missed)) => {
                    Some(End::too_slow(&format!("{missed} events were missed"), send_timeout))
                }
                Err(RecvError::Closed) => Some(End::shutdown()),
            },
            changed = stats.changed() => match changed {
                Ok(()) => {
                    let json = stats.borrow_and_update().json.clone();
                    push(queue, Message::Text(json), send_timeout)
                }
                Err(_) => Some(End::shutdown()),
            },
            () = keepalive.ping_due() => push(queue, Message::Ping(Default::default()), send_timeout),
        };
    }
    // Stop holding fan-out events at once: the writer may still wait up to WS_SEND_TIMEOUT below.
    drop((events, stats));
    outgoing.finish(end).await;
}

/// A client's outgoing half: a writer task fed by a queue of at most [`CLIENT_QUEUE`] messages, and the way
/// to ask it for a Close frame.
pub(crate) struct Outgoing {
    pub(crate) queue: mpsc::Sender<Message>,
    close: oneshot::Sender<Closing>,
    writer: tokio::task::JoinHandle<()>,
}

impl Outgoing {
    /// Starts the writer of `sink`; each message must be taken within `send_timeout`.
    pub(crate) fn start(sink: SplitSink<WebSocket, Message>, send_timeout: Duration) -> Self {
        let (queue, queued) = mpsc::channel(CLIENT_QUEUE);
        let (close, closing) = oneshot::channel();
        let writer = tokio::spawn(write(sink, queued, closing, send_timeout));
        Self {
            queue,
            close,
            writer,
        }
    }

    /// Ends the connection as `end` says (a Close frame, or nothing if the client is gone) and waits for the
    /// writer, which is bounded by the Close frame's wait or `WS_SEND_TIMEOUT` per queued message.
    pub(crate) async fn finish(self, end: Option<End>) {
        if let Some(End::Close(closing)) = end {
            tracing::debug!(code = closing.code, reason = %closing.reason, "closing a WebSocket client");
            let _ = self.close.send(closing);
        }
        // Without a Close, dropping the queue ends the writer after what it holds.
        drop(self.queue);
        let _ = self.writer.await;
    }
}

/// Pings every third of `WS_IDLE_TIMEOUT`, and knows when a client has been silent for that long.
pub(crate) struct Keepalive {
    ping: tokio::time::Interval,
    heard: Instant,
    idle_timeout: Duration,
}

impl Keepalive {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        // At least 1 ms: an interval of zero panics, and WS_IDLE_TIMEOUT may be tiny.
        let ping_every = (idle_timeout / 3).max(Duration::from_millis(1));
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ping,
            heard: Instant::now(),
            idle_timeout,
        }
    }

    /// Something arrived from the client.
    pub(crate) fn heard(&mut self) {
        self.heard = Instant::now();
    }

    /// When the client counts as idle if nothing arrives before.
    pub(crate) fn idle_deadline(&self) -> Instant {
        self.heard + self.idle_timeout
    }

    /// Ready when the next ping is due.
    pub(crate) async fn ping_due(&mut self) {
        self.ping.tick().await;
    }
}

/// Queues `message` for the writer; a full queue means the client fell [`CLIENT_QUEUE`] messages behind.
pub(crate) fn push(
    queue: &mpsc::Sender<Message>,
    message: Message,
    send_timeout: Duration,
) -> Option<End> {
    match queue.try_send(message) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(_)) => Some(End::too_slow(
            &format!("more than {CLIENT_QUEUE} messages were waiting"),
            send_timeout,
        )),
        Err(mpsc::error::TrySendError::Closed(_)) => Some(End::Gone),
    }
}

/// Sends what is queued, each message within `send_timeout`, until the queue ends, a send fails or times
/// out, or a Close is asked for: that is sent at once (after the bytes of a message already begun), within
/// its [`Closing::wait`].
/// Writes `first` and whatever else is already queued (at most [`CLIENT_QUEUE`] frames), then flushes once: a
/// burst of fan-out frames (a batch brings several messages of a channel at once) costs one write to the
/// socket instead of one per frame, for the notifier and for the client. Measured with 1,000 subscribers.
async fn send_burst(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Message,
    queued: &mut mpsc::Receiver<Message>,
) -> Result<(), axum::Error> {
    sink.feed(first).await?;
    for _ in 1..CLIENT_QUEUE {
        match queued.try_recv() {
            Ok(message) => sink.feed(message).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queued: mpsc::Receiver<Message>,
    mut closing: oneshot::Receiver<Closing>,
    send_timeout: Duration,
) {
    let close = loop {
        let next = tokio::select! {
            biased;
            close = &mut closing => break close.ok(),
            next = queued.recv() => next,
        };
        let Some(message) = next else {
            // The loop ended without asking for a Close; a Close may still have been sent just before.
            break closing.try_recv().ok();
        };
        tokio::select! {
            biased;
            close = &mut closing => break close.ok(),
            sent = tokio::time::timeout(send_timeout, send_burst(&mut sink, message, &mut queued)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    metrics::counter!("notifier_clients_disconnected_total", "reason" => "send_timeout")
                        .increment(1);
                    // Nothing more can be written to a client that takes nothing.
                    return;
                }
            },
        }
    };
    if let Some(closing) = close {
        let frame = Message::Close(Some(CloseFrame {
            code: closing.code,
            reason: Utf8Bytes::from(closing.reason),
        }));
        // A client that does not read cannot take the frame; do not wait for it forever.
        let _ = tokio::time::timeout(closing.wait, sink.send(frame)).await;
    }
}
