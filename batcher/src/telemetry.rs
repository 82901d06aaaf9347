//! The batcher's metrics, declared at start so that each is on `/metrics` from the first scrape.

use pipeline::telemetry::Metric;
use strum::VariantNames;

use crate::policy::FlushReason;

/// Every metric the batcher records: the one home of its name, type, help and labels (declared at start, listed
/// in docs/metrics.md by `scripts/gen-docs`).
pub fn metrics() -> &'static [Metric] {
    const METRICS: &[Metric] = &[
        Metric::Counter {
            name: "batcher_messages_persisted_total",
            help: "Rows committed to `messages` (replays of already committed rows are not counted).",
            label: None,
        },
        Metric::Counter {
            name: "batcher_flushes_total",
            help: "Committed batches, by what triggered the flush.",
            label: Some(("reason", FlushReason::VARIANTS)),
        },
        Metric::Counter {
            name: "batcher_dead_letters_total",
            help: "Elements written to `dead_letters` instead of `messages`.",
            label: None,
        },
        Metric::Counter {
            name: "batcher_retries_total",
            help: "Redis or PostgreSQL operations retried after a failure (with capped backoff).",
            label: None,
        },
        Metric::Counter {
            name: "batcher_fenced_total",
            help: "Times one of this batcher's shards turned out taken over (its lease lost while it was \
                   presumed dead); what it held is left to the shard's new holder.",
            label: None,
        },
        Metric::Counter {
            name: "batcher_reclaims_total",
            help: "Takeovers of a shard (or sweeps of an orphaned list) by this batcher that moved unfinished \
                   messages back to pending.",
            label: None,
        },
        Metric::Counter {
            name: "batcher_reclaimed_messages_total",
            help: "Elements moved back to pending by this batcher's takeovers and sweeps.",
            label: None,
        },
        Metric::Counter {
            name: "batcher_batch_splits_total",
            help: "Batches (or pieces) halved because they kept failing as if too large (statement timeout, \
                   out of memory, a hung try).",
            label: None,
        },
        Metric::Gauge {
            name: "batcher_shards_held",
            help: "Queue shards whose lease this batcher holds (each drained by one worker).",
        },
        Metric::Histogram {
            name: "batcher_batch_size",
            help: "Elements per committed batch.",
            labels: &[],
        },
        Metric::Histogram {
            name: "batcher_group_commit_batches",
            help: "Batches committed in one transaction by the group commit (with several queue shards, the \
                   time-triggered batches of the shards held that are ready together).",
            labels: &[],
        },
        Metric::Histogram {
            name: "batcher_flush_duration_seconds",
            help: "Time of a flush: decode, commit (retries included), clear and publish.",
            labels: &[],
        },
        Metric::Histogram {
            name: "pipeline_end_to_end_latency_seconds",
            help: "Message creation (at the ingestor) to its commit in PostgreSQL.",
            labels: &[],
        },
        pipeline::telemetry::QUEUE_DEPTH,
    ];
    METRICS
}
