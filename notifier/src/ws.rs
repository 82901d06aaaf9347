//! `GET /ws/stats`: one task per client, fed by the broadcast of `batch_persisted` events and the watch of
//! `stats_update`s.
//!
//! A client that reads slowly only blocks its own task: the broadcast keeps going, and when the client falls
//! more than the channel's capacity behind it lags (skips the oldest events, counted) and carries on.

use std::time::Duration;

use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code},
    },
    response::Response,
};
use tokio::sync::{OwnedSemaphorePermit, broadcast::error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::{AppState, http::ApiError};

/// Largest message a client may send us; clients only ever send pings and Close frames.
const MAX_INCOMING_MESSAGE: usize = 64 * 1024;
/// How long a client gets to take our Close frame at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Upgrades to a WebSocket if a client slot is free, 503 otherwise.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let permit = state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients)?;
    Ok(ws
        .max_message_size(MAX_INCOMING_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, permit)))
}

/// What happens after a step of a client's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The client left or its connection broke.
    Gone,
    /// The notifier is stopping.
    Shutdown,
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

/// One client: the latest stats at once, then every event and every stats update until it leaves or shutdown.
async fn serve(mut socket: WebSocket, state: AppState, _permit: OwnedSemaphorePermit) {
    let _connected = Connected::new();
    let shutdown = &state.shutdown;
    // Subscribe before sending anything, so no event published from now on is missed.
    let mut events = state.events.subscribe();
    let mut stats = state.stats.clone();
    let first = stats.borrow_and_update().json.clone();
    let mut flow = send(&mut socket, first, shutdown).await;
    while flow == Flow::Continue {
        flow = tokio::select! {
            biased;
            () = shutdown.cancelled() => Flow::Shutdown,
            incoming = socket.recv() => match incoming {
                // Pings are answered by the WebSocket layer; anything else from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => Flow::Gone,
                Some(Ok(_)) => Flow::Continue,
            },
            event = events.recv() => match event {
                Ok(text) => send(&mut socket, text, shutdown).await,
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!("notifier_clients_lagged_total").increment(1);
                    tracing::debug!(missed, "a WebSocket client fell behind and skipped events");
                    Flow::Continue
                }
                Err(RecvError::Closed) => Flow::Shutdown,
            },
            changed = stats.changed() => match changed {
                Ok(()) => {
                    let json = stats.borrow_and_update().json.clone();
                    send(&mut socket, json, shutdown).await
                }
                Err(_) => Flow::Shutdown,
            },
        };
    }
    if flow == Flow::Shutdown {
        let close = Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: "notifier shutting down".into(),
        }));
        // A client that does not read cannot take the frame; do not wait for it forever.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
    }
}

/// Sends one text frame; a client too slow to take it delays only this task, and shutdown interrupts the wait.
async fn send(socket: &mut WebSocket, text: Utf8Bytes, shutdown: &CancellationToken) -> Flow {
    tokio::select! {
        sent = socket.send(Message::Text(text)) => if sent.is_ok() { Flow::Continue } else { Flow::Gone },
        () = shutdown.cancelled() => Flow::Shutdown,
    }
}
