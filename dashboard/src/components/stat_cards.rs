//! The row of stat cards: totals, queue depth, rate, batches, batch progress with its timeout, dead letters.

use leptos::prelude::*;
use pipeline::events::Stats;

use super::stat_card::StatCard;
use crate::model::format::{decimal, duration_ms, fixed, thousands};
use crate::store::Store;

/// Shown before the first `stats_update`.
const NO_VALUE: &str = "—";

#[component]
pub fn StatCards() -> impl IntoView {
    let store = Store::get();
    // A figure of the latest stats, or a dash before the first.
    let figure = move |of: fn(&Stats) -> String| {
        Signal::derive(move || {
            store
                .stats
                .with(|stats| stats.as_ref().map_or_else(|| NO_VALUE.to_owned(), of))
        })
    };
    let text = |text: &'static str| Signal::derive(move || text.to_owned());

    let progress = figure(|s| {
        format!(
            "{} / {}",
            thousands(s.batch_progress),
            thousands(s.batch_threshold)
        )
    });
    let progress_width = move || {
        store.stats.with(|stats| {
            // The server's figure (`pipeline::events::BatchProgress`), not a second formula here.
            let percent = stats.as_ref().map_or(0.0, |s| s.batch_progress_percent);
            format!("{}%", fixed(percent, 1))
        })
    };
    let timeout = Signal::derive(move || {
        let timeout_ms = store.config.with(|c| c.batch_timeout_ms());
        let ready = store
            .stats
            .with(|s| s.as_ref().map_or(0, |s| s.batches_ready));
        let left = store.timer.with(|t| t.left_ms(store.now.get(), timeout_ms));
        let ready = if ready > 0 {
            format!("{} full · ", thousands(ready))
        } else {
            String::new()
        };
        match left {
            Some(left) => format!("{ready}times out in ≈{}", duration_ms(left)),
            None => format!("timeout {}", duration_ms(timeout_ms)),
        }
    });
    let avg_detail = Signal::derive(move || {
        let size = store.config.with(|c| c.batch_size);
        format!("of BATCH_SIZE {}", thousands(size))
    });

    view! {
        <section class="stats" aria-label="Pipeline figures">
            <StatCard
                label="Persisted"
                testid="total-messages"
                value=figure(|s| thousands(s.total_messages))
                detail=text("rows in PostgreSQL")
            />
            <StatCard
                label="Queue depth"
                testid="queue-depth"
                value=figure(|s| thousands(s.queue_depth))
                detail=text("Redis + batchers")
            />
            <StatCard
                label="Rate"
                testid="messages-per-second"
                value=figure(|s| thousands(s.messages_per_second))
                unit="msg/s"
                detail=text("persisted, last seconds")
            />
            <StatCard
                label="Batches"
                testid="total-batches"
                value=figure(|s| thousands(s.total_batches))
                detail=text("committed")
            />
            <StatCard
                label="Avg batch"
                testid="avg-batch-size"
                value=figure(|s| decimal(s.avg_batch_size, 1))
                unit="msgs"
                detail=avg_detail
            />
            <StatCard label="Next batch" testid="batch-progress" value=progress detail=timeout>
                <div class="bar" aria-hidden="true">
                    <div class="bar-fill" style:width=progress_width></div>
                </div>
            </StatCard>
            <StatCard
                label="Dead letters"
                testid="dead-letters"
                value=figure(|s| thousands(s.dead_letters))
                detail=text("rows that failed")
            />
        </section>
    }
}
