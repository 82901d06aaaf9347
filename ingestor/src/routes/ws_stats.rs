//! `GET /ws/stats` on the ingestor's address, where the original served it (its dashboard connects to
//! `ws://<API>/ws/stats` by default): a WebSocket proxy to the notifier's `/ws/stats` (`NOTIFIER_URL`).
//!
//! Proxied rather than served, so the ingestor keeps no PostgreSQL reads, Redis subscription or stats task
//! for it: each client costs one upstream connection and one relay task (memory measured in
//! docs/migration.md). The notifier's `MAX_WS_CLIENTS` bounds them, as it bounds its own clients.
//!
//! The upstream connection is made before the client's upgrade is accepted, so a notifier that is down or
//! full is a plain JSON 502, not a socket that opens and dies. A notifier that goes away later closes the
//! client's socket with its Close frame (1001 on its shutdown) or 1014 "bad gateway"; the ingestor's own
//! shutdown closes it with 1001.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{
    self, CloseFrame, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use pipeline::api::ErrorBody;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::AppState;

/// The route, also the notifier's path.
pub const PATH: &str = "/ws/stats";
/// Longest wait for the notifier to accept the upstream connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest message taken from a client; the notifier ignores what clients send, so they only send
/// pings and Close frames.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Largest message taken from the notifier: a `batch_persisted` of a 100,000-message batch (its
/// `MAX_BATCH_SIZE`) is about 4 MB of ids.
const MAX_UPSTREAM_MESSAGE: usize = 8 * 1024 * 1024;
/// Initial read buffer of each side, instead of tungstenite's 128 KiB: a stats_update is ~300 bytes, and
/// the buffer grows for larger messages (about 27 KiB per relayed client in all, docs/migration.md).
const READ_BUFFER: usize = 4 * 1024;
/// How long a client gets to take our Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[utoipa::path(
    get,
    path = "/ws/stats",
    tag = "operations",
    summary = "Live stats and batch_persisted events (WebSocket, relayed from the notifier)",
    responses(
        (status = 101, description = "Switched to a WebSocket relayed to and from the notifier's \
                                      /ws/stats: stats_update every 500 ms, batch_persisted on each commit."),
        (status = 400, description = "Not a WebSocket upgrade request.", body = ErrorBody),
        (status = 502, description = "The notifier (NOTIFIER_URL) is unreachable or refused the \
                                      connection; retry.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    )
)]
pub async fn ws_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| ApiError::NotAWebSocket(rejection.body_text()))?;
    let request = upstream_request(
        &upstream_url(&state.notifier_url),
        headers.get(header::ORIGIN),
    )?;
    let upstream = connect(request).await?;
    let shutdown = state.shutdown.clone();
    // Held for the relay's life, so shutdown can wait for its Close frames.
    let tracked = state.relays.token();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |client| async move {
            relay(client, upstream, shutdown).await;
            drop(tracked);
        }))
}

/// The upgrade request to the notifier's `url`, carrying the browser's `Origin` when there is one, so that
/// the notifier sees the same origin whether a page connects to it directly or through us.
pub fn upstream_request(
    url: &str,
    origin: Option<&HeaderValue>,
) -> Result<tungstenite::handshake::client::Request, ApiError> {
    let mut request = url.into_client_request().map_err(|error| {
        ApiError::Internal(format!(
            "NOTIFIER_URL gives no WebSocket URL ({url}): {error}"
        ))
    })?;
    if let Some(origin) = origin {
        request.headers_mut().insert(header::ORIGIN, origin.clone());
    }
    Ok(request)
}

