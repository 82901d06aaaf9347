//! Pure logic of the dashboard: no DOM, no network, no clock (times are passed in as milliseconds), so
//! everything here is unit-tested natively.

pub mod backoff;
pub mod batches;
pub mod channel;
pub mod chart;
pub mod config;
pub mod connection;
pub mod errors;
pub mod feed;
pub mod format;
pub mod health;
pub mod latency;
pub mod throughput;
