//! The batcher's shards: which it should hold, taking and handing over their leases, one worker per shard.
//!
//! Every [`LEASE_INTERVAL`] the batcher renews its membership, reads the live members, and works out which
//! shards are its own ([`assignment`]). It takes the lease of each of its shards that is free (the takeover
//! moves every processing list of the shard back to pending first, see [`lease`]) and starts a worker on it;
//! it asks the worker of every shard that is no longer its own to stop, which flushes what it holds and
//! releases the lease for the new owner. A separate task renews the leases held, so a slow membership read,
//! scan or takeover never delays a renewal.
//!
//! Shutdown: every worker stops taking, commits what it holds and releases its shard; then the batcher leaves
//! the membership, so the others take its shards at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures_util::future::join_all;
use pipeline::{
    connection::RedisTarget,
    keys::{Events, Keys},
    shutdown::Ticks,
    streak::FailureStreak,
};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    assignment,
    group_commit::GroupCommit,
    lease::{self, LEASE_INTERVAL, RENEW_TIMEOUT},
    link::RedisLink,
    policy::FlushPolicy,
    queue::Queue,
    store::Store,
    worker::{self, Ended, WorkerError},
};

/// After SIGTERM, how long failing retries may go on before the batcher exits anyway, leaving what it could
/// not commit in its processing lists (reclaimed by the next holder of each shard).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Every how many intervals a held shard is scanned for processing lists that no batcher owns (left by a
/// batcher of an earlier version, or by hand), which are then moved back to pending.
const SWEEP_EVERY: u64 = 10;

/// What the batcher needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: FlushPolicy,
    pub keys: Keys,
    pub batcher_id: String,
    pub redis: RedisTarget,
    pub database_url: String,
    /// `QUEUE_SHARDS`.
    pub queue_shards: u32,
}

/// A lease the renewer keeps alive, and whom to tell when it is lost.
#[derive(Debug, Clone)]
struct HeldLease {
    key: String,
    token: String,
    fenced: Arc<Notify>,
}

type Leases = Arc<Mutex<HashMap<u32, HeldLease>>>;

/// A shard's running worker.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<Ended, WorkerError>>,
}

/// Runs the batcher's shards until `shutdown` is cancelled and every worker has flushed and released.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let give_up = CancellationToken::new();
    let grace = {
        let (shutdown, give_up) = (shutdown.clone(), give_up.clone());
        tokio::spawn(async move {
            let grace_over = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                () = grace_over => give_up.cancel(),
                () = give_up.cancelled() => {}
            }
        })
    };
    let leases = Leases::default();
    let renewer_stop = CancellationToken::new();
    let renewer = tokio::spawn(renew_leases(
        RedisLink::new(settings.redis.clone()),
        Arc::clone(&leases),
        renewer_stop.clone(),
    ));
    // One transaction for the time-triggered batches of all the shards held (see `group_commit`).
    let group = (settings.queue_shards > 1).then(|| {
        let store = Store::new(&settings.database_url);
        GroupCommit::spawn(store, settings.batcher_id.clone(), give_up.clone())
    });
    let mut owner = Owner {
        control: RedisLink::new(settings.redis.clone()),
        group,
        settings,
        leases,
        running: HashMap::new(),
        give_up: give_up.clone(),
        ticks: 0,
    };
    let result = owner.run(&shutdown).await;
    renewer_stop.cancel();
    let _ = renewer.await;
    if let Err(error) = lease::leave(
        &mut owner.control,
        &owner.settings.keys,
        &owner.settings.batcher_id,
    )
    .await
    {
        tracing::warn!(%error, "cannot leave the membership; it expires by itself");
    }
    give_up.cancel();
    let _ = grace.await;
    tracing::info!(batcher_id = %owner.settings.batcher_id, "stopped");
    result
}

struct Owner {
    settings: Settings,
    /// With several queue shards: the group commit its workers' flushers share.
    group: Option<GroupCommit>,
    /// Membership, takeovers and scans.
    control: RedisLink,
    leases: Leases,
    running: HashMap<u32, Running>,
    give_up: CancellationToken,
    ticks: u64,
}

