//! A client that does not read falls behind: once more than 128 messages wait for it, the notifier closes it
//! with 1008 and a reason that says so (it can reconnect), instead of holding events for it or letting it skip
//! events silently.
//!
//! Alone in its file (its own process) so the `notifier_clients_lagged_total` it reads is its own.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
use uuid::Uuid;

/// Events published per round; publishing stops once the client has been closed.
const CHUNK: i64 = 100;
/// Bound on rounds (CHUNK events of 50 ids, ~2 KB each, per round).
const MAX_ROUNDS: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_is_closed_with_1008_too_slow() {
    // Long enough for the test to start reading before the notifier gives up on delivering the Close frame.
    let (env, notifier) = start_with_send_timeout(Duration::from_secs(30)).await;
    let mut slow = notifier.connect_with_tiny_buffer().await;
    wait_subscribed(&env).await;

    let ids: Vec<Uuid> = (0..50).map(|i| Uuid::from_u128(i + 1)).collect();
    let mut rounds = 0;
    while notifier.metric("notifier_clients_lagged_total").await < 1.0 {
        assert!(
            rounds < MAX_ROUNDS,
            "the client was never closed as too slow"
        );
        publish_batches(&env, rounds * CHUNK..(rounds + 1) * CHUNK, |_| ids.clone()).await;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(notifier.metric("notifier_clients_lagged_total").await, 1.0);

    // It reads at last: what was already on its way, then the Close frame.
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.expect("a Close frame with a code");
                }
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a Close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the Close frame arrives");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(
        close.reason.as_str(),
        "too slow: more than 128 messages were waiting; reconnect"
    );
    notifier.stop().await;
}
