//! `GET /metrics`: the process's Prometheus metrics, in the text exposition format.

use axum::response::IntoResponse;

/// Renders every metric recorded in this process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "The text exposition format.", body = String,
            content_type = "text/plain"),
    )
)]
pub async fn metrics() -> impl IntoResponse {
    pipeline::telemetry::exposition()
}
