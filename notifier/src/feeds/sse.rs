//! `GET /sse/channels/{channel_id}`: one channel as Server-Sent Events.
//!
//! `retry:` first, then `event: message` / `id: <offset>` / `data: <message object>` for every message after
//! the resume point (`Last-Event-ID`, else `last_event_id`, else the channel's head: live only), keep-alive
//! comments while nothing happens. A resume point past the head gets one `event: error` naming the head, and
//! the stream ends. A subscriber that falls behind gets `event: lagged` and is caught up from PostgreSQL; after
//! a reset, `event: reset`, then the channel's messages from offset 1.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, Uri},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::json;

use super::{
    protocol, resume,
    subscription::{Item, Subscription},
};
use crate::{error::ApiError, state::AppState};

/// How long an EventSource waits before reconnecting (the `retry:` line).
pub(crate) const RETRY: Duration = Duration::from_secs(1);
/// A comment is sent after this much silence, so proxies keep the connection and dead clients show.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
struct SseQuery {
    last_event_id: Option<String>,
}

/// Streams the channel if the request carries a key (when `API_KEYS` is set; else 401), its parameters are
/// valid (else 422 naming the field) and a client slot is free (else 503).
pub(crate) async fn stream(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    state.check_read(&headers, &uri)?;
    let channel_id = channel_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && channel_id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(ApiError::InvalidField {
            field: "channel_id",
            message: "must be a positive integer".into(),
        })?;
    let query = axum::extract::Query::<SseQuery>::try_from_uri(&uri).map_err(|rejection| {
        ApiError::InvalidField {
            field: "query",
            message: rejection.body_text(),
        }
    })?;
    let header = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("?"));
    let after =
        resume::sse_resume_point(header, query.last_event_id.as_deref()).map_err(|message| {
            ApiError::InvalidField {
                field: if header.is_some() {
                    "Last-Event-ID"
                } else {
                    "last_event_id"
                },
                message: message.into(),
            }
        })?;
    let permit = state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyClients)?;
    let (subscription, head) = Subscription::start(&state.hub, channel_id, after, "sse")
        .await
        .map_err(|error| ApiError::DatabaseUnavailable(error.to_string()))?;

    let retry = stream::once(async { Event::default().retry(RETRY) });
    let events = match after {
        Some(after) if after > head => {
            let name = if header.is_some() {
                "Last-Event-ID"
            } else {
                "last_event_id"
            };
            let data = json!({
                "message": protocol::past_head(name, after, channel_id, head),
                "channel_id": channel_id,
                "head": head,
            });
            retry
                .chain(stream::once(async move {
                    Event::default().event("error").data(data.to_string())
                }))
                .boxed()
        }
        _ => {
            let subscribed = Event::default()
                .comment(format!("subscribed to channel {channel_id}, head {head}"));
            let items = subscription.into_stream().map(move |item| match item {
                Item::Message(message) => Event::default()
                    .event("message")
                    .id(message.offset.to_string())
                    .data(&message.object),
                Item::Lagged { last_offset } => Event::default().event("lagged").data(
                    json!({"channel_id": channel_id, "last_offset": last_offset}).to_string(),
                ),
                Item::Reset => Event::default()
                    .event("reset")
                    .data(json!({"channel_id": channel_id}).to_string()),
                Item::Failed { last_offset, error } => {
                    tracing::warn!(%error, channel_id, "an SSE subscription ends: PostgreSQL unavailable");
                    Event::default().event("error").data(
                        json!({
                            "message": format!("cannot read channel {channel_id} from PostgreSQL; reconnect to resume after {last_offset}"),
                            "channel_id": channel_id,
                        })
                        .to_string(),
                    )
                }
            });
            retry
                .chain(stream::once(async move { subscribed }))
                .chain(items)
                .boxed()
        }
    };
    // The stream ends at shutdown (the client reconnects elsewhere and resumes), and holds its client slot
    // as long as it lives.
    let events = events
        .take_until(state.shutdown.clone().cancelled_owned())
        .map(move |event| {
            let _slot = &permit;
            Ok::<_, Infallible>(event)
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
