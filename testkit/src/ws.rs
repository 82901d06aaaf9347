//! Reading a WebSocket the services serve (`/ws/stats`) with bounds: the next JSON message wanted, the Close
//! frame.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::CloseFrame},
};

/// A WebSocket client.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client of the WebSocket at `url`, connecting again every 20 ms until the server accepts, for at most
/// `within` (a service still starting, or at its client limit).
pub async fn connect_within(url: &str, within: Duration) -> Ws {
    crate::eventually(within, &format!("{url} to accept a WebSocket"), || async {
        tokio_tungstenite::connect_async(url)
            .await
            .ok()
            .map(|(ws, _)| ws)
    })
    .await
}

/// Reads until a text message satisfies `wanted`, for at most `within`; returns it as JSON. Panics naming
/// `what` when the time runs out or the socket ends first.
pub async fn next_matching(
    ws: &mut Ws,
    within: Duration,
    what: &str,
    mut wanted: impl FnMut(&Value) -> bool,
) -> Value {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("every message is JSON");
                    if wanted(&value) {
                        return value;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended while waiting for {what}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("timed out after {within:?} waiting for {what}"))
}

/// The Close frame `ws` receives within `within` (`None` when it carries no code), skipping the frames before
/// it; panics if the connection ends without one or the time runs out.
pub async fn close_frame(ws: &mut Ws, within: Duration) -> Option<CloseFrame> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no Close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the Close frame arrives")
}