impl Owner {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), WorkerError> {
        let mut ticks = Ticks::every(LEASE_INTERVAL);
        let mut result = Ok(());
        while ticks.next(shutdown).await {
            if let Err(error) = self.tick().await {
                result = Err(error);
                break;
            }
        }
        // Every worker stops taking, flushes and releases; their leases are renewed until they have.
        for running in self.running.values() {
            running.stop.cancel();
        }
        for (shard, running) in self.running.drain() {
            match running.task.await {
                Ok(Ok(ended)) => tracing::info!(shard, ?ended, "shard worker stopped"),
                Ok(Err(error)) => tracing::error!(%error, shard, "shard worker failed"),
                Err(error) => tracing::error!(%error, shard, "shard worker panicked"),
            }
        }
        self.leases.lock().expect("leases lock").clear();
        metrics::gauge!("batcher_shards_held").set(0.0);
        result
    }

    /// One round: membership, then hand over what is no longer ours and take what is.
    async fn tick(&mut self) -> Result<(), WorkerError> {
        self.ticks += 1;
        self.reap().await?;
        let (keys, me) = (&self.settings.keys, &self.settings.batcher_id);
        let configured = self.settings.queue_shards;
        let members = match lease::join(&mut self.control, keys, me).await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(%error, "cannot renew the membership; keeping the shards held");
                return Ok(());
            }
        };
        let shards = match self
            .control
            .call(RENEW_TIMEOUT, |mut conn| async move {
                pipeline::depth::shards_in_use(&mut conn, keys, configured).await
            })
            .await
        {
            Ok(shards) => shards,
            Err(error) => {
                tracing::warn!(%error, "cannot read the queue layouts; keeping the shards held");
                return Ok(());
            }
        };
        let mine = assignment::shards_for(me, &members, shards);
        for (shard, running) in &self.running {
            if !mine.contains(shard) && !running.stop.is_cancelled() {
                tracing::info!(shard, "handing the shard over to another batcher");
                running.stop.cancel();
            }
        }
        for shard in mine {
            if !self.running.contains_key(&shard) {
                self.take(shard).await;
            }
        }
        if self.ticks.is_multiple_of(SWEEP_EVERY) {
            self.sweep().await;
        }
        metrics::gauge!("batcher_shards_held").set(self.running.len() as f64);
        Ok(())
    }

    /// Forgets workers that have ended (handed over, fenced, or out of grace).
    async fn reap(&mut self) -> Result<(), WorkerError> {
        let ended: Vec<u32> = self
            .running
            .iter()
            .filter(|(_, running)| running.task.is_finished())
            .map(|(shard, _)| *shard)
            .collect();
        for shard in ended {
            let Some(running) = self.running.remove(&shard) else {
                continue;
            };
            self.leases.lock().expect("leases lock").remove(&shard);
            match running.task.await {
                Ok(Ok(ended)) => tracing::info!(shard, ?ended, "shard worker ended"),
                Ok(Err(error)) => return Err(error),
                Err(error) => return Err(WorkerError::FlushTask(error)),
            }
        }
        Ok(())
    }

    /// Takes `shard`'s lease if it is free, and starts its worker.
    async fn take(&mut self, shard: u32) {
        let keys = self.settings.keys.shard(shard);
        let me = &self.settings.batcher_id;
        // While the shard is held (its holder is handing it over, or its lease has not expired yet), nothing
        // more to do this round; the scan below is not free on a node with many keys.
        let held = self
            .control
            .call(RENEW_TIMEOUT, |mut conn| {
                let lease = keys.lease();
                async move {
                    redis::cmd("EXISTS")
                        .arg(lease)
                        .query_async::<bool>(&mut conn)
                        .await
                }
            })
            .await;
        match held {
            Ok(false) => {}
            Ok(true) => return,
            Err(error) => {
                tracing::warn!(%error, shard, "cannot read the shard's lease; retrying next round");
                return;
            }
        }
        // Lists not registered in the shard's set (older versions, by hand) are found by a scan and reclaimed
        // with the takeover.
        let found = match lease::processing_lists(&mut self.control, &keys).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, shard, "cannot scan the shard; retrying next round");
                return;
            }
        };
        // The holder's id first, so `GET <tag>:lease` tells an operator who drains the shard.
        let token = format!("{me} {}", uuid::Uuid::new_v4().simple());
        let reclaimed = match lease::acquire(&mut self.control, &keys, me, &token, &found).await {
            Ok(Some(reclaimed)) => reclaimed,
            Ok(None) => return, // still held: its holder is handing it over, or its lease has not expired yet
            Err(error) => {
                tracing::warn!(%error, shard, "cannot take the shard's lease; retrying next round");
                return;
            }
        };
        if reclaimed > 0 {
            tracing::warn!(
                shard,
                messages = reclaimed,
                "took over a shard and moved its unfinished messages back to pending"
            );
            metrics::counter!("batcher_reclaims_total").increment(1);
            metrics::counter!("batcher_reclaimed_messages_total").increment(reclaimed);
        }
        tracing::info!(shard, "holding the shard");
        let events = Events::of(&self.settings.keys, &keys, self.settings.redis.is_cluster());
        let queue = Queue::new(&keys, me, &token, events);
        let fenced = Arc::new(Notify::new());
        self.leases.lock().expect("leases lock").insert(
            shard,
            HeldLease {
                key: keys.lease(),
                token,
                fenced: Arc::clone(&fenced),
            },
        );
        let stop = CancellationToken::new();
        let worker_settings = worker::Settings {
            policy: self.settings.policy,
            queue,
            redis: self.settings.redis.clone(),
            database_url: self.settings.database_url.clone(),
            reclaimed,
            group: self.group.clone(),
        };
        let task = tokio::spawn(worker::run(
            worker_settings,
            stop.clone(),
            self.give_up.clone(),
            fenced,
        ));
        self.running.insert(shard, Running { stop, task });
    }

    /// Moves processing lists that nobody owns in the shards this batcher holds back to pending.
    async fn sweep(&mut self) {
        let held: Vec<(u32, String)> = {
            let leases = self.leases.lock().expect("leases lock");
            leases
                .iter()
                .map(|(shard, lease)| (*shard, lease.token.clone()))
                .collect()
        };
        for (shard, token) in held {
            let keys = self.settings.keys.shard(shard);
            let foreign: Vec<String> = match lease::processing_lists(&mut self.control, &keys).await
            {
                Ok(ids) => ids
                    .into_iter()
                    .filter(|id| *id != self.settings.batcher_id)
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, shard, "cannot scan the shard for orphaned lists");
                    continue;
                }
            };
            if foreign.is_empty() {
                continue;
            }
            match lease::sweep(&mut self.control, &keys, &token, &foreign).await {
                Ok(Some(moved)) if moved > 0 => {
                    tracing::warn!(shard, lists = ?foreign, messages = moved, "moved orphaned processing lists back to pending");
                    metrics::counter!("batcher_reclaims_total").increment(1);
                    metrics::counter!("batcher_reclaimed_messages_total").increment(moved);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, shard, "cannot reclaim orphaned lists"),
            }
        }
    }
}

