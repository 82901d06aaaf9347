//! `GET /channels/{channel_id}/messages`: a channel's persisted messages by offset, a page at a time.
//!
//! Each page is one ordered scan of the unique index `(channel_id, channel_offset)` that stops after `limit`
//! rows, so its cost does not grow with the channel or the table.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use pipeline::api::{ChannelMessage, ErrorBody};
use serde::Deserialize;

use crate::auth::ReadAccess;
use crate::error::ApiError;
use crate::history::{Cursor, HistoryPage};
use crate::state::AppState;

/// The query, read as text so a bad value is our 422 naming the field, not axum's 400.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    after: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

const AFTER: &str = "SELECT channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at \
    FROM messages WHERE channel_id = $1 AND channel_offset > $2 ORDER BY channel_offset LIMIT $3";
const BEFORE: &str = "SELECT channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at \
    FROM messages WHERE channel_id = $1 AND channel_offset < $2 ORDER BY channel_offset DESC LIMIT $3";

/// `GET /channels/{channel_id}/messages?after=N&limit=M` (oldest first) or `?before=N` (newest first).
#[utoipa::path(
    get,
    path = "/channels/{channel_id}/messages",
    tag = "messages",
    summary = "A channel's messages by offset",
    description = "Offsets are 1, 2, 3, … per channel, in commit order, with no hole. `after=N` gives the \
                   messages after offset N, oldest first (`after=0`, the default, starts at the beginning); \
                   `before=N` gives those before offset N, newest first, for scrolling back. With API_KEYS \
                   set, a key is needed, as a bearer token or the `access_token` query parameter.",
    security(("api_key" = [])),
    params(
        ("channel_id" = i64, Path, minimum = 1, description = "The channel."),
        ("after" = Option<i64>, Query, minimum = 0,
            description = "Messages after this offset, oldest first (default 0: from the start)."),
        ("before" = Option<i64>, Query, minimum = 1,
            description = "Messages before this offset, newest first. Not with `after`."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000,
            description = "How many messages (default 100)."),
        crate::openapi::AccessToken,
    ),
    responses(
        (status = 200, description = "The page (possibly empty).", body = Vec<ChannelMessage>),
        (status = 422, description = "`channel_id`, `after`, `before` or `limit` (named in `field`) is \
                                      invalid, or `after` and `before` were both given.", body = ErrorBody),
        crate::openapi::ReadFailures,
    )
)]
pub async fn history(
    _: ReadAccess,
    State(state): State<AppState>,
    channel_id: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<ChannelMessage>>, ApiError> {
    let Path(channel_id) = channel_id
        .map_err(|rejection| ApiError::invalid_field("channel_id", rejection.body_text()))?;
    // A query that does not decode (a repeated parameter, bad percent-encoding) is about the query as a
    // whole; the message names the parameter.
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_field("query", rejection.body_text()))?;
    let page = HistoryPage::parse(
        &channel_id,
        query.after.as_deref(),
        query.before.as_deref(),
        query.limit.as_deref(),
    )?;
    let (sql, offset) = match page.cursor {
        Cursor::After(offset) => (AFTER, offset),
        Cursor::Before(offset) => (BEFORE, offset),
    };
    let rows = super::db(async {
        let client = super::db_client(&state).await?;
        let statement = client.prepare_cached(sql).await?;
        Ok(client
            .query(&statement, &[&page.channel_id, &offset, &page.limit])
            .await?)
    })
    .await?;
    let messages = rows
        .iter()
        .map(pipeline::schema::channel_message)
        .collect::<Vec<_>>();
    Ok(Json(messages))
}
