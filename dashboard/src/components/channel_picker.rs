//! Picks the channel to watch: its id (the ingestor's 422 appears under the field, as in every form).

use leptos::{ev::SubmitEvent, prelude::*};

use super::{field_error::FieldError, number_field::NumberField, task::Task};
use crate::{channels, store::Store};

#[component]
pub fn ChannelPicker() -> impl IntoView {
    let store = Store::get();
    let channel_id = RwSignal::new("1".to_owned());
    let task = Task::new();
    let Task { busy, error } = task;

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        let input = channel_id.get_untracked();
        task.run(async move { channels::open(store, &input).await });
    };

    view! {
        <form class="form channel-picker" on:submit=submit novalidate>
            <div class="row inline">
                <NumberField
                    label="Channel id"
                    testid="channel-id"
                    field="channel_id"
                    value=channel_id
                    error
                />
                <button type="submit" data-testid="channel-open" disabled=busy>
                    {move || if busy.get() { "Opening…" } else { "Watch channel" }}
                </button>
            </div>
            <FieldError error field=Some("channel_id")/>
            <FieldError error field=None/>
        </form>
    }
}
