//! CORS for the dashboard and other browser clients, at no cost to every other client: `CORS_ORIGINS`'s
//! values, the layer made from them, and the layer's shortcut.
//!
//! tower-http's `Cors` answers browsers. But axum clones the service stack for every request, cloning `Cors`
//! copies its whole configuration (lists of header values), and it builds a header map for every answer:
//! 13% of the instructions of a `POST /messages` (callgrind), paid by clients that never use CORS.
//!
//! A request that is not a preflight (`OPTIONS`) and carries no `Origin` header is not a CORS request: all
//! `Cors` does for it is add the headers it adds to every answer (`Vary`, `Access-Control-Expose-Headers`).
//! [`BrowserCorsLayer`] asks `Cors` once, at start, which headers those are, adds them itself to such
//! answers, and sends every other request (every browser's) through `Cors` as configured.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use futures_util::FutureExt;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{self, AllowOrigin, Cors, CorsLayer};

/// [`CorsLayer`], skipped for requests that are not CORS requests (see the module docs).
#[derive(Debug, Clone)]
pub struct BrowserCorsLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    cors: CorsLayer,
    /// What `cors` adds to the answer of a request that is not a CORS request.
    unconditional: HeaderMap,
}

impl BrowserCorsLayer {
    pub fn new(cors: CorsLayer) -> Self {
        let unconditional = headers_added_to_a_non_cors_request(&cors);
        Self {
            shared: Arc::new(Shared {
                cors,
                unconditional,
            }),
        }
    }
}

/// Runs `cors` once around a service that answers with no headers, for a `GET` without `Origin`: every
/// header of the answer is one `cors` adds. Both futures are ready at once (no I/O anywhere).
fn headers_added_to_a_non_cors_request(cors: &CorsLayer) -> HeaderMap {
    let bare =
        tower::service_fn(|_: Request| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let answer = cors
        .layer(bare)
        .oneshot(Request::new(Body::empty()))
        .now_or_never()
        .expect("CORS answers a request without Origin at once");
    match answer {
        Ok(response) => response.headers().clone(),
        Err(never) => match never {},
    }
}

impl<S> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`BrowserCorsLayer`]; cloning it clones the inner service and one `Arc`.
#[derive(Debug, Clone)]
pub struct BrowserCors<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BrowserCorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            // `Cors` takes the service by value: hand it the one that was polled ready, keep a clone.
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            let mut cors: Cors<S> = self.shared.cors.layer(ready);
            BrowserCorsFuture::Cors {
                future: cors.call(request),
            }
        } else {
            BrowserCorsFuture::NotCors {
                future: self.inner.call(request),
                shared: Arc::clone(&self.shared),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`BrowserCors`].
    #[project = BrowserCorsProjection]
    pub enum BrowserCorsFuture<F> {
        Cors { #[pin] future: cors::ResponseFuture<F> },
        NotCors { #[pin] future: F, shared: Arc<Shared> },
    }
}

impl<F, E> Future for BrowserCorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BrowserCorsProjection::Cors { future } => future.poll(cx),
            BrowserCorsProjection::NotCors { future, shared } => {
                let mut response = ready!(future.poll(cx))?;
                let headers = response.headers_mut();
                // As `Cors` does: `Vary` is added to the answer's own, the others replace any of theirs.
                for (name, value) in &shared.unconditional {
                    if name == header::VARY {
                        headers.append(name, value.clone());
                    } else {
                        headers.insert(name, value.clone());
                    }
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// The CORS layer for `CORS_ORIGINS`, applied to CORS requests only (see [`BrowserCorsLayer`]).
pub fn layer(origins: &[String]) -> BrowserCorsLayer {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter(|origin| !origin.is_empty())
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER]);
    BrowserCorsLayer::new(cors)
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::HeaderValue;

    fn layer() -> CorsLayer {
        CorsLayer::new()
            .allow_origin([HeaderValue::from_static("http://127.0.0.1:8001")])
            .allow_methods([Method::GET, Method::POST])
            .expose_headers([header::RETRY_AFTER])
    }

    type BoxedHandler = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

    /// The headers of the answer to `request` through `layer`, around a handler that sets its own `Vary`.
    async fn answer<L: Layer<BoxedHandler>>(layer: &L, request: Request) -> HeaderMap
    where
        L::Service: Service<Request, Response = Response, Error = Infallible>,
    {
        let handler: BoxedHandler =
            tower::util::BoxCloneSyncService::new(tower::service_fn(|_: Request| async {
                let mut response = Response::new(Body::empty());
                response
                    .headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                Ok::<_, Infallible>(response)
            }));
        let response = layer.layer(handler).oneshot(request).await.unwrap();
        response.headers().clone()
    }

    fn request(method: Method, origin: Option<&'static str>) -> Request {
        let mut builder = Request::builder().method(method).uri("/messages");
        if let Some(origin) = origin {
            builder = builder
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        }
        builder.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn every_answer_has_the_same_headers_as_with_cors_itself() {
        let ours = BrowserCorsLayer::new(layer());
        for (method, origin) in [
            (Method::POST, None),
            (Method::GET, None),
            (Method::POST, Some("http://127.0.0.1:8001")),
            (Method::POST, Some("http://evil.example")),
            (Method::OPTIONS, Some("http://127.0.0.1:8001")),
            (Method::OPTIONS, None),
        ] {
            let expected = answer(&layer(), request(method.clone(), origin)).await;
            let got = answer(&ours, request(method.clone(), origin)).await;
            assert_eq!(got, expected, "{method} with Origin {origin:?}");
        }
    }

    #[test]
    fn the_headers_of_a_non_cors_request_are_learned_from_cors() {
        let headers = headers_added_to_a_non_cors_request(&layer());
        // tower-http's choice of `Vary` for this configuration.
        assert_eq!(headers[header::VARY], "origin");
        assert_eq!(
            headers[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "retry-after"
        );
        assert_eq!(headers.len(), 2, "{headers:?}");
    }
}
