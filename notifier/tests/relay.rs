//! `batch_persisted` events: from Redis pub/sub to every WebSocket client, against real Redis and PostgreSQL.

mod common;

use common::*;
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
    let (env, notifier, mut ws) = start_with_client().await;
    wait_subscribed(&env).await;

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

/// `(id, name, subscriptions)` of every client Redis lists.
async fn redis_clients(env: &TestEnv) -> Vec<(String, String, u64)> {
    let list: String = env.redis_query(redis::cmd("CLIENT").arg("LIST")).await;
    list.lines()
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| {
                        kv.strip_prefix(name)
                            .and_then(|rest| rest.strip_prefix('='))
                    })
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("id"),
                field("name"),
                field("sub").parse().unwrap_or(0),
            )
        })
        .collect()
}

/// The id of this test's notifier's subscriber connection, once there is one.
async fn subscriber_id(env: &TestEnv, not: Option<&str>) -> String {
    let name = format!("notifier-{}", env.prefix);
    testkit::eventually(WAIT, "the notifier's named subscriber connection", || {
        let name = name.clone();
        async move {
            redis_clients(env)
                .await
                .into_iter()
                .find(|(id, client, subs)| {
                    *client == name && *subs == 1 && Some(id.as_str()) != not
                })
                .map(|(id, _, _)| id)
        }
    })
    .await
}

#[tokio::test]
async fn the_relay_resubscribes_after_its_redis_connection_is_killed() {
    let (env, notifier, mut ws) = start_with_client().await;
    wait_subscribed(&env).await;
    let before = subscriber_id(&env, None).await;

    let killed: u64 = env
        .redis_query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&before))
        .await;
    assert_eq!(killed, 1);

    // A new connection, under the same name, subscribed again.
    let after = subscriber_id(&env, Some(&before)).await;
    assert_ne!(after, before);
    wait_subscribed(&env).await;

    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    publish(&env, &batch_event(9, &ids)).await;
    let event = next_batch(&mut ws).await;
    assert_eq!(ids_of(&event), ids);
    assert_eq!(event["batch_id"], 9);

    notifier.stop().await;
}
