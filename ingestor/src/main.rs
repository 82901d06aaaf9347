//! The `ingestor` binary: reads the configuration, starts logging, binds `INGESTOR_ADDR` and runs until
//! SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

// glibc malloc serialises on its arena locks under many small allocations per request (seen in perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
