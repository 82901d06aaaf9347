//! Burst simulation (`POST /simulate {"count"}`): the ingestor makes up `count` messages at once.

use leptos::{ev::SubmitEvent, prelude::*, task::spawn_local};

use super::{field_error::FieldError, number_field::NumberField};
use crate::{
    actions,
    model::{errors::FormError, format::thousands},
    store::Store,
};

#[component]
pub fn BurstForm() -> impl IntoView {
    let store = Store::get();
    let count = RwSignal::new("500".to_owned());
    let error = RwSignal::new(None::<FormError>);
    let done = RwSignal::new(None::<u64>);
    let busy = RwSignal::new(false);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match actions::simulate(store, &count.get_untracked()).await {
                Ok(queued) => {
                    error.set(None);
                    done.set(Some(queued));
                }
                Err(failure) => {
                    done.set(None);
                    error.set(Some(failure));
                }
            }
            busy.set(false);
        });
    };

    view! {
        <form class="form burst" on:submit=submit novalidate>
            <h3>"Burst"</h3>
            <div class="row inline">
                <NumberField
                    label="Messages"
                    testid="simulate-count"
                    field="count"
                    value=count
                    error
                    max=pipeline::api::MAX_SIMULATE_COUNT
                />
                <button type="submit" data-testid="simulate-button" disabled=busy>
                    {move || if busy.get() { "Queuing…" } else { "Simulate burst" }}
                </button>
            </div>
            <FieldError error field=Some("count")/>
            <FieldError error field=None/>
            <Show when=move || done.get().is_some()>
                <p class="ok">
                    {move || format!("Queued {} messages.", thousands(done.get().unwrap_or(0)))}
                </p>
            </Show>
        </form>
    }
}
