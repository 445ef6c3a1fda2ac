//! The Docker API front against real engines, driven by the real docker CLI and docker-py.

#[path = "../support/mod.rs"]
mod support;

mod t10_system;
mod t20_containers;
mod t30_streams;
mod t40_images;
mod t50_networks_volumes;
mod t60_bad_input;
mod t65_hostile_input;
mod t70_clients;
mod t80_tls;
mod t90_issue_002_seed_walkthrough;
