//! `GET /openapi.json`: the OpenAPI document of the API, generated from the code.
//!
//! Each handler carries its own `#[utoipa::path]` (parameters, bodies, every status with its headers), and
//! [`crate::app::routes`] registers the handlers through utoipa-axum, so the router and the document are
//! built from the same list and cannot drift apart. This module adds what belongs to no handler (the
//! title, the tags, the two security schemes, the answers several endpoints share) and serves the document
//! [`crate::app::app`] hands it ([`Document`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use pipeline::api::ErrorBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

/// Name of the security scheme of the write endpoints (`API_KEYS`).
pub const WRITE_SCHEME: &str = "api_key";
/// Name of the security scheme of `DELETE /reset` (`ADMIN_API_KEY`).
pub const ADMIN_SCHEME: &str = "admin_key";

/// The parts of the document that belong to no handler.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ingestor",
        description = "HTTP front door of the ingestion pipeline: validates messages and queues them in \
                       Redis; a batcher persists them to PostgreSQL. Errors are JSON `ErrorBody` objects \
                       (`error` is a stable code). Write endpoints need a bearer key when API_KEYS is set; \
                       `DELETE /reset` needs ADMIN_API_KEY. 429 and 503 carry `Retry-After`.",
    ),
    tags(
        (name = "messages", description = "Submitting messages and watching them through the queue."),
        (name = "admin", description = "Destructive operations (need ADMIN_API_KEY)."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    ),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// Adds the bearer schemes the handlers' `security(...)` refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            WRITE_SCHEME,
            bearer(
                "One of the ingestor's API_KEYS (comma-separated). Required by POST /messages, \
                 /messages/batch and /simulate when API_KEYS is set; without it they are open.",
            ),
        );
        components.add_security_scheme(
            ADMIN_SCHEME,
            bearer("The ingestor's ADMIN_API_KEY. Without it set, DELETE /reset is refused (403)."),
        );
    }
}

/// The optional `Idempotency-Key` header of the submitting endpoints.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 128 visible ASCII characters. The same key returns the first request's answer (same ids)
    /// and queues nothing, for a day; also after a failed attempt (a 503 either queued and remembered the
    /// request, or did neither).
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// The `access_token` query parameter of the reading endpoints.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessToken {
    /// One of API_KEYS, for clients that cannot send an Authorization header.
    pub access_token: Option<String>,
}

/// What every 500 says.
const BUG: &str = "A bug; details are in the ingestor's log.";

/// The answers that the JSON write endpoints (`POST /messages`, `POST /simulate`) share besides their own.
#[derive(Debug, IntoResponses)]
pub enum WriteRefusals {
    #[response(status = 400, description = "The body is not JSON.")]
    NotJson(ErrorBody),
    #[response(status = 401, description = "API_KEYS is set and no listed key was sent as a bearer token.",
        headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
    NoKey(ErrorBody),
    #[response(status = 413, description = "The body is over 64 KiB.")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "The content type is not JSON.")]
    NotJsonContent(ErrorBody),
    #[response(status = 429, description = "The queue is over MAX_QUEUE_DEPTH; nothing was queued.",
        headers(("Retry-After" = u32, description = "Seconds to wait.")))]
    QueueFull(ErrorBody),
    #[response(status = 500, description = BUG)]
    Bug(ErrorBody),
}

/// The failures that the endpoints reading content from PostgreSQL (`GET /messages`, a channel's
/// messages) share besides their own.
#[derive(Debug, IntoResponses)]
pub enum ReadFailures {
    #[response(status = 401, description = "API_KEYS is set and no listed key was sent.",
        headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
    NoKey(ErrorBody),
    #[response(status = 500, description = BUG)]
    Bug(ErrorBody),
    #[response(status = 503, description = "PostgreSQL is unavailable; retry.",
        headers(("Retry-After" = u32, description = "Seconds to wait.")))]
    Unavailable(ErrorBody),
}

