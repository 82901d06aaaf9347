//! A labelled input for a number, bound to a text signal and marked invalid while the form's error names its
//! field. The text goes to the API as typed (see [`crate::model::config::number_or_text`]), so the API decides
//! what is valid.

use leptos::prelude::*;

use super::field_error::{FieldError, invalid};
use crate::model::errors::FormError;

/// What the number is, which decides how it is typed and where the API's message about it appears.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NumberKind {
    /// A count or a channel to open: a number input from 1 (up to `max`), in a row with its button; the form
    /// shows the API's message below the row.
    #[default]
    Count,
    /// An id of a message to send: any text on a numeric keyboard, with the API's message under it.
    Id,
}

#[component]
pub fn NumberField(
    label: &'static str,
    testid: &'static str,
    /// The API's name of the field (`count`, `user_id`, `channel_id`), as its 422 names it.
    field: &'static str,
    value: RwSignal<String>,
    #[prop(into)] error: Signal<Option<FormError>>,
    #[prop(optional)] kind: NumberKind,
    #[prop(optional)] max: Option<u64>,
) -> impl IntoView {
    let invalid = invalid(error, field);
    let count = kind == NumberKind::Count;
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                data-testid=testid
                type=count.then_some("number")
                min=count.then_some("1")
                max=max.map(|max| max.to_string())
                inputmode=(!count).then_some("numeric")
                prop:value=value
                on:input=move |ev| value.set(event_target_value(&ev))
                class:invalid=invalid
            />
            {(!count).then(|| view! { <FieldError error field=Some(field)/> })}
        </label>
    }
}
