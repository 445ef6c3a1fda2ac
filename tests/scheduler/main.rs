//! Scheduling on three real engines with different labels, through the docker CLI.

#[path = "../support/mod.rs"]
mod support;

mod t10_filters;
mod t20_strategies;
