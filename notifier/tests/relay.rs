//! `batch_persisted` events: from Redis pub/sub to every WebSocket client, against real Redis and PostgreSQL.

mod common;

use std::time::Duration;

use common::{Notifier, batch_event, next_batch, publish, wait_subscribed};
use serde_json::Value;
use testkit::TestEnv;
use uuid::Uuid;

fn ids_of(event: &Value) -> Vec<Uuid> {
    serde_json::from_value(event["ids"].clone()).expect("ids are UUIDs")
}

#[tokio::test]
async fn a_batch_persisted_event_reaches_every_client_with_its_ids() {
    let env = TestEnv::new().await;
    let notifier = Notifier::start(common::config(&env)).await;
    let (mut first, mut second) = (notifier.connect().await, notifier.connect().await);
    wait_subscribed(&env).await;

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let payload = batch_event(42, &ids);
    publish(&env, &payload).await;

    for ws in [&mut first, &mut second] {
        let event = next_batch(ws).await;
        assert_eq!(ids_of(&event), ids);
        assert_eq!(event["batch_id"], 42);
        assert_eq!(event["batch_size"], 3);
        // Relayed as published, byte for byte.
        assert_eq!(event, serde_json::from_str::<Value>(&payload).unwrap());
    }

    notifier.stop().await;
}

#[tokio::test]
async fn a_payload_that_is_not_a_batch_persisted_event_is_not_relayed() {
    let (env, notifier, mut ws) = common::start_relaying().await;

    publish(&env, "not json at all").await;
    publish(
        &env,
        r#"{"type":"batch_persisted","ids":["nope"],"batch_id":1}"#,
    )
    .await;
    publish(&env, r#"{"type":"stats_update","total_messages":999}"#).await;
    let valid = Uuid::now_v7();
    publish(&env, &batch_event(7, &[valid])).await;

    // Pub/sub keeps order, so everything before the valid event has been seen by then: nothing but
    // stats_updates from the notifier itself.
    let event = common::next_matching(&mut ws, "the valid event", |v| {
        assert!(
            (v["type"] == "stats_update" && v["total_messages"] != 999)
                || v["type"] == "batch_persisted",
            "unexpected message {v}"
        );
        v["type"] == "batch_persisted"
    })
    .await;
    assert_eq!(ids_of(&event), vec![valid]);
    assert_eq!(event["batch_id"], 7);

    notifier.stop().await;
}

#[tokio::test]
async fn the_relay_resubscribes_after_its_redis_connection_is_killed() {
    let (env, notifier, mut ws) = common::start_relaying().await;
    let before = common::relay_connection_id(&env, None).await;
    assert_eq!(common::kill_redis_client(&env, &before).await, 1);

    // A new connection, under the same name, subscribed again.
    let after = common::relay_connection_id(&env, Some(&before)).await;
    assert_ne!(after, before);
    wait_subscribed(&env).await;

    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    publish(&env, &batch_event(9, &ids)).await;
    let event = next_batch(&mut ws).await;
    assert_eq!(ids_of(&event), ids);
    assert_eq!(event["batch_id"], 9);

    notifier.stop().await;
}

/// On a Redis Cluster each shard's events come with `SPUBLISH` on the shard's own channel, and the relay
/// subscribes to every one on the master that holds it: the events of shards on every master reach the
/// clients, and so do they after a failover of one shard's master and after another shard's slot moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_every_shards_events_reach_the_clients_through_a_failover_and_a_slot_move()
 {
    let Some(nodes) = testkit::cluster::nodes_from_env() else {
        eprintln!("TEST_REDIS_CLUSTER_NODES is not set: skipping the cluster case");
        return;
    };
    let env = TestEnv::new().await;
    let mut config = common::config(&env);
    config.redis.redis_cluster_nodes = nodes.clone();
    let notifier = Notifier::start(config).await;
    let mut ws = notifier.connect().await;
    let keys = env.keys();
    let channel_of = |shard: u32| keys.shard(shard).events();
    let slot_of = |shard: u32| testkit::cluster::slot_of(channel_of(shard));

    // Publishes batch `batch_id` on `shard`'s channel once the relay is subscribed there (on the master that
    // holds it now), and expects it on the WebSocket.
    let mut batch_id = 0;
    let mut publish_on = async |shard: u32| {
        batch_id += 1;
        let channel = channel_of(shard);
        let master = testkit::cluster::master_of_slot(&nodes, slot_of(shard)).await;
        let mut conn = testkit::cluster::connect(&master).await.unwrap();
        testkit::eventually(
            Duration::from_secs(20),
            "the relay to subscribe on the master",
            || {
                let (mut conn, channel) = (conn.clone(), channel.clone());
                async move {
                    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
                        .arg("SHARDNUMSUB")
                        .arg(&channel)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    (subscribers == 1).then_some(())
                }
            },
        )
        .await;
        let ids = [Uuid::now_v7()];
        let receivers: u64 = redis::cmd("SPUBLISH")
            .arg(&channel)
            .arg(batch_event(batch_id, &ids))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(receivers, 1, "the relay is the one subscriber of {channel}");
        let event = next_batch(&mut ws).await;
        assert_eq!(
            (ids_of(&event), event["batch_id"].clone()),
            (ids.to_vec(), batch_id.into())
        );
    };

    // Six shards: their slots spread over the masters.
    for shard in 0..6 {
        publish_on(shard).await;
    }
    testkit::cluster::failover(&nodes, slot_of(0)).await;
    publish_on(0).await;
    let holder = testkit::cluster::master_of_slot(&nodes, slot_of(1)).await;
    let masters = testkit::cluster::masters(&nodes).await;
    let elsewhere = masters.iter().find(|master| **master != holder).unwrap();
    testkit::cluster::migrate_slot(&nodes, slot_of(1), elsewhere).await;
    publish_on(1).await;

    notifier.stop().await;
}
