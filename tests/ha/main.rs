//! High availability: three managers, one leader (etcd lease or embedded Raft), followers
//! proxying to it.

#[path = "../support/mod.rs"]
mod support;

mod t10_etcd_leader;
mod t20_load_balancer;
mod t25_streams;
mod t30_raft;
mod t35_once;
mod t40_repairs;
mod t45_backup;
mod t50_metrics;
mod t60_tls;
mod t70_control_auth;
