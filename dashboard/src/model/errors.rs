//! Error answers of the ingestor's API, turned into what a form shows: a message under the offending field,
//! or one for the whole form.

use pipeline::api::ErrorBody;

/// An error to show on a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    /// The field it belongs under (`user_id`, `channel_id`, `content`, `count`), or `None` for the form.
    pub field: Option<String>,
    pub message: String,
}

impl FormError {
    /// A problem that belongs to no field (network, unexpected status).
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }

    /// Reads an error answer: the API's `{"error","message","field"}` when it is one, otherwise the status.
    pub fn from_response(status: u16, body: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(error) => Self {
                // A path such as `content` names a form field; anything nested belongs to the whole form.
                field: error
                    .field
                    .filter(|field| field.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
                message: with_status_hint(status, error.message),
            },
            Err(_) => Self::general(format!("The API answered HTTP {status}")),
        }
    }

    /// The message if it belongs under `field`.
    pub fn for_field(&self, field: &str) -> Option<&str> {
        (self.field.as_deref() == Some(field)).then_some(self.message.as_str())
    }
}

/// Adds what to do about statuses whose message alone may not say it.
fn with_status_hint(status: u16, message: String) -> String {
    match status {
        401 => format!("{message} (check the key)"),
        429 | 503 => format!("{message} (try again in a moment)"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_goes_under_its_field() {
        let body =
            r#"{"error":"invalid_field","message":"content must not be blank","field":"content"}"#;
        let error = FormError::from_response(422, body);
        assert_eq!(
            error.for_field("content"),
            Some("content must not be blank")
        );
        assert_eq!(error.for_field("user_id"), None);
    }

    #[test]
    fn other_errors_belong_to_the_form() {
        let nested = r#"{"error":"invalid_field","message":"bad","field":"[3].content"}"#;
        assert_eq!(FormError::from_response(422, nested).field, None);
        let busy = r#"{"error":"queue_full","message":"The queue is full"}"#;
        assert_eq!(
            FormError::from_response(429, busy).message,
            "The queue is full (try again in a moment)"
        );
        let unauthorized = r#"{"error":"unauthorized","message":"A bearer token is required"}"#;
        assert_eq!(
            FormError::from_response(401, unauthorized).message,
            "A bearer token is required (check the key)"
        );
        assert_eq!(
            FormError::from_response(502, "Bad Gateway"),
            FormError::general("The API answered HTTP 502")
        );
    }
}
