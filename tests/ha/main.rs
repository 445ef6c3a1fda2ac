//! High availability on etcd: three managers, one leader, followers proxying to it.

#[path = "../support/mod.rs"]
mod support;

mod t10_etcd_leader;
mod t20_load_balancer;
