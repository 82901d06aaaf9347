//! The pipeline on a real Redis Cluster (3 masters, 3 replicas on loopback; `scripts/test` starts it and sets
//! `TEST_REDIS_CLUSTER_NODES`; without it these tests print a notice and pass): ingestors in this process,
//! batchers as real processes (so they can be killed with SIGKILL), channels fed by sequential clients.
//!
//! Each test checks the exact outcome in PostgreSQL: every acknowledged message is a row, once, and each
//! channel's rows, in `messages.id` order, are its client's messages in the order their 201s came back, with
//! commit times that never go backwards. The tests that change the cluster's topology run one at a time.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use chrono::{DateTime, Utc};
use clap::Parser;
use futures_util::future::join_all;
use testkit::{TestEnv, cluster};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Topology changes (failover, migration) and heavy streams do not overlap.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a stream may take to be persisted once fed.
const PERSIST_WITHIN: Duration = Duration::from_secs(120);

/// The cluster's seed nodes, or `None` (with a notice) when no cluster is configured.
fn cluster_nodes() -> Option<String> {
    match cluster::nodes_from_env() {
        Some(nodes) => Some(nodes.join(",")),
        None => {
            eprintln!(
                "TEST_REDIS_CLUSTER_NODES is not set: skipping (scripts/test starts a cluster)"
            );
            None
        }
    }
}

/// Ingestors in this process and batcher processes, all on the cluster with `shards` queue shards.
struct Deployment {
    /// Held for the deployment's life: one cluster test at a time.
    _one: tokio::sync::MutexGuard<'static, ()>,
    env: TestEnv,
    nodes: String,
    shards: u32,
    ingestors: Vec<String>,
    stop: CancellationToken,
    services: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

impl Deployment {
    /// On the cluster of `TEST_REDIS_CLUSTER_NODES`, once no other cluster test runs; `None` (with a notice)
    /// when no cluster is configured.
    async fn start(shards: u32, ingestors: usize, wait_replicas: u32) -> Option<Self> {
        let nodes = cluster_nodes()?;
        let one = ONE_AT_A_TIME.lock().await;
        let env = TestEnv::with_schema().await;
        let mut deployment = Self {
            _one: one,
            env,
            nodes,
            shards,
            ingestors: Vec::new(),
            stop: CancellationToken::new(),
            services: Vec::new(),
            http: reqwest::Client::new(),
        };
        for _ in 0..ingestors {
            deployment.start_ingestor(wait_replicas).await;
        }
        Some(deployment)
    }

    /// The cluster's seed nodes.
    fn seeds(&self) -> Vec<String> {
        self.nodes.split(',').map(str::to_owned).collect()
    }

