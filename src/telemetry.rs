//! Logging: `tracing` to stderr, as dockerd, etcd and classic Swarm log, level from
//! `--log-level` (or `--debug`), overridable with `RUST_LOG`; text coloured only on a
//! terminal, or JSON lines with `--log-format json`, the message at the top level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogLevel};

/// Installs the subscriber once; later calls (tests) are ignored.
pub fn init(level: LogLevel, debug: bool, format: LogFormat) {
    let level = if debug { "debug" } else { level.directive() };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=warn,h2=warn,tower=warn,openraft=off")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        // A log written to a file or a pipe gets no colour codes.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
