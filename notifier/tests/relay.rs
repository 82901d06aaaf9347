//! `batch_persisted` events: from Redis pub/sub to every WebSocket client, against real Redis and PostgreSQL.

mod common;

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