/// The failures of the endpoints that need both Redis and PostgreSQL (`GET /queue/status`, `DELETE /reset`).
#[derive(Debug, IntoResponses)]
pub enum StoresFailures {
    #[response(status = 500, description = BUG)]
    Bug(ErrorBody),
    #[response(status = 503, description = "Redis or PostgreSQL is unavailable; retry.",
        headers(("Retry-After" = u32, description = "Seconds to wait.")))]
    Unavailable(ErrorBody),
}

/// The document as served, made once by [`crate::app::app`] from the route list the router comes from and
/// handed to the handlers that show it (`GET /openapi.json`, `GET /`) as an `Extension`: so this module
/// needs nothing from the router.
#[derive(Debug)]
pub struct Document {
    json: Bytes,
    endpoints: BTreeMap<String, String>,
}

impl Document {
    /// Serialises `document` (every route of [`crate::app::routes`] plus [`ApiDoc`]). utoipa's response
    /// headers have no `required`, yet every header the document names is always sent with its status
    /// (`Retry-After` with 429 and 503, `WWW-Authenticate` with 401), so each is marked required here, for
    /// clients and for checkers such as schemathesis.
    pub fn new(document: &utoipa::openapi::OpenApi) -> Self {
        Self {
            json: Bytes::from(json(document)),
            endpoints: endpoints(document),
        }
    }

    /// The document as JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Every operation as `"<METHOD> <path>"` → its summary, for `GET /`; the WebSocket route is listed as
    /// `"WS /ws/stats"`, as the original lists it.
    pub fn endpoints(&self) -> &BTreeMap<String, String> {
        &self.endpoints
    }
}

fn endpoints(document: &utoipa::openapi::OpenApi) -> BTreeMap<String, String> {
    let mut endpoints = BTreeMap::new();
    for (path, item) in &document.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let method = if path == crate::routes::ws_stats::PATH {
                "WS"
            } else {
                method
            };
            let summary = operation.summary.clone().unwrap_or_default();
            endpoints.insert(format!("{method} {path}"), summary);
        }
    }
    endpoints
}

