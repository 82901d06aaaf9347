//! Sends one message (`POST /messages`); the API's 422 appears under the field it names.

use leptos::{ev::SubmitEvent, prelude::*};

use super::{field_error::FieldError, task::Task};
use crate::{actions, store::Store};

#[component]
pub fn SendForm() -> impl IntoView {
    let store = Store::get();
    let user_id = RwSignal::new("1".to_owned());
    let channel_id = RwSignal::new("1".to_owned());
    let content = RwSignal::new(String::new());
    let task = Task::new();
    let Task { busy, error } = task;
    let invalid = move |field: &'static str| {
        move || error.with(|e| e.as_ref().is_some_and(|e| e.for_field(field).is_some()))
    };

    let submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (user, channel, text) = (
            user_id.get_untracked(),
            channel_id.get_untracked(),
            content.get_untracked(),
        );
        task.run(async move {
            actions::send_message(store, &user, &channel, &text).await?;
            content.set(String::new());
            Ok(())
        });
    };

    view! {
        <form class="form send" on:submit=submit novalidate>
            <h3>"Send a message"</h3>
            <div class="row">
                <label class="field">
                    <span>"User id"</span>
                    <input
                        data-testid="send-user-id"
                        inputmode="numeric"
                        prop:value=user_id
                        on:input=move |ev| user_id.set(event_target_value(&ev))
                        class:invalid=invalid("user_id")
                    />
                    <FieldError error field=Some("user_id")/>
                </label>
                <label class="field">
                    <span>"Channel id"</span>
                    <input
                        data-testid="send-channel-id"
                        inputmode="numeric"
                        prop:value=channel_id
                        on:input=move |ev| channel_id.set(event_target_value(&ev))
                        class:invalid=invalid("channel_id")
                    />
                    <FieldError error field=Some("channel_id")/>
                </label>
            </div>
            <label class="field">
                <span>"Content"</span>
                <textarea
                    data-testid="send-content"
                    rows="2"
                    placeholder="Hello, pipeline!"
                    prop:value=content
                    on:input=move |ev| content.set(event_target_value(&ev))
                    class:invalid=invalid("content")
                ></textarea>
                <FieldError error field=Some("content")/>
            </label>
            <FieldError error field=None/>
            <button type="submit" data-testid="send-button" disabled=busy>
                {move || if busy.get() { "Sending…" } else { "Send" }}
            </button>
        </form>
    }
}