/// Opens the upstream WebSocket, or says why not (502).
async fn connect(request: tungstenite::handshake::client::Request) -> Result<Upstream, ApiError> {
    let url = request.uri().to_string();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_UPSTREAM_MESSAGE));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((upstream, _))) => Ok(upstream),
        Ok(Err(tungstenite::Error::Http(response))) => Err(ApiError::NotifierUnavailable(format!(
            "the notifier at {url} answered {}",
            response.status()
        ))),
        Ok(Err(error)) => Err(ApiError::NotifierUnavailable(format!(
            "cannot connect to the notifier at {url}: {error}"
        ))),
        Err(_) => Err(ApiError::NotifierUnavailable(format!(
            "the notifier at {url} did not accept within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// How a relay ended, and so what the client is told.
#[derive(Debug)]
enum End {
    /// The client closed or its connection broke: close upstream.
    ClientGone,
    /// The notifier closed (its frame is passed on) or its connection broke (1014).
    UpstreamGone(Option<CloseFrame>),
    /// The ingestor is stopping (1001).
    Shutdown,
}

/// Copies frames both ways until one side leaves or the ingestor stops.
async fn relay(mut client: WebSocket, mut upstream: Upstream, shutdown: CancellationToken) {
    let end = loop {
        tokio::select! {
            () = shutdown.cancelled() => break End::Shutdown,
            incoming = client.recv() => match incoming {
                Some(Ok(ws::Message::Close(_)) | Err(_)) | None => break End::ClientGone,
                Some(Ok(message)) => {
                    let forwarded = match to_upstream(message) {
                        Some(message) => upstream.send(message).await.is_ok(),
                        None => true,
                    };
                    if !forwarded {
                        break End::UpstreamGone(None);
                    }
                }
            },
            outgoing = upstream.next() => match outgoing {
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    break End::UpstreamGone(frame.map(from_upstream_close));
                }
                Some(Ok(message)) => {
                    let forwarded = match to_client(message) {
                        Some(message) => client.send(message).await.is_ok(),
                        None => true,
                    };
                    if !forwarded {
                        break End::ClientGone;
                    }
                }
                Some(Err(_)) | None => break End::UpstreamGone(None),
            },
        }
    };
    let close = |code, reason: &str| CloseFrame {
        code,
        reason: reason.into(),
    };
    let client_frame = match end {
        End::ClientGone => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(None)).await;
            return;
        }
        End::UpstreamGone(Some(frame)) => frame,
        End::UpstreamGone(None) => close(1014, "the notifier connection was lost"),
        End::Shutdown => close(ws::close_code::AWAY, "ingestor shutting down"),
    };
    // A client that does not read cannot take the frame; do not wait for it forever.
    let _ = tokio::time::timeout(
        CLOSE_TIMEOUT,
        client.send(ws::Message::Close(Some(client_frame))),
    )
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(None)).await;
}

/// A client's frame for the notifier; pings and pongs are answered per hop, not relayed.
fn to_upstream(message: ws::Message) -> Option<tungstenite::Message> {
    match message {
        ws::Message::Text(text) => Some(tungstenite::Message::text(text.as_str())),
        ws::Message::Binary(data) => Some(tungstenite::Message::Binary(data)),
        ws::Message::Ping(_) | ws::Message::Pong(_) | ws::Message::Close(_) => None,
    }
}

/// The notifier's frame for the client, without copying its payload.
fn to_client(message: tungstenite::Message) -> Option<ws::Message> {
    match message {
        tungstenite::Message::Text(text) => ws::Utf8Bytes::try_from(bytes::Bytes::from(text))
            .ok()
            .map(ws::Message::Text),
        tungstenite::Message::Binary(data) => Some(ws::Message::Binary(data)),
        _ => None,
    }
}

fn from_upstream_close(frame: tungstenite::protocol::CloseFrame) -> CloseFrame {
    CloseFrame {
        code: frame.code.into(),
        reason: frame.reason.as_str().into(),
    }
}

/// `NOTIFIER_URL` (`http://host:port`) → the URL of its `/ws/stats` (`ws://host:port/ws/stats`).
pub fn upstream_url(notifier_url: &str) -> String {
    let rest = notifier_url
        .strip_prefix("http://")
        .unwrap_or(notifier_url)
        .trim_end_matches('/');
    format!("ws://{rest}{PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notifier_url_becomes_its_websocket_url() {
        assert_eq!(
            upstream_url("http://127.0.0.1:8001"),
            "ws://127.0.0.1:8001/ws/stats"
        );
        assert_eq!(
            upstream_url("http://notifier:8001/"),
            "ws://notifier:8001/ws/stats"
        );
    }

    #[test]
    fn the_upstream_request_carries_the_browsers_origin() {
        let url = "ws://127.0.0.1:8001/ws/stats";
        let origin = HeaderValue::from_static("http://localhost:3000");
        let request = upstream_request(url, Some(&origin)).unwrap();
        assert_eq!(request.uri(), url);
        assert_eq!(request.headers()[header::ORIGIN], "http://localhost:3000");
        let request = upstream_request(url, None).unwrap();
        assert!(request.headers().get(header::ORIGIN).is_none());
    }

    #[test]
    fn frames_keep_their_payload_both_ways() {
        let text = to_client(tungstenite::Message::text("{\"type\":\"stats_update\"}"));
        assert_eq!(
            text,
            Some(ws::Message::Text("{\"type\":\"stats_update\"}".into()))
        );
        assert_eq!(
            to_client(tungstenite::Message::Ping(bytes::Bytes::new())),
            None
        );
        assert_eq!(
            to_upstream(ws::Message::Text("hi".into())),
            Some(tungstenite::Message::text("hi"))
        );
        assert_eq!(to_upstream(ws::Message::Pong(bytes::Bytes::new())), None);
    }
}
