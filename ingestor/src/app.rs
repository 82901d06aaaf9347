//! The router: every route with its OpenAPI description, in one list from which both the router and the
//! document (`GET /openapi.json`) are made, plus the fallbacks and the layers every request passes.

use std::sync::Arc;

use axum::{Extension, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::{self, ApiDoc};
use crate::routes::{
    batch, channel_messages, health, messages, metrics, queue_status, ready, reset, root, simulate,
    ws_stats,
};
use crate::state::AppState;
use crate::{cors, error, telemetry};

/// Every route, each with its OpenAPI description: the one list both the router and the document come from.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::create, messages::list))
        .routes(routes!(channel_messages::history))
        .routes(routes!(batch::create_batch))
        .routes(routes!(simulate::simulate))
        .routes(routes!(queue_status::queue_status))
        .routes(routes!(reset::reset))
        .routes(routes!(health::health))
        .routes(routes!(ready::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(root::describe))
        .routes(routes!(ws_stats::ws_stats))
}

/// The router with every route, the JSON fallbacks, request metrics and CORS, and the OpenAPI document made
/// from the same list (for the handlers that show it).
pub fn app(state: AppState) -> Router {
    let (router, document) = routes().split_for_parts();
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(Extension(Arc::new(openapi::Document::new(&document))))
        .layer(telemetry::TrackRequestsLayer)
        .layer(cors::layer(&state.cors_origins))
        .with_state(state)
}
