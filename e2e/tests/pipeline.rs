//! The whole pipeline, end to end: POST → Redis → batcher → PostgreSQL → pub/sub → WebSocket.
//!
//! The core cases run twice: on one Redis with the default single queue shard, and on a Redis Cluster
//! (`TEST_REDIS_CLUSTER_NODES`, started by `scripts/test`; skipped with a notice without it) with 6 shards.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use clap::Parser;
use futures_util::{StreamExt, stream};
use pipeline::{
    api::{MessageAccepted, PersistedMessage, SimulateAccepted},
    events::ServerEvent,
};
use testkit::ws::Ws;
use testkit::{TestEnv, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The three services running in this process against one test's database and key prefix; `replicas` of each,
/// as a scaled-out deployment would run them (each batcher with its own `BATCHER_ID`).
/// Where the pipeline keeps its queue.
#[derive(Debug, Clone)]
enum Redis {
    /// `TEST_REDIS_URL`, this many shards.
    Single(u32),
    /// The cluster of `TEST_REDIS_CLUSTER_NODES`, this many shards.
    Cluster(u32),
}

impl Redis {
    /// The services' Redis arguments, or `None` (with a notice) when the cluster is not configured.
    fn args(&self, env: &TestEnv) -> Option<Vec<String>> {
        match self {
            Self::Single(shards) => Some(vec![
                "--redis-url".into(),
                env.redis_url.clone(),
                "--queue-shards".into(),
                shards.to_string(),
            ]),
            Self::Cluster(shards) => {
                let Some(nodes) = testkit::cluster::nodes_from_env() else {
                    eprintln!("TEST_REDIS_CLUSTER_NODES is not set: skipping the cluster case");
                    return None;
                };
                Some(vec![
                    "--redis-cluster-nodes".into(),
                    nodes.join(","),
                    "--queue-shards".into(),
                    shards.to_string(),
                ])
            }
        }
    }
}

struct Pipeline {
    env: TestEnv,
    /// Base URL of each ingestor.
    ingestors: Vec<String>,
    notifiers: Vec<SocketAddr>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Pipeline {
    async fn start(redis: &Redis, batch_size: usize, batch_timeout: &str) -> Option<Self> {
        Self::start_replicated(redis, 1, batch_size, batch_timeout).await
    }

    async fn start_replicated(
        redis: &Redis,
        replicas: usize,
        batch_size: usize,
        batch_timeout: &str,
    ) -> Option<Self> {
        let env = TestEnv::new().await;
        let redis_args = redis.args(&env)?;
        let batch_size = batch_size.to_string();
        let shared = [
            "--redis-key-prefix",
            env.prefix.as_str(),
            "--database-url",
            env.database_url.as_str(),
            "--batch-size",
            batch_size.as_str(),
            "--batch-timeout",
            batch_timeout,
        ];
        let args = |name: &str, extra: &[&str]| {
            std::iter::once(name)
                .chain(redis_args.iter().map(String::as_str))
                .chain(shared.iter().copied())
                .chain(extra.iter().copied())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let shutdown = CancellationToken::new();
        let mut services = Vec::new();
        let mut ingestors = Vec::new();
        let mut notifiers = Vec::new();

        for replica in 1..=replicas {
            let (listener, addr) = testkit::listener().await.unwrap();
            let config = ingestor::Config::try_parse_from(args("ingestor", &[])).unwrap();
            services.push(tokio::spawn(ingestor::run(
                config,
                listener,
                shutdown.clone(),
            )));
            ingestors.push(format!("http://{addr}"));

            let (listener, _) = testkit::listener().await.unwrap();
            let id = format!("e2e-{replica}");
            let config =
                batcher::Config::try_parse_from(args("batcher", &["--batcher-id", &id])).unwrap();
            services.push(tokio::spawn(batcher::run(
                config,
                listener,
                shutdown.clone(),
            )));

            let (listener, addr) = testkit::listener().await.unwrap();
            let config = notifier::Config::try_parse_from(args("notifier", &[])).unwrap();
            services.push(tokio::spawn(notifier::run(
                config,
                listener,
                shutdown.clone(),
            )));
            notifiers.push(addr);
        }

        let pipeline = Self {
            env,
            ingestors,
            notifiers,
            http: reqwest::Client::new(),
            shutdown,
            services,
        };
        let health = pipeline
            .ingestors
            .iter()
            .map(|api| format!("{api}/health"))
            .chain(
                pipeline
                    .notifiers
                    .iter()
                    .map(|addr| format!("http://{addr}/health")),
            );
        for url in health {
            eventually(Duration::from_secs(10), "service health", || async {
                let response = pipeline.http.get(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            })
            .await;
        }
        Some(pipeline)
    }

    /// The first ingestor's base URL.
    fn api(&self) -> &str {
        &self.ingestors[0]
    }

    /// The first notifier's address.
    fn notifier(&self) -> SocketAddr {
        self.notifiers[0]
    }

    async fn post(&self, user_id: i64, content: &str) -> MessageAccepted {
        self.post_to(self.api(), user_id, content).await
    }

    async fn post_to(&self, api: &str, user_id: i64, content: &str) -> MessageAccepted {
        let response = self
            .http
            .post(format!("{api}/messages"))
            // 16 channels, so that every queue shard gets messages.
            .json(&serde_json::json!({"user_id": user_id, "channel_id": user_id % 16 + 1, "content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Waits until every batcher holds a shard's lease (a lease's value starts with its holder's id), so a
    /// test that needs each batcher to take part does not race their start.
    async fn wait_for_every_batcher_to_hold_a_shard(&self, redis: &Redis, batchers: &[&str]) {
        let (shards, target) = match redis {
            Redis::Single(shards) => (
                *shards,
                pipeline::connection::RedisTarget::new(&self.env.redis_url, &[]).unwrap(),
            ),
            Redis::Cluster(shards) => (
                *shards,
                pipeline::connection::RedisTarget::new(
                    "",
                    &testkit::cluster::nodes_from_env().unwrap(),
                )
                .unwrap(),
            ),
        };
        let timeouts = pipeline::connection::Timeouts {
            connect: Duration::from_secs(2),
            response: Some(Duration::from_secs(2)),
        };
        let conn = target.connect(timeouts).await.unwrap();
        eventually(
            Duration::from_secs(20),
            "every batcher holds a shard",
            || async {
                let mut holders = HashSet::new();
                for shard in self.env.keys().shards(shards) {
                    let lease: Option<String> = redis::cmd("GET")
                        .arg(shard.lease())
                        .query_async(&mut conn.clone())
                        .await
                        .ok()?;
                    if let Some(holder) = lease.as_deref().and_then(|l| l.split(' ').next()) {
                        holders.insert(holder.to_owned());
                    }
                }
                batchers
                    .iter()
                    .all(|batcher| holders.contains(*batcher))
                    .then_some(())
            },
        )
        .await;
    }

    /// Tracking ids in `messages`, failing on duplicates.
    async fn persisted_ids(&self) -> HashSet<Uuid> {
        let rows: Vec<Uuid> = self.env.column("SELECT tracking_id FROM messages").await;
        let ids: HashSet<Uuid> = rows.iter().copied().collect();
        assert_eq!(ids.len(), rows.len(), "duplicate tracking_id in messages");
        ids
    }

    async fn wait_for_rows(&self, expected: i64) {
        eventually(
            Duration::from_secs(30),
            &format!("{expected} rows"),
            || async { (self.env.count("messages").await >= expected).then_some(()) },
        )
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for service in self.services {
            service.await.unwrap().unwrap();
        }
    }
}

/// Runs `test` on a pipeline over one Redis (one shard), then over the Redis Cluster of
/// `TEST_REDIS_CLUSTER_NODES` (six shards) when it is set: the same outcome is expected of both.
async fn on_each_redis(batch_size: usize, batch_timeout: &str, test: impl AsyncFn(Pipeline)) {
    for redis in [Redis::Single(1), Redis::Cluster(6)] {
        if let Some(pipeline) = Pipeline::start(&redis, batch_size, batch_timeout).await {
            test(pipeline).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_concurrent_posts_become_exactly_those_rows() {
    on_each_redis(100, "0.1", async |pipeline| {
        const MESSAGES: i64 = 3000;

        let accepted: Vec<MessageAccepted> = stream::iter(0..MESSAGES)
            .map(|i| {
                let pipeline = &pipeline;
                async move { pipeline.post(i + 1, &format!("message {i}")).await }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let returned: HashSet<Uuid> = accepted.iter().map(|a| a.message_id).collect();
        assert_eq!(returned.len(), MESSAGES as usize, "message ids are unique");
        assert!(accepted.iter().all(|a| a.status == "queued"));

        pipeline.wait_for_rows(MESSAGES).await;
        // Give a stray duplicate the chance to show up before asserting there is none.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pipeline.env.count("messages").await, MESSAGES);
        assert_eq!(pipeline.persisted_ids().await, returned);

        let (persisted, _, _) = pipeline.env.totals().await;
        assert_eq!(persisted, MESSAGES);
        pipeline.stop().await;
    })
    .await;
}

#[tokio::test]
async fn simulate_persists_exactly_the_ids_it_returned() {
    on_each_redis(50, "0.1", async |pipeline| {
        let response = pipeline
            .http
            .post(format!("{}/simulate", pipeline.api()))
            .json(&serde_json::json!({"count": 2000}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let accepted: SimulateAccepted = response.json().await.unwrap();
        assert_eq!(accepted.messages_count, 2000);
        assert_eq!(accepted.batch_threshold, 50);
        let returned: HashSet<Uuid> = accepted.tracking_ids.into_iter().collect();
        assert_eq!(returned.len(), 2000);

        pipeline.wait_for_rows(2000).await;
        assert_eq!(pipeline.persisted_ids().await, returned);
        pipeline.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_websocket_client_sees_every_posted_id_become_persisted() {
    on_each_redis(20, "0.05", async |pipeline| {
        let mut socket = watch_stats(pipeline.notifier()).await;

        let mut posted = HashSet::new();
        for i in 0..150 {
            posted.insert(pipeline.post(1, &format!("watched {i}")).await.message_id);
        }

        let mut seen = HashSet::new();
        let mut last_total = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while (seen.len() < posted.len() || last_total < 150)
            && tokio::time::Instant::now() < deadline
        {
            match next_event(&mut socket).await {
                ServerEvent::BatchPersisted(batch) => {
                    assert!(batch.batch_size <= 20, "batch over BATCH_SIZE: {batch:?}");
                    seen.extend(batch.ids);
                }
                ServerEvent::StatsUpdate(stats) => {
                    assert_eq!(stats.batch_threshold, 20);
                    last_total = stats.total_messages;
                }
            }
        }
        assert_eq!(
            seen, posted,
            "every posted id arrives in a batch_persisted event"
        );
        assert_eq!(
            last_total, 150,
            "stats_update reports every persisted message"
        );
        pipeline.stop().await;
    })
    .await;
}

#[tokio::test]
async fn get_messages_lists_what_the_batcher_persisted_newest_first() {
    let pipeline = Pipeline::start(&Redis::Single(1), 3, "0.05").await.unwrap();
    let first = pipeline.post(11, "first").await;
    let second = pipeline.post(12, "second").await;
    let third = pipeline.post(13, "third").await;
    pipeline.wait_for_rows(3).await;

    let rows: Vec<PersistedMessage> = pipeline
        .http
        .get(format!("{}/messages?limit=2", pipeline.api()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let ids: Vec<Uuid> = rows.iter().map(|r| r.tracking_id).collect();
    assert_eq!(ids, vec![third.message_id, second.message_id]);
    assert_eq!((rows[0].user_id, rows[0].content.as_str()), (13, "third"));
    assert_ne!(first.message_id, third.message_id);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_each_service_persist_every_message_once_and_every_notifier_relays_every_id() {
    // Each shard is drained by one batcher at a time: with 4 on one Redis, both batchers get a share.
    for redis in [Redis::Single(4), Redis::Cluster(6)] {
        two_of_each_service_persist_every_message_once_and_every_notifier_relays_every_id_on(redis)
            .await;
    }
}

async fn two_of_each_service_persist_every_message_once_and_every_notifier_relays_every_id_on(
    redis: Redis,
) {
    let Some(pipeline) = Pipeline::start_replicated(&redis, 2, 50, "0.05").await else {
        return;
    };
    const MESSAGES: i64 = 2000;

    pipeline
        .wait_for_every_batcher_to_hold_a_shard(&redis, &["e2e-1", "e2e-2"])
        .await;
    // Subscribe to both notifiers before posting; the first frame of each is the current stats.
    let mut sockets = Vec::new();
    for addr in &pipeline.notifiers {
        sockets.push(watch_stats(*addr).await);
    }

    // Alternate between the two ingestors, 64 requests in flight.
    let accepted: Vec<MessageAccepted> = stream::iter(0..MESSAGES)
        .map(|i| {
            let pipeline = &pipeline;
            let api = &pipeline.ingestors[i as usize % 2];
            async move { pipeline.post_to(api, i + 1, &format!("scaled {i}")).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let returned: HashSet<Uuid> = accepted.iter().map(|a| a.message_id).collect();
    assert_eq!(returned.len(), MESSAGES as usize);

    pipeline.wait_for_rows(MESSAGES).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pipeline.env.count("messages").await, MESSAGES);
    assert_eq!(pipeline.persisted_ids().await, returned);

    // Both batchers took part (each holds its share of the shards), each under its own id.
    let batchers: Vec<String> = pipeline
        .env
        .column("SELECT DISTINCT batcher_id FROM batches ORDER BY 1")
        .await;
    assert_eq!(batchers, ["e2e-1", "e2e-2"]);

    // Every notifier relays every batch, whichever batcher committed it.
    for (n, socket) in sockets.iter_mut().enumerate() {
        let mut seen = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while seen.len() < returned.len() && tokio::time::Instant::now() < deadline {
            if let ServerEvent::BatchPersisted(batch) = next_event(socket).await {
                seen.extend(batch.ids);
            }
        }
        assert_eq!(seen, returned, "notifier {n} relays every persisted id");
    }
    pipeline.stop().await;
}

/// A `/ws/stats` client of the notifier at `addr`, past its first frame (the current stats): from here on
/// the subscription is live.
async fn watch_stats(addr: SocketAddr) -> Ws {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/stats"))
        .await
        .unwrap();
    let first = next_event(&mut socket).await;
    assert!(
        matches!(first, ServerEvent::StatsUpdate(_)),
        "got {first:?}"
    );
    socket
}

async fn next_event(socket: &mut Ws) -> ServerEvent {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .expect("the socket stays open")
            .expect("a valid frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("events parse as ServerEvent");
        }
    }
}
