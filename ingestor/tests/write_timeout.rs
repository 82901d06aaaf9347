//! `HTTP_WRITE_TIMEOUT`: a client that sends requests but never reads the answers is dropped once a write to
//! it has been blocked for that long, instead of holding its connection (and the unsent answers) forever.

mod common;

use std::time::Duration;

use testkit::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pipelined requests the client sends without reading: their answers (the OpenAPI document each) are many
/// megabytes, far more than the socket buffers hold, while the requests themselves fit in them.
const REQUESTS: usize = 400;

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let env = TestEnv::new().await;
    let app = common::spawn_app(&env, |config| {
        config.http_write_timeout = Duration::from_secs(1);
    })
    .await;
    let document = app.get("/openapi.json").await.bytes().await.unwrap();
    let answers_at_least = REQUESTS * document.len();
    assert!(answers_at_least > 8 << 20, "{answers_at_least} bytes");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET /openapi.json HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    stream
        .write_all(request.repeat(REQUESTS).as_bytes())
        .await
        .unwrap();

    // Three write timeouts without reading; then whatever was already on its way, and the end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection is still open after {received} bytes"
    );
    assert!(
        received < answers_at_least,
        "all {received} bytes were delivered: the client was never dropped"
    );
    app.stop().await;
}
