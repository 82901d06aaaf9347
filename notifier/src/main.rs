//! The `notifier` binary: reads the configuration, then serves until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = notifier::Config::parse();
    pipeline::telemetry::init_tracing(&config.log);
    let listener = tokio::net::TcpListener::bind(config.notifier_addr)
        .await
        .with_context(|| format!("Failed to bind NOTIFIER_ADDR {}", config.notifier_addr))?;
    notifier::run(config, listener, pipeline::shutdown::on_signal()).await
}
