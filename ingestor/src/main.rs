//! The `ingestor` binary: reads the configuration, starts logging, binds `INGESTOR_ADDR` and runs until
//! SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ingestor::Config::parse();
    pipeline::telemetry::init_tracing(&config.log);
    let addr = config.ingestor_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("Failed to bind INGESTOR_ADDR {addr}"))?;
    ingestor::run(config, listener, pipeline::shutdown::on_signal()).await
}
