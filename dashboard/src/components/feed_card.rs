//! One message of the live feed: yellow while queued, green once persisted (`data-status`).

use leptos::prelude::*;

use crate::model::{
    feed::{Card, Status},
    format::{duration_ms, short_id, thousands},
};

#[component]
pub fn FeedCard(card: Card) -> impl IntoView {
    let status = card.status.as_str();
    let meta = match (card.status, card.commit) {
        (Status::Persisted, Some(commit)) => {
            let batch = commit.batch_id.map_or_else(String::new, |id| {
                format!(" · batch #{}", thousands(id.max(0) as u64))
            });
            let latency = card.latency_ms().map_or_else(String::new, duration_ms);
            format!("persisted in {latency}{batch}")
        }
        _ => "waiting for its batch".to_owned(),
    };
    view! {
        <li class=format!("card {status}") data-status=status data-id=card.id.to_string()>
            <div class="card-top">
                <span class="badge">{status}</span>
                <code class="card-id" title=card.id.to_string()>{short_id(&card.id)}</code>
                <span class="card-origin">{card.origin}</span>
            </div>
            {card.text.map(|text| view! { <p class="card-text">{text}</p> })}
            <p class="card-meta">{meta}</p>
        </li>
    }
}
