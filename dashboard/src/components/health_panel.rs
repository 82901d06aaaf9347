//! Health of the ingestor, the notifier, the batchers (derived from the events), Redis and PostgreSQL.

use leptos::prelude::*;

use crate::model::{
    format::duration_ms,
    health::{BatcherState, DependencyHealth, ServiceHealth, dependencies},
};
use crate::store::Store;

/// A row: its CSS state (`up`, `down`, `warn`, `unknown`) and its text.
type Row = (&'static str, String);

fn service_row(health: &ServiceHealth) -> Row {
    match health {
        ServiceHealth::Checking => ("unknown", "checking…".into()),
        ServiceHealth::Up => ("up", "ok".into()),
        ServiceHealth::Degraded { redis, postgres } => {
            let mut missing = Vec::new();
            if !redis {
                missing.push("Redis");
            }
            if !postgres {
                missing.push("PostgreSQL");
            }
            (
                "warn",
                format!("up, cannot reach {}", missing.join(" and ")),
            )
        }
        ServiceHealth::Unreachable(reason) => ("down", reason.clone()),
    }
}

fn dependency_row(health: DependencyHealth) -> Row {
    match health {
        DependencyHealth::Unknown => ("unknown", "unknown".into()),
        DependencyHealth::Up => ("up", "ok".into()),
        DependencyHealth::Down => ("down", "unreachable from the services".into()),
    }
}

#[component]
fn HealthRow(name: &'static str, row: Signal<Row>) -> impl IntoView {
    view! {
        <li class=move || format!("health-row {}", row.get().0)>
            <span class="dot" aria-hidden="true"></span>
            <span class="health-name">{name}</span>
            <span class="health-text">{move || row.get().1}</span>
        </li>
    }
}

#[component]
pub fn HealthPanel() -> impl IntoView {
    let store = Store::get();
    let ingestor = Signal::derive(move || store.ingestor_health.with(service_row));
    let notifier = Signal::derive(move || store.notifier_health.with(service_row));
    let deps = Memo::new(move |_| {
        let (ingestor, notifier) = (store.ingestor_health.get(), store.notifier_health.get());
        dependencies(&[&ingestor, &notifier])
    });
    let redis = Signal::derive(move || dependency_row(deps.get().0));
    let postgres = Signal::derive(move || dependency_row(deps.get().1));
    let batchers = Signal::derive(move || {
        let now = store.now.get();
        let timeout_ms = store.config.with(|c| c.batch_timeout_ms());
        let watch = store.batchers.get();
        let last = watch.last_commit_ms.map_or_else(String::new, |at| {
            format!(", last commit {} ago", duration_ms(now - at))
        });
        match watch.state(now, timeout_ms) {
            BatcherState::Unknown => ("unknown", "waiting for stats".into()),
            BatcherState::Idle => ("up", format!("idle{last}")),
            BatcherState::Working => ("up", format!("working{last}")),
            BatcherState::Stalled => ("down", format!("messages waiting past BATCH_TIMEOUT{last}")),
        }
    });
    view! {
        <section class="panel health">
            <h2>"Health"</h2>
            <ul class="health-list" data-testid="health">
                <HealthRow name="Ingestor" row=ingestor/>
                <HealthRow name="Batchers" row=batchers/>
                <HealthRow name="Notifier" row=notifier/>
                <HealthRow name="Redis" row=redis/>
                <HealthRow name="PostgreSQL" row=postgres/>
            </ul>
        </section>
    }
}
