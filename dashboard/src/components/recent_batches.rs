//! The last committed batches: id, size, flush reason (`size`/`timeout`/…), batcher and commit time.

use leptos::prelude::*;

use crate::model::{
    batches::BatchRow,
    format::{thousands, time_of_day},
};
use crate::net::clock::local_offset_minutes;
use crate::store::Store;

#[component]
pub fn RecentBatches() -> impl IntoView {
    let store = Store::get();
    let offset = local_offset_minutes();
    let rows = move || {
        store
            .batches
            .with(|b| b.rows().cloned().collect::<Vec<_>>())
    };
    let empty = move || store.batches.with(|b| b.is_empty());
    view! {
        <section class="panel batches">
            <h2>"Recent batches"</h2>
            <div class="table-wrap">
                <table data-testid="recent-batches">
                    <thead>
                        <tr>
                            <th class="num">"Batch"</th>
                            <th class="num">"Size"</th>
                            <th>"Reason"</th>
                            <th class="batcher">"Batcher"</th>
                            <th class="num">"Committed"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=rows
                            key=|row: &BatchRow| row.batch_id
                            children=move |row: BatchRow| {
                                let dead = (row.dead_letters > 0)
                                    .then(|| format!(" ({} dead)", thousands(row.dead_letters)));
                                view! {
                                    <tr>
                                        <td class="num">"#" {thousands(row.batch_id.max(0) as u64)}</td>
                                        <td class="num">{thousands(row.size)} {dead}</td>
                                        <td>
                                            <span class=format!("reason reason-{}", row.reason)>
                                                {row.reason.clone()}
                                            </span>
                                        </td>
                                        <td class="batcher">{row.batcher_id.clone()}</td>
                                        <td class="num">{time_of_day(row.committed_ms as f64, offset)}</td>
                                    </tr>
                                }
                            }
                        />
                    </tbody>
                </table>
                <Show when=empty>
                    <p class="empty">"No batch committed since this page opened."</p>
                </Show>
            </div>
        </section>
    }
}
