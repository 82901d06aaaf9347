//! Logs (tracing) and metrics (the Prometheus recorder behind every `/metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. Call once, from `main`.
pub fn init_tracing(config: &LogConfig) {
    // From the command line or the environment the filter was checked by `parse_log_filter`; only a
    // `LogConfig` built in code can hold a bad one, and it gets `info`.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Text => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .init(),
    }
}

/// Buckets for durations in seconds: 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Buckets for batch sizes.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0,
];

/// Every service's `GET /metrics` answer: the process's metrics in the Prometheus text exposition format.
pub fn exposition() -> ([(http::HeaderName, &'static str); 1], String) {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics().render(),
    )
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// Once per process rather than once per service, because tests run several services in one process; each
/// process's `/metrics` then shows every metric recorded in it.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are non-empty");
            let handle = builder
                .install_recorder()
                .expect("the metrics recorder is installed only here");
            // The exporter keeps histogram samples until rendered; render often enough that they are drained.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("can spawn the metrics upkeep thread");
            handle
        })
        .clone()
}

/// One metric a service exposes, declared at start so that `/metrics` shows it (with its help text) from the
/// first scrape: counters at 0 rather than absent until their first event, so that dashboards, alerts and
/// `rate()` see a series from the beginning.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    /// A counter; with `Some((label, values))`, one series at 0 per value.
    Counter {
        name: &'static str,
        help: &'static str,
        label: Option<(&'static str, &'static [&'static str])>,
    },
    /// A gauge, at 0 until set.
    Gauge {
        name: &'static str,
        help: &'static str,
    },
    /// A histogram in seconds (names ending in `_seconds`) or of sizes; it has samples only once recorded.
    /// `labels` names the labels its samples carry (their values are known only when recorded).
    Histogram {
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    },
}

impl Metric {
    pub fn name(&self) -> &'static str {
        match *self {
            Metric::Counter { name, .. }
            | Metric::Gauge { name, .. }
            | Metric::Histogram { name, .. } => name,
        }
    }
}

/// `pipeline_queue_depth`, set by every service from [`crate::depth::queue_depth`] (the ingestor as last read
/// for `MAX_QUEUE_DEPTH`, every 100 ms; the batcher every 1 s; the notifier every 500 ms).
pub const QUEUE_DEPTH: Metric = Metric::Gauge {
    name: "pipeline_queue_depth",
    help: "Messages pending in Redis plus those held in batchers' processing lists.",
};

/// Installs the recorder (if not yet) and declares `metrics`.
pub fn declare(metrics: &[Metric]) {
    let _ = self::metrics();
    for metric in metrics {
        match *metric {
            Metric::Counter { name, help, label } => {
                metrics::describe_counter!(name, help);
                match label {
                    None => metrics::counter!(name).increment(0),
                    Some((label, values)) => {
                        for value in values {
                            metrics::counter!(name, label => *value).increment(0);
                        }
                    }
                }
            }
            Metric::Gauge { name, help } => {
                metrics::describe_gauge!(name, help);
                metrics::gauge!(name).increment(0.0);
            }
            Metric::Histogram { name, help, .. } => {
                let unit = if name.ends_with("_seconds") {
                    metrics::Unit::Seconds
                } else {
                    metrics::Unit::Count
                };
                metrics::describe_histogram!(name, unit, help);
                let _ = metrics::histogram!(name);
            }
        }
    }
}
