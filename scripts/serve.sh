#!/usr/bin/env bash
# Sets up (packages, build) and runs the server on its built-in defaults; extra arguments are
# passed to `tessera serve` (e.g. --listen 127.0.0.1:8080 --rtc-ip 192.0.2.10).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
exec target/release/tessera serve "$@"
