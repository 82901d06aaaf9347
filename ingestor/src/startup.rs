//! Builds the application: the shared state (Redis, PostgreSQL pool, group-commit pusher, access keys,
//! backpressure) and the router, whose routes also make the OpenAPI document.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use pipeline::keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Access;
use crate::backpressure::Backpressure;
use crate::cors::BrowserCorsLayer;
use crate::openapi::{self, ApiDoc};
use crate::pusher::Pusher;
use crate::routes::{batch, health, messages, metrics, queue_status, ready, reset, simulate};
use crate::schema::SchemaStatus;
use crate::{Config, error, telemetry};

/// Connections in the PostgreSQL pool (reads, `/reset` and `/health`; writes are the batcher's).
const DB_POOL_SIZE: usize = 8;
/// How long one attempt to (re)connect to Redis may take; requests never wait for more than their own
/// timeout, so a Redis that is down costs each request at most this, then a 503.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest answer time for one Redis command (a 10,000-element LPUSH of /simulate included).
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything handlers share: one `Arc`, since axum clones the state for every request.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub keys: Keys,
    /// For everything but single-message pushes: batch, simulate, status, reset, health.
    pub redis: ConnectionManager,
    /// Group commit of `POST /messages`, on a connection of its own so a large /simulate does not delay it.
    pub pusher: Pusher,
    pub db: deadpool_postgres::Pool,
    /// `BATCH_SIZE`, reported as `batch_threshold`.
    pub batch_size: u64,
    /// Origins the dashboard may call us from.
    pub cors_origins: Vec<String>,
    /// `API_KEYS` and `ADMIN_API_KEY`.
    pub access: Access,
    /// `MAX_QUEUE_DEPTH` and the cached queue depth.
    pub backpressure: Backpressure,
    /// Whether `init.sql` is applied, so reads can run (see [`crate::schema`]).
    pub schema: SchemaStatus,
}

/// The background tasks of [`AppState`], to await at shutdown.
#[derive(Debug)]
pub struct Tasks {
    /// Ends once every [`Pusher`] is dropped and its last group is pushed.
    pub pusher: JoinHandle<()>,
    /// Ends when the shutdown token is cancelled.
    pub depth_refresher: JoinHandle<()>,
}

impl AppState {
    /// Builds the state around `access` (made from `config` by [`Access::new`]); Redis is connected lazily
    /// (the service starts even while Redis is down, and reconnects by itself after a Redis restart). The
    /// queue depth is refreshed until `shutdown`.
    pub fn new(
        config: &Config,
        access: Access,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(Self, Tasks)> {
        let keys = config.redis.keys();
        let redis = redis_connection(&config.redis.redis_url)?;
        let (pusher, pusher_task) =
            Pusher::spawn(redis_connection(&config.redis.redis_url)?, keys.pending());
        let backpressure = Backpressure::new(config.max_queue_depth);
        let depth_refresher =
            backpressure.spawn_refresher(redis.clone(), keys.clone(), shutdown.clone());
        let db = pipeline::schema::pool(&config.database.database_url, DB_POOL_SIZE)?;
        let state = Self(Arc::new(Shared {
            keys,
            redis,
            pusher,
            db,
            batch_size: config.batch.batch_size as u64,
            cors_origins: config.cors_origins.clone(),
            access,
            backpressure,
            schema: SchemaStatus::default(),
        }));
        let tasks = Tasks {
            pusher: pusher_task,
            depth_refresher,
        };
        Ok((state, tasks))
    }
}

/// A self-healing Redis connection that connects on first use.
fn redis_connection(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).map_err(|error| {
        let url = pipeline::schema::redact(url);
        anyhow::anyhow!("REDIS_URL is not a valid Redis URL ({url}): {error}")
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        // Few, quick retries: a request should learn fast that Redis is down; the next request retries.
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Every route, each with its OpenAPI description: the one list both the router and the document come from.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::create, messages::list))
        .routes(routes!(batch::create_batch))
        .routes(routes!(simulate::simulate))
        .routes(routes!(queue_status::queue_status))
        .routes(routes!(reset::reset))
        .routes(routes!(health::health))
        .routes(routes!(ready::ready))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json))
}

/// The router with every route, the JSON fallbacks, request metrics and CORS.
pub fn app(state: AppState) -> Router {
    let cors = cors(&state.cors_origins);
    let (router, _document) = routes().split_for_parts();
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(telemetry::TrackRequestsLayer)
        .layer(BrowserCorsLayer::new(cors))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER])
}
