//! The watched channel's messages in offset order, oldest at the top, with a button (and scrolling to the
//! top) to load the page before them.

use leptos::{html, prelude::*};
use pipeline::api::ChannelMessage;

use super::{field_error::FieldError, task::Task};
use crate::model::format::{short_id, thousands, time_of_day};
use crate::net::clock::local_offset_minutes;
use crate::{channels, store::Store};

/// How close to the bottom (in pixels) counts as reading the newest messages.
const FOLLOW_SLACK_PX: i32 = 40;

#[component]
pub fn ChannelMessages() -> impl IntoView {
    let store = Store::get();
    let offset_minutes = local_offset_minutes();
    let rows = move || {
        store.channel.with(|feed| {
            feed.as_ref()
                .map(|f| f.messages().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let has_older = move || {
        store
            .channel
            .with(|f| f.as_ref().is_some_and(|f| f.older_cursor().is_some()))
    };
    let task = Task::new();
    let Task { busy, error } = task;
    let load_older = move || {
        if has_older() {
            task.run(channels::load_older(store));
        }
    };
    // Scrolling back to the top asks for the page before, as the button does. At the bottom, the list follows
    // new messages; scrolled up, it stays where the reader is.
    let list = NodeRef::<html::Ol>::new();
    let following = StoredValue::new(true);
    let on_scroll = move |_| {
        if let Some(list) = list.get() {
            following.set_value(
                list.scroll_height() - list.scroll_top() - list.client_height() < FOLLOW_SLACK_PX,
            );
            if list.scroll_top() == 0 {
                load_older();
            }
        }
    };
    Effect::new(move |_| {
        store.channel.track();
        if following.get_value() {
            // After this change is drawn.
            request_animation_frame(move || {
                if let Some(list) = list.get_untracked() {
                    list.set_scroll_top(list.scroll_height());
                }
            });
        }
    });

    view! {
        <Show when=move || has_older()>
            <button
                type="button"
                class="quiet"
                data-testid="channel-load-older"
                disabled=busy
                on:click=move |_| load_older()
            >
                {move || if busy.get() { "Loading…" } else { "Load older messages" }}
            </button>
        </Show>
        <FieldError error field=None/>
        <ol class="channel-feed" data-testid="channel-feed" node_ref=list on:scroll=on_scroll>
            <For
                each=rows
                key=|message: &ChannelMessage| message.offset
                children=move |message: ChannelMessage| {
                    let created = time_of_day(message.created_at.timestamp_millis() as f64, offset_minutes);
                    view! {
                        <li class="channel-message" data-offset=message.offset>
                            <span class="channel-offset">"#" {thousands(message.offset.max(0) as u64)}</span>
                            <span class="channel-user">"user " {message.user_id}</span>
                            <time class="channel-time" title=message.message_id.to_string()>
                                {created} " · " {short_id(&message.message_id)}
                            </time>
                            <p class="channel-content">{message.content}</p>
                        </li>
                    }
                }
            />
        </ol>
    }
}
