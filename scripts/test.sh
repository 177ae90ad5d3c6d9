#!/usr/bin/env bash
# Sets up (packages, build) and runs every test: unit tests in src/ and the one integration
# binary in tests/ (real server, real WebRTC clients, real GStreamer, loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh --test
# Two cores: the integration tests run real encoders and decoders and measure frame rates, so
# they run one at a time (the whole suite still takes only minutes).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
# The binaries first: `cargo test` builds the server's (its integration tests run it) but not
# the benchmark's, which the smoke test runs from target/debug/ beside the server.
cargo build --locked --workspace --bins
# The fuzz targets (AFL++-instrumented, their own workspace in fuzz/): the suite runs each
# briefly (tests/it/hardening/fuzz.rs).
bash scripts/fuzz.sh --build
cargo test --locked --all-targets "$@"
