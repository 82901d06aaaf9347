//! Bounded memory under clients that never read: 50 such clients while 3,000 events (150,000 ids) flow are
//! each closed once they fall behind, and a client that reads still gets every id, in order.
//!
//! Alone in its file (its own process) so the `notifier_ws_clients` gauge it reads is its own.

mod common;

use std::time::Duration;

use common::*;
use uuid::Uuid;

const SLOW_CLIENTS: usize = 50;
const EVENTS: i64 = 3_000;
const IDS_PER_EVENT: u128 = 50;
/// Events published per round trip; the reader catches up between chunks (the test is its only driver).
const CHUNK: i64 = 100;

/// The ids of event `batch_id`, so the receiver can check them without keeping what was sent.
fn ids(batch_id: i64) -> Vec<Uuid> {
    let base = u128::try_from(batch_id).unwrap() * 1000;
    (0..IDS_PER_EVENT)
        .map(|i| Uuid::from_u128(base + i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_that_never_read_are_closed_and_a_reader_still_gets_every_id() {
    // A closed slow client is let go 2 s after its Close frame could not be delivered.
    let (env, notifier) = start_with_send_timeout(Duration::from_secs(2)).await;
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        slow.push(notifier.connect_with_tiny_buffer().await);
    }
    let mut reader = notifier.connect().await;
    wait_subscribed(&env).await;
    assert_eq!(
        notifier.metric("notifier_ws_clients").await,
        (SLOW_CLIENTS + 1) as f64
    );

    let mut received: Vec<Uuid> = Vec::new();
    let mut next_expected = 1;
    for chunk_start in (1..=EVENTS).step_by(usize::try_from(CHUNK).unwrap()) {
        publish_batches(&env, chunk_start..chunk_start + CHUNK, ids).await;
        while next_expected < chunk_start + CHUNK {
            let event = next_batch(&mut reader).await;
            assert_eq!(
                event["batch_id"], next_expected,
                "the reader missed an event"
            );
            received.extend(serde_json::from_value::<Vec<Uuid>>(event["ids"].clone()).unwrap());
            next_expected += 1;
        }
    }
    let expected: Vec<Uuid> = (1..=EVENTS).flat_map(ids).collect();
    assert_eq!(received.len(), 150_000);
    assert_eq!(received, expected);

    // Every client that never read has been closed by the notifier; only the reader is left.
    testkit::eventually(
        Duration::from_secs(30),
        "only the reader to be left",
        || async { (notifier.metric("notifier_ws_clients").await == 1.0).then_some(()) },
    )
    .await;
    drop(slow);
    drop(reader);
    notifier.stop().await;
}
