//! `swarm`: parse, set up logging, run; exit 64 for bad configuration, 1 for failures.

use std::process::ExitCode;

use clap::Parser;
use swarm::cli::Cli;

/// mimalloc returns freed memory to the system where glibc's allocator keeps it: the cache's
/// refreshes free as much as they allocate, and with glibc the resident size kept the peak.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    swarm::telemetry::init(cli.log_level, cli.debug, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swarm: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(swarm::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(swarm::app::RunError::Config(e)) => {
            eprintln!("swarm: {e}");
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("swarm: {}", swarm::cluster::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
