//! One keep-alive HTTP/1.1 connection, written and read in the calling task.
//!
//! The generator shares two cores with what it measures, so every microsecond it spends per request is taken
//! from the pipeline. A general client (hyper's, even through its connection API) hands each request to a
//! connection task and the answer back, two task wake-ups per request, and allocates a request and a header
//! map; here a request is one buffer written with one system call, and the answer is parsed by `httparse`
//! (hyper's own parser) straight from the read buffer. That is all the generator needs: it talks only to our
//! services and the bare ceiling server, which always answer with a `Content-Length`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers we make room for in an answer (ours carry at most about ten).
const MAX_HEADERS: usize = 32;
/// Read buffer; grown when an answer is larger.
const READ_CHUNK: usize = 16 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection before answering in full")]
    Closed,
    #[error("unreadable answer: {0}")]
    Protocol(String),
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// `Retry-After` in seconds (429 and 503 carry it).
    pub retry_after: Option<Duration>,
}

/// A connection to `addr`, re-made on the next request after it breaks or the server closes it.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    read: BytesMut,
}

impl Connection {
    /// A connection to `addr`; it connects on first use.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            request: Vec::with_capacity(1024),
            read: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// `POST path` with a JSON body; the status and the whole response body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<Answer, ClientError> {
        self.send("POST", path, &body).await
    }

    /// `GET path`; the status and the whole response body.
    pub async fn get(&mut self, path: &str) -> Result<Answer, ClientError> {
        self.send("GET", path, &[]).await
    }

    async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Answer, ClientError> {
        self.request.clear();
        write_request(&mut self.request, method, path, self.addr, body);
        let result = self.exchange().await;
        if !matches!(result, Ok((_, true))) {
            // Broken, half-read or closing: the next request starts a fresh connection.
            self.stream = None;
            self.read.clear();
        }
        result.map(|(answer, _)| answer)
    }

    /// Writes the request and reads one answer; also says whether the connection may be used again.
    async fn exchange(&mut self) -> Result<(Answer, bool), ClientError> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect(self.addr).await?),
        };
        stream.write_all(&self.request).await?;
        loop {
            if let Some(head) = parse_head(&self.read)? {
                let total = head.length + head.body_length;
                while self.read.len() < total {
                    self.read.reserve(total - self.read.len());
                    if stream.read_buf(&mut self.read).await? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
                let body = self.read.split_to(total).split_off(head.length).freeze();
                let answer = Answer {
                    status: head.status,
                    body,
                    retry_after: head.retry_after,
                };
                return Ok((answer, head.keep_alive));
            }
            self.read.reserve(READ_CHUNK);
            if stream.read_buf(&mut self.read).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| ClientError::Connect(addr, error))?;
    // Small requests must leave at once, not wait for Nagle.
    stream
        .set_nodelay(true)
        .map_err(|error| ClientError::Connect(addr, error))?;
    Ok(stream)
}

/// The request line, the headers and the body, in one buffer.
fn write_request(out: &mut Vec<u8>, method: &str, path: &str, host: SocketAddr, body: &[u8]) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    if method != "GET" {
        let _ = write!(
            out,
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// What the head of an answer says.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: StatusCode,
    /// Bytes of the head, blank line included.
    length: usize,
    body_length: usize,
    retry_after: Option<Duration>,
    keep_alive: bool,
}

/// The head at the start of `buffer`, or `None` while it is incomplete.
fn parse_head(buffer: &[u8]) -> Result<Option<Head>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ClientError::Protocol(error.to_string())),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ClientError::Protocol("no valid status".into()))?;
    let mut body_length = None;
    let mut retry_after = None;
    let mut keep_alive = true;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            body_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| ClientError::Protocol(format!("bad content-length {value:?}")))?,
            );
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Protocol(format!(
                "transfer-encoding {value:?} is not supported (the services send a content-length)"
            )));
        }
    }
    let body_length = body_length
        .ok_or_else(|| ClientError::Protocol(format!("{status} without content-length")))?;
    Ok(Some(Head {
        status,
        length,
        body_length,
        retry_after,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_in_one_buffer() {
        let mut out = Vec::new();
        let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        write_request(&mut out, "POST", "/messages", addr, b"{}");
        assert_eq!(
            out,
            b"POST /messages HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\n\
              content-length: 2\r\n\r\n{}"
        );
        out.clear();
        write_request(&mut out, "GET", "/health", addr, b"");
        assert_eq!(out, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n");
    }

    #[test]
    fn heads_are_read_once_complete() {
        let answer =
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\nretry-after: 2\r\n\r\nfull!";
        let head_end = answer.len() - 5;
        assert_eq!(parse_head(&answer[..head_end - 1]).unwrap(), None);
        assert_eq!(
            parse_head(answer).unwrap(),
            Some(Head {
                status: StatusCode::TOO_MANY_REQUESTS,
                length: head_end,
                body_length: 5,
                retry_after: Some(Duration::from_secs(2)),
                keep_alive: true,
            })
        );
        let closing = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert!(!parse_head(closing).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn answers_without_a_length_are_refused() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(chunked), Err(ClientError::Protocol(_))));
        let bare = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(parse_head(bare), Err(ClientError::Protocol(_))));
        assert!(matches!(
            parse_head(b"SMTP nonsense\r\n\r\n"),
            Err(ClientError::Protocol(_))
        ));
    }
}
