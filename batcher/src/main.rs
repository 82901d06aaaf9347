//! The `batcher` binary: configuration from the environment, then [`batcher::run`] until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Test builds only (feature `failpoints`): the fault points named in FAILPOINTS, for the whole run.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let config = batcher::Config::parse();
    pipeline::telemetry::init_tracing(&config.log);
    let listener = tokio::net::TcpListener::bind(config.batcher_addr)
        .await
        .with_context(|| format!("Failed to bind BATCHER_ADDR {}", config.batcher_addr))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        batcher_id = %config.batcher_id,
        "batcher listening"
    );
    batcher::run(config, listener, pipeline::shutdown::on_signal()).await
}
