//! The channel view's I/O, folded into the [`Store`]: the newest page of history when a channel is picked,
//! older pages on request (the ingestor's `GET /channels/{channel_id}/messages?before=…`), and the notifier's
//! `/ws/channels` socket, opened with the first channel picked and kept for the life of the page. Both carry
//! the API key as `access_token`.

use std::cell::OnceCell;

use pipeline::api::{ChannelMessage, FeedFrame};

use crate::actions::{form_error, ingestor};
use crate::model::{
    channel::{ChannelFeed, NEWEST, Outcome, history_path, parse_frame},
    config::{websocket_url, with_access_token},
    errors::FormError,
};
use crate::net::{
    http::{self, Call},
    socket::{self, SocketEvent, SocketHandle},
};
use crate::store::{Store, track};
use leptos::prelude::*;

thread_local! {
    /// The page's one `/ws/channels` connection (it carries any number of subscriptions).
    static SOCKET: OnceCell<SocketHandle> = const { OnceCell::new() };
}

/// Shows channel `input` (as typed): its newest page, then everything after it, live.
pub async fn open(store: Store, input: &str) -> Result<(), FormError> {
    let page = history(store, &history_path(input, NEWEST)?).await?;
    // The ingestor accepted the id, so it is a positive integer.
    let channel_id = input
        .trim()
        .parse()
        .map_err(|_| FormError::general("The channel id was accepted but is not a number"))?;
    let mut feed = ChannelFeed::open(channel_id, &page);
    let socket = socket(store);
    if let Some(previous) = store.channel.get_untracked() {
        socket.send(&previous.unsubscribe().to_json());
    }
    // Not open yet: the `Open` event subscribes.
    socket.send(&feed.subscribe().to_json());
    store.channel.set(Some(feed));
    Ok(())
}

/// Adds the page before the oldest message shown, if there is one and room for it.
pub async fn load_older(store: Store) -> Result<(), FormError> {
    let cursor = store.channel.with_untracked(|feed| {
        let feed = feed.as_ref()?;
        Some((feed.channel_id(), feed.older_cursor()?))
    });
    let Some((channel_id, before)) = cursor else {
        return Ok(());
    };
    let page = history(store, &history_path(&channel_id.to_string(), before)?).await?;
    store.channel.update(|feed| {
        if let Some(feed) = feed.as_mut().filter(|f| f.channel_id() == channel_id) {
            feed.add_older(&page);
        }
    });
    Ok(())
}

/// A page of history: `path` on the ingestor, with the key.
async fn history(store: Store, path: &str) -> Result<Vec<ChannelMessage>, FormError> {
    let url = with_access_token(&ingestor(store, path), &store.api_key.get_untracked());
    let result = http::send(Call::get(&url)).await;
    match &result {
        Ok(reply) if reply.status == 200 => serde_json::from_str(&reply.body)
            .map_err(|error| FormError::general(format!("Unreadable history page: {error}"))),
        _ => Err(form_error(&result)),
    }
}

/// The socket, started on first use.
fn socket(store: Store) -> SocketHandle {
    SOCKET.with(|cell| {
        cell.get_or_init(|| {
            let location = window().location();
            let url = websocket_url(
                &location.protocol().unwrap_or_default(),
                &location.host().unwrap_or_default(),
                "/ws/channels",
            );
            // The key is read at each attempt: one typed later is used by the next connection.
            let url = move || with_access_token(&url, &store.api_key.get_untracked());
            // No silence limit: a quiet channel sends nothing.
            socket::start(url, None, move |event| on_event(store, event))
        })
        .clone()
    })
}

fn on_event(store: Store, event: SocketEvent) {
    match event {
        SocketEvent::Text(text) => {
            // A frame of a newer protocol: nothing the view can show.
            if let Some(frame) = parse_frame(&text) {
                on_frame(store, frame);
            }
        }
        other => {
            // Every new connection (first or after a loss) resumes after the last offset shown.
            if track(store.channel_connection, &other).is_some() {
                let subscribe = store
                    .channel
                    .try_update(|feed| feed.as_mut().map(ChannelFeed::subscribe))
                    .flatten();
                if let Some(subscribe) = subscribe {
                    send(&subscribe.to_json());
                }
            }
        }
    }
}

fn on_frame(store: Store, frame: FeedFrame) {
    let frames = store
        .channel
        .try_update(|feed| {
            let feed = feed.as_mut()?;
            match feed.apply(frame) {
                Outcome::Nothing => None,
                Outcome::Resubscribe => Some(vec![feed.unsubscribe(), feed.subscribe()]),
                Outcome::Subscribe => Some(vec![feed.subscribe()]),
            }
        })
        .flatten();
    for frame in frames.into_iter().flatten() {
        send(&frame.to_json());
    }
}

fn send(text: &str) {
    SOCKET.with(|cell| cell.get().map(|socket| socket.send(text)));
}
