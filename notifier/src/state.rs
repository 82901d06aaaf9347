//! What the notifier's handlers share.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::Utf8Bytes;
use axum::http::{HeaderMap, Uri};
use pipeline::access::ReadKeys;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{error::ApiError, feeds, origin::AllowedOrigins, stats};

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
    pub(crate) ws: Arc<WsSettings>,
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    /// With `API_KEYS` set, reading content needs one of them (bearer token or `access_token`); else 401.
    pub(crate) fn check_read(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        if self.read_keys.allows_request(headers, uri) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// `WS_ORIGINS`, `WS_SEND_TIMEOUT` and `WS_IDLE_TIMEOUT`.
#[derive(Debug, Clone)]
pub(crate) struct WsSettings {
    pub(crate) origins: AllowedOrigins,
    pub(crate) send_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}
