//! The body of `POST /simulate`'s 202, written a piece at a time.
//!
//! A million tracking ids are 16 MB as `Uuid`s but ~39 MB as JSON, and serialising the whole answer into one
//! buffer (which doubles as it grows) made the ingestor peak at 164 MiB. Here only the ids are held; their
//! JSON is made [`IDS_PER_PIECE`] at a time as the client reads, and the bytes are exactly those of
//! `serde_json::to_vec(&SimulateAccepted::new(..))` (tested), with a `Content-Length` known in advance.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pipeline::api::SimulateAccepted;
use uuid::Uuid;

/// Ids per piece of the body (~380 KB of JSON).
pub const IDS_PER_PIECE: usize = 10_000;

/// `"` + 36 characters of a hyphenated UUID + `"`.
const ID_JSON_LEN: usize = 38;

/// Where the ids go in the serialised answer without them.
const EMPTY_IDS: &str = "\"tracking_ids\":[]";

/// The 202 of a simulation that pushed `tracking_ids`: the JSON of [`SimulateAccepted::new`], streamed.
#[derive(Debug)]
pub struct SimulateAnswer {
    /// The JSON up to and including `"tracking_ids":[`.
    head: Bytes,
    ids: Vec<Uuid>,
    /// The JSON from the `]` closing the ids on.
    tail: Bytes,
}

impl SimulateAnswer {
    pub fn new(tracking_ids: Vec<Uuid>, queue_depth: u64, threshold: u64) -> Self {
        let summary =
            SimulateAccepted::without_ids(tracking_ids.len() as u64, queue_depth, threshold);
        // Serialising plain strings and integers cannot fail.
        let json = serde_json::to_string(&summary).expect("the answer serialises");
        // The field names and the status precede the ids, and no string before them can contain this text.
        let at = json.find(EMPTY_IDS).expect("the answer has tracking_ids") + EMPTY_IDS.len() - 1;
        Self {
            head: Bytes::copy_from_slice(&json.as_bytes()[..at]),
            ids: tracking_ids,
            tail: Bytes::copy_from_slice(&json.as_bytes()[at..]),
        }
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        let commas = self.ids.len().saturating_sub(1);
        self.head.len() + self.ids.len() * ID_JSON_LEN + commas + self.tail.len()
    }

    /// The body's pieces, in order: the head, the ids a piece at a time, the tail.
    fn pieces(self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let Self { head, ids, tail } = self;
        let count = ids.len();
        let id_pieces = (0..count)
            .step_by(IDS_PER_PIECE)
            .map(move |start| ids_json(&ids[start..count.min(start + IDS_PER_PIECE)], start));
        std::iter::once(head)
            .chain(id_pieces)
            .chain(std::iter::once(tail))
    }
}

/// The JSON of `ids`, which start at index `start` of the whole list (so all but the first are preceded by
/// a comma).
fn ids_json(ids: &[Uuid], start: usize) -> Bytes {
    let mut piece = Vec::with_capacity(ids.len() * (ID_JSON_LEN + 1));
    for (offset, id) in ids.iter().enumerate() {
        if start + offset > 0 {
            piece.push(b',');
        }
        piece.push(b'"');
        piece.extend_from_slice(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        piece.push(b'"');
    }
    Bytes::from(piece)
}

/// Pieces with a known total length, so the answer carries a `Content-Length`, as a buffered one did.
struct Pieces<I> {
    pieces: I,
    remaining: u64,
}

impl<I: Iterator<Item = Bytes> + Unpin> http_body::Body for Pieces<I> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let next = self.pieces.next();
        if let Some(piece) = &next {
            self.remaining -= piece.len() as u64;
        }
        Poll::Ready(next.map(|piece| Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

impl IntoResponse for SimulateAnswer {
    fn into_response(self) -> Response {
        let remaining = self.body_len() as u64;
        let body = Pieces {
            pieces: Box::new(self.pieces()),
            remaining,
        };
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = StatusCode::ACCEPTED;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(answer: SimulateAnswer) -> (usize, Vec<u8>) {
        let response = answer.into_response();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body();
        let hint = http_body::Body::size_hint(&body).exact().unwrap() as usize;
        (hint, body.collect().await.unwrap().to_bytes().to_vec())
    }

    #[tokio::test]
    async fn the_streamed_answer_is_byte_for_byte_the_serialised_one() {
        for count in [
            1,
            2,
            IDS_PER_PIECE - 1,
            IDS_PER_PIECE,
            IDS_PER_PIECE + 1,
            25_017,
        ] {
            let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
            let expected =
                serde_json::to_vec(&SimulateAccepted::new(ids.clone(), 130, 50)).unwrap();
            let answer = SimulateAnswer::new(ids, 130, 50);
            assert_eq!(answer.body_len(), expected.len(), "{count}");
            let (hint, body) = body_of(answer).await;
            assert_eq!(hint, expected.len(), "{count}");
            assert!(body == expected, "{count}: the bodies differ");
        }
    }
}
