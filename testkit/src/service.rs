//! A service's `run` spawned in the test's process: how every integration test starts and stops one.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// A service's `run`, spawned on a listener of `127.0.0.1:0`, and the token that stops it.
#[derive(Debug)]
pub struct Spawned {
    /// The service's name, for the panics of [`Spawned::join`].
    pub service: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// How long [`Spawned::join`] waits for `run` to return.
    pub stop_within: Duration,
}

impl Spawned {
    /// Binds `127.0.0.1:0` and spawns `run` with the listener and a new token; `service` names it, and it is
    /// given `stop_within` to return once the token is cancelled.
    pub async fn start<Fut>(
        service: &'static str,
        stop_within: Duration,
        run: impl FnOnce(TcpListener, CancellationToken) -> Fut,
    ) -> Self
    where
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (listener, addr) = crate::listener().await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, shutdown.clone()));
        Self {
            service,
            addr,
            shutdown,
            task,
            stop_within,
        }
    }

    /// Cancels the token without waiting.
    pub fn cancel(&self) {
        self.shutdown.cancel();
    }

    /// Waits for `run` to return (after [`Spawned::cancel`]) and returns what it returned; panics if it
    /// panicked or took longer than `stop_within`.
    pub async fn join(self) -> anyhow::Result<()> {
        crate::join_service(self.service, self.task, self.stop_within).await
    }

    /// Cancels the token and waits for `run` to return; panics unless it returns Ok.
    pub async fn stop(self) {
        self.cancel();
        let service = self.service;
        if let Err(error) = self.join().await {
            panic!("the {service} returned an error: {error:#}");
        }
    }
}
