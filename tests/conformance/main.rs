//! Conformance: swarm answers as an engine does, with real engines as the oracle. Each case
//! goes to an engine directly and through a manager; the answers are compared after the
//! normalisations in `normalize.rs`, and every other difference fails the test unless it is
//! one of the intended differences in `report.rs` (listed in docs/conformance.md).

#[path = "../support/mod.rs"]
mod support;

mod corpus;
mod fixtures;
mod normalize;
mod oracle;
mod report;

mod t10_one_engine;
mod t20_several_engines;
mod t30_clients;