fn json(document: &utoipa::openapi::OpenApi) -> String {
    let mut document = serde_json::to_value(document).expect("the OpenAPI document serialises");
    let operations = document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|path| path.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut);
        for response in responses.into_iter().flat_map(|r| r.values_mut()) {
            let headers = response
                .get_mut("headers")
                .and_then(serde_json::Value::as_object_mut);
            for header in headers.into_iter().flat_map(|h| h.values_mut()) {
                if let Some(header) = header.as_object_mut() {
                    header.insert("required".into(), serde_json::Value::Bool(true));
                }
            }
        }
    }
    serde_json::to_string_pretty(&document).expect("JSON serialises")
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json",
        body = Object)),
)]
pub async fn openapi_json(Extension(document): Extension<Arc<Document>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.json.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::api::{MAX_CONTENT_CHARS, MAX_LIST_LIMIT, MAX_SIMULATE_COUNT};
    use serde_json::Value;

    fn document() -> Document {
        Document::new(&crate::app::routes().into_openapi())
    }

    fn doc() -> Value {
        serde_json::from_slice(document().json()).unwrap()
    }

    const WRITES: [(&str, &str); 3] = [
        ("/messages", "post"),
        ("/messages/batch", "post"),
        ("/simulate", "post"),
    ];

    #[test]
    fn every_route_is_documented_with_its_methods() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{method} {path}"))
            })
            .collect();
        documented.sort();
        assert_eq!(
            documented,
            [
                "delete /reset",
                "get /",
                "get /channels/{channel_id}/messages",
                "get /health",
                "get /messages",
                "get /metrics",
                "get /openapi.json",
                "get /queue/status",
                "get /ready",
                "get /ws/stats",
                "post /messages",
                "post /messages/batch",
                "post /simulate",
            ]
        );
    }

    #[test]
    fn the_service_description_lists_every_endpoint_the_original_lists() {
        let document = document();
        let endpoints = document.endpoints();
        for original in testkit::seed::ENDPOINTS {
            let summary = endpoints
                .get(original)
                .unwrap_or_else(|| panic!("{original} missing"));
            assert!(!summary.is_empty(), "{original} has no description");
        }
        assert!(endpoints.contains_key("DELETE /reset"));
        assert!(!endpoints.contains_key("GET /ws/stats"));
        assert!(endpoints.contains_key("GET /ready"));
        assert!(endpoints.contains_key("GET /channels/{channel_id}/messages"));
        assert_eq!(endpoints.len(), 13);
    }

    #[test]
    fn write_endpoints_document_their_key_errors_and_retry_headers() {
        let doc = doc();
        for (path, method) in WRITES {
            let operation = &doc["paths"][path][method];
            assert_eq!(
                operation["security"],
                serde_json::json!([{ WRITE_SCHEME: [] }]),
                "{path}"
            );
            let responses = &operation["responses"];
            for status in ["400", "401", "413", "415", "422", "429", "500", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert!(
                    schema.as_str().is_some_and(|r| r.ends_with("ErrorBody")),
                    "{path} {status}: {schema}"
                );
            }
            let header = |status: &str, name: &str| responses[status]["headers"][name].clone();
            assert_eq!(
                header("401", "WWW-Authenticate")["required"],
                true,
                "{path}"
            );
            for status in ["429", "503"] {
                assert_eq!(header(status, "Retry-After")["required"], true, "{path}");
            }
        }
        for path in ["/messages", "/messages/batch"] {
            let parameters = doc["paths"][path]["post"]["parameters"].as_array().unwrap();
            let key = parameters
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap_or_else(|| panic!("{path} documents Idempotency-Key"));
            assert_eq!(key["in"], "header");
            assert_eq!(key["required"], false);
            assert_eq!(
                key["schema"]["maxLength"],
                crate::idempotency::MAX_KEY_LEN as u64
            );
        }
    }

    #[test]
    fn reset_documents_the_admin_key_and_both_refusals() {
        let doc = doc();
        let reset = &doc["paths"]["/reset"]["delete"];
        assert_eq!(reset["security"], serde_json::json!([{ ADMIN_SCHEME: [] }]));
        for status in ["200", "401", "403", "503"] {
            assert!(reset["responses"][status].is_object(), "{status}");
        }
        let schemes = &doc["components"]["securitySchemes"];
        for name in [WRITE_SCHEME, ADMIN_SCHEME] {
            assert_eq!(schemes[name]["type"], "http");
            assert_eq!(schemes[name]["scheme"], "bearer");
        }
        // Reading content needs a key; the other read-only endpoints need none.
        for path in ["/messages", "/channels/{channel_id}/messages"] {
            let operation = &doc["paths"][path]["get"];
            assert_eq!(
                operation["security"],
                serde_json::json!([{ WRITE_SCHEME: [] }]),
                "{path}"
            );
            assert!(operation["responses"]["401"].is_object(), "{path}");
        }
        for path in ["/queue/status", "/health", "/ready", "/metrics"] {
            assert!(doc["paths"][path]["get"]["security"].is_null(), "{path}");
        }
    }

    #[test]
    fn documented_limits_are_the_enforced_ones() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let content = &schemas["NewMessage"]["properties"]["content"];
        assert_eq!(content["maxLength"], MAX_CONTENT_CHARS as u64);
        assert_eq!(content["minLength"], 1);
        for id in ["user_id", "channel_id"] {
            assert_eq!(schemas["NewMessage"]["properties"][id]["minimum"], 1);
        }
        let count = &schemas["SimulateRequest"]["properties"]["count"];
        assert_eq!(count["maximum"], MAX_SIMULATE_COUNT);
        assert_eq!(count["minimum"], 1);
        assert_eq!(
            schemas["MessageBatch"]["maxItems"],
            crate::domain::MAX_BATCH_MESSAGES as u64
        );
        assert_eq!(schemas["MessageBatch"]["minItems"], 1);
        let limit = &doc["paths"]["/messages"]["get"]["parameters"][0];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["schema"]["maximum"], MAX_LIST_LIMIT);
    }
}
