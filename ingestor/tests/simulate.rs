//! `POST /simulate` answers 202 once everything is pushed, even when the queue depth it reports cannot be read
//! afterwards: a 503 there would invite a retry that queues everything again.

mod common;

use testkit::TestEnv;
use testkit::redis_server::RedisServer;

#[tokio::test]
async fn simulate_answers_202_when_only_the_final_depth_read_fails() {
    let env = TestEnv::new().await;
    // A private Redis that takes pushes (a script over the shard's own keys) but refuses the key listing the
    // queue layouts, which the depth read reads first: the depth read fails.
    let redis = RedisServer::start(&[]).await;
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let shard = env.keys().shard(0);
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetkeys")
        .arg(format!("~{}", shard.pending()))
        .arg(format!("~{}", shard.batchers()))
        .arg(format!("~{}*", shard.processing("")))
        .query_async(&mut admin)
        .await
        .unwrap();

    let app = common::spawn_app(&env, |config| config.redis.redis_url = redis.url()).await;
    let response = app.post_json("/simulate", r#"{"count": 25}"#).await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["messages_count"], 25);
    assert_eq!(body["tracking_ids"].as_array().unwrap().len(), 25);
    assert_eq!(
        body["current_queue"], 25,
        "the admission estimate stands in for the reading"
    );
    let queued: u64 = redis::cmd("LLEN")
        .arg(env.keys().shard(0).pending())
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(queued, 25, "pushed once");
    app.stop().await;
}
