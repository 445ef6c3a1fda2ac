#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm::fuzzing::engine_json(data));
