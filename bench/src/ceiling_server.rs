//! The HTTP ceiling: a bare axum JSON `POST /messages` with no I/O, run as its own process (`bench
//! ceiling-server`) so it gets the CPU the ingestor would, and loaded by the same generator.
//!
//! It parses the same body and answers the same 201 as the ingestor, minus validation and Redis: the most
//! any axum service can do per second on this machine.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router, http::StatusCode};
use chrono::Utc;
use pipeline::api::{MessageAccepted, NewMessage};
use uuid::Uuid;

async fn accept(Json(_message): Json<NewMessage>) -> (StatusCode, Json<MessageAccepted>) {
    let accepted = MessageAccepted {
        message_id: Uuid::now_v7(),
        status: "queued".into(),
        queued_at: Utc::now(),
    };
    (StatusCode::CREATED, Json(accepted))
}

/// The ceiling's routes: `POST /messages` and `GET /health`.
pub fn app() -> Router {
    Router::new()
        .route("/messages", post(accept))
        .route("/health", get(|| async { "ok" }))
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the ceiling server only listens on loopback"
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let shutdown = pipeline::shutdown::on_signal();
    axum::serve(listener, app())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
