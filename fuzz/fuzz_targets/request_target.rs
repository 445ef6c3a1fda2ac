#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm::fuzzing::request_target(data));