    async fn start_ingestor(&mut self, wait_replicas: u32) {
        let (listener, addr) = testkit::listener().await.unwrap();
        let (shards, wait) = (self.shards.to_string(), wait_replicas.to_string());
        let config = ingestor::Config::try_parse_from([
            "ingestor",
            "--redis-cluster-nodes",
            &self.nodes,
            "--queue-shards",
            &shards,
            "--redis-wait-replicas",
            &wait,
            "--redis-key-prefix",
            &self.env.prefix,
            "--database-url",
            &self.env.database_url,
        ])
        .unwrap();
        self.services.push(tokio::spawn(ingestor::run(
            config,
            listener,
            self.stop.clone(),
        )));
        let url = format!("http://{addr}");
        testkit::eventually(Duration::from_secs(10), "the ingestor answers", || async {
            let response = self.http.get(format!("{url}/health")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        self.ingestors.push(url);
    }

    /// Batcher processes for this deployment, one started as each of `ids`.
    fn batchers(&self, ids: &[&str]) -> Batchers {
        let mut batchers = Batchers {
            nodes: self.nodes.clone(),
            shards: self.shards,
            database_url: self.env.database_url.clone(),
            prefix: self.env.prefix.clone(),
            children: Vec::new(),
        };
        for id in ids {
            batchers.spawn(id);
        }
        batchers
    }

    /// Feeds `per_channel` messages to each of channels `1..=channels`, each channel by its own sequential
    /// client (a POST only after the previous one's 201), round robin over the ingestors. With `keyed`, each
    /// message has an `Idempotency-Key` and is retried until it gets its 201 (as a client riding out a
    /// failover must); without, anything but a 201 fails the test. Returns each channel's message ids in the
    /// order their 201s came back; `acked` counts them as they come.
    async fn feed(
        &self,
        channels: i64,
        per_channel: usize,
        keyed: bool,
        acked: &AtomicUsize,
    ) -> HashMap<i64, Vec<Uuid>> {
        let clients = (1..=channels).map(|channel| async move {
            let api = &self.ingestors[channel as usize % self.ingestors.len()];
            let mut ids = Vec::with_capacity(per_channel);
            for n in 0..per_channel {
                ids.push(self.post(api, channel, n, keyed).await);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            (channel, ids)
        });
        join_all(clients).await.into_iter().collect()
    }

    async fn post(&self, api: &str, channel: i64, n: usize, keyed: bool) -> Uuid {
        let body = serde_json::json!({
            "user_id": channel,
            "channel_id": channel,
            "content": format!("channel {channel} message {n}"),
        });
        // Bounded: 600 tries 50 ms apart (30 s) ride out a failover or a slot migration.
        for _ in 0..600 {
            let mut request = self.http.post(format!("{api}/messages")).json(&body);
            if keyed {
                request = request.header("Idempotency-Key", format!("c{channel}-m{n}"));
            }
            match request.send().await {
                Ok(response) if response.status() == 201 => {
                    let answer: serde_json::Value = response.json().await.unwrap();
                    return answer["message_id"].as_str().unwrap().parse().unwrap();
                }
                Ok(response) if !keyed => {
                    panic!("channel {channel} message {n}: {}", response.status())
                }
                Err(error) if !keyed => panic!("channel {channel} message {n}: {error}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("channel {channel} message {n}: no 201 within 30 s");
    }

    /// Waits for `acked`'s rows, then asserts the exact outcome (see the module docs).
    async fn check(&self, acked: &HashMap<i64, Vec<Uuid>>) {
        let total: usize = acked.values().map(Vec::len).sum();
        testkit::eventually(PERSIST_WITHIN, &format!("{total} rows"), || async {
            (self.env.count("messages").await >= total as i64).then_some(())
        })
        .await;
        // Give a late replay the chance to show up as a duplicate before asserting there is none.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = self
            .env
            .db()
            .await
            .query(
                "SELECT channel_id, tracking_id, inserted_at FROM messages ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), total, "one row per acknowledged message");
        let mut by_channel: HashMap<i64, Vec<(Uuid, DateTime<Utc>)>> = HashMap::new();
        for row in &rows {
            by_channel
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), row.get(2)));
        }
        let distinct: HashSet<Uuid> = rows.iter().map(|row| row.get(1)).collect();
        assert_eq!(distinct.len(), total, "no duplicate rows");
        for (channel, sent) in acked {
            let persisted = &by_channel[channel];
            let ids: Vec<Uuid> = persisted.iter().map(|(id, _)| *id).collect();
            assert!(
                ids == *sent,
                "channel {channel}: rows in id order differ from the acknowledged order"
            );
            assert!(
                persisted.windows(2).all(|pair| pair[0].1 <= pair[1].1),
                "channel {channel}: a later message was committed before an earlier one"
            );
        }
    }

    /// The queue is empty (through the ingestor's `/queue/status`, which reads every shard).
    async fn assert_drained(&self) {
        testkit::eventually(Duration::from_secs(10), "an empty queue", || async {
            let status: serde_json::Value = self
                .http
                .get(format!("{}/queue/status", self.ingestors[0]))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["queue_length"] == 0).then_some(())
        })
        .await;
    }

    async fn stop(mut self) {
        self.stop.cancel();
        for service in self.services.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), service).await;
        }
    }
}

/// Batcher processes (real binaries, so they can be killed with SIGKILL).
struct Batchers {
    nodes: String,
    shards: u32,
    database_url: String,
    prefix: String,
    children: Vec<Child>,
}

impl Batchers {
    /// Starts the batcher binary as `id`.
    fn spawn(&mut self, id: &str) {
        let child =
            common::batcher_command(&self.database_url, &self.prefix, id, 1000, "0.05", "error")
                .env("REDIS_CLUSTER_NODES", &self.nodes)
                .env("QUEUE_SHARDS", self.shards.to_string())
                .spawn()
                .expect("the batcher binary starts");
        self.children.push(child);
    }

