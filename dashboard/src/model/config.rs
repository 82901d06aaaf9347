//! What the notifier tells the page at `GET /config.json`, and the form inputs turned into request bodies.

use serde_json::{Value, json};

/// Body of `GET /config.json`, the type the notifier serves it from.
pub use pipeline::api::ClientConfig;

/// The URL of the WebSocket at `path` on the page's own origin (`http:` → `ws:`, `https:` → `wss:`).
pub fn websocket_url(protocol: &str, host: &str, path: &str) -> String {
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{host}{path}")
}

/// `url` with the API key as its `access_token` query parameter (how a browser's WebSocket, which cannot
/// set headers, and a request without a CORS preflight carry it); unchanged when no key is typed.
pub fn with_access_token(url: &str, key: &str) -> String {
    let key = key.trim();
    if key.is_empty() {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}access_token={}", encode(key))
}

/// Percent-encodes all but ASCII letters and digits, for a path segment or a query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A form field for a JSON number: sent as a number when it is an integer, else as the text typed, so the
/// API (not the page) decides, and names the field in its 422.
pub fn number_or_text(input: &str) -> Value {
    let trimmed = input.trim();
    match trimmed.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(trimmed),
    }
}

/// Body of `POST /messages` from the form's three inputs.
pub fn new_message_body(user_id: &str, channel_id: &str, content: &str) -> String {
    json!({
        "user_id": number_or_text(user_id),
        "channel_id": number_or_text(channel_id),
        "content": content,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_is_read_with_defaults() {
        let config: ClientConfig =
            serde_json::from_str(r#"{"ingestor_url":"http://127.0.0.1:8000"}"#).unwrap();
        assert_eq!(config, ClientConfig::fallback("127.0.0.1"));
        let full: ClientConfig = serde_json::from_str(
            r#"{"ingestor_url":"http://x:1","batch_size":7,"batch_timeout_seconds":0.5}"#,
        )
        .unwrap();
        assert_eq!((full.batch_size, full.batch_timeout_ms()), (7, 500.0));
    }

    #[test]
    fn websocket_url_follows_the_page_scheme() {
        assert_eq!(
            websocket_url("http:", "127.0.0.1:8001", "/ws/stats"),
            "ws://127.0.0.1:8001/ws/stats"
        );
        assert_eq!(
            websocket_url("https:", "dash.example", "/ws/channels"),
            "wss://dash.example/ws/channels"
        );
    }

    #[test]
    fn the_access_token_is_added_encoded_only_when_a_key_is_typed() {
        assert_eq!(
            with_access_token("ws://h/ws/channels", "  "),
            "ws://h/ws/channels"
        );
        assert_eq!(
            with_access_token("ws://h/ws/channels", " k&1=/ "),
            "ws://h/ws/channels?access_token=k%261%3D%2F"
        );
        assert_eq!(
            with_access_token("http://h/channels/7/messages?limit=100", "key"),
            "http://h/channels/7/messages?limit=100&access_token=key"
        );
    }

    #[test]
    fn numbers_are_sent_as_numbers_and_anything_else_as_typed() {
        let body: Value = serde_json::from_str(&new_message_body(" 7 ", "x", "hi")).unwrap();
        assert_eq!(
            body,
            json!({"user_id": 7, "channel_id": "x", "content": "hi"})
        );
        assert_eq!(number_or_text(""), json!(""));
    }
}
