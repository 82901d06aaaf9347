//! Burst simulation (`POST /simulate {"count"}`): the ingestor makes up `count` messages at once.

use leptos::{ev::SubmitEvent, prelude::*};

use super::{field_error::FieldError, number_field::NumberField, task::Task};
use crate::{actions, model::format::thousands, store::Store};

#[component]
pub fn BurstForm() -> impl IntoView {
    let store = Store::get();
    let count = RwSignal::new("500".to_owned());
    let task = Task::new();
    let Task { busy, error } = task;
    let done = RwSignal::new(None::<u64>);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        let count = count.get_untracked();
        task.run(async move {
            let queued = actions::simulate(store, &count).await;
            done.set(queued.as_ref().ok().copied());
            queued.map(|_| ())
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