    /// SIGKILL: no flush, no release; the batcher's shards are taken over once their leases expire.
    async fn kill(&mut self, index: usize) {
        self.children[index].kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_of_50_channels_through_12_shards_keep_every_channels_order() {
    let Some(deployment) = Deployment::start(12, 2, 0).await else {
        return;
    };
    let _batchers = deployment.batchers(&["c1", "c2", "c3"]);
    let acked = AtomicUsize::new(0);
    let sent = deployment.feed(50, 2_000, false, &acked).await;
    deployment.check(&sent).await;
    deployment.assert_drained().await;
    // Every batcher took its share of the shards.
    let by_batcher = common::committers(&deployment.env).await;
    assert_eq!(
        by_batcher,
        HashSet::from(["c1", "c2", "c3"].map(String::from))
    );
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batcher_killed_and_another_added_mid_stream_lose_reorder_and_duplicate_nothing() {
    let Some(deployment) = Deployment::start(12, 2, 0).await else {
        return;
    };
    let mut batchers = deployment.batchers(&["k1", "k2", "k3"]);
    let (channels, per_channel) = (50, 600);
    let acked = AtomicUsize::new(0);
    let faults = async {
        wait_for(&acked, channels as usize * per_channel / 3).await;
        batchers.kill(1).await;
        batchers.spawn("k4");
    };
    let (sent, ()) = tokio::join!(
        deployment.feed(channels, per_channel, false, &acked),
        faults
    );
    deployment.check(&sent).await;
    deployment.assert_drained().await;
    let committers = common::committers(&deployment.env).await;
    assert!(
        committers.contains("k4"),
        "the added batcher took a share: {committers:?}"
    );
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_mid_stream_with_wait_replicas_1_loses_no_acknowledged_message() {
    let Some(deployment) = Deployment::start(6, 2, 1).await else {
        return;
    };
    let _batchers = deployment.batchers(&["f1", "f2"]);
    let seeds = deployment.seeds();
    // The master of shard 0's slot (which also holds the events channel's and the membership's keys).
    let slot = cluster::slot_of(deployment.env.keys().shard(0).pending());
    keyed_stream_through(&deployment, async {
        let before = cluster::master_of_slot(&seeds, slot).await;
        let after = cluster::failover(&seeds, slot).await;
        assert_ne!(before, after, "the replica took over");
    })
    .await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_shards_slot_migrated_mid_stream_loses_and_duplicates_nothing() {
    let Some(deployment) = Deployment::start(6, 2, 0).await else {
        return;
    };
    let _batchers = deployment.batchers(&["m1", "m2"]);
    let seeds = deployment.seeds();
    // Channel 1's shard: busy for the whole stream.
    let shard = pipeline::keys::shard_of(1, 6);
    let slot = cluster::slot_of(deployment.env.keys().shard(shard).pending());
    keyed_stream_through(&deployment, async {
        let from = cluster::master_of_slot(&seeds, slot).await;
        let masters = cluster::masters(&seeds).await;
        let to = masters.iter().find(|master| **master != from).unwrap();
        cluster::migrate_slot(&seeds, slot, to).await;
        assert_eq!(cluster::master_of_slot(&seeds, slot).await, *to);
    })
    .await;
    deployment.stop().await;
}

/// 20 channels × 300 messages with `Idempotency-Key`s (retried until acknowledged) through `deployment`,
/// `fault` happening once a third are acknowledged; then the exact outcome is checked.
async fn keyed_stream_through(deployment: &Deployment, fault: impl Future<Output = ()>) {
    let (channels, per_channel) = (20, 300);
    let acked = AtomicUsize::new(0);
    let fault = async {
        wait_for(&acked, channels as usize * per_channel / 3).await;
        fault.await;
    };
    let (sent, ()) = tokio::join!(deployment.feed(channels, per_channel, true, &acked), fault);
    deployment.check(&sent).await;
    deployment.assert_drained().await;
}

/// Waits until `acked` reaches `n` (bounded: 120 s).
async fn wait_for(acked: &AtomicUsize, n: usize) {
    testkit::eventually(
        Duration::from_secs(120),
        &format!("{n} acknowledged"),
        || async { (acked.load(Ordering::SeqCst) >= n).then_some(()) },
    )
    .await;
}
