//! What every handler shares: Redis, the PostgreSQL pool, the group-commit pusher, access keys and
//! backpressure, built once at start.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use pipeline::connection::{RedisConn, Timeouts};
use pipeline::keys::Keys;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::auth::Access;
use crate::backpressure::Backpressure;
use crate::enqueue::WaitReplicas;
use crate::pusher::Pusher;
use crate::schema::SchemaStatus;

/// Connections in the PostgreSQL pool (reads, `/reset` and `/health`; writes are the batcher's).
const DB_POOL_SIZE: usize = 8;
/// Connecting to Redis may take 1 s (requests never wait for more than their own timeout, so a Redis that is
/// down costs each request at most this, then a 503); one command 5 s (a 10,000-element LPUSH of /simulate
/// included).
const REDIS_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    response: Some(Duration::from_secs(5)),
};
/// How long `WAIT` may take for `REDIS_WAIT_REPLICAS`; past it the push answers 503.
const WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything handlers share: one `Arc`, since axum clones the state for every request.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AsRef<Access> for AppState {
    fn as_ref(&self) -> &Access {
        &self.access
    }
}

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
    /// `QUEUE_SHARDS`: a message goes to shard `shard_of(channel_id, queue_shards)`.
    pub queue_shards: u32,
    /// `REDIS_WAIT_REPLICAS`, for every push.
    pub wait: WaitReplicas,
    /// `IDEMPOTENCY_TTL`: how long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// For everything but single-message pushes: batch, simulate, status, reset, health.
    pub redis: RedisConn,
    /// Group commit of `POST /messages`, on a connection of its own so a large /simulate does not delay it.
    pub pusher: Pusher,
    pub db: deadpool_postgres::Pool,
    /// The flush threshold (`BATCH_SIZE`), reported as `batch_threshold` (`batch_config.batch_size` in `GET /`).
    pub flush_threshold: u64,
    /// `BATCH_TIMEOUT`, reported by `GET /`.
    pub batch_timeout: Duration,
    /// `NOTIFIER_URL`: `GET /ws/stats` is relayed to its `/ws/stats`.
    pub notifier_url: String,
    /// Cancelled at shutdown: relayed WebSockets are closed then.
    pub shutdown: CancellationToken,
    /// The `/ws/stats` relays, which the server does not wait for (they are upgraded connections).
    pub relays: TaskTracker,
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
    /// Every `/ws/stats` relay; each ends soon after the shutdown token is cancelled.
    pub relays: TaskTracker,
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
        let target = config.redis.target()?;
        let redis = target.lazy(REDIS_TIMEOUTS)?;
        let wait = WaitReplicas {
            replicas: config.redis_wait_replicas,
            timeout_ms: WAIT_TIMEOUT.as_millis() as u64,
        };
        let backpressure = Backpressure::new(config.max_queue_depth);
        let (pusher, pusher_task) = Pusher::spawn(
            target.lazy(REDIS_TIMEOUTS)?,
            keys.clone(),
            wait,
            backpressure.clone(),
        );
        let depth_refresher = backpressure.spawn_refresher(
            redis.clone(),
            keys.clone(),
            config.redis.queue_shards,
            shutdown.clone(),
        );
        let db = pipeline::schema::pool(&config.database.database_url, DB_POOL_SIZE)?;
        let relays = TaskTracker::new();
        let state = Self(Arc::new(Shared {
            keys,
            queue_shards: config.redis.queue_shards,
            wait,
            idempotency_ttl: config.idempotency_ttl,
            redis,
            pusher,
            db,
            flush_threshold: config.batch.batch_size as u64,
            batch_timeout: config.batch.batch_timeout,
            notifier_url: config.notifier_url.clone(),
            shutdown: shutdown.clone(),
            relays: relays.clone(),
            cors_origins: config.cors_origins.clone(),
            access,
            backpressure,
            schema: SchemaStatus::default(),
        }));
        let tasks = Tasks {
            pusher: pusher_task,
            depth_refresher,
            relays,
        };
        Ok((state, tasks))
    }
}
