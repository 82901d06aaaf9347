//! Bounded fan-out: a client that does not read holds up nobody but itself.
//!
//! Alone in its file (its own process) so the `notifier_clients_lagged_total` it reads is its own.

mod common;

use std::time::Duration;

use common::{Notifier, batch_event, next_batch, wait_subscribed};
use serde_json::Value;
use testkit::TestEnv;
use tokio_tungstenite::MaybeTlsStream;
use uuid::Uuid;

const EVENTS: i64 = 3_000;
const IDS_PER_EVENT: u128 = 50;
/// Events published per round trip. B is a healthy reader: the test lets it catch up between chunks, which
/// keeps it well within the broadcast capacity (1024) while A falls ever further behind.
const CHUNK: i64 = 100;

/// The ids of event `batch_id`, so the receiver can check them without keeping what was sent.
fn ids(batch_id: i64) -> Vec<Uuid> {
    let base = u128::try_from(batch_id).unwrap() * 1000;
    (0..IDS_PER_EVENT)
        .map(|i| Uuid::from_u128(base + i))
        .collect()
}

fn lagged_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("notifier_clients_lagged_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_up_the_others() {
    let env = TestEnv::new().await;
    let notifier = Notifier::start(common::config(&env)).await;

    // A: a tiny receive buffer, so the server soon cannot write to it; it reads nothing until the end.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(notifier.addr).await.unwrap();
    let (mut slow, _) =
        tokio_tungstenite::client_async(notifier.ws_url(), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut fast = notifier.connect().await;
    wait_subscribed(&env).await;

    let mut redis = env.redis().await;
    let channel = env.keys().events();
    let mut next_expected = 1;
    for chunk_start in (1..=EVENTS).step_by(usize::try_from(CHUNK).unwrap()) {
        let mut pipe = redis::pipe();
        for batch_id in chunk_start..chunk_start + CHUNK {
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(batch_event(batch_id, &ids(batch_id)))
                .ignore();
        }
        let () = pipe.query_async(&mut redis).await.unwrap();
        // B gets every event of the chunk, in order, with its ids.
        while next_expected < chunk_start + CHUNK {
            let event = next_batch(&mut fast).await;
            assert_eq!(
                event["batch_id"], next_expected,
                "B got events out of order or missed one"
            );
            assert_eq!(
                serde_json::from_value::<Vec<Uuid>>(event["ids"].clone()).unwrap(),
                ids(next_expected)
            );
            next_expected += 1;
        }
    }
    assert_eq!(next_expected, EVENTS + 1);

    // The server still answers while A is stuck.
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::get(notifier.url("/health")),
    )
    .await
    .expect("/health answers while a client is stuck")
    .unwrap();
    assert_eq!(health.status(), 200);

    // A now reads: it lagged (skipped events, counted) and catches up to the newest one.
    let mut seen = Vec::new();
    while seen.last() != Some(&EVENTS) {
        let event: Value = next_batch(&mut slow).await;
        seen.push(event["batch_id"].as_i64().unwrap());
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "A got events out of order"
    );
    assert!(
        seen.len() < usize::try_from(EVENTS).unwrap(),
        "A got all {} events: it was never slowed down",
        seen.len()
    );
    let metrics = reqwest::get(notifier.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(lagged_total(&metrics) >= 1, "no lag counted:\n{metrics}");

    drop((slow, fast));
    notifier.stop().await;
}
