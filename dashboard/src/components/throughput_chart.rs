//! Accepted and persisted msg/s over the last three minutes, drawn as SVG paths from the ring buffer.

use leptos::prelude::*;

use crate::model::{
    chart::{self, HEIGHT, WIDTH},
    format::{fixed, rate, thousands},
    throughput::Point,
};
use crate::store::Store;

#[component]
pub fn ThroughputChart() -> impl IntoView {
    let store = Store::get();
    let drawn = Memo::new(move |_| {
        store.throughput.with(|t| {
            let points: Vec<Point> = t.points().copied().collect();
            chart::paths(&points)
        })
    });
    let point_count = move || store.throughput.with(|t| t.points().len()).to_string();
    let latest = move |of: fn(&Point) -> f64| {
        move || {
            store
                .throughput
                .with(|t| t.latest().map_or_else(|| "—".to_owned(), |p| rate(of(p))))
        }
    };
    let view_box = format!("0 0 {} {}", fixed(WIDTH, 0), fixed(HEIGHT, 0));
    // Horizontal grid lines at a quarter, half and three quarters of the height.
    let grid = [0.25, 0.5, 0.75].map(|f| {
        let y = fixed(HEIGHT * f, 1);
        view! { <line class="grid" x1="0" x2=fixed(WIDTH, 0) y1=y.clone() y2=y/> }
    });

    view! {
        <section class="panel chart-panel">
            <div class="panel-head">
                <h2>"Throughput"</h2>
                <div class="legend">
                    <span class="key accepted">"accepted " <b>{latest(|p| p.accepted)}</b></span>
                    <span class="key persisted">"persisted " <b>{latest(|p| p.persisted)}</b></span>
                    <span class="legend-unit">"msg/s"</span>
                </div>
            </div>
            <div class="chart-box">
                <span class="axis-top">
                    {move || format!("{} msg/s", thousands(drawn.get().y_max as u64))}
                </span>
                <svg
                    class="chart"
                    data-testid="throughput-chart"
                    data-points=point_count
                    viewBox=view_box
                    preserveAspectRatio="none"
                    role="img"
                    aria-label="Messages per second accepted and persisted, last three minutes"
                >
                    {grid}
                    <path class="area" d=move || drawn.get().persisted_area/>
                    <path class="line persisted" d=move || drawn.get().persisted/>
                    <path class="line accepted" d=move || drawn.get().accepted/>
                </svg>
                <div class="axis-x">
                    <span>"3 min ago"</span>
                    <span>"now"</span>
                </div>
            </div>
        </section>
    }
}
