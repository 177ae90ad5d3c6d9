#!/usr/bin/env bash
# Sets up (packages, build) and runs every test: unit tests in src/ and the one integration
# binary in tests/ (real server, real WebRTC clients, real GStreamer, loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh --test
# Two cores: run the media-heavy integration tests a few at a time so none starves.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --locked --all-targets "$@"
