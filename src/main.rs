//! `swarm`: parse, set up logging, run; exit 64 for bad configuration, 1 for failures.

use std::process::ExitCode;

use clap::Parser;
use swarm::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    swarm::telemetry::init(&cli.log_level, cli.debug, cli.log_format);
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
