//! The channel view: pick a channel, then watch its messages arrive in offset order. The state line says
//! how the `/ws/channels` connection is (`data-testid="channel-state"`, `data-state`, `data-last-offset`).

use leptos::prelude::*;

use super::{channel_messages::ChannelMessages, channel_picker::ChannelPicker};
use crate::model::{channel::ChannelFeed, format::thousands};
use crate::store::Store;

#[component]
pub fn ChannelView() -> impl IntoView {
    let store = Store::get();
    let watching = move || store.channel.with(Option::is_some);
    view! {
        <section class="panel channel-panel" data-testid="channel-view">
            <div class="panel-head">
                <h2>"Channel"</h2>
                <Show when=watching>
                    <ChannelState/>
                </Show>
            </div>
            <ChannelPicker/>
            <Show
                when=watching
                fallback=|| view! {
                    <p class="empty">
                        "Pick a channel to watch its messages arrive in offset order. The newest "
                        {ChannelFeed::CAPACITY} " are kept."
                    </p>
                }
            >
                <ChannelMessages/>
            </Show>
        </section>
    }
}

/// The connection and where the view stands in the channel.
#[component]
fn ChannelState() -> impl IntoView {
    let store = Store::get();
    let state = move || store.channel_connection.get().as_str();
    let connection = move || store.channel_connection.get().label(store.now.get());
    let number = |n: i64| thousands(n.max(0) as u64);
    let summary = move || {
        store.channel.with(|feed| {
            let Some(feed) = feed else {
                return String::new();
            };
            let shown = feed.messages().len();
            let mut text = format!(
                "channel {} · {} shown · last offset {} · head {}",
                number(feed.channel_id()),
                thousands(shown as u64),
                number(feed.last()),
                number(feed.head()),
            );
            if feed.lagged() > 0 {
                text.push_str(&format!(" · lagged {}×", feed.lagged()));
            }
            if let Some(error) = feed.error() {
                text.push_str(&format!(" · notifier: {error}"));
            }
            text
        })
    };
    let last = move || {
        store
            .channel
            .with(|f| f.as_ref().map_or(0, ChannelFeed::last))
            .to_string()
    };
    view! {
        <div class="channel-state" data-testid="channel-state" data-state=state data-last-offset=last role="status">
            <span class="connection-label">{connection}</span>
            <span class="note">{summary}</span>
        </div>
    }
}
