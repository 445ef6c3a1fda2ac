//! Logging: `tracing` to stdout, level from `--log-level` (or `--debug`), overridable with
//! `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls (tests) are ignored.
pub fn init(level: &str, debug: bool) {
    let level = if debug { "debug" } else { level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=warn,h2=warn,tower=warn,openraft=off")));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
