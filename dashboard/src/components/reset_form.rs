//! Reset (`DELETE /reset`): deletes every message, batch and queued element. Asks for confirmation, and
//! sends the admin key (`ADMIN_API_KEY`; without one the ingestor refuses resets) as a bearer token.

use leptos::{ev::SubmitEvent, prelude::*};

use super::{field_error::FieldError, task::Task, text_field::SecretField};
use crate::{actions, store::Store};

#[component]
pub fn ResetForm() -> impl IntoView {
    let store = Store::get();
    let key = RwSignal::new(String::new());
    let confirming = RwSignal::new(false);
    let task = Task::new();
    let Task { busy, error } = task;
    let done = RwSignal::new(false);

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        if !confirming.get_untracked() {
            confirming.set(true);
            done.set(false);
            return;
        }
        let key = key.get_untracked();
        task.run(async move {
            let result = actions::reset(store, &key).await;
            done.set(result.is_ok());
            confirming.set(false);
            result
        });
    };

    view! {
        <form class="form reset" on:submit=submit novalidate>
            <h3>"Reset"</h3>
            <div class="row inline">
                <SecretField label="Admin key" testid="reset-key" value=key/>
                <button
                    type="submit"
                    class="danger"
                    data-testid="reset-button"
                    disabled=busy
                >
                    {move || if confirming.get() { "Confirm: delete everything" } else { "Reset pipeline…" }}
                </button>
                <Show when=move || confirming.get()>
                    <button type="button" class="quiet" on:click=move |_| confirming.set(false)>
                        "Cancel"
                    </button>
                </Show>
            </div>
            <FieldError error field=None/>
            <Show when=move || done.get()>
                <p class="ok">"Everything was deleted."</p>
            </Show>
        </form>
    }
}
