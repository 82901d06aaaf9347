//! The API's error message under the field it names (or, with `field` = `None`, under the whole form).

use leptos::prelude::*;

use crate::model::errors::FormError;

#[component]
pub fn FieldError(
    #[prop(into)] error: Signal<Option<FormError>>,
    field: Option<&'static str>,
) -> impl IntoView {
    let message = move || {
        error.with(|error| {
            let error = error.as_ref()?;
            match field {
                Some(field) => error.for_field(field).map(str::to_owned),
                // The form-wide slot shows what no field of the form claims.
                None => error.field.is_none().then(|| error.message.clone()),
            }
        })
    };
    view! {
        <Show when=move || message().is_some()>
            <p class="field-error" role="alert" data-field=field.unwrap_or("form")>
                {message}
            </p>
        </Show>
    }
}

/// Whether `error` names `field`: the input of that field is marked invalid while it does.
pub fn invalid(
    error: Signal<Option<FormError>>,
    field: &'static str,
) -> impl Fn() -> bool + Copy + Send + Sync + 'static {
    move || error.with(|e| e.as_ref().is_some_and(|e| e.for_field(field).is_some()))
}
