//! `POST /messages` (one message, through the group commit or, with an `Idempotency-Key`, the push-once
//! script) and `GET /messages?limit=N` (the newest persisted rows).

use axum::Json;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::StatusCode;
use chrono::Utc;
use pipeline::api::{
    DEFAULT_LIST_LIMIT, ErrorBody, MAX_LIST_LIMIT, MessageAccepted, NewMessage, PersistedMessage,
};
use pipeline::keys::shard_of;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{ReadAccess, WriteAccess};
use crate::backpressure::Admitted;
use crate::domain::{ValidMessage, parse_limit};
use crate::enqueue::EnqueueError;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::idempotency::{self, IdempotencyHeader, Kind, PushOnce, Remembered};
use crate::pusher::PushError;
use crate::state::AppState;
use crate::telemetry;

/// `POST /messages` → 201 once Redis holds the message.
#[utoipa::path(
    post,
    path = "/messages",
    tag = "messages",
    summary = "Queue one message",
    description = "Answers 201 only once Redis holds the message. With an `Idempotency-Key`, a repeat \
                   answers the first request's `message_id` and queues nothing.",
    security(("api_key" = [])),
    params(crate::openapi::IdempotencyKey),
    request_body(content = NewMessage, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued.", body = MessageAccepted),
        (status = 422, description = "A field (named in `field`) or the `Idempotency-Key` is invalid.",
            body = ErrorBody),
        crate::openapi::WriteRefusals,
        (status = 503, description = "Redis is unavailable; retry.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    )
)]
pub async fn create(
    _: WriteAccess,
    State(state): State<AppState>,
    IdempotencyHeader(idempotency_key): IdempotencyHeader,
    JsonBody(message): JsonBody<NewMessage>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let valid = ValidMessage::parse(message)?;
    let idempotency_key = idempotency_key?;
    let shard = shard_of(valid.channel_id(), state.queue_shards);
    let earlier =
        (idempotency_key.as_deref()).map(|key| super::earlier(&state, shard, Kind::Message, key));
    // Held until the push has finished, so the queue depth estimate accounts for it.
    let _admission = match state.backpressure.admit_or_earlier(1, earlier).await? {
        Admitted::New(admission) => admission,
        Admitted::Earlier(earlier) => return accepted(earlier),
    };
    let answer = Remembered {
        kind: Kind::Message,
        message_ids: vec![Uuid::now_v7()],
        queued_at: Utc::now(),
    };
    let element =
        serde_json::to_string(&valid.into_queued(answer.message_ids[0], answer.queued_at))
            .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))?;
    let answer = match idempotency_key.as_deref() {
        None => {
            state
                .pusher
                .push(shard, element)
                .await
                .map_err(|error| match error {
                    PushError::Enqueue(error) => state.backpressure.not_queued(&error, 1),
                    other => ApiError::RedisUnavailable(other.to_string()),
                })?;
            telemetry::accepted(1);
            answer
        }
        Some(key) => {
            let elements = [element.into_bytes()];
            let pushed = super::push_once(&state, shard, key, &answer, &elements).await?;
            if pushed == PushOnce::Pushed {
                super::replicated(&state).await?;
            }
            match pushed {
                PushOnce::Pushed => {
                    telemetry::accepted(1);
                    answer
                }
                PushOnce::Earlier(earlier) => earlier,
                PushOnce::Full { depth } => {
                    let full = EnqueueError::Full { depth };
                    return Err(state.backpressure.not_queued(&full, 1));
                }
            }
        }
    };
    accepted(answer)
}

/// The 201 for `answer`.
fn accepted(answer: Remembered) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let answer = idempotency::expect_kind(answer, Kind::Message)?;
    let body = MessageAccepted {
        message_id: answer.message_ids[0],
        status: "queued".into(),
        queued_at: answer.queued_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Query of `GET /messages`; `limit` is read as text so a bad value is our 422, not axum's 400.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
}

/// `GET /messages?limit=N`: the N newest persisted rows (default 50, 1..=1000), newest first.
#[utoipa::path(
    get,
    path = "/messages",
    tag = "messages",
    summary = "The newest persisted messages",
    description = "With API_KEYS set, a key is needed (the rows hold content), as a bearer token or the \
                   `access_token` query parameter.",
    security(("api_key" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "How many rows (default 50)."),
        crate::openapi::AccessToken,
    ),
    responses(
        (status = 200, description = "Persisted rows, newest first.", body = Vec<PersistedMessage>),
        (status = 422, description = "`limit` is not an integer from 1 to 1000.", body = ErrorBody),
        crate::openapi::ReadFailures,
    )
)]
pub async fn list(
    _: ReadAccess,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<PersistedMessage>>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_field("limit", rejection.body_text()))?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let rows = super::db(async {
        let client = super::db_client(&state).await?;
        let statement = client
            .prepare_cached(
                "SELECT id, tracking_id, user_id, channel_id, content, created_at, inserted_at \
                 FROM messages ORDER BY id DESC LIMIT $1",
            )
            .await?;
        Ok(client.query(&statement, &[&(limit as i64)]).await?)
    })
    .await?;
    let messages = rows
        .iter()
        .map(|row| PersistedMessage {
            id: row.get("id"),
            tracking_id: row.get("tracking_id"),
            user_id: row.get("user_id"),
            channel_id: row.get("channel_id"),
            content: row.get("content"),
            created_at: row.get("created_at"),
            inserted_at: row.get("inserted_at"),
        })
        .collect();
    Ok(Json(messages))
}
