//! A labelled number input bound to a text signal, marked invalid while the form's error names its field.
//! The text goes to the API as typed (see [`crate::model::config::number_or_text`]), so the API decides.

use leptos::prelude::*;

use super::field_error::invalid;
use crate::model::errors::FormError;

#[component]
pub fn NumberField(
    label: &'static str,
    testid: &'static str,
    /// The API's name of the field (`count`, `channel_id`), as its 422 names it.
    field: &'static str,
    value: RwSignal<String>,
    #[prop(into)] error: Signal<Option<FormError>>,
    #[prop(optional)] max: Option<u64>,
) -> impl IntoView {
    let invalid = invalid(error, field);
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                data-testid=testid
                type="number"
                min="1"
                max=max.map(|max| max.to_string())
                prop:value=value
                on:input=move |ev| value.set(event_target_value(&ev))
                class:invalid=invalid
            />
        </label>
    }
}
