#!/usr/bin/env bash
# Sets up (packages, release build) and runs the whole benchmark, putting the new table at the
# top of BENCHMARKS.md (older tables stay below). Takes ~20-30 minutes; run it on an idle machine.
# Extra arguments go to tessera-bench (e.g. --window 30 --max-rooms 8, or --smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked --bins
exec target/release/tessera-bench --write BENCHMARKS.md "$@"
