//! `HTTP_WRITE_TIMEOUT`: a client that stops reading its answer is dropped once a write to it has made no
//! progress for that long, so it cannot hold a connection, a task and the rest of its answer forever.
//!
//! Only writes are timed: a keep-alive connection waiting for its next request is not a stuck one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;

/// `listener`, whose connections fail a write that stays blocked for longer than `timeout`.
#[derive(Debug)]
pub struct WriteTimeoutListener {
    listener: TcpListener,
    timeout: Duration,
}

impl WriteTimeoutListener {
    pub fn new(listener: TcpListener, timeout: Duration) -> Self {
        Self { listener, timeout }
    }
}

impl Listener for WriteTimeoutListener {
    type Io = Pin<Box<TimeoutStream<TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.listener).await;
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(self.timeout));
        (Box::pin(stream), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
