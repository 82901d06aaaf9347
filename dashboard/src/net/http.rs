//! `fetch` with a deadline: every request the page makes is aborted after [`TIMEOUT`].

use std::time::Duration;

use leptos::prelude::set_timeout;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestInit, RequestMode, Response};

/// Longest wait for one request, answer body included. A `/simulate` of a few hundred thousand messages
/// answers in a few seconds; anything slower is reported as a failure.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// JSON body.
    pub body: Option<&'a str>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn get(url: &'a str) -> Self {
        Self {
            method: "GET",
            url,
            body: None,
            bearer: None,
            timeout: TIMEOUT,
        }
    }

    pub fn post(url: &'a str, body: &'a str) -> Self {
        Self {
            method: "POST",
            body: Some(body),
            ..Self::get(url)
        }
    }
}

/// Sends `call`; `Err` only when no HTTP answer came (network, CORS, timeout), with a readable reason.
pub async fn send(call: Call<'_>) -> Result<Reply, String> {
    let controller = AbortController::new().map_err(describe)?;
    let init = RequestInit::new();
    init.set_method(call.method);
    init.set_mode(RequestMode::Cors);
    init.set_signal(Some(&controller.signal()));
    let headers = Headers::new().map_err(describe)?;
    if let Some(body) = call.body {
        headers
            .set("content-type", "application/json")
            .map_err(describe)?;
        init.set_body(&JsValue::from_str(body));
    }
    if let Some(token) = call.bearer {
        headers
            .set("authorization", &format!("Bearer {token}"))
            .map_err(describe)?;
    }
    init.set_headers(&headers);
    let request = Request::new_with_str_and_init(call.url, &init).map_err(describe)?;
    let window = web_sys::window().ok_or("no window")?;

    // Aborting after the answer is harmless, so the timer is never cancelled.
    set_timeout(move || controller.abort(), call.timeout);
    let unreachable = |error: JsValue| format!("{} unreachable: {}", call.url, describe(error));
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(unreachable)?
        .dyn_into()
        .map_err(describe)?;
    let text = JsFuture::from(response.text().map_err(describe)?)
        .await
        .map_err(unreachable)?;
    Ok(Reply {
        status: response.status(),
        body: text.as_string().unwrap_or_default(),
    })
}

/// A JavaScript error as text.
fn describe(error: JsValue) -> String {
    if let Some(error) = error.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    error.as_string().unwrap_or_else(|| format!("{error:?}"))
}
