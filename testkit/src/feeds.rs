//! Clients of the notifier's channel feeds for tests: `/ws/channels` and `/sse/channels/{id}`, and rows
//! committed the way a batcher commits them (offsets under the channel's head), without a batcher.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};

/// A `/ws/channels` client.
#[derive(Debug)]
pub struct FeedWs {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl FeedWs {
    /// Connects to `ws://<addr>/ws/channels` over a socket with a tiny receive buffer, so the notifier soon
    /// cannot write to it unless it reads.
    pub async fn connect_with_tiny_buffer(addr: std::net::SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let url = format!("ws://{addr}/ws/channels");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("the WebSocket handshake succeeds");
        Self { ws }
    }

    /// Connects to `url` (`ws://…/ws/channels[?access_token=…]`), with `bearer` as `Authorization` if given;
    /// the handshake's HTTP status if refused, 0 if the connection failed (nothing listening).
    pub async fn connect(url: &str, bearer: Option<&str>) -> Result<Self, u16> {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        if let Some(key) = bearer {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(_) => Err(0),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("the frame is sent");
    }

    pub async fn subscribe(&mut self, channel_id: i64, after: Option<i64>) {
        let mut request = json!({"type": "subscribe", "channel_id": channel_id});
        if let Some(after) = after {
            request["after"] = after.into();
        }
        self.send_text(&request.to_string()).await;
    }

    /// The next text frame as JSON, within `within`; `None` if the connection ended or the time ran out.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Some(serde_json::from_str(&text).expect("every frame is JSON"));
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// The next text frame; panics naming `what` if none comes within `within`.
    pub async fn expect(&mut self, within: Duration, what: &str) -> Value {
        self.next(within)
            .await
            .unwrap_or_else(|| panic!("no frame within {within:?} while waiting for {what}"))
    }
}

/// One Server-Sent Event (comments are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Splits an SSE byte stream into events (the text/event-stream format: fields, blank line ends an event).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_field: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_field {
                    events.push(std::mem::take(&mut self.current));
                }
                self.has_field = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.has_field = true;
            match field {
                "event" => self.current.event = Some(value.into()),
                "id" => self.current.id = Some(value.into()),
                "retry" => self.current.retry = value.parse().ok(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        events
    }
}

/// A `/sse/channels/{id}` client.
#[derive(Debug)]
pub struct FeedSse {
    response: reqwest::Response,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl FeedSse {
    /// GETs `url` with these headers; the response's status if not 200 (0 if nothing answered).
    pub async fn connect(url: &str, headers: &[(&str, String)]) -> Result<Self, (u16, String)> {
        let mut request = reqwest::Client::new().get(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|error| (0, error.to_string()))?;
        if response.status() != 200 {
            let status = response.status().as_u16();
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(Self {
            response,
            parser: SseParser::default(),
            ready: Default::default(),
        })
    }

    /// The next event within `within`; `None` if the stream ended or the time ran out.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(event) = self.ready.pop_front() {
                    return Some(event);
                }
                match self.response.chunk().await {
                    Ok(Some(bytes)) => self.ready.extend(self.parser.push(&bytes)),
                    _ => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

/// Commits `n` messages to `channel_id` as a batcher does (offsets after the channel's locked head, in one
/// transaction), with contents `"c<channel> m<offset>"`; returns their offsets.
pub async fn commit_rows(db: &tokio_postgres::Client, channel_id: i64, n: i64) -> Vec<i64> {
    commit_padded(db, channel_id, n, 0).await
}

/// [`commit_rows`] with `pad` more characters (`x`) at the end of each content.
pub async fn commit_padded(
    db: &tokio_postgres::Client,
    channel_id: i64,
    n: i64,
    pad: i32,
) -> Vec<i64> {
    let rows = db
        .query(
            "WITH h AS (INSERT INTO channel_heads (channel_id, head) VALUES ($1, $2) \
                 ON CONFLICT (channel_id) DO UPDATE SET head = channel_heads.head + EXCLUDED.head \
                 RETURNING head) \
             INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at, channel_offset) \
             SELECT gen_random_uuid(), 1, $1, 'c' || $1 || ' m' || ((SELECT head FROM h) - $2 + g) || repeat('x', $3), now(), \
                 (SELECT head FROM h) - $2 + g \
             FROM generate_series(1, $2::bigint) AS g \
             RETURNING channel_offset",
            &[&channel_id, &n, &pad],
        )
        .await
        .expect("the rows commit");
    let mut offsets: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    offsets.sort_unstable();
    offsets
}

/// The `batch_persisted` event a batcher would publish for offsets `first..=last` of `channel_id`.
pub fn announcement(batch_id: i64, channel_id: i64, first: i64, last: i64) -> String {
    json!({
        "type": "batch_persisted",
        "ids": [],
        "batch_id": batch_id,
        "batch_size": last - first + 1,
        "worker_timestamp": "2025-01-01T00:00:00Z",
        "channels": [{"channel_id": channel_id, "first": first, "last": last}],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_on_blank_lines() {
        let mut parser = SseParser::default();
        assert_eq!(
            parser.push(b"retry: 1000\n\n: keep\n\nevent: message\nid: 4"),
            [SseEvent {
                retry: Some(1000),
                ..Default::default()
            }]
        );
        assert_eq!(
            parser.push(b"\ndata: {\"a\":1}\n\n"),
            [SseEvent {
                event: Some("message".into()),
                id: Some("4".into()),
                data: "{\"a\":1}".into(),
                retry: None,
            }]
        );
    }
}
