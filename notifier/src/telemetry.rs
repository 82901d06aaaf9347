//! The notifier's metrics, declared at start so that each is on `/metrics` from the first scrape.

use pipeline::telemetry::Metric;

/// Every metric the notifier records: the one home of its name, type, help and labels (declared at start, listed
/// in docs/metrics.md by `scripts/gen-docs`).
pub fn metrics() -> &'static [Metric] {
    const METRICS: &[Metric] = &[
        Metric::Gauge {
            name: "notifier_ws_clients",
            help: "WebSocket clients connected to /ws/stats.",
        },
        Metric::Counter {
            name: "notifier_events_relayed_total",
            help: "batch_persisted events received from Redis pub/sub and put on the fan-out.",
            label: None,
        },
        Metric::Counter {
            name: "notifier_events_dropped_total",
            help: "Pub/sub payloads that were not a valid batch_persisted event, and so not relayed.",
            label: None,
        },
        Metric::Counter {
            name: "notifier_clients_lagged_total",
            help: "WebSocket clients closed (1008) because they fell behind: more than 128 messages waiting for them.",
            label: None,
        },
        Metric::Counter {
            name: "notifier_clients_disconnected_total",
            help: "WebSocket clients closed for silence (idle: 1001) or for not taking a message within WS_SEND_TIMEOUT.",
            label: Some(("reason", &["idle", "send_timeout"])),
        },
        Metric::Counter {
            name: "notifier_ws_refused_total",
            help: "WebSocket handshakes refused with 403, by reason (an Origin not in WS_ORIGINS).",
            label: Some(("reason", &["origin"])),
        },
        Metric::Counter {
            name: "notifier_stats_read_failures_total",
            help: "Streaks of failed stats reads, by source (counted once per streak; the last values are kept).",
            label: Some(("source", &["redis", "postgres"])),
        },
        Metric::Gauge {
            name: "notifier_feed_clients",
            help: "WebSocket clients connected to /ws/channels.",
        },
        Metric::Gauge {
            name: "notifier_feed_subscriptions",
            help: "Channel subscriptions: one per channel of a /ws/channels client, one per /sse/channels stream.",
        },
        Metric::Counter {
            name: "notifier_feed_deliveries_total",
            help: "Channel messages delivered to subscribers, by transport.",
            label: Some(("transport", &["ws", "sse"])),
        },
        Metric::Counter {
            name: "notifier_feed_lagged_total",
            help: "Times a channel subscriber fell more than 1024 messages behind the live feed (told `lagged`, then caught up from PostgreSQL), by transport.",
            label: Some(("transport", &["ws", "sse"])),
        },
        Metric::Counter {
            name: "notifier_feed_queries_total",
            help: "PostgreSQL reads of the channel feeds: catch_up (a subscriber's replay page), fan_out (the hub's read of new rows, all channels at once), heads (the safety net's re-read of channel_heads).",
            label: Some(("query", &["catch_up", "fan_out", "heads"])),
        },
        pipeline::telemetry::QUEUE_DEPTH,
    ];
    METRICS
}
