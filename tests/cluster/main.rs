//! Engines seen from the manager: discovery, health, failures, on real dockerd engines; and
//! scale, on simulated ones (`t50_scale`).

#[path = "../support/mod.rs"]
mod support;

mod t10_discovery;
mod t20_failures;
mod t30_etcd;
mod t40_token;
mod t50_scale;
mod t60_packaging;
