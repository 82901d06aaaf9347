//! End-to-end latency p50/p95/p99: message creation (its UUID v7) to the commit of its batch.

use leptos::prelude::*;

use crate::model::{
    format::{duration_ms, thousands},
    latency::Percentiles,
};
use crate::store::Store;

#[component]
pub fn LatencyPanel() -> impl IntoView {
    let store = Store::get();
    let percentiles = Memo::new(move |_| store.latency.with(|l| l.percentiles()));
    let figure = move |of: fn(&Percentiles) -> f64| {
        move || {
            percentiles
                .get()
                .map_or_else(|| "—".to_owned(), |p| duration_ms(of(&p)))
        }
    };
    let samples = move || match percentiles.get() {
        Some(p) => format!(
            "last {} messages, creation → commit",
            thousands(p.count as u64)
        ),
        None => "waiting for the first batch".to_owned(),
    };
    view! {
        <section class="panel latency">
            <h2>"Latency"</h2>
            <dl class="percentiles" data-testid="latency">
                <div><dt>"p50"</dt><dd>{figure(|p| p.p50)}</dd></div>
                <div><dt>"p95"</dt><dd>{figure(|p| p.p95)}</dd></div>
                <div><dt>"p99"</dt><dd>{figure(|p| p.p99)}</dd></div>
            </dl>
            <p class="note">{samples}</p>
        </section>
    }
}
