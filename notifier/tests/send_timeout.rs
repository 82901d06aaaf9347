//! `WS_SEND_TIMEOUT`: a client that takes nothing while fewer than 128 (large) messages wait for it is let go
//! once one message has waited that long, freeing what it held.
//!
//! Alone in its file (its own process) so the metrics it reads are its own.

mod common;

use std::time::Duration;

use common::*;
use uuid::Uuid;

/// 60 events of 2,000 ids (~80 KB each, ~5 MB in all): far more than the client's socket buffers take, far
/// fewer messages than the 128 that would close it as too slow.
const EVENTS: i64 = 60;
const IDS_PER_EVENT: u128 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_nothing_is_dropped_after_the_send_timeout() {
    let (env, notifier) = start_with_send_timeout(Duration::from_secs(1)).await;
    let stuck = notifier.connect_with_tiny_buffer().await;
    wait_subscribed(&env).await;

    let ids: Vec<Uuid> = (0..IDS_PER_EVENT).map(|i| Uuid::from_u128(i + 1)).collect();
    publish_batches(&env, 1..=EVENTS, |_| ids.clone()).await;

    testkit::eventually(
        Duration::from_secs(15),
        "the stuck client to be dropped",
        || async { (notifier.metric("notifier_ws_clients").await == 0.0).then_some(()) },
    )
    .await;
    let series = r#"notifier_clients_disconnected_total{reason="send_timeout"}"#;
    assert_eq!(notifier.metric(series).await, 1.0);
    assert_eq!(notifier.metric("notifier_clients_lagged_total").await, 0.0);
    drop(stuck);
    notifier.stop().await;
}
