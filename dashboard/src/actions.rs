//! What the page asks of the services: the ingestor's API (CORS) and the notifier's own endpoints, each
//! answer folded into the [`Store`].

use std::{collections::HashMap, time::Duration};

use pipeline::api::{MessageAccepted, PersistedMessage, QueueStatus, SimulateAccepted};

use crate::model::{
    batches::BatchRow,
    config::{self, ClientConfig},
    errors::FormError,
    feed::Feed,
    health::ServiceHealth,
};
use crate::net::http::{self, Call, Reply};
use crate::store::Store;
use leptos::prelude::*;
use serde::de::DeserializeOwned;

/// Health checks must be quick: a service slower than this counts as unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Rows asked for when looking for messages whose events were missed (the API's maximum).
const RECONCILE_ROWS: u64 = pipeline::api::MAX_LIST_LIMIT;

/// `GET /config.json` from the notifier; the fallback if it cannot be read.
pub async fn load_config(hostname: &str) -> ClientConfig {
    match http::send(Call::get("/config.json")).await {
        Ok(reply) if reply.is_success() => {
            serde_json::from_str(&reply.body).unwrap_or_else(|_| ClientConfig::fallback(hostname))
        }
        _ => ClientConfig::fallback(hostname),
    }
}

pub(crate) fn ingestor(store: Store, path: &str) -> String {
    format!("{}{path}", store.config.get_untracked().ingestor_url)
}

/// A write to the ingestor, with the API key as a bearer token when one is typed.
async fn write(store: Store, url: &str, body: &str) -> Result<Reply, String> {
    let key = store.api_key.get_untracked();
    let key = key.trim();
    http::send(Call {
        bearer: (!key.is_empty()).then_some(key),
        ..Call::post(url, body)
    })
    .await
}

/// The error of a failed call, for a form.
pub(crate) fn form_error(result: &Result<Reply, String>) -> FormError {
    match result {
        Ok(reply) => FormError::from_response(reply.status, &reply.body),
        Err(reason) => FormError::general(reason.clone()),
    }
}

/// A write that queues messages: `body` to the ingestor's `path`, counted as a request in flight by the feed.
/// On the `accepted` status its answer is read, and `add` gives its messages cards (in the same update that
/// ends the request); otherwise the form's error.
async fn queue<T: DeserializeOwned>(
    store: Store,
    path: &str,
    body: &str,
    accepted: u16,
    add: impl FnOnce(&mut Feed, &T),
) -> Result<T, FormError> {
    let url = ingestor(store, path);
    store.feed.update(|f| f.begin_request());
    let result = write(store, &url, body).await;
    let answer = match &result {
        Ok(reply) if reply.status == accepted => serde_json::from_str::<T>(&reply.body).ok(),
        _ => None,
    };
    store.feed.update(|f| {
        if let Some(answer) = &answer {
            add(f, answer);
        }
        f.end_request();
    });
    answer.ok_or_else(|| form_error(&result))
}

/// `POST /messages`; on 201 the message gets a card.
pub async fn send_message(
    store: Store,
    user_id: &str,
    channel_id: &str,
    content: &str,
) -> Result<(), FormError> {
    let body = config::new_message_body(user_id, channel_id, content);
    queue(
        store,
        "/messages",
        &body,
        201,
        |f, accepted: &MessageAccepted| {
            let origin = format!("user {} · channel {}", user_id.trim(), channel_id.trim());
            f.add([(accepted.message_id, Some(content.to_owned()), origin)]);
        },
    )
    .await
    .map(|_| ())
}

/// `POST /simulate`; on 202 the newest messages of the burst get cards. Returns how many were queued.
pub async fn simulate(store: Store, count: &str) -> Result<u64, FormError> {
    let body = serde_json::json!({ "count": config::number_or_text(count) }).to_string();
    queue(
        store,
        "/simulate",
        &body,
        202,
        |f, accepted: &SimulateAccepted| {
            // Only the newest ones can be shown; skip the rest rather than add and drop them.
            let ids = &accepted.tracking_ids;
            let shown = &ids[ids.len().saturating_sub(Feed::CAPACITY)..];
            f.add(shown.iter().map(|id| (*id, None, "simulated".to_owned())));
        },
    )
    .await
    .map(|accepted| accepted.messages_count)
}

/// `DELETE /reset`, with the admin key as a bearer token when one is given.
pub async fn reset(store: Store, admin_key: &str) -> Result<(), FormError> {
    let url = ingestor(store, "/reset");
    let key = admin_key.trim();
    let call = Call {
        method: "DELETE",
        bearer: (!key.is_empty()).then_some(key),
        ..Call::get(&url)
    };
    let result = http::send(call).await;
    match &result {
        Ok(reply) if reply.is_success() => {
            store.forget_history();
            Ok(())
        }
        _ => Err(form_error(&result)),
    }
}

/// Asks the ingestor and the notifier for their health.
pub async fn check_health(store: Store) {
    let url = ingestor(store, "/health");
    let ingestor = health(&url).await;
    store.ingestor_health.set(ingestor);
    let notifier = health("/health").await;
    store.notifier_health.set(notifier);
}

async fn health(url: &str) -> ServiceHealth {
    let call = Call {
        timeout: HEALTH_TIMEOUT,
        ..Call::get(url)
    };
    match http::send(call).await {
        Ok(reply) => ServiceHealth::from_response(reply.status, &reply.body),
        Err(reason) => ServiceHealth::Unreachable(reason),
    }
}

/// Recovers what the page missed while its WebSocket was down: cards whose `batch_persisted` went by are
/// flipped from the newest persisted rows, and the latest batch joins the list.
pub async fn reconcile(store: Store) {
    if store
        .feed
        .with_untracked(|f| f.oldest_queued_ms())
        .is_some()
    {
        let url = ingestor(store, &format!("/messages?limit={RECONCILE_ROWS}"));
        // The rows hold content: with API_KEYS set, the ingestor wants the typed key for them.
        let key = store.api_key.get_untracked();
        let key = key.trim();
        let call = Call {
            bearer: (!key.is_empty()).then_some(key),
            ..Call::get(&url)
        };
        if let Ok(reply) = http::send(call).await
            && let Ok(rows) = serde_json::from_str::<Vec<PersistedMessage>>(&reply.body)
        {
            let persisted: HashMap<_, _> = rows
                .iter()
                .map(|row| (row.tracking_id, row.inserted_at.timestamp_millis()))
                .collect();
            store.feed.update(|f| {
                f.reconcile(&persisted);
            });
        }
    }
    let url = ingestor(store, "/queue/status");
    if let Ok(reply) = http::send(Call::get(&url)).await
        && let Ok(status) = serde_json::from_str::<QueueStatus>(&reply.body)
        && let Some(last) = status.last_batch
    {
        let newest = store
            .batches
            .with_untracked(|b| b.rows().next().map(|row| row.batch_id));
        if newest.is_none_or(|newest| last.batch_id > newest) {
            store.batches.update(|b| {
                b.push(BatchRow {
                    batch_id: last.batch_id,
                    size: last.batch_size,
                    reason: last.reason,
                    batcher_id: last.batcher_id,
                    dead_letters: 0,
                    committed_ms: last.committed_at.timestamp_millis(),
                });
            });
        }
    }
}
