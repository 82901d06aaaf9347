//! A labelled secret input (API key, admin key) bound to a text signal; numbers are
//! [`super::number_field::NumberField`]s.

use leptos::prelude::*;

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
