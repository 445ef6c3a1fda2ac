//! swarm: a highly available cluster manager that turns Docker engines into one virtual
//! Docker host.
//!
//! # Layout
//! See ARCHITECTURE.md for the module map and the dependency rule.
//! - `cli`: clap definitions only; `config`: validated settings and the classic error texts.
//! - `app`: the composition root: builds every subsystem, spawns, drains on shutdown.
//! - `api`: the Docker Remote API front (routing, handlers per resource, proxy, errors).
//! - `control`: the control plane: Raft RPCs, registry, membership, token service.
//! - `cluster`: engines seen from the manager: clients, cache, events, health.
//! - `scheduler`: pure filters and strategies over node snapshots.
//! - `discovery`: where engines come from (nodes, file, etcd, token, swarm).
//! - `leadership`: who leads (etcd lease or embedded Raft); `store`: what engines cannot hold.
//! - `metrics`: Prometheus metrics; `body`: the HTTP body type; `telemetry`: logging.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod admin;
pub mod api;
pub mod api_version;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod discovery;
pub mod etcd;
#[doc(hidden)]
pub mod fuzzing;
pub mod lag;
pub mod leadership;
pub mod metrics;
pub mod open_files;
pub mod orchestrator;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this binary was built from, when known at build time.
pub const GIT_COMMIT: &str = match option_env!("SWARM_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
/// What `swarm --version` prints after the program name.
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SWARM_GIT_COMMIT_OR_UNKNOWN"), ")");
