//! The live feed: the cards of the messages sent or burst from this page, newest first.

use leptos::prelude::*;

use super::feed_card::FeedCard;
use crate::model::{
    feed::{Card, Feed},
    format::thousands,
};
use crate::store::Store;

#[component]
pub fn LiveFeed() -> impl IntoView {
    let store = Store::get();
    let cards = move || store.feed.with(|f| f.cards().cloned().collect::<Vec<_>>());
    let counts = move || {
        let (queued, persisted) = store.feed.with(Feed::counts);
        format!(
            "{} queued · {} persisted",
            thousands(queued as u64),
            thousands(persisted as u64)
        )
    };
    let empty = move || store.feed.with(Feed::is_empty);
    view! {
        <section class="panel feed-panel">
            <div class="panel-head">
                <h2>"Live feed"</h2>
                <span class="note">{counts}</span>
            </div>
            <ol class="feed" data-testid="live-feed">
                // Keyed by id and status: a card is redrawn exactly when it flips.
                <For
                    each=cards
                    key=|card: &Card| (card.id, card.status)
                    children=|card: Card| view! { <FeedCard card/> }
                />
            </ol>
            <Show when=empty>
                <p class="empty">
                    "Send a message or a burst: each appears here as queued, then flips to persisted when its batch commits. The newest "
                    {Feed::CAPACITY} " are kept."
                </p>
            </Show>
        </section>
    }
}
