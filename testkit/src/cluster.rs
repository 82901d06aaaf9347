//! Redis Cluster helpers for the cluster tests: where a key lives, and moving it the two ways a running
//! cluster moves data (a master failover, a slot migration), each waiting until every node agrees.
//!
//! The cluster is found through `TEST_REDIS_CLUSTER_NODES` (comma-separated `host:port` or `redis://host:port`
//! seeds; `scripts/cluster start` runs one on loopback). A node address here is always `host:port`, as
//! `CLUSTER NODES` reports it. The helpers talk to single nodes with plain connections (no cluster client),
//! so what they observe is each node's own view. Two topology changes must not run at once on one cluster:
//! tests that change it serialise themselves (see testkit/tests/cluster.rs).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use redis::aio::MultiplexedConnection;

/// Redis Cluster's key space: a key's slot is CRC16 of its hash tag modulo this.
pub const SLOTS: u16 = 16384;

/// How long a failover or a slot migration may take until every node agrees on the new owner.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(15);

/// One `CLUSTER FAILOVER` attempt: the manual failover's own 5 s limit and a little for the gossip.
const FAILOVER_ATTEMPT: Duration = Duration::from_secs(7);

/// All attempts of one [`failover`]: the stale-election window of 8 s has passed by the third.
pub const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

/// Keys moved per `MIGRATE` (`redis-cli --cluster reshard` moves 10, its `--cluster-pipeline` default; 100 keeps
/// the round trips few, and every key of a test's shard is small).
const MIGRATE_BATCH: usize = 100;

/// `MIGRATE`'s own timeout, in milliseconds: the longest one key's transfer may block the source.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;

/// The seeds of the test cluster from `TEST_REDIS_CLUSTER_NODES`, or `None` when it is unset or empty (the
/// cluster tests then skip).
pub fn nodes_from_env() -> Option<Vec<String>> {
    parse_nodes_list(&std::env::var("TEST_REDIS_CLUSTER_NODES").ok()?)
}

/// `a:1, redis://b:2,` → `["a:1", "redis://b:2"]`; `None` when nothing is left.
fn parse_nodes_list(list: &str) -> Option<Vec<String>> {
    let nodes: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

/// The part of `key` that decides its slot: the text between the first `{` and the first `}` after it when
/// that is not empty, else the whole key (Redis Cluster specification, "Hash tags").
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// The slot of `key`, as `CLUSTER KEYSLOT` computes it (CRC16-XMODEM of the hash tag, the variant Redis uses).
pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key.as_ref())) % SLOTS
}

/// One line of `CLUSTER NODES`: a node as the node asked sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    /// `host:port` (the cluster bus port and hostname removed).
    pub addr: String,
    pub is_master: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failing: bool,
    /// Inclusive slot ranges this node serves (a slot being imported or migrated is not listed twice).
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(from, to)| (from..=to).contains(&slot))
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping> <pong> <epoch> <link>
/// <slot or range>...`, where `[slot->-id]` / `[slot-<-id]` mark a migration in progress (skipped).
pub fn parse_cluster_nodes(text: &str) -> anyhow::Result<Vec<ClusterNode>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                bail!("CLUSTER NODES line with fewer than 8 fields: {line:?}");
            }
            let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
            let flags: Vec<&str> = fields[2].split(',').collect();
            let mut slots = Vec::new();
            for item in fields[8..].iter().filter(|s| !s.starts_with('[')) {
                let (from, to) = item.split_once('-').unwrap_or((item, item));
                let parse = |s: &str| {
                    s.parse::<u16>()
                        .with_context(|| format!("slot {s:?} in {line:?}"))
                };
                slots.push((parse(from)?, parse(to)?));
            }
            Ok(ClusterNode {
                id: fields[0].to_owned(),
                addr: addr.to_owned(),
                is_master: flags.contains(&"master"),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                slots,
            })
        })
        .collect()
}

/// `redis://host:port/…` or `host:port` → `host:port`.
fn addr_of(node: &str) -> &str {
    let rest = node.split_once("://").map_or(node, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap_or(rest)
}

/// A plain connection to one node. Long response timeout: a `MIGRATE` of a big key blocks for a while.
pub async fn connect(node: &str) -> anyhow::Result<MultiplexedConnection> {
    let url = format!("redis://{}", addr_of(node));
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_millis(MIGRATE_TIMEOUT_MS + 5_000)));
    redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to the cluster node {url}"))
}

