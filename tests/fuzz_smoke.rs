//! The fuzz targets' smoke run in CI: every target (`swarm::fuzzing`, run by libFuzzer under
//! `cargo fuzz` in `fuzz/`) over its whole committed corpus, then over seeded mutations of it
//! (bytes flipped, inserted, dropped, spliced across entries, numbers swapped for extreme
//! ones). A panic fails the test with the input that caused it, saved for `cargo fuzz run`.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutations per target; `SWARM_FUZZ_SMOKE` changes it.
const MUTATIONS: usize = 20_000;

const EXTREMES: &[&[u8]] = &[
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"1e308",
    b"-1e308",
    b"NaN",
    b"inf",
    b"\xff\xfe",
    b"\0",
    b"{",
    b"[",
    b"\"",
    b"%",
    b"%ff",
    b"::",
    b"[::1]",
    b"/",
    b"=~",
    b"==",
    b"!=",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus of {target} at {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).expect("corpus file")).collect()
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..5) {
        let at = rng.random_range(0..=data.len());
        match rng.random_range(0..5) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.insert(at, rng.random()),
            2 if at < data.len() => {
                let end = rng.random_range(at..=data.len());
                data.drain(at..end);
            }
            3 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let from = rng.random_range(0..=other.len());
                data.splice(at..at, other[from..].iter().copied());
            }
            _ => {
                let extreme = EXTREMES[rng.random_range(0..EXTREMES.len())];
                data.splice(at..at, extreme.iter().copied());
            }
        }
    }
    data
}

fn run_caught(name: &str, target: fn(&[u8]), data: &[u8]) {
    if std::panic::catch_unwind(|| target(data)).is_err() {
        let dir = std::env::temp_dir().join("swarm-fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!(
            "{name}-{:016x}",
            data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
        ));
        let _ = std::fs::write(&file, data);
        panic!("fuzz target {name} panicked on {} bytes, saved as {} (replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {name} {})", data.len(), file.display(), file.display());
    }
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_seeded_mutations() {
    let seed: u64 = std::env::var("SWARM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let n: usize = std::env::var("SWARM_FUZZ_SMOKE").ok().and_then(|s| s.parse().ok()).unwrap_or(MUTATIONS);
    eprintln!("fuzz smoke seed {seed}, {n} mutations per target");
    for (name, target) in swarm::fuzzing::TARGETS {
        let corpus = corpus(name);
        assert!(!corpus.is_empty(), "{name} has no corpus");
        for entry in &corpus {
            run_caught(name, *target, entry);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let started = std::time::Instant::now();
        let mut slowest = (std::time::Duration::ZERO, Vec::new());
        for _ in 0..n {
            let data = mutate(&mut rng, &corpus);
            let t = std::time::Instant::now();
            run_caught(name, *target, &data);
            if t.elapsed() > slowest.0 {
                slowest = (t.elapsed(), data);
            }
        }
        eprintln!(
            "{name}: {n} inputs in {:?}, slowest {:?} on {:?}",
            started.elapsed(),
            slowest.0,
            String::from_utf8_lossy(&slowest.1[..slowest.1.len().min(120)])
        );
    }
}
