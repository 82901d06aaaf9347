//! The HTTP layer's one error type: each status the notifier answers with is produced here and only here.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use pipeline::api::ErrorBody;

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("too many WebSocket clients; try again later")]
    TooManyClients,
    /// A browser page whose origin is neither the notifier's own nor in `WS_ORIGINS`.
    #[error(
        "this page's origin may not open a WebSocket here; add it to the notifier's WS_ORIGINS"
    )]
    OriginNotAllowed,
    /// `API_KEYS` is set and the request carries none of them.
    #[error(
        "reading channels needs one of the notifier's API_KEYS, as `Authorization: Bearer <key>` or the `access_token` query parameter"
    )]
    Unauthorized,
    /// A path or query parameter that is not valid.
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// PostgreSQL could not be read.
    #[error("PostgreSQL is unavailable: {0}")]
    DatabaseUnavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            Self::TooManyClients => (StatusCode::SERVICE_UNAVAILABLE, "too_many_clients"),
            Self::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            Self::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
        };
        let field = match &self {
            Self::InvalidField { field, .. } => Some((*field).to_owned()),
            _ => None,
        };
        let body = ErrorBody {
            error: code.into(),
            message: self.to_string(),
            field,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
