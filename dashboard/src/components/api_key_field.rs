//! The API key for sending and bursts, for an ingestor started with `API_KEYS` (sent as a bearer token).

use leptos::prelude::*;

use crate::store::Store;

#[component]
pub fn ApiKeyField() -> impl IntoView {
    let store = Store::get();
    view! {
        <label class="field api-key">
            <span>"API key (only if the ingestor requires one)"</span>
            <input
                data-testid="api-key"
                type="password"
                autocomplete="off"
                prop:value=store.api_key
                on:input=move |ev| store.api_key.set(event_target_value(&ev))
            />
        </label>
    }
}