async fn query<T: redis::FromRedisValue>(node: &str, cmd: &redis::Cmd) -> anyhow::Result<T> {
    let mut conn = connect(node).await?;
    Ok(cmd.query_async(&mut conn).await?)
}

async fn cluster(node: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg(args);
    query(node, &cmd)
        .await
        .with_context(|| format!("{node}: CLUSTER {}", args.join(" ")))
}

/// The cluster as `node` sees it.
pub async fn view_of(node: &str) -> anyhow::Result<Vec<ClusterNode>> {
    parse_cluster_nodes(&cluster(node, &["NODES"]).await?)
}

/// The cluster as the first seed that answers sees it.
pub async fn topology(nodes: &[String]) -> anyhow::Result<Vec<ClusterNode>> {
    let mut last = anyhow!("no seeds given");
    for node in nodes {
        match view_of(node).await {
            Ok(view) => return Ok(view),
            Err(e) => last = e,
        }
    }
    Err(last.context("no cluster seed answered CLUSTER NODES"))
}

fn owner(view: &[ClusterNode], slot: u16) -> anyhow::Result<&ClusterNode> {
    view.iter()
        .find(|n| n.is_master && n.serves(slot))
        .ok_or_else(|| anyhow!("no master serves slot {slot}"))
}

/// `host:port` of the master serving `slot`.
pub async fn master_of_slot(nodes: &[String], slot: u16) -> String {
    let view = topology(nodes).await.expect("the test cluster answers");
    owner(&view, slot)
        .expect("every slot is served")
        .addr
        .clone()
}

/// `host:port` of every master that serves slots.
pub async fn masters(nodes: &[String]) -> Vec<String> {
    let view = topology(nodes).await.expect("the test cluster answers");
    let mut masters: Vec<String> = view
        .into_iter()
        .filter(|n| n.is_master && !n.slots.is_empty())
        .map(|n| n.addr)
        .collect();
    masters.sort();
    masters
}

