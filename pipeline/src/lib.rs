//! Pieces shared by the three services of the ingestion pipeline (and, for the wire types, the dashboard).
//!
//! # Layout
//!
//! - [`api`]: request and response bodies of the ingestor's HTTP API.
//! - [`events`]: the events the notifier pushes over WebSocket (`stats_update`, `batch_persisted`).
//! - [`queued`]: [`queued::QueuedMessage`], the element the ingestor pushes and the batcher persists.
//! - [`backoff`]: capped exponential backoff between retries.
//! - [`streak`]: whether a repeated operation is failing, so a failure streak is logged once.
//! - [`timestamp`]: chrono's timestamp text, serialized with less work (two per `POST /messages`).
//!
//! With the default `server` feature (everything that is not wasm-safe):
//!
//! - [`access`]: `API_KEYS`: parsing, checking, and the key a request carries (bearer or `access_token`).
//! - [`keys`]: the names of every Redis key and channel, one hash tag per queue shard, and a message's shard.
//! - [`connection`]: one Redis server or a Redis Cluster behind one connection type.
//! - [`depth`]: `queue_depth`, messages waiting in Redis plus held by batchers, over every shard.
//! - [`config`]: the configuration groups the services share (`REDIS_URL`, `DATABASE_URL`, `BATCH_*`, …).
//! - [`schema`]: applies `init.sql` at start, so an empty database just works.
//! - [`redis_policy`]: refuses a Redis whose `maxmemory-policy` could evict the queue (`allkeys-*`).
//! - [`redact`]: connection strings with their passwords hidden, for logs, errors and `Debug`.
//! - [`telemetry`]: tracing subscriber and the Prometheus recorder.
//! - [`shutdown`]: the SIGTERM / Ctrl-C signal as a cancellation token.

pub mod api;
pub mod backoff;
pub mod events;
pub mod queued;
pub mod rules;
pub mod streak;
pub mod timestamp;

#[cfg(feature = "server")]
pub mod access;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod connection;
#[cfg(feature = "server")]
pub mod depth;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod offset_backfill;
#[cfg(feature = "server")]
pub mod probe;
#[cfg(feature = "server")]
pub mod redact;
#[cfg(feature = "server")]
pub mod redis_policy;
#[cfg(feature = "server")]
pub mod schema;
#[cfg(feature = "server")]
pub mod shutdown;
#[cfg(feature = "server")]
pub mod telemetry;
