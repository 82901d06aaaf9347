//! The title bar and the connection state (`data-testid="connection-state"`, `data-state`).

use leptos::prelude::*;

use crate::store::Store;

#[component]
pub fn Header() -> impl IntoView {
    let store = Store::get();
    let state = move || store.connection.get().as_str();
    let label = move || store.connection.get().label(store.now.get());
    let seq = move || store.stats_seq.get().to_string();
    let ingestor = move || store.config.get().ingestor_url;
    view! {
        <header class="top">
            <div class="brand">
                <span class="logo" aria-hidden="true"></span>
                <div>
                    <h1>"Ingestion pipeline"</h1>
                    <p class="subtitle">"ingestor " <code>{ingestor}</code></p>
                </div>
            </div>
            <div
                class="connection"
                data-testid="connection-state"
                data-state=state
                data-stats-seq=seq
                role="status"
                aria-live="polite"
            >
                <span class="dot" aria-hidden="true"></span>
                <span class="connection-label">{label}</span>
            </div>
        </header>
    }
}
