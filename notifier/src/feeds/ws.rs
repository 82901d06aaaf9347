//! `GET /ws/channels`: many channel subscriptions per connection (see the protocol in docs/feeds.md).
//!
//! The connection is guarded like `/ws/stats` (origin, frame cap, client cap, idle and send timeouts: the
//! same code, [`crate::ws`]), and needs a key when `API_KEYS` is set. One task per connection polls its
//! subscriptions ([`Subscription`] streams, keyed by channel) and the client's frames; it waits for the
//! writer's queue rather than dropping anything, so a client that reads slowly holds its subscriptions back
//! until they lag behind the live feed, get `lagged`, and are caught up from PostgreSQL.

use std::pin::Pin;

use axum::{
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, Uri},
    response::Response,
};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::{
    OwnedSemaphorePermit,
    mpsc::{self, error::TrySendError},
};
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

use pipeline::api::{FeedFrame, FeedRequest};

use super::{
    protocol::{self, MAX_SUBSCRIPTIONS},
    subscription::{Item, Subscription},
};
use crate::{
    error::ApiError,
    state::AppState,
    ws::{Connected, End, Keepalive, Outgoing},
};

type Feed = Pin<Box<dyn Stream<Item = Item> + Send>>;

/// Most subscription items taken in one pass of the connection's loop (see [`serve`]).
const BURST: usize = 256;

/// Upgrades if the request carries a key (when `API_KEYS` is set; else 401), the origin is allowed (else
/// 403) and a client slot is free (else 503).
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state.check_read(&headers, &uri)?;
    let permit = crate::ws::admit(&state, &headers)?;
    Ok(crate::ws::configure(ws).on_upgrade(move |socket| serve(socket, state, permit)))
}

fn text(reply: &FeedFrame) -> Message {
    Message::Text(reply.to_json().into())
}

async fn serve(socket: WebSocket, state: AppState, _permit: OwnedSemaphorePermit) {
    let _connected = Connected::new("notifier_feed_clients");
    let settings = state.ws.clone();
    let (sink, mut incoming) = socket.split();
    let outgoing = Outgoing::start(sink, settings.send_timeout);
    let mut subscriptions: StreamMap<i64, Feed> = StreamMap::new();
    let mut keepalive = Keepalive::new(settings.idle_timeout);
    let mut end = None;
    while end.is_none() {
        let mut replies = Vec::new();
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => end = Some(End::shutdown()),
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(frame))) => {
                    keepalive.heard();
                    replies.push(request(&state, &mut subscriptions, frame.as_str()).await);
                }
                Some(Ok(Message::Binary(_))) => {
                    keepalive.heard();
                    replies.push(text(&FeedFrame::error(protocol::NOT_TEXT, None)));
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => end = Some(End::Gone),
                // Pings are answered by the WebSocket layer.
                Some(Ok(_)) => keepalive.heard(),
            },
            () = tokio::time::sleep_until(keepalive.idle_deadline()) => {
                end = Some(End::idle(settings.idle_timeout));
            }
            Some((channel_id, item)) = subscriptions.next(), if !subscriptions.is_empty() => {
                replies.push(reply(channel_id, item));
                // A batch's event fans out many messages at once: take what else is ready now, so the select
                // above (its timers, the shutdown check) runs once per burst rather than once per message.
                // A subscription found pending here is polled again by the select before the task sleeps.
                while replies.len() < BURST {
                    match subscriptions.next().now_or_never() {
                        Some(Some((channel_id, item))) => replies.push(reply(channel_id, item)),
                        _ => break,
                    }
                }
            }
            () = keepalive.ping_due() => replies.push(Message::Ping(Default::default())),
        }
        for reply in replies {
            if end.is_some() {
                break;
            }
            end = match outgoing.queue.try_send(reply) {
                Ok(()) => None,
                Err(TrySendError::Full(reply)) => {
                    send(&outgoing.queue, reply, &state.shutdown).await
                }
                Err(TrySendError::Closed(_)) => Some(End::Gone),
            };
        }
    }
    // Stop holding the channels' broadcasts at once: the writer may still wait below.
    drop(subscriptions);
    outgoing.finish(end).await;
}

/// What a subscription's item becomes on the wire.
fn reply(channel_id: i64, item: Item) -> Message {
    match item {
        Item::Message(message) => Message::Text(message.frame.clone()),
        Item::Lagged { last_offset } => text(&FeedFrame::Lagged {
            channel_id,
            last_offset,
        }),
        Item::Reset => text(&FeedFrame::Reset { channel_id }),
        // The subscription's stream ends after this, which removes it.
        Item::Failed { last_offset, error } => {
            tracing::warn!(%error, channel_id, "a channel subscription ends: PostgreSQL unavailable");
            text(&FeedFrame::error(
                format!(
                    "cannot read channel {channel_id} from PostgreSQL; subscribe again with \"after\":{last_offset}"
                ),
                Some(channel_id),
            ))
        }
    }
}

/// Waits for room in the writer's queue: each write of the writer (what is queued) is taken within
/// `WS_SEND_TIMEOUT` or the writer ends (and with it the queue), so this wait is bounded.
async fn send(
    queue: &mpsc::Sender<Message>,
    message: Message,
    shutdown: &CancellationToken,
) -> Option<End> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Some(End::shutdown()),
        sent = queue.send(message) => sent.err().map(|_| End::Gone),
    }
}

/// Answers one text frame.
async fn request(
    state: &AppState,
    subscriptions: &mut StreamMap<i64, Feed>,
    frame: &str,
) -> Message {
    let reply = match protocol::parse(frame) {
        Err(message) => FeedFrame::error(message, None),
        Ok(FeedRequest::Unsubscribe { channel_id }) => match subscriptions.remove(&channel_id) {
            Some(_) => FeedFrame::Unsubscribed { channel_id },
            None => FeedFrame::error(
                format!("not subscribed to channel {channel_id}"),
                Some(channel_id),
            ),
        },
        Ok(FeedRequest::Subscribe { channel_id, after }) => {
            subscribe(state, subscriptions, channel_id, after).await
        }
    };
    text(&reply)
}

async fn subscribe(
    state: &AppState,
    subscriptions: &mut StreamMap<i64, Feed>,
    channel_id: i64,
    after: Option<i64>,
) -> FeedFrame {
    if subscriptions.contains_key(&channel_id) {
        return FeedFrame::error(
            format!("already subscribed to channel {channel_id}"),
            Some(channel_id),
        );
    }
    if subscriptions.len() >= MAX_SUBSCRIPTIONS {
        return FeedFrame::error(
            format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            Some(channel_id),
        );
    }
    match Subscription::start(&state.hub, channel_id, after, "ws").await {
        Err(error) => {
            tracing::warn!(%error, channel_id, "cannot subscribe: PostgreSQL unavailable");
            FeedFrame::error(
                format!("cannot read channel {channel_id} from PostgreSQL; subscribe again"),
                Some(channel_id),
            )
        }
        Ok((_, head)) if after.is_some_and(|after| after > head) => FeedFrame::error(
            protocol::past_head("after", after.unwrap_or_default(), channel_id, head),
            Some(channel_id),
        ),
        Ok((subscription, head)) => {
            subscriptions.insert(
                subscription.channel_id(),
                Box::pin(subscription.into_stream()),
            );
            FeedFrame::Subscribed { channel_id, head }
        }
    }
}
