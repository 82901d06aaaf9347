//! [`ApiError`]: every error the API answers with, and the one place each status is produced.
//!
//! The body is always `pipeline::api::ErrorBody` (`{"error", "message", "field"?}`), plus `invalid_indexes`
//! for a refused batch. Details of server-side failures go to the log, never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pipeline::api::ErrorBody;
use serde::Serialize;

use crate::domain::FieldError;

/// An error response of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON (syntax error, empty, trailing garbage).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 413: the body is over the endpoint's limit.
    #[error("request body is larger than the limit of {limit} bytes for this endpoint")]
    PayloadTooLarge { limit: usize },
    /// 415: the content type is missing or not JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 422: JSON, but a field is missing, mistyped or out of range.
    #[error("{message}")]
    InvalidField {
        /// JSON path of the offending field (`content`, `[3].user_id`); `None` when the body as a whole is wrong.
        field: Option<String>,
        message: String,
        /// For a batch: every refused item, ascending.
        invalid_indexes: Option<Vec<usize>>,
    },
    /// 401 + `WWW-Authenticate: Bearer`: no bearer token, or not one of the keys `needs` names.
    #[error("missing or wrong key: send `Authorization: Bearer <key>` where <key> is {needs}")]
    Unauthorized { needs: &'static str },
    /// 403: `DELETE /reset` while `ADMIN_API_KEY` is unset.
    #[error(
        "DELETE /reset is disabled: set ADMIN_API_KEY on the ingestor to enable it, then send `Authorization: Bearer <ADMIN_API_KEY>`"
    )]
    ResetDisabled,
    /// 400: `GET /ws/stats` without a WebSocket upgrade.
    #[error("GET /ws/stats is a WebSocket: connect with a WebSocket client ({0})")]
    NotAWebSocket(String),
    /// 502 + `Retry-After`: the notifier behind `GET /ws/stats` is unreachable or refused.
    #[error("the notifier is unavailable: {0}")]
    NotifierUnavailable(String),
    /// 404.
    #[error("no such endpoint")]
    NotFound,
    /// 405.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 429 + `Retry-After`: `incoming` more messages would take the queue (`depth`) past `MAX_QUEUE_DEPTH`.
    #[error(
        "the queue holds {depth} messages and {incoming} more would exceed MAX_QUEUE_DEPTH ({limit}); nothing was queued, retry later"
    )]
    QueueFull {
        depth: u64,
        incoming: u64,
        limit: u64,
    },
    /// 503 + `Retry-After`: Redis refused, failed or timed out; the message was not accepted.
    #[error("Redis is unavailable: {0}")]
    RedisUnavailable(String),
    /// 503 `partly_queued` + `Retry-After`: a submission spread over queue shards was queued in some shards
    /// only (each shard's part is all or nothing), because a later shard's queue was full or its Redis failed.
    /// The body says how many messages were queued; a retry with the same `Idempotency-Key` queues exactly the
    /// rest, one without a key queues the queued part again.
    #[error("{queued} of the {total} messages were queued: {cause}")]
    PartlyQueued {
        queued: usize,
        total: usize,
        /// Why the rest was not.
        cause: PartRefused,
        /// Whether the request had an `Idempotency-Key` (what a retry does depends on it).
        keyed: bool,
    },
    /// 503 + `Retry-After`: the large-body memory budget stayed spent by other requests for `waited`
    /// (see `extract::LARGE_BODIES_BUDGET`); nothing of this request was read or queued.
    #[error(
        "the ingestor is reading as many large bodies as its memory budget allows and none finished within \
         {waited:?}; nothing was queued, retry later"
    )]
    Busy { waited: std::time::Duration },
    /// 503 + `Retry-After`: PostgreSQL refused, failed or timed out.
    #[error("PostgreSQL is unavailable: {0}")]
    DatabaseUnavailable(String),
    /// 500: a bug or an unexpected answer; the detail is logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the rest of a partly queued submission was not queued.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PartRefused {
    /// A shard's push found the queue at `MAX_QUEUE_DEPTH` (other ingestors filled it since the admission).
    #[error("the queue is full ({0})")]
    QueueFull(String),
    /// Redis refused, failed or did not answer for a shard.
    #[error("Redis is unavailable ({0})")]
    RedisUnavailable(String),
}

impl From<&crate::enqueue::EnqueueError> for PartRefused {
    fn from(error: &crate::enqueue::EnqueueError) -> Self {
        match error {
            crate::enqueue::EnqueueError::Full { .. } => Self::QueueFull(error.to_string()),
            other => Self::RedisUnavailable(other.to_string()),
        }
    }
}

/// The error codes a submission (`POST /messages`, `/messages/batch`, `/simulate`) can be refused with: the
/// values of `ingestor_messages_rejected_total`'s `reason` label, each with its series from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum Rejection {
    MalformedJson,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidField,
    Unauthorized,
    QueueFull,
    RedisUnavailable,
    PartlyQueued,
    Busy,
    Internal,
}

/// Seconds a client should wait before retrying after a 429 or 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// The `error` code of a response, left in its extensions for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// An error of `POST /messages/batch`: the usual error body, plus, when items were refused, every refused
/// index (ascending). Every other endpoint answers errors with `ErrorBody` alone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchErrorBody {
    #[serde(flatten)]
    pub body: ErrorBody,
    /// Indexes of every refused message, ascending (only for `invalid_field` on items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_indexes: Option<Vec<usize>>,
    /// How many of the messages were queued (only for `partly_queued`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<usize>,
}

