//! One way to talk to Redis, whether it is one server (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`).
//!
//! [`RedisConn`] implements redis-rs' `ConnectionLike`, so commands, pipelines and scripts are written once
//! and run on either. On a cluster, redis-rs' cluster client routes each command by its key's slot and follows
//! MOVED and ASK (a resharding) and refreshes its slot map when a master fails over; our scripts touch one
//! shard's keys only, so each runs on one node. The few commands that have no key ([`RedisConn::scan_step`],
//! [`RedisConn::wait_replicas`], [`RedisConn::on_every_master`]) are routed here.

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Cmd, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{
        MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo,
        SlotAddr,
    },
};

/// Where Redis is.
#[derive(Clone)]
pub enum RedisTarget {
    Single(redis::Client),
    /// The cluster client, and its seed nodes' URLs (for pub/sub).
    Cluster(Box<ClusterClient>, Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_cluster() {
            "RedisTarget::Cluster"
        } else {
            "RedisTarget::Single"
        })
    }
}

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long connecting may take.
    pub connect: Duration,
    /// How long one command may take; `None` for a connection that blocks (`BLMOVE`), whose callers bound
    /// every call themselves. A cluster connection always has one, so it gets an hour there.
    pub response: Option<Duration>,
}

/// A cluster connection's stand-in for "no response timeout".
const CLUSTER_NO_TIMEOUT: Duration = Duration::from_secs(3600);

impl RedisTarget {
    /// The cluster of `cluster_nodes` if any are given, else the server at `url`.
    pub fn new(url: &str, cluster_nodes: &[String]) -> anyhow::Result<Self> {
        if cluster_nodes.is_empty() {
            let client = redis::Client::open(url).map_err(|error| {
                let url = crate::schema::redact(url);
                anyhow::anyhow!("REDIS_URL is not a valid Redis URL ({url}): {error}")
            })?;
            return Ok(Self::Single(client));
        }
        // `host:port` or a URL, as `REDIS_CLUSTER_NODES` takes them.
        let cluster_nodes: Vec<String> = cluster_nodes
            .iter()
            .map(|node| {
                if node.contains("://") {
                    node.clone()
                } else {
                    format!("redis://{node}")
                }
            })
            .collect();
        let client = ClusterClient::builder(cluster_nodes.iter().map(String::as_str))
            // A failover takes a couple of seconds (node timeout + election); retry through it quickly
            // rather than with the library's default waits of seconds to minutes.
            .retries(10)
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .build()
            .map_err(|error| anyhow::anyhow!("REDIS_CLUSTER_NODES is not usable: {error}"))?;
        Ok(Self::Cluster(Box::new(client), cluster_nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(..))
    }

    /// A connection of its own, made now.
    pub async fn connect(&self, timeouts: Timeouts) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(timeouts.response);
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(RedisConn::Multiplexed(conn))
            }
            Self::Cluster(client, _) => {
                let conn = client
                    .get_async_connection_with_config(cluster_config(timeouts))
                    .await?;
                Ok(RedisConn::Cluster(conn))
            }
        }
    }

    /// A connection that connects on first use and again after a failure, by itself: the service starts
    /// while Redis is down and recovers when it is back.
    pub fn lazy(&self, timeouts: Timeouts) -> RedisResult<RedisConn> {
        match self {
            Self::Single(client) => {
                let mut config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    // Few, quick retries: a request should learn fast that Redis is down.
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                config = config.set_response_timeout(timeouts.response);
                Ok(RedisConn::Managed(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?))
            }
            Self::Cluster(client, _) => Ok(RedisConn::Cluster(
                client.get_pending_async_connection_with_config(cluster_config(timeouts)),
            )),
        }
    }
}

fn cluster_config(timeouts: Timeouts) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(timeouts.connect)
        .set_response_timeout(timeouts.response.unwrap_or(CLUSTER_NO_TIMEOUT))
}

/// A connection to one server or to a cluster; cheap to clone (all kinds are multiplexed).
#[derive(Clone)]
pub enum RedisConn {
    Multiplexed(MultiplexedConnection),
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Multiplexed(_) => "RedisConn::Multiplexed",
            Self::Managed(_) => "RedisConn::Managed",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Multiplexed(conn) => conn.req_packed_command(cmd),
            Self::Managed(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Multiplexed(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Managed(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Multiplexed(conn) => conn.get_db(),
            Self::Managed(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

impl RedisConn {
    /// One `SCAN cursor MATCH pattern COUNT count` step on the node that holds `slot_key`'s slot (the only
    /// node that can hold keys matching a pattern under that hash tag). Returns the next cursor and the keys.
    pub async fn scan_step(
        &mut self,
        slot_key: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match self {
            Self::Cluster(conn) => {
                let route = Route::with_key(slot_key.as_bytes(), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = conn.route_command(scan, routing).await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
            _ => scan.query_async(self).await,
        }
    }

    /// `WAIT replicas timeout_ms`: how many replicas acknowledged every write this connection made before it.
    /// On a cluster, asked of every master; the answer is the smallest count.
    pub async fn wait_replicas(&mut self, replicas: u32, timeout_ms: u64) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match self {
            Self::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::Aggregate(
                        redis::cluster_routing::AggregateOp::Min,
                    )),
                ));
                let value = conn.route_command(wait, routing).await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
            _ => wait.query_async(self).await,
        }
    }

    /// Runs `cmd` on the server, or on every master of the cluster; one answer per node.
    pub async fn on_every_master(&mut self, cmd: Cmd) -> RedisResult<Vec<Value>> {
        match self {
            Self::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match conn.route_command(cmd, routing).await? {
                    // Without a response policy the answers come as a map of node address → answer.
                    Value::Map(answers) => {
                        Ok(answers.into_iter().map(|(_, value)| value).collect())
                    }
                    Value::Array(answers) => Ok(answers),
                    other => Ok(vec![other]),
                }
            }
            _ => Ok(vec![cmd.query_async(self).await?]),
        }
    }
}

/// Runs `op`, and once more if it failed with a connection-level error.
///
/// A multiplexed or managed connection notices that it broke (Redis restarted) only when a command fails on
/// it, and reconnects then; without a retry that first request would fail although Redis is back. A command
/// that failed this way was not executed, or, if it was, its replay is harmless: pushed elements keep their
/// tracking_id, and rows are idempotent on it.
pub async fn retry_once<T, F, Fut>(mut op: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    match op().await {
        Err(error) if error.is_unrecoverable_error() => {
            tracing::info!(%error, "Redis connection broken; retrying once on a new one");
            op().await
        }
        outcome => outcome,
    }
}
