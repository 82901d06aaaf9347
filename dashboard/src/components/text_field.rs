//! Labelled text inputs bound to a text signal: a secret (API key, admin key), and an id whose API error
//! appears under it.

use leptos::prelude::*;

use super::field_error::{FieldError, invalid};
use crate::model::errors::FormError;

/// A password input that the browser does not offer to fill.
#[component]
pub fn SecretField(
    label: &'static str,
    testid: &'static str,
    value: RwSignal<String>,
    /// The label's class: `field`, plus a modifier where the page styles one apart.
    #[prop(default = "field")]
    class: &'static str,
) -> impl IntoView {
    view! {
        <label class=class>
            <span>{label}</span>
            <input
                data-testid=testid
                type="password"
                autocomplete="off"
                prop:value=value
                on:input=move |ev| value.set(event_target_value(&ev))
            />
        </label>
    }
}

/// A numeric-keyboard input for an id, marked invalid with the API's message under it while the form's
/// error names `field`. The text goes to the API as typed, so the API decides what is valid.
#[component]
pub fn IdField(
    label: &'static str,
    testid: &'static str,
    /// The API's name of the field (`user_id`, `channel_id`), as its 422 names it.
    field: &'static str,
    value: RwSignal<String>,
    #[prop(into)] error: Signal<Option<FormError>>,
) -> impl IntoView {
    let invalid = invalid(error, field);
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                data-testid=testid
                inputmode="numeric"
                prop:value=value
                on:input=move |ev| value.set(event_target_value(&ev))
                class:invalid=invalid
            />
            <FieldError error field=Some(field)/>
        </label>
    }
}
