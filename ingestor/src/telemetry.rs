//! Request metrics: `ingestor_request_duration_seconds{method,path,status}` for every request, and
//! `ingestor_messages_rejected_total{reason}` for refused submissions.
//!
//! [`TrackRequestsLayer`] is added with `Router::layer`, which wraps each route (and the fallback) after
//! routing, so the route template (`MatchedPath`) is already in the request; a request that matched no route
//! has none and is labelled `unmatched`. It is a plain tower layer rather than `middleware::from_fn`, which
//! boxes a future and clones the inner service on every request: this runs on every `POST /messages`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use pipeline::telemetry::Metric;
use strum::VariantNames;
use tower::{Layer, Service};

use crate::error::{ErrorCode, Rejection};

/// Label for requests that matched no route (a fixed value, so unknown paths cannot blow up cardinality).
const UNMATCHED: &str = "unmatched";

/// Every metric the ingestor records: the one home of its name, type, help and labels (declared at start, listed
/// in docs/metrics.md by `scripts/gen-docs`).
pub fn metrics() -> &'static [Metric] {
    const METRICS: &[Metric] = &[
        Metric::Counter {
            name: "ingestor_messages_accepted_total",
            help: "Messages queued in Redis (each item of a batch or a simulation counts).",
            label: None,
        },
        Metric::Counter {
            name: "ingestor_messages_rejected_total",
            help: "Submissions refused, by error code.",
            label: Some(("reason", Rejection::VARIANTS)),
        },
        Metric::Histogram {
            name: "ingestor_request_duration_seconds",
            help: "HTTP request duration by method, matched route and status.",
            labels: &["method", "path", "status"],
        },
        // As last read for MAX_QUEUE_DEPTH (every 100 ms).
        pipeline::telemetry::QUEUE_DEPTH,
    ];
    METRICS
}

/// Messages accepted (each one in a batch or a simulation counts).
pub fn accepted(count: u64) {
    // The handle, once: asking the recorder hashes the name on every call, once per POST /messages.
    static ACCEPTED: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!("ingestor_messages_accepted_total"));
    ACCEPTED.increment(count);
}

/// Times every request and counts refused submissions by error code (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackRequestsLayer;

impl<S> Layer<S> for TrackRequestsLayer {
    type Service = TrackRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackRequests { inner }
    }
}

/// The service of [`TrackRequestsLayer`].
#[derive(Debug, Clone)]
pub struct TrackRequests<S> {
    inner: S,
}

impl<S> Service<Request> for TrackRequests<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = method_label(request.method());
        let path = request.extensions().get::<MatchedPath>().cloned();
        Tracked {
            inner: self.inner.call(request),
            started: Instant::now(),
            method,
            path,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TrackRequests`]: records once the response is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        path: Option<MatchedPath>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let path = this.path.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            record(this.method, path, response, this.started.elapsed());
        }
        Poll::Ready(result)
    }
}

fn record(method: &'static str, path: &str, response: &Response, elapsed: std::time::Duration) {
    if is_submission(method, path)
        && let Some(ErrorCode(reason)) = response.extensions().get::<ErrorCode>()
    {
        metrics::counter!("ingestor_messages_rejected_total", "reason" => *reason).increment(1);
    }
    let status = response.status();
    DURATIONS.with_borrow_mut(|durations| {
        let routes = durations.entry((method, status.as_u16())).or_default();
        let histogram = match routes.iter().position(|(route, _)| **route == *path) {
            Some(known) => &routes[known].1,
            None => {
                let histogram = metrics::histogram!(
                    "ingestor_request_duration_seconds",
                    "method" => method,
                    "path" => path.to_owned(),
                    "status" => status.as_str().to_owned(),
                );
                routes.push((path.into(), histogram));
                &routes[routes.len() - 1].1
            }
        };
        histogram.record(elapsed.as_secs_f64());
    });
}

/// `ingestor_request_duration_seconds` handles by (method, status), then route.
type Durations = HashMap<(&'static str, u16), Vec<(Box<str>, Histogram)>>;

thread_local! {
    /// Asking the recorder for a handle builds, allocates and hashes the label set on every call (~6% of
    /// a `POST /messages` in callgrind), while the (method, route, status) combinations a service sees are
    /// few and stable. Kept per thread, so no lock. The recorder is installed before the server starts
    /// (`run`), so no handle here predates it.
    static DURATIONS: RefCell<Durations> = RefCell::default();
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