impl ApiError {
    /// A 422 for `field`.
    pub fn invalid_field(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::InvalidField {
            message: format!("{field}: {message}"),
            field: Some(field),
            invalid_indexes: None,
        }
    }

    /// A 422 for the body as a whole (wrong shape, batch of the wrong size).
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: None,
            message: message.into(),
            invalid_indexes: None,
        }
    }

    /// The machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => Rejection::MalformedJson.into(),
            Self::PayloadTooLarge { .. } => Rejection::PayloadTooLarge.into(),
            Self::UnsupportedMediaType => Rejection::UnsupportedMediaType.into(),
            Self::InvalidField { .. } => Rejection::InvalidField.into(),
            Self::Unauthorized { .. } => Rejection::Unauthorized.into(),
            Self::ResetDisabled => "forbidden",
            Self::NotAWebSocket(_) => "not_a_websocket",
            Self::NotifierUnavailable(_) => "notifier_unavailable",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::QueueFull { .. } => Rejection::QueueFull.into(),
            Self::RedisUnavailable(_) => Rejection::RedisUnavailable.into(),
            Self::PartlyQueued { .. } => Rejection::PartlyQueued.into(),
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::Busy { .. } => Rejection::Busy.into(),
            Self::Internal(_) => Rejection::Internal.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::ResetDisabled => StatusCode::FORBIDDEN,
            Self::NotAWebSocket(_) => StatusCode::BAD_REQUEST,
            Self::NotifierUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RedisUnavailable(_)
            | Self::PartlyQueued { .. }
            | Self::DatabaseUnavailable(_)
            | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client reads: server-side failures say what failed, not why (that is in the log).
    fn public_message(&self) -> String {
        match self {
            Self::RedisUnavailable(_) => "Redis is unavailable; retry later".into(),
            Self::PartlyQueued {
                queued,
                total,
                cause,
                keyed,
            } => {
                let cause = match cause {
                    PartRefused::QueueFull(_) => "the queue is full",
                    PartRefused::RedisUnavailable(_) => "Redis is unavailable",
                };
                let retry = if *keyed {
                    "retry with the same Idempotency-Key to queue the rest exactly once"
                } else {
                    "a retry queues all of them again (the queued ones twice): send an Idempotency-Key to make \
                     retries exact"
                };
                format!(
                    "{queued} of the {total} messages were queued ({cause} for the rest); {retry}"
                )
            }
            Self::DatabaseUnavailable(_) => "PostgreSQL is unavailable; retry later".into(),
            Self::NotifierUnavailable(_) => {
                "the notifier (NOTIFIER_URL) is unavailable; retry later".into()
            }
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        Self::invalid_field(error.field, error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // 503s are expected while a dependency is down; a 500 is a bug or a broken schema.
        match &self {
            Self::Internal(_) => tracing::error!(error = %self, "request failed"),
            Self::RedisUnavailable(_)
            | Self::PartlyQueued { .. }
            | Self::DatabaseUnavailable(_)
            | Self::NotifierUnavailable(_)
            | Self::Busy { .. } => {
                tracing::warn!(error = %self, "request failed");
            }
            _ => {}
        }
        let (field, invalid_indexes) = match &self {
            Self::InvalidField {
                field,
                invalid_indexes,
                ..
            } => (field.clone(), invalid_indexes.clone()),
            _ => (None, None),
        };
        let body = BatchErrorBody {
            body: ErrorBody {
                error: self.code().into(),
                message: self.public_message(),
                field,
            },
            invalid_indexes,
            queued: match &self {
                Self::PartlyQueued { queued, .. } => Some(*queued),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::BAD_GATEWAY => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::DatabaseUnavailable(error.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// An error PostgreSQL itself reported (bad SQL, missing table) is ours: 500. Anything else (connection
    /// refused, closed, I/O) means the database is unavailable: 503.
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db_error) => Self::Internal(format!("PostgreSQL error: {db_error}")),
            None => Self::DatabaseUnavailable(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantNames;

    #[test]
    fn rejection_reasons_are_the_codes_a_submission_is_refused_with() {
        assert_eq!(
            Rejection::VARIANTS,
            [
                "malformed_json",
                "payload_too_large",
                "unsupported_media_type",
                "invalid_field",
                "unauthorized",
                "queue_full",
                "redis_unavailable",
                "partly_queued",
                "busy",
                "internal",
            ]
        );
        let queue_full = ApiError::QueueFull {
            depth: 1,
            incoming: 1,
            limit: 1,
        };
        assert_eq!(queue_full.code(), "queue_full");
        let partly = |cause, keyed| ApiError::PartlyQueued {
            queued: 1,
            total: 3,
            cause,
            keyed,
        };
        let full = partly(PartRefused::QueueFull("depth 9".into()), true);
        assert_eq!(full.code(), "partly_queued");
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            full.public_message(),
            "1 of the 3 messages were queued (the queue is full for the rest); retry with the same \
             Idempotency-Key to queue the rest exactly once"
        );
        let down = partly(PartRefused::RedisUnavailable("refused".into()), false);
        assert_eq!(
            down.public_message(),
            "1 of the 3 messages were queued (Redis is unavailable for the rest); a retry queues all of them \
             again (the queued ones twice): send an Idempotency-Key to make retries exact"
        );
    }
}
