//! The channel feeds end to end, through failures: an ingestor and a notifier in this process, batcher
//! processes (real binaries, so one can be killed with SIGKILL), 50 channels, 20,000 messages over 4 queue
//! shards. Each channel has 3 `/ws/channels` subscribers and 1 `/sse/channels` subscriber that disconnect at
//! random points (a seeded RNG) and resume from the last offset they received; meanwhile one batcher is
//! SIGKILLed and the notifier is restarted. Each subscriber's sequence must equal its channel's rows in
//! offset order: no gap, no duplicate.
//!
//! Runs on the single Redis, and (smaller) on the Redis Cluster of `TEST_REDIS_CLUSTER_NODES` when set.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use clap::Parser;
use futures_util::future::join_all;
use serde_json::{Value, json};
use testkit::{
    TestEnv, eventually,
    feeds::{FeedSse, FeedWs},
};
use tokio::{process::Child, sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CHANNELS: i64 = 50;
const SHARDS: u32 = 4;
/// Bound of the whole run (feeding, persisting, every subscriber reaching its channel's head).
const WITHIN: Duration = Duration::from_secs(240);
/// A subscriber that hears nothing this long reconnects (and resumes).
const SILENCE: Duration = Duration::from_secs(2);
/// Most messages a subscriber takes before it disconnects on purpose.
const MAX_RUN: u64 = 700;

/// xorshift64*: seeded, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Where the subscribers find the notifier, and (once everything is persisted) each channel's final head.
#[derive(Clone)]
struct Shared {
    notifier: Arc<RwLock<SocketAddr>>,
    heads: watch::Receiver<Option<HashMap<i64, i64>>>,
}

impl Shared {
    fn addr(&self) -> SocketAddr {
        *self.notifier.read().unwrap()
    }

    /// Whether a subscriber of `channel` holding `received` messages has them all.
    fn done(&self, channel: i64, received: usize) -> bool {
        self.heads
            .borrow()
            .as_ref()
            .is_some_and(|heads| heads.get(&channel).copied().unwrap_or(0) == received as i64)
    }
}

/// What a subscriber received: (offset, message_id) in arrival order.
type Received = Vec<(i64, Uuid)>;

fn take(received: &mut Received, message: &Value) {
    received.push((
        message["offset"].as_i64().unwrap(),
        message["message_id"].as_str().unwrap().parse().unwrap(),
    ));
}

/// A subscriber's outcome: what it received, and how many connections it took.
type Outcome = (Received, u32);

async fn ws_subscriber(shared: Shared, channel: i64, seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut received: Received = Vec::new();
    let deadline = Instant::now() + WITHIN;
    for connects in 0..100_000 {
        if shared.done(channel, received.len()) {
            return (received, connects);
        }
        assert!(
            Instant::now() < deadline,
            "ws subscriber of {channel}: out of time"
        );
        let url = format!("ws://{}/ws/channels", shared.addr());
        let Ok(mut ws) = FeedWs::connect(&url, None).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let last = received.last().map_or(0, |(offset, _)| *offset);
        ws.subscribe(channel, Some(last)).await;
        let run = 1 + rng.below(MAX_RUN);
        let mut taken = 0;
        while taken < run {
            let Some(frame) = ws.next(SILENCE).await else {
                break;
            };
            match frame["type"].as_str() {
                Some("message") => {
                    take(&mut received, &frame);
                    taken += 1;
                }
                Some("subscribed" | "lagged") => {}
                _ => panic!("ws subscriber of {channel}: {frame}"),
            }
        }
    }
    panic!("ws subscriber of {channel}: too many reconnects");
}

async fn sse_subscriber(shared: Shared, channel: i64, seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let mut received: Received = Vec::new();
    let deadline = Instant::now() + WITHIN;
    for connect in 0..100_000 {
        if shared.done(channel, received.len()) {
            return (received, connect);
        }
        assert!(
            Instant::now() < deadline,
            "sse subscriber of {channel}: out of time"
        );
        let last = received.last().map_or(0, |(offset, _)| *offset);
        let base = format!("http://{}/sse/channels/{channel}", shared.addr());
        // Resume both ways: the query parameter (EventSource's first connect) and the header.
        let connected = if connect % 2 == 0 {
            FeedSse::connect(&format!("{base}?last_event_id={last}"), &[]).await
        } else {
            FeedSse::connect(&base, &[("last-event-id", last.to_string())]).await
        };
        let Ok(mut sse) = connected else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let run = 1 + rng.below(MAX_RUN);
        let mut taken = 0;
        while taken < run {
            let Some(event) = sse.next(SILENCE).await else {
                break;
            };
            match event.event.as_deref() {
                Some("message") => {
                    let message: Value = serde_json::from_str(&event.data).unwrap();
                    assert_eq!(event.id, Some(message["offset"].to_string()));
                    take(&mut received, &message);
                    taken += 1;
                }
                Some("lagged") | None => {}
                _ => panic!("sse subscriber of {channel}: {event:?}"),
            }
        }
    }
    panic!("sse subscriber of {channel}: too many reconnects");
}

/// Which Redis the deployment runs on: the services' arguments and the batchers' variables.
fn redis_settings(
    env: &TestEnv,
    cluster: Option<&str>,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    match cluster {
        None => (
            vec!["--redis-url".into(), env.redis_url.clone()],
            vec![("REDIS_URL", env.redis_url.clone())],
        ),
        Some(nodes) => (
            vec!["--redis-cluster-nodes".into(), nodes.into()],
            vec![("REDIS_CLUSTER_NODES", nodes.into())],
        ),
    }
}

fn spawn_batcher(env: &TestEnv, redis: &[(&'static str, String)], id: &str) -> Child {
    let mut command =
        common::batcher_command(&env.database_url, &env.prefix, id, 500, "0.05", "error");
    for (name, value) in redis {
        command.env(name, value);
    }
    command
        .env("QUEUE_SHARDS", SHARDS.to_string())
        .spawn()
        .expect("the batcher binary starts")
}

/// Starts a notifier on `addr` (the same port again after a restart, if it is free; else a new one).
async fn start_notifier(
    args: &[String],
    addr: Option<SocketAddr>,
) -> (
    SocketAddr,
    CancellationToken,
    JoinHandle<anyhow::Result<()>>,
) {
    let mut listener = None;
    if let Some(addr) = addr {
        for _ in 0..50 {
            if let Ok(bound) = tokio::net::TcpListener::bind(addr).await {
                listener = Some((bound, addr));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (listener, addr) = match listener {
        Some(bound) => bound,
        None => testkit::listener().await.unwrap(),
    };
    let config = notifier::Config::try_parse_from(args).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(notifier::run(config, listener, stop.clone()));
    (addr, stop, task)
}

async fn feeds_through_failures(cluster: Option<&str>, messages: usize) {
    let env = TestEnv::with_schema().await;
    let (redis_args, redis_env) = redis_settings(&env, cluster);
    let args = |name: &str| -> Vec<String> {
        [
            name,
            "--redis-key-prefix",
            &env.prefix,
            "--database-url",
            &env.database_url,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(redis_args.iter().cloned())
        .chain(["--queue-shards".to_owned(), SHARDS.to_string()])
        .collect()
    };

    let ingestor_stop = CancellationToken::new();
    let (listener, ingestor_addr) = testkit::listener().await.unwrap();
    let config = ingestor::Config::try_parse_from(args("ingestor")).unwrap();
    let ingestor = tokio::spawn(ingestor::run(config, listener, ingestor_stop.clone()));
    let notifier_args = args("notifier");
    let (addr, mut notifier_stop, mut notifier) = start_notifier(&notifier_args, None).await;
    let mut batchers = vec![
        spawn_batcher(&env, &redis_env, "f1"),
        spawn_batcher(&env, &redis_env, "f2"),
    ];
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(20),
        "the services to be healthy",
        || {
            let http = http.clone();
            async move {
                for url in [
                    format!("http://{ingestor_addr}/health"),
                    format!("http://{addr}/health"),
                ] {
                    let response = http.get(&url).send().await.ok()?;
                    response.status().is_success().then_some(())?;
                }
                Some(())
            }
        },
    )
    .await;

    let (heads_tx, heads) = watch::channel(None);
    let shared = Shared {
        notifier: Arc::new(RwLock::new(addr)),
        heads,
    };
    let mut subscribers = Vec::new();
    for channel in 1..=CHANNELS {
        for copy in 0..3 {
            let seed = 0x5EED_0000 + channel as u64 * 8 + copy;
            subscribers.push(tokio::spawn(ws_subscriber(shared.clone(), channel, seed)));
        }
        let seed = 0x5EED_0000 + channel as u64 * 8 + 7;
        subscribers.push(tokio::spawn(sse_subscriber(shared.clone(), channel, seed)));
    }

    // Feed in batches of 200 random channels; a batcher is SIGKILLed a third of the way, the notifier
    // restarted at two thirds.
    let mut rng = Rng(0xFEED);
    let posts = messages / 200;
    for post in 0..posts {
        if post == posts / 3 {
            batchers[0].kill().await.unwrap();
            batchers.push(spawn_batcher(&env, &redis_env, "f3"));
        }
        if post == 2 * posts / 3 {
            notifier_stop.cancel();
            let stopped = tokio::time::timeout(Duration::from_secs(15), notifier).await;
            assert!(matches!(stopped, Ok(Ok(Ok(())))), "the notifier stops");
            let (new_addr, stop, task) = start_notifier(&notifier_args, Some(addr)).await;
            *shared.notifier.write().unwrap() = new_addr;
            (notifier_stop, notifier) = (stop, task);
        }
        let body: Vec<Value> = (0..200)
            .map(|i| {
                let channel = 1 + rng.below(CHANNELS as u64) as i64;
                json!({"user_id": 1, "channel_id": channel, "content": format!("p{post} m{i}")})
            })
            .collect();
        let response = http
            .post(format!("http://{ingestor_addr}/messages/batch"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "post {post}");
    }

    let db = env.db().await;
    let total = posts as i64 * 200;
    eventually(WITHIN, "every message to be persisted", || async {
        let count: i64 = db
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap()
            .get(0);
        (count == total).then_some(())
    })
    .await;
    let rows = db
        .query(
            "SELECT channel_id, channel_offset, tracking_id FROM messages ORDER BY channel_id, channel_offset",
            &[],
        )
        .await
        .unwrap();
    let mut expected: HashMap<i64, Received> = HashMap::new();
    for row in &rows {
        expected
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    let heads: HashMap<i64, i64> = expected
        .iter()
        .map(|(c, rows)| (*c, rows.len() as i64))
        .collect();
    for (channel, rows) in &expected {
        let offsets: Vec<i64> = rows.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(
            offsets,
            (1..=rows.len() as i64).collect::<Vec<_>>(),
            "channel {channel}"
        );
    }
    heads_tx.send(Some(heads)).unwrap();

    let received = tokio::time::timeout(WITHIN, join_all(subscribers))
        .await
        .expect("every subscriber reaches its channel's head");
    let mut connects = 0;
    for (index, result) in received.into_iter().enumerate() {
        let channel = index as i64 / 4 + 1;
        let (got, connected) = result.expect("the subscriber did not panic");
        connects += connected;
        let want = expected.get(&channel).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "subscriber {index} of channel {channel}"
        );
        assert!(
            got == want,
            "subscriber {index} of channel {channel}: a gap, duplicate or reorder"
        );
    }
    eprintln!(
        "{total} messages, {} subscribers, {connects} connections (each resumed from its last offset)",
        CHANNELS * 4
    );

    notifier_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), notifier).await;
    ingestor_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), ingestor).await;
    for batcher in &mut batchers {
        let _ = batcher.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_resumes_without_gap_or_duplicate_through_a_batcher_kill_and_a_notifier_restart()
 {
    feeds_through_failures(None, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_the_redis_cluster() {
    let Some(nodes) = testkit::cluster::nodes_from_env() else {
        eprintln!("TEST_REDIS_CLUSTER_NODES is not set: skipping the cluster case");
        return;
    };
    feeds_through_failures(Some(&nodes.join(",")), 6_000).await;
}
