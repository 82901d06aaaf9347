//! Request metrics: `ingestor_request_duration_seconds{method,path,status}` for every request, and
//! `ingestor_messages_rejected_total{reason}` for refused submissions.
//!
//! Two layers because the route template (`MatchedPath`) is only known after routing, while the outer layer
//! must also see 404s: the inner one copies the template into the response for the outer one to read.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ErrorCode;

/// Label for requests that matched no route (a fixed value, so unknown paths cannot blow up cardinality).
const UNMATCHED: &str = "unmatched";

/// Error codes a submission can be refused with: each gets its `ingestor_messages_rejected_total` series at 0.
const REJECTION_REASONS: &[&str] = &[
    "malformed_json",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_field",
    "unauthorized",
    "queue_full",
    "redis_unavailable",
    "internal",
];

/// Declares the ingestor's metrics, so that each is on `/metrics` from the first scrape.
pub fn declare_metrics() {
    use pipeline::telemetry::Metric;
    pipeline::telemetry::declare(&[
        Metric::Counter {
            name: "ingestor_messages_accepted_total",
            help: "Messages queued in Redis (each item of a batch or a simulation counts).",
            label: None,
        },
        Metric::Counter {
            name: "ingestor_messages_rejected_total",
            help: "Submissions refused, by error code.",
            label: Some(("reason", REJECTION_REASONS)),
        },
        Metric::Histogram {
            name: "ingestor_request_duration_seconds",
            help: "HTTP request duration by method, matched route and status.",
        },
        Metric::Gauge {
            name: "ingestor_queue_depth",
            help: "Messages pending in Redis plus those held by batchers, as last read for MAX_QUEUE_DEPTH.",
        },
    ]);
}

/// Messages accepted (each one in a batch or a simulation counts).
pub fn accepted(count: u64) {
    metrics::counter!("ingestor_messages_accepted_total").increment(count);
}

/// Route layer: leaves the matched route template in the response's extensions.
pub async fn remember_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// Outer layer: times every request and counts refused submissions by error code.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let path = response
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let status = response.status().as_u16().to_string();
    if is_submission(method, &path)
        && let Some(ErrorCode(reason)) = response.extensions().get::<ErrorCode>()
    {
        metrics::counter!("ingestor_messages_rejected_total", "reason" => *reason).increment(1);
    }
    metrics::histogram!(
        "ingestor_request_duration_seconds",
        "method" => method,
        "path" => path,
        "status" => status,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: the standard ones by name, any other as `other`, since clients may send any
/// token as a method and each distinct label value is a new series.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// Requests that submit messages; a refusal there is a rejected message (one per request, for a batch too).
fn is_submission(method: &str, path: &str) -> bool {
    method == "POST" && matches!(path, "/messages" | "/messages/batch" | "/simulate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for custom in ["QUERY", "FOO", "get"] {
            let method = Method::from_bytes(custom.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{custom}");
        }
    }
}
