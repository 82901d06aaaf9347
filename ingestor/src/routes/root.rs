//! `GET /`: what this service is, as the original describes itself there (`service`, `status: "running"`,
//! `batch_config`, `endpoints`), plus our `version` and where the full API document is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;

use crate::openapi::Document;
use crate::state::AppState;

/// The original's service name, kept so that clients which show or check it see what they expect.
pub const SERVICE: &str = "High-Speed Message Ingestor";

/// The body of `GET /`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceDescription {
    /// Always `"High-Speed Message Ingestor"`, the original's name.
    pub service: &'static str,
    /// Always `"running"`: anything that answers is running (`/health` says whether Redis and PostgreSQL do).
    pub status: &'static str,
    pub batch_config: BatchSettings,
    /// Every endpoint as `"<METHOD> <path>"` (`"WS /ws/stats"` for the WebSocket) → what it does.
    pub endpoints: BTreeMap<String, String>,
    /// This build's version (ours; the original has none).
    pub version: &'static str,
    /// Where the OpenAPI document is (ours).
    pub openapi: &'static str,
}

/// `BATCH_SIZE` and `BATCH_TIMEOUT`, as the batchers apply them (the services share the variables).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchSettings {
    pub batch_size: u64,
    /// `BATCH_TIMEOUT` in seconds: a whole number when it is one (as the original sends it), else a fraction.
    #[schema(value_type = f64)]
    pub timeout_seconds: serde_json::Number,
}

#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    summary = "What this service is: name, batch settings and endpoints",
    responses((status = 200, description = "Always, while the ingestor runs.", body = ServiceDescription)),
)]
pub async fn describe(
    State(state): State<AppState>,
    Extension(document): Extension<Arc<Document>>,
) -> Json<ServiceDescription> {
    Json(ServiceDescription {
        service: SERVICE,
        status: "running",
        batch_config: BatchSettings {
            batch_size: state.flush_threshold,
            timeout_seconds: seconds(state.batch_timeout),
        },
        endpoints: document.endpoints().clone(),
        version: env!("CARGO_PKG_VERSION"),
        openapi: "/openapi.json",
    })
}

/// `30 s` → `30`, `50 ms` → `0.05`: the original's clients read an integer, and whole seconds stay one.
pub fn seconds(duration: Duration) -> serde_json::Number {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().into()
    } else {
        serde_json::Number::from_f64(duration.as_secs_f64()).unwrap_or_else(|| 0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_are_integers_and_fractions_stay_fractions() {
        assert_eq!(
            serde_json::json!(seconds(Duration::from_secs(30))).to_string(),
            "30"
        );
        assert_eq!(
            serde_json::json!(seconds(Duration::from_millis(50))).to_string(),
            "0.05"
        );
        assert_eq!(
            serde_json::json!(seconds(Duration::from_millis(2500))).to_string(),
            "2.5"
        );
    }
}
