//! The notifier's metrics, declared at start so that each is on `/metrics` from the first scrape.

use pipeline::telemetry::Metric;

/// Declares every metric the notifier records.
pub fn declare_metrics() {
    pipeline::telemetry::declare(&[
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
            help: "Times a slow WebSocket client fell behind the fan-out and skipped events.",
            label: None,
        },
        Metric::Counter {
            name: "notifier_stats_read_failures_total",
            help: "Streaks of failed stats reads, by source (counted once per streak; the last values are kept).",
            label: Some(("source", &["redis", "postgres"])),
        },
        pipeline::telemetry::QUEUE_DEPTH,
    ]);
}
