//! The API key for sending and bursts, for an ingestor started with `API_KEYS` (sent as a bearer token).

use leptos::prelude::*;

use super::text_field::SecretField;
use crate::store::Store;

#[component]
pub fn ApiKeyField() -> impl IntoView {
    let store = Store::get();
    view! {
        <SecretField
            label="API key (only if the ingestor requires one)"
            testid="api-key"
            value=store.api_key
            class="field api-key"
        />
    }
}
