//! What the notifier's handlers share.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use pipeline::access::ReadKeys;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{feeds, stats, ws};

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// `batch_persisted` payloads, as published by the batchers.
    pub(crate) events: broadcast::Sender<Utf8Bytes>,
    /// The latest `stats_update`.
    pub(crate) stats: watch::Receiver<stats::StatsFrame>,
    /// One permit per WebSocket or SSE client (`MAX_WS_CLIENTS`).
    pub(crate) clients: Arc<Semaphore>,
    /// The channel feeds' subscribed channels.
    pub(crate) hub: Arc<feeds::hub::Hub>,
    /// `API_KEYS`, for reading channels.
    pub(crate) read_keys: ReadKeys,
    pub(crate) redis: pipeline::connection::RedisConn,
    pub(crate) postgres: deadpool_postgres::Pool,
    /// Body of `/config.json`.
    pub(crate) client_config: Arc<pipeline::api::ClientConfig>,
    /// Origins and timeouts of WebSocket clients.
    pub(crate) ws: Arc<ws::WsSettings>,
    pub(crate) shutdown: CancellationToken,
}
