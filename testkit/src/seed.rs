//! What the seed API (the original service's interface, kept on the wire: see docs/glossary.md) promises
//! its clients, for the tests that hold the services to it.

/// The keys of the seed's `GET /` `endpoints`.
pub const ENDPOINTS: [&str; 6] = [
    "POST /messages",
    "POST /simulate",
    "GET /messages",
    "GET /health",
    "GET /queue/status",
    "WS /ws/stats",
];

/// The fields of the seed's `stats_update`.
pub const STATS_UPDATE_FIELDS: [&str; 9] = [
    "total_messages",
    "queue_depth",
    "messages_per_second",
    "total_batches",
    "avg_batch_size",
    "batch_threshold",
    "batch_progress",
    "batch_progress_percent",
    "batches_ready",
];

/// Asserts `value` is a `stats_update` with every field of the seed's, each a number.
pub fn assert_stats_update(value: &serde_json::Value) {
    assert_eq!(value["type"], "stats_update", "not a stats_update: {value}");
    for field in STATS_UPDATE_FIELDS {
        assert!(
            value[field].is_number(),
            "{field} missing or not a number in {value}"
        );
    }
}
