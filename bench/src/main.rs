//! The pipeline's benchmark: its own load generator against the running services and against the
//! ceilings of this machine, ending in a Markdown table. Run it through `scripts/bench` (which builds the
//! binaries and makes sure Redis and PostgreSQL are up); `bench run --help` lists every knob.
//!
//! # Layout
//!
//! - [`options`]: the command line, full and `--smoke` presets resolved into a [`options::Plan`].
//! - [`run`]: a whole run: database, prefix, services, scenarios, cleanup, report.
//! - [`ceilings`]: HTTP (bare axum, [`ceiling_server`]), Redis LPUSH ([`redis_ceiling`]), `psql \copy`.
//! - [`measure`]: one load measured from outside (backlog, drain, CPU, RSS, the rows check).
//! - [`scenarios`]: (1) single POSTs, (2) bulk, (3) /simulate; [`latency`]: (4) fixed-rate latency;
//!   [`fanout`]: (5) channel fan-out to WebSocket subscribers.
//! - [`load`]: closed- and open-loop generators over [`client`] connections, paced by [`pacing`].
//! - [`events`]: `batch_persisted` from the notifier's WebSocket, joined into creation→commit latency.
//! - [`monitor`]: rows committed and backlog, sampled and drained; [`trend`] judges "sustained";
//!   [`prometheus`] reads the batcher's flush timings.
//! - [`services`] / [`process`]: the services as child processes; [`resources`] / [`procfs`]: CPU, RSS.
//! - [`samples`] (percentiles), [`report`] (tables), [`corpus`] (the messages), [`db`] (the database).

mod ceiling_server;
mod ceilings;
mod client;
mod corpus;
mod db;
mod events;
mod fanout;
mod latency;
mod load;
mod measure;
mod monitor;
mod options;
mod pacing;
mod process;
mod procfs;
mod prometheus;
mod redis_ceiling;
mod report;
mod resources;
mod run;
mod samples;
mod scenarios;
mod services;
mod trend;

use clap::Parser;
use options::{Cli, Command};

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::CeilingServer { addr } => {
            tokio::runtime::Runtime::new()?.block_on(ceiling_server::serve(addr))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads.max(1))
                .enable_all()
                .build()?;
            let passed = runtime.block_on(run::run(*args))?;
            Ok(if passed {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
    }
}
