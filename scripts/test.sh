#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test (unit and integration)
# against real dockerd engines, the real docker CLI, docker-py and docker-compose.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain" >&2; exit 1; }
# The dependency rules of ARCHITECTURE.md (the scheduler stays pure, nothing below the API
# front imports it, nothing imports the composition root).
bash scripts/check-layout.sh
# Formatted and lint-clean, or the run fails here.
cargo fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# Benchmarks are built (so they keep compiling) but not run: `cargo bench` runs them.
cargo build --all-targets
# Engines are heavy on 2 cores: bound how many tests start theirs at once.
threads="${SWARM_TEST_THREADS:-3}"
status=0
# The conformance suite first, with its tables shown (cargo hides a passing test's output);
# then everything else.
cargo test --no-fail-fast --test conformance -- --nocapture --test-threads "$threads" || status=$?
cargo test --no-fail-fast --lib --bins --tests -- --test-threads "$threads" --skip t10_one_engine --skip t20_several_engines --skip t30_clients || status=$?
exit "$status"
