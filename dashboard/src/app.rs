//! The page: creates the [`Store`], starts the WebSocket and the periodic checks, and lays the components out.

use std::{cell::Cell, rc::Rc, time::Duration};

use leptos::{prelude::*, task::spawn_local};

use crate::actions;
use crate::components::{
    api_key_field::ApiKeyField, burst_form::BurstForm, channel_view::ChannelView, header::Header,
    health_panel::HealthPanel, latency_panel::LatencyPanel, live_feed::LiveFeed,
    recent_batches::RecentBatches, reset_form::ResetForm, send_form::SendForm,
    stat_cards::StatCards, throughput_chart::ThroughputChart,
};
use crate::model::config::{ClientConfig, websocket_url};
use crate::net::{clock::now_ms, socket};
use crate::store::Store;

/// The notifier sends stats every 500 ms: this long without one, the `/ws/stats` connection counts as dead.
const STATS_SILENCE: Duration = Duration::from_secs(5);
/// How often countdowns and "ago" texts refresh.
const TICK: Duration = Duration::from_millis(250);
/// How often the health of the services is asked.
const HEALTH_PERIOD: Duration = Duration::from_secs(5);
/// How often queued cards are checked for having waited too long (their event may have been missed).
const STALE_CHECK_PERIOD: Duration = Duration::from_secs(5);
/// Slack over `BATCH_TIMEOUT` before a queued card is looked up directly.
const STALE_AFTER_MS: f64 = 5_000.0;

#[component]
pub fn App() -> impl IntoView {
    let location = window().location();
    let hostname = location.hostname().unwrap_or_else(|_| "127.0.0.1".into());
    let store = Store::new(ClientConfig::fallback(&hostname));
    provide_context(store);

    // One reconciliation at a time, whoever asks for it.
    let reconciling = Rc::new(Cell::new(false));
    let reconcile = move || {
        if reconciling.replace(true) {
            return;
        }
        let reconciling = reconciling.clone();
        spawn_local(async move {
            actions::reconcile(store).await;
            reconciling.set(false);
        });
    };

    let ws_url = websocket_url(
        &location.protocol().unwrap_or_default(),
        &location.host().unwrap_or_default(),
        "/ws/stats",
    );
    let on_reconnect = reconcile.clone();
    spawn_local(async move {
        // The ingestor's URL must be known before any control or health check can work.
        store.config.set(actions::load_config(&hostname).await);
        socket::start(
            move || ws_url.clone(),
            Some(STATS_SILENCE),
            move |event| {
                if store.on_socket(event) {
                    on_reconnect();
                }
            },
        );
        actions::check_health(store).await;
    });

    set_interval(move || store.now.set(now_ms()), TICK);
    set_interval(
        move || spawn_local(actions::check_health(store)),
        HEALTH_PERIOD,
    );
    set_interval(
        move || {
            let deadline =
                now_ms() - store.config.get_untracked().batch_timeout_ms() - STALE_AFTER_MS;
            let stale = store
                .feed
                .with_untracked(|f| f.oldest_queued_ms())
                .is_some_and(|oldest| (oldest as f64) < deadline);
            if stale {
                reconcile();
            }
        },
        STALE_CHECK_PERIOD,
    );

    view! {
        <div class="page">
            <Header/>
            <StatCards/>
            <div class="layout">
                <div class="column">
                    <ThroughputChart/>
                    <div class="pair">
                        <LatencyPanel/>
                        <HealthPanel/>
                    </div>
                    <RecentBatches/>
                    <ChannelView/>
                </div>
                <div class="column">
                    <section class="panel controls">
                        <h2>"Controls"</h2>
                        <ApiKeyField/>
                        <SendForm/>
                        <BurstForm/>
                        <ResetForm/>
                    </section>
                    <LiveFeed/>
                </div>
            </div>
        </div>
    }
}
