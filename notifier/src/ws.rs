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
//!   reconnect. Its writer also gives up on a message not taken within `WS_SEND_TIMEOUT`.
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

use crate::{AppState, http::ApiError, origin::AllowedOrigins};

/// Largest frame, and message, a client may send us; clients only ever send pings and Close frames.
pub(crate) const MAX_INCOMING: usize = 64 * 1024;
/// Read buffer per client (it grows for a larger frame, up to [`MAX_INCOMING`]).
const READ_BUFFER: usize = 4 * 1024;
/// Messages a client may have waiting for its socket; a client further behind is closed.
pub(crate) const CLIENT_QUEUE: usize = 128;
/// How long a client gets to take our Close frame at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// `WS_ORIGINS`, `WS_SEND_TIMEOUT` and `WS_IDLE_TIMEOUT`.
#[derive(Debug, Clone)]
pub(crate) struct WsSettings {
    pub(crate) origins: AllowedOrigins,
    pub(crate) send_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// Upgrades to a WebSocket if the origin is allowed (else 403) and a client slot is free (else 503).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if !state
        .ws
        .origins
        .allows(text(header::ORIGIN), text(header::HOST))
    {
        metrics::counter!("notifier_ws_refused_total", "reason" => "origin").increment(1);
        return Err(ApiError::OriginNotAllowed);
    }
    let permit = state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients)?;
    Ok(ws
        // Clients send only tiny frames: tungstenite's 128 KiB default read buffer would cost 128 KiB per
        // client for nothing (25 MiB for 200 clients).
        .read_buffer_size(READ_BUFFER)
        .max_frame_size(MAX_INCOMING)
        .max_message_size(MAX_INCOMING)
        .on_upgrade(move |socket| serve(socket, state, permit)))
}

/// Why a client's loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The client left or its connection broke: nothing to send.
    Gone,
    /// Close the connection with this frame.
    Close(Closing),
}

/// A Close frame to send, and how long the client gets to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Closing {
    code: u16,
    reason: String,
    wait: Duration,
}

impl End {
    fn shutdown() -> Self {
        Self::Close(Closing {
            code: close_code::AWAY,
            reason: "notifier shutting down".into(),
            wait: CLOSE_TIMEOUT,
        })
    }

    /// 1008: the client fell behind; it gets `WS_SEND_TIMEOUT` to take the frame (after what it was sent).
    fn too_slow(why: &str, send_timeout: Duration) -> Self {
        metrics::counter!("notifier_clients_lagged_total").increment(1);
        Self::Close(Closing {
            code: close_code::POLICY,
            reason: format!("too slow: {why}; reconnect"),
            wait: send_timeout,
        })
    }

    /// 1001: nothing heard from the client for `idle_timeout`.
    fn idle(idle_timeout: Duration) -> Self {
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

/// Counts the client in `notifier_ws_clients` for as long as it lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!("notifier_ws_clients").increment(1.0);
        Self
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("notifier_ws_clients").decrement(1.0);
    }
}

/// One client: the latest stats at once, then every event and every stats update until it leaves, falls
/// behind, goes silent, or the notifier stops. Reading and fan-out run here; writing runs in [`write`], so a
/// client that does not read never holds up this loop (nor the fan-out).
async fn serve(socket: WebSocket, state: AppState, _permit: OwnedSemaphorePermit) {
    let _connected = Connected::new();
    let settings = state.ws.clone();
    // Subscribe before sending anything, so no event published from now on is missed.
    let mut events = state.events.subscribe();
    let mut stats = state.stats.clone();
    let (sink, mut incoming) = socket.split();
    let (queue, queued) = mpsc::channel(CLIENT_QUEUE);
    let (close, closing) = oneshot::channel();
    let writer = tokio::spawn(write(sink, queued, closing, settings.send_timeout));

    let send_timeout = settings.send_timeout;
    let first = stats.borrow_and_update().json.clone();
    let mut end = push(&queue, Message::Text(first), send_timeout);
    // At least 1 ms: an interval of zero panics, and WS_IDLE_TIMEOUT may be tiny.
    let ping_every = (settings.idle_timeout / 3).max(Duration::from_millis(1));
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    while end.is_none() {
        let idle_deadline = heard + settings.idle_timeout;
        end = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => Some(End::shutdown()),
            frame = incoming.next() => match frame {
                // Pings are answered by the WebSocket layer; anything else from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => Some(End::Gone),
                Some(Ok(_)) => {
                    heard = Instant::now();
                    None
                }
            },
            () = tokio::time::sleep_until(idle_deadline) => Some(End::idle(settings.idle_timeout)),
            event = events.recv() => match event {
                Ok(text) => push(&queue, Message::Text(text), send_timeout),
                // The fan-out overwrote events this client had not taken: it would miss them silently.
                Err(RecvError::Lagged(missed)) => {
                    Some(End::too_slow(&format!("{missed} events were missed"), send_timeout))
                }
                Err(RecvError::Closed) => Some(End::shutdown()),
            },
            changed = stats.changed() => match changed {
                Ok(()) => {
                    let json = stats.borrow_and_update().json.clone();
                    push(&queue, Message::Text(json), send_timeout)
                }
                Err(_) => Some(End::shutdown()),
            },
            _ = ping.tick() => push(&queue, Message::Ping(Default::default()), send_timeout),
        };
    }
    // Stop holding fan-out events at once: the writer may still wait up to WS_SEND_TIMEOUT below.
    drop((events, stats));
    if let Some(End::Close(closing)) = end {
        tracing::debug!(code = closing.code, reason = %closing.reason, "closing a WebSocket client");
        let _ = close.send(closing);
    }
    // Without a Close, dropping the queue ends the writer after what it holds.
    drop(queue);
    let _ = writer.await;
}

/// Queues `message` for the writer; a full queue means the client fell [`CLIENT_QUEUE`] messages behind.
fn push(queue: &mpsc::Sender<Message>, message: Message, send_timeout: Duration) -> Option<End> {
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
            sent = tokio::time::timeout(send_timeout, sink.send(message)) => match sent {
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
