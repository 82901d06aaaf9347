//! Sends one message (`POST /messages`); the API's 422 appears under the field it names.

use leptos::{ev::SubmitEvent, prelude::*};

use super::{
    field_error::{FieldError, invalid},
    number_field::{NumberField, NumberKind},
    task::Task,
};
use crate::{actions, store::Store};

#[component]
pub fn SendForm() -> impl IntoView {
    let store = Store::get();
    let user_id = RwSignal::new("1".to_owned());
    let channel_id = RwSignal::new("1".to_owned());
    let content = RwSignal::new(String::new());
    let task = Task::new();
    let Task { busy, error } = task;

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
                <NumberField
                    label="User id"
                    testid="send-user-id"
                    field="user_id"
                    value=user_id
                    error
                    kind=NumberKind::Id
                />
                <NumberField
                    label="Channel id"
                    testid="send-channel-id"
                    field="channel_id"
                    value=channel_id
                    error
                    kind=NumberKind::Id
                />
            </div>
            <label class="field">
                <span>"Content"</span>
                <textarea
                    data-testid="send-content"
                    rows="2"
                    placeholder="Hello, pipeline!"
                    prop:value=content
                    on:input=move |ev| content.set(event_target_value(&ev))
                    class:invalid=invalid(error.into(), "content")
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
