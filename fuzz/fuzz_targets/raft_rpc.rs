#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm::fuzzing::raft_rpc(data));
