//! The Redis Cluster helpers against a real cluster (`scripts/cluster start`, then
//! `TEST_REDIS_CLUSTER_NODES=127.0.0.1:7100,...`). Without `TEST_REDIS_CLUSTER_NODES` each test prints a notice
//! and passes without running.
//!
//! Each test writes under its own hash tag and deletes its keys at the end. The topology-changing tests hold
//! `TOPOLOGY`, so a failover never runs in the middle of a migration in this binary.

use redis::AsyncCommands;
use testkit::cluster::{
    self, failover, master_of_slot, masters, migrate_slot, nodes_from_env, slot_of,
};
use tokio::sync::Mutex;

static TOPOLOGY: Mutex<()> = Mutex::const_new(());

fn cluster_or_skip(test: &str) -> Option<Vec<String>> {
    let nodes = nodes_from_env();
    if nodes.is_none() {
        eprintln!(
            "{test}: skipped, TEST_REDIS_CLUSTER_NODES is not set (scripts/cluster start prints it)"
        );
    }
    nodes
}

/// A hash tag no other test run uses, so this test's keys have a slot of their own choosing.
fn unique_tag(what: &str) -> String {
    format!("testkit-{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn get(node: &str, key: &str) -> redis::RedisResult<Option<String>> {
    cluster::connect(node)
        .await
        .expect("node answers")
        .get(key)
        .await
}

#[tokio::test]
async fn slot_of_agrees_with_cluster_keyslot() {
    let Some(nodes) = cluster_or_skip("slot_of_agrees_with_cluster_keyslot") else {
        return;
    };
    let mut conn = cluster::connect(&nodes[0]).await.unwrap();
    let keys = [
        "{ingest}:pending",
        "{ingest:1}:pending",
        "{ingest:11}:lease",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "plain",
        "",
        "{a}:x",
        "ünïcödé{tag}",
    ];
    for key in keys {
        let expected: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(slot_of(key), expected, "slot of {key:?}");
    }
}

#[tokio::test]
async fn master_of_slot_names_the_node_that_serves_the_key_without_redirect() {
    let Some(nodes) =
        cluster_or_skip("master_of_slot_names_the_node_that_serves_the_key_without_redirect")
    else {
        return;
    };
    let _topology = TOPOLOGY.lock().await;
    let key = format!("{{{}}}:k", unique_tag("owner"));
    let owner = master_of_slot(&nodes, slot_of(&key)).await;
    assert_eq!(masters(&nodes).await.len(), 3);
    assert!(masters(&nodes).await.contains(&owner));
    // A plain connection to the owner is served; any other master answers MOVED to the owner.
    let mut conn = cluster::connect(&owner).await.unwrap();
    let _: () = conn.set(&key, "v").await.unwrap();
    assert_eq!(get(&owner, &key).await.unwrap().as_deref(), Some("v"));
    for other in masters(&nodes).await.into_iter().filter(|m| *m != owner) {
        let err = get(&other, &key).await.unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{other}: {err}");
        assert!(err.to_string().contains(&owner), "{other}: {err}");
    }
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_value_survives_a_failover_and_the_slot_gets_the_promoted_replica_as_master() {
    let Some(nodes) = cluster_or_skip("a_value_survives_a_failover") else {
        return;
    };
    let _topology = TOPOLOGY.lock().await;
    let key = format!("{{{}}}:k", unique_tag("failover"));
    let slot = slot_of(&key);
    let old = master_of_slot(&nodes, slot).await;
    let mut conn = cluster::connect(&old).await.unwrap();
    let _: () = conn.set(&key, "kept").await.unwrap();

    let new = failover(&nodes, slot).await;

    assert_ne!(new, old);
    assert_eq!(master_of_slot(&nodes, slot).await, new);
    assert_eq!(masters(&nodes).await.len(), 3);
    assert_eq!(get(&new, &key).await.unwrap().as_deref(), Some("kept"));
    // The old master follows the new one: ROLE is ["slave", host, port, state, offset].
    let mut old_conn = cluster::connect(&old).await.unwrap();
    let (role, host, port, _state, _offset): (String, String, u16, String, i64) =
        redis::cmd("ROLE").query_async(&mut old_conn).await.unwrap();
    assert_eq!(format!("{role} {host}:{port}"), format!("slave {new}"));
    let _: () = cluster::connect(&new)
        .await
        .unwrap()
        .del(&key)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slot_migration_moves_every_key_of_the_slot_with_its_value() {
    let Some(nodes) = cluster_or_skip("a_slot_migration_moves_every_key_of_the_slot") else {
        return;
    };
    let _topology = TOPOLOGY.lock().await;
    let tag = unique_tag("migrate");
    let slot = slot_of(&tag);
    let from = master_of_slot(&nodes, slot).await;
    let to = masters(&nodes)
        .await
        .into_iter()
        .find(|m| *m != from)
        .unwrap();
    // More keys than one MIGRATE batch, and a list like the queue's, so the batching loop and types are covered.
    const KEYS: usize = 250;
    let mut conn = cluster::connect(&from).await.unwrap();
    for i in 0..KEYS {
        let _: () = conn.set(format!("{{{tag}}}:k{i}"), i).await.unwrap();
    }
    let list = format!("{{{tag}}}:pending");
    let _: () = conn.rpush(&list, &["m1", "m2", "m3"]).await.unwrap();

    migrate_slot(&nodes, slot, &to).await;

    assert_eq!(master_of_slot(&nodes, slot).await, to);
    let count = |node: String| async move {
        let mut conn = cluster::connect(&node).await.unwrap();
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query_async::<usize>(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(count(from.clone()).await, 0);
    assert_eq!(count(to.clone()).await, KEYS + 1);
    let mut to_conn = cluster::connect(&to).await.unwrap();
    for i in 0..KEYS {
        let value: usize = to_conn.get(format!("{{{tag}}}:k{i}")).await.unwrap();
        assert_eq!(value, i);
    }
    let queued: Vec<String> = to_conn.lrange(&list, 0, -1).await.unwrap();
    assert_eq!(queued, ["m1", "m2", "m3"]);
    // Moving it back is the same operation the other way, and leaves the cluster as it was.
    migrate_slot(&nodes, slot, &from).await;
    assert_eq!(master_of_slot(&nodes, slot).await, from);
    assert_eq!(count(from.clone()).await, KEYS + 1);
    let mut from_conn = cluster::connect(&from).await.unwrap();
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("{{{tag}}}:k{i}"))
        .chain([list])
        .collect();
    let deleted: usize = from_conn.del(&keys).await.unwrap();
    assert_eq!(deleted, KEYS + 1);
}
