//! `POST /messages` (one message, through the group commit or, with an `Idempotency-Key`, the push-once
//! script) and `GET /messages?limit=N` (the newest persisted rows).

use axum::Json;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use pipeline::api::{
    DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MessageAccepted, NewMessage, PersistedMessage,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{ValidMessage, parse_limit};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::idempotency::{self, PushOnce, Remembered};
use crate::startup::AppState;
use crate::telemetry;

/// `POST /messages` → 201 once Redis holds the message.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(message): JsonBody<NewMessage>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let valid = ValidMessage::parse(message)?;
    let idempotency_key = idempotency::key_of(&headers)?;
    let answer = Remembered {
        message_id: Uuid::now_v7(),
        queued_at: Utc::now(),
    };
    let element = serde_json::to_string(&valid.into_queued(answer.message_id, answer.queued_at))
        .map_err(|error| ApiError::Internal(format!("cannot encode a message: {error}")))?;
    let answer = match idempotency_key {
        None => {
            state
                .pusher
                .push(element)
                .await
                .map_err(|error| ApiError::RedisUnavailable(error.to_string()))?;
            telemetry::accepted(1);
            answer
        }
        Some(key) => {
            let pushed = super::redis(|| {
                let mut conn = state.redis.clone();
                let (keys, answer, element) = (&state.keys, &answer, &element);
                async move { idempotency::push_once(&mut conn, keys, key, answer, element).await }
            })
            .await?;
            match pushed {
                PushOnce::Pushed => {
                    telemetry::accepted(1);
                    answer
                }
                PushOnce::Earlier(earlier) => earlier,
            }
        }
    };
    let body = MessageAccepted {
        message_id: answer.message_id,
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
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<PersistedMessage>>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_field("limit", rejection.body_text()))?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let rows = super::db(async {
        let client = state.db.get().await?;
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