/// Whether every node of the cluster reports `cluster_state:ok` and its own view passes `check` (so a client
/// refreshing its slot map from any node sees the same thing).
async fn all_agree(
    nodes: &[String],
    check: impl Fn(&[ClusterNode]) -> bool,
) -> anyhow::Result<bool> {
    for node in topology(nodes).await?.iter().filter(|n| !n.failing) {
        let info = cluster(&node.addr, &["INFO"]).await?;
        if !info.lines().any(|l| l.trim() == "cluster_state:ok")
            || !check(&view_of(&node.addr).await?)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn wait_until_all_agree(
    nodes: &[String],
    what: &str,
    check: impl Fn(&[ClusterNode]) -> bool + Clone,
) {
    if !all_agree_within(SETTLE_WITHIN, nodes, check).await {
        panic!("timed out after {SETTLE_WITHIN:?} waiting for {what}");
    }
}

/// Polls [`all_agree`] every 50 ms for at most `within`.
async fn all_agree_within(
    within: Duration,
    nodes: &[String],
    check: impl Fn(&[ClusterNode]) -> bool + Clone,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if all_agree(nodes, check.clone()).await.unwrap_or(false) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the replica `addr` reports `master_link_status:up` (its replication stream is established).
async fn wait_until_replicating(addr: &str) {
    let what = format!("{addr} to be a replica in sync with its master");
    crate::eventually(SETTLE_WITHIN, &what, || async move {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let info: String = query(addr, &cmd).await.ok()?;
        info.lines()
            .any(|l| l.trim() == "master_link_status:up")
            .then_some(())
    })
    .await;
}

/// Whether `view` has the node `id` as the master serving `slot`.
fn serves(view: &[ClusterNode], slot: u16, id: &str) -> bool {
    owner(view, slot).is_ok_and(|n| n.id == id)
}

/// Promotes a replica of `slot`'s master with `CLUSTER FAILOVER` (the coordinated kind: the replica first
/// catches up with the master's replication offset, so nothing acknowledged is lost), waits until every node
/// agrees, and returns the new master's `host:port`.
///
/// Retried (within [`FAILOVER_WITHIN`]) when it does not take: Redis 7.0 answers `OK` at once and may still
/// give up, when the replica does not catch up within 5 s, or when the same node won an election less than
/// 8 s before (it then reuses that election's stale epoch and loses the configuration conflict).
pub async fn failover(nodes: &[String], slot: u16) -> String {
    let deadline = tokio::time::Instant::now() + FAILOVER_WITHIN;
    loop {
        let view = topology(nodes).await.expect("the test cluster answers");
        let master = owner(&view, slot).expect("every slot is served");
        let replica = view
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()) && !n.failing)
            .unwrap_or_else(|| {
                panic!(
                    "the master {} of slot {slot} has no live replica",
                    master.addr
                )
            });
        // A replica still (re)syncing cannot catch up in time and the failover would give up.
        wait_until_replicating(&replica.addr).await;
        let reply = cluster(&replica.addr, &["FAILOVER"])
            .await
            .expect("CLUSTER FAILOVER is accepted");
        assert_eq!(reply, "OK", "CLUSTER FAILOVER on {}", replica.addr);
        // Done when every node also sees the old master as the new one's replica: until then a view could
        // still offer it as a master (to the next failover or migration).
        let (new_id, old_id) = (replica.id.clone(), master.id.clone());
        let took = all_agree_within(FAILOVER_ATTEMPT, nodes, move |view| {
            serves(view, slot, &new_id)
                && view
                    .iter()
                    .any(|n| n.id == old_id && n.master_id.as_deref() == Some(new_id.as_str()))
        })
        .await;
        if took {
            // Leave the pair as it found it: the old master replicating, so a next failover can go back.
            wait_until_replicating(&master.addr).await;
            return replica.addr.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "CLUSTER FAILOVER of slot {slot} from {} to {} did not take within {FAILOVER_WITHIN:?}",
                master.addr, replica.addr
            );
        }
        eprintln!(
            "CLUSTER FAILOVER of slot {slot} to {} did not take within {FAILOVER_ATTEMPT:?}; again",
            replica.addr
        );
    }
}

/// Moves `slot` with its keys to the master `to_node`, the way `redis-cli --cluster reshard` moves a slot:
/// `SETSLOT IMPORTING` on the target, `SETSLOT MIGRATING` on the source, `MIGRATE … KEYS` in batches until the
/// source has none left in the slot (meanwhile the source answers `ASK` for keys already moved, so clients keep
/// working), then `SETSLOT NODE` on the target, the source and every other master; then waits until every
/// node agrees. Nothing to do when `to_node` already serves the slot.
pub async fn migrate_slot(nodes: &[String], slot: u16, to_node: &str) {
    migrate(nodes, slot, addr_of(to_node))
        .await
        .unwrap_or_else(|e| panic!("moving slot {slot} to {to_node}: {e:#}"));
}

