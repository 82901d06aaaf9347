//! The live dashboard of the ingestion pipeline: a Leptos app rendered in the browser (WebAssembly), served by
//! the notifier. It reads `/config.json` and the `/ws/stats` WebSocket from the notifier, and calls the
//! ingestor's API (CORS) for the controls and health.
//!
//! # Layout
//!
//! - [`model`]: pure logic, unit-tested natively: number formatting, latency percentiles, the feed's state
//!   transitions, the throughput ring buffer and chart geometry, backoff, health interpretation.
//! - `net`: the browser's I/O: `fetch` calls and the reconnecting WebSocket.
//! - `store`: the page's reactive state (signals) and how events and answers update it.
//! - `channels`: the channel view's history pages and `/ws/channels` subscription.
//! - `components`: one module per component of the page.

pub mod model;

mod actions;
mod app;
mod channels;
mod components;
mod net;
mod store;

/// Mounts the app when the module is instantiated in the browser. (Natively it compiles, so the workspace
/// build checks everything, but it must not be called: there is no DOM.)
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
