//! The large-body memory budget is shared by every `POST /messages/batch`: a client that declares a body of
//! the limit and never sends it holds all of it, and the others get a clear 503 `busy` after
//! `BODY_BUDGET_WAIT`, not a wait without end; once it lets go, batches are taken again. In a test binary of
//! its own: the budget is one per process.

mod common;

use std::time::Duration;

use common::{message, pending_len, spawn_app};
use ingestor::extract::{BATCH_BODY_LIMIT, BODY_BUDGET_WAIT};
use serde_json::Value;
use testkit::TestEnv;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_client_holding_the_whole_budget_makes_the_others_busy_until_it_lets_go() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let batch = format!("[{}]", message(1, 7, "hello"));

    // Declares a body of the limit (the whole budget), sends none of it, and keeps the connection open.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /messages/batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {BATCH_BODY_LIMIT}\r\n\r\n["
    );
    hog.write_all(head.as_bytes()).await.unwrap();
    hog.flush().await.unwrap();
    // The hog's request reaches its handler (and takes the budget) before the next one asks for a share:
    // `/health` answering on a new connection after it does not prove that, so the check below repeats.
    let mut busy = None;
    for _ in 0..5 {
        let response = app.post_json("/messages/batch", batch.clone()).await;
        if response.status() == 503 {
            busy = Some(response);
            break;
        }
        assert_eq!(response.status(), 201, "a batch is accepted or busy");
    }
    let response = busy.expect("a batch is answered 503 while the budget is held");
    assert_eq!(
        response.headers()["retry-after"],
        "1",
        "a 503 says when to retry"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "busy");
    assert_eq!(
        body["message"],
        format!(
            "the ingestor is reading as many large bodies as its memory budget allows and none finished \
             within {BODY_BUDGET_WAIT:?}; nothing was queued, retry later"
        )
    );
    let queued_before = pending_len(&env).await;

    // The hog goes away: its share comes back and the same batch is taken.
    drop(hog);
    testkit::eventually(
        Duration::from_secs(10),
        "a batch to be accepted once the budget is free",
        || async {
            let response = app.post_json("/messages/batch", batch.clone()).await;
            (response.status() == 201).then_some(())
        },
    )
    .await;
    assert_eq!(pending_len(&env).await, queued_before + 1);
    app.stop().await;
}