async fn migrate(nodes: &[String], slot: u16, to_addr: &str) -> anyhow::Result<()> {
    let view = topology(nodes).await?;
    let source = owner(&view, slot)?;
    let target = view
        .iter()
        .find(|n| n.addr == to_addr)
        .ok_or_else(|| anyhow!("{to_addr} is not a node of the cluster"))?;
    if !target.is_master {
        bail!("{to_addr} is a replica; a slot can only move to a master");
    }
    if target.id == source.id {
        return Ok(());
    }
    let slot_arg = slot.to_string();
    cluster(
        &target.addr,
        &["SETSLOT", &slot_arg, "IMPORTING", &source.id],
    )
    .await?;
    cluster(
        &source.addr,
        &["SETSLOT", &slot_arg, "MIGRATING", &target.id],
    )
    .await?;

    let (host, port) = target
        .addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("node address without a port: {}", target.addr))?;
    let mut source_conn = connect(&source.addr).await?;
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(MIGRATE_BATCH)
            .query_async(&mut source_conn)
            .await?;
        if keys.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "keys of slot {slot} still on {} after {SETTLE_WITHIN:?}",
                source.addr
            );
        }
        // "" and 0: the key list follows KEYS, and a cluster has database 0 only. No REPLACE: the target owns
        // nothing of this slot yet, so a key already there would be a bug worth an error (BUSYKEY).
        let _: String = redis::cmd("MIGRATE")
            .arg(host)
            .arg(port)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut source_conn)
            .await
            .with_context(|| format!("MIGRATE of {} keys", keys.len()))?;
    }

    // The target first, so that once the source lets go, the slot's owner already accepts its keys.
    let set_node = ["SETSLOT", &slot_arg, "NODE", &target.id];
    cluster(&target.addr, &set_node).await?;
    cluster(&source.addr, &set_node).await?;
    // The other masters would learn it from gossip too; telling them makes it immediate. Only masters that
    // serve slots: one that lost its slots in a failover is, or is about to be, a replica, which refuses SETSLOT.
    for other in view.iter().filter(|n| {
        n.is_master && !n.failing && !n.slots.is_empty() && n.id != source.id && n.id != target.id
    }) {
        cluster(&other.addr, &set_node).await?;
    }
    let what = format!("every node to see {to_addr} as the master of slot {slot}");
    let target_id = target.id.clone();
    wait_until_all_agree(nodes, &what, move |view| serves(view, slot, &target_id)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_is_the_first_non_empty_braces_or_the_whole_key() {
        assert_eq!(hash_tag(b"{ingest}:pending"), b"ingest");
        assert_eq!(hash_tag(b"{ingest:3}:lease"), b"ingest:3");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"plain"), b"plain");
    }

    #[test]
    fn slot_is_crc16_xmodem_of_the_tag() {
        // 0x31C3 is CRC16-XMODEM's check value for "123456789"; the others are CLUSTER KEYSLOT's answers.
        assert_eq!(slot_of("123456789"), 0x31C3);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{a}:x"), 15495);
        assert_eq!(slot_of("{a}:x"), slot_of("a"));
    }

    #[test]
    fn nodes_list_is_trimmed_and_empty_means_none() {
        assert_eq!(
            parse_nodes_list(" 127.0.0.1:7100, redis://127.0.0.1:7101/ ,"),
            Some(vec![
                "127.0.0.1:7100".to_owned(),
                "redis://127.0.0.1:7101/".to_owned()
            ])
        );
        assert_eq!(parse_nodes_list(" , "), None);
        assert_eq!(parse_nodes_list(""), None);
    }

    #[test]
    fn addresses_lose_scheme_credentials_and_path() {
        assert_eq!(addr_of("127.0.0.1:7100"), "127.0.0.1:7100");
        assert_eq!(addr_of("redis://127.0.0.1:7101/"), "127.0.0.1:7101");
        assert_eq!(addr_of("redis://:pw@127.0.0.1:7102/0"), "127.0.0.1:7102");
    }

    #[test]
    fn cluster_nodes_lines_parse_with_ranges_single_slots_and_migrations() {
        let text = "\
a1 127.0.0.1:7100@17100 myself,master - 0 0 1 connected 0-5460 6000 [5461->-b2]
b2 127.0.0.1:7101@17101,host-b master - 0 1700000000000 2 connected 5461-10922
r3 127.0.0.1:7104@17104 slave,fail? a1 0 1700000000000 1 connected
";
        let nodes = parse_cluster_nodes(text).unwrap();
        assert_eq!(
            nodes,
            vec![
                ClusterNode {
                    id: "a1".into(),
                    addr: "127.0.0.1:7100".into(),
                    is_master: true,
                    master_id: None,
                    failing: false,
                    slots: vec![(0, 5460), (6000, 6000)],
                },
                ClusterNode {
                    id: "b2".into(),
                    addr: "127.0.0.1:7101".into(),
                    is_master: true,
                    master_id: None,
                    failing: false,
                    slots: vec![(5461, 10922)],
                },
                ClusterNode {
                    id: "r3".into(),
                    addr: "127.0.0.1:7104".into(),
                    is_master: false,
                    master_id: Some("a1".into()),
                    failing: true,
                    slots: vec![],
                },
            ]
        );
        assert_eq!(owner(&nodes, 6000).unwrap().id, "a1");
        assert_eq!(owner(&nodes, 5461).unwrap().id, "b2");
        assert!(owner(&nodes, 16383).is_err());
        assert!(parse_cluster_nodes("a1 127.0.0.1:7100@17100 master").is_err());
    }
}
