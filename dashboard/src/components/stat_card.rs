//! One figure: a label, a big tabular number with its unit, and a line of detail. Fixed size, so changing
//! values never move the layout.

use leptos::prelude::*;

#[component]
pub fn StatCard(
    label: &'static str,
    /// `data-testid` of the value, whose text is the formatted number.
    testid: &'static str,
    value: Signal<String>,
    #[prop(optional)] unit: &'static str,
    detail: Signal<String>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <article class="stat">
            <h3 class="stat-label">{label}</h3>
            <p class="stat-value">
                <span data-testid=testid>{value}</span>
                <span class="stat-unit">{unit}</span>
            </p>
            {children.map(|children| children())}
            <p class="stat-detail">{detail}</p>
        </article>
    }
}