/// Renews every held lease each [`LEASE_INTERVAL`], concurrently and each within [`RENEW_TIMEOUT`], until
/// `stop`; tells a shard's worker at once when its lease turns out lost.
async fn renew_leases(mut link: RedisLink, leases: Leases, stop: CancellationToken) {
    let mut ticks = Ticks::every(LEASE_INTERVAL);
    // Logged once per streak of failed rounds (a round fails when Redis or any renewal fails).
    let mut streak = FailureStreak::default();
    while ticks.next(&stop).await {
        let held: Vec<(u32, HeldLease)> = leases
            .lock()
            .expect("leases lock")
            .iter()
            .map(|(shard, lease)| (*shard, lease.clone()))
            .collect();
        if held.is_empty() {
            continue;
        }
        let conn = match link.conn().await {
            Ok(conn) => conn,
            Err(error) => {
                if streak.failed() {
                    tracing::warn!(%error, "cannot renew the shards' leases; retrying every second");
                }
                continue;
            }
        };
        let renewals = held.iter().map(|(shard, held)| {
            let mut conn = conn.clone();
            async move {
                (
                    *shard,
                    lease::renew(&mut conn, &held.key, &held.token).await,
                )
            }
        });
        let mut errors = Vec::new();
        for ((shard, outcome), (_, held)) in join_all(renewals).await.into_iter().zip(&held) {
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(shard, "the shard's lease is lost");
                    held.fenced.notify_one();
                }
                Err(error) => errors.push((shard, error)),
            }
        }
        if errors.is_empty() {
            streak.succeeded();
        } else {
            if streak.failed() {
                for (shard, error) in errors {
                    tracing::warn!(%error, shard, "cannot renew the shard's lease; retrying every second");
                }
            }
            link.reset();
        }
    }
}
