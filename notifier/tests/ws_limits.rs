//! What a hostile WebSocket client meets: an Origin allow-list (403 for other browser pages), frames over
//! 64 KiB refused from their header (before the payload is read or allocated), and an idle timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{
    Error, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

/// Opens `/ws/stats` with `origin`; the HTTP status (101 when upgraded) and, when refused, the JSON body.
async fn handshake(notifier: &Notifier, origin: Option<&str>) -> (u16, Option<Value>) {
    let mut request = notifier.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_ws, response)) => (response.status().as_u16(), None),
        Err(Error::Http(response)) => {
            let body = response.body().as_deref().expect("a body");
            (
                response.status().as_u16(),
                Some(serde_json::from_slice(body).unwrap()),
            )
        }
        Err(other) => panic!("handshake failed: {other}"),
    }
}

fn refused() -> Value {
    json!({
        "error": "origin_not_allowed",
        "message": "this page's origin may not open a WebSocket here; add it to the notifier's WS_ORIGINS",
    })
}

#[tokio::test]
async fn only_the_notifiers_own_origin_and_ws_origins_may_connect_from_a_browser() {
    let env = TestEnv::new().await;
    let notifier = Notifier::start(common::config(&env)).await;
    let own = format!("http://{}", notifier.addr);
    assert_eq!(handshake(&notifier, None).await, (101, None));
    assert_eq!(handshake(&notifier, Some(&own)).await, (101, None));
    assert_eq!(
        handshake(&notifier, Some("http://evil.example")).await,
        (403, Some(refused()))
    );
    notifier.stop().await;

    let mut config = common::config(&env);
    config.ws_origins = vec!["https://dash.example.com".into()];
    let notifier = Notifier::start(config).await;
    let own = format!("http://{}", notifier.addr);
    assert_eq!(
        handshake(&notifier, Some("https://dash.example.com")).await,
        (101, None)
    );
    assert_eq!(handshake(&notifier, Some(&own)).await, (101, None));
    assert_eq!(
        handshake(&notifier, Some("http://dash.example.com")).await,
        (403, Some(refused()))
    );
    notifier.stop().await;
}

#[tokio::test]
async fn a_frame_over_64_kib_is_refused_from_its_header_without_waiting_for_its_payload() {
    let (_env, notifier, mut ws) = start_with_client().await;
    // A masked text frame declaring 1 MiB (over 64 KiB, under tungstenite's 16 MiB default); the payload is
    // never sent, so only a refusal from the header ends the connection.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend((1_u64 << 20).to_be_bytes());
    header.extend([1, 2, 3, 4]);
    let MaybeTlsStream::Plain(stream) = ws.get_mut() else {
        panic!("a plain TCP stream");
    };
    stream.write_all(&header).await.unwrap();

    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the notifier is waiting for the 1 MiB payload"
    );
    notifier.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_as_idle_and_a_reading_one_is_not() {
    let (_env, notifier) =
        common::start_with(|config| config.ws_idle_timeout = Duration::from_millis(600)).await;
    let mut silent = notifier.connect().await;
    let mut reading = notifier.connect().await;

    // Reading answers the notifier's pings (every 200 ms): no Close for more than three idle timeouts.
    let until = Instant::now() + Duration::from_secs(2);
    let mut frames = 0;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, reading.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the reading client was closed: {frame:?}")
            }
            Ok(Some(Ok(_))) => frames += 1,
            Ok(other) => panic!("the reading client's connection ended: {other:?}"),
        }
    }
    assert!(frames > 0);

    // The silent client read nothing (so answered no ping) for 2 s: the notifier closed it. What it was sent
    // is read raw (a WebSocket client would answer the pings on the way, into a closed connection), and
    // ends with the Close frame (unmasked, server to client): 1001 and the reason.
    let MaybeTlsStream::Plain(stream) = silent.get_mut() else {
        panic!("a plain TCP stream");
    };
    let mut sent = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sent))
        .await
        .expect("the notifier ends the connection")
        .unwrap();
    let reason = "idle: nothing received for 0.6 s";
    let mut close = vec![0x88, u8::try_from(2 + reason.len()).unwrap()];
    close.extend(u16::from(CloseCode::Away).to_be_bytes());
    close.extend(reason.as_bytes());
    assert!(
        sent.ends_with(&close),
        "the last bytes are not Close(1001, {reason:?}): {:?}",
        String::from_utf8_lossy(&sent[sent.len().saturating_sub(64)..])
    );
    notifier.stop().await;
}
