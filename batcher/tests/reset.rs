//! `DELETE /reset` while a batch is in flight: the batch drew its id before the reset and commits after it. A
//! later batch must not draw that id again (it would fail on it, find the in-flight batch's row on its retry,
//! count itself committed and drop its messages): nothing accepted after a reset is lost to it.

mod common;

use clap::Parser;
use common::*;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_batch_in_flight_across_a_reset_costs_no_message_accepted_after_it() {
    let env = TestEnv::with_schema().await;
    let db = env.db().await;
    // The batch in flight draws its id (a batcher does this before its transaction).
    let in_flight: i64 = db
        .query_one("SELECT nextval('batches_id_seq')", &[])
        .await
        .unwrap()
        .get(0);

    let (listener, addr) = testkit::listener().await.unwrap();
    let stop = CancellationToken::new();
    let args = ["ingestor"]
        .into_iter()
        .chain(env.service_args())
        .chain(["--admin-api-key", "admin-key-for-tests"]);
    let config = ingestor::Config::try_parse_from(args).unwrap();
    let ingestor = tokio::spawn(ingestor::run(config, listener, stop.clone()));
    let http = reqwest::Client::new();
    let api = format!("http://{addr}");
    testkit::eventually(WAIT, "the ingestor answers", || async {
        let response = http.get(format!("{api}/ready")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let reset = http
        .delete(format!("{api}/reset"))
        .bearer_auth("admin-key-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    // ... and commits after the reset, under the id it drew.
    db.execute(
        "INSERT INTO batches (id, batcher_id, reason, size) VALUES ($1, 'in-flight', 'size', 1)",
        &[&in_flight],
    )
    .await
    .unwrap();

    // Accepted after the reset: three messages, one batch each.
    let batcher = start(&env, config_for(&env)).await;
    for n in 0..3 {
        let response = http
            .post(format!("{api}/messages"))
            .json(&serde_json::json!({"user_id": 1, "channel_id": 1, "content": format!("after {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    wait_rows(&env, 3).await;
    let ids: Vec<i64> = env
        .column("SELECT id FROM batches WHERE batcher_id = 'r1' ORDER BY id")
        .await;
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|id| *id > in_flight),
        "{ids:?} after {in_flight}"
    );
    batcher.stop().await;
    stop.cancel();
    ingestor.await.unwrap().unwrap();
}

fn config_for(env: &TestEnv) -> batcher::Config {
    config(env, "r1", 1, 0.05)
}
