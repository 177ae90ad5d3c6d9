#!/usr/bin/env bash
# Fuzzes every target in fuzz/ (or those named) for SECONDS each with AFL++ (cargo-afl, stable
# Rust), from the committed seeds in fuzz/seeds/<target>/, one target at a time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      SECONDS defaults to 60
#   scripts/fuzz.sh --build                    only build them (scripts/test.sh does)
#
# Prints one line per target (`fuzz: <target> execs=... crashes=... hangs=... corpus=...`) and
# exits 1 if any target crashed or hung; what AFL kept is in fuzz/out/<target>/default/
# (crashes/, hangs/, queue/). A crash found becomes a regression test in tests/it/hardening/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  # One binary per target (each hands AFL's input to tessera::fuzzing::<target>).
  for bin in fuzz/src/bin/*.rs; do targets+=("$(basename "$bin" .rs)"); done
fi
source scripts/setup.sh --fuzz

# The instrumented build (its own workspace and target dir: fuzz/target). Run from inside
# `cargo test`, the environment holds the test's CARGO_PKG_*, CARGO_MANIFEST_DIR, ... which
# some build scripts watch: without them, the same build is reused whoever calls.
(
  for var in $(compgen -e); do
    case $var in
      CARGO_HOME | CARGO_NET_* | CARGO_REGISTRIES_* | CARGO_HTTP_* | CARGO_TERM_*) ;;
      CARGO | CARGO_*) unset "$var" ;;
    esac
  done
  cargo afl build --release --locked --manifest-path fuzz/Cargo.toml >&2
)
if [[ $seconds == --build ]]; then exit 0; fi

out="${FUZZ_OUT:-fuzz/out}"
mkdir -p "$out"
# No screen; a machine set up for anything but fuzzing is fine for short runs (CPU frequency
# governor, core dumps sent to a helper); fuzzers on separate cores when there are several.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_QUIET=1 AFL_SKIP_CRASHES=0
failed=0
for t in "${targets[@]}"; do
  rm -rf "${out:?}/$t"
  # The receive path runs GStreamer per input (tens of ms, and its own deadline of 5 s turns a
  # hang into a crash); the pure parsers take microseconds.
  timeout_ms=1000
  if [[ $t == rtp_decode ]]; then timeout_ms=20000; fi
  status=0
  timeout -k 10 "$((seconds + 120))" cargo afl fuzz -V "$seconds" -t "$timeout_ms" \
    -i "fuzz/seeds/$t" -o "$out/$t" "fuzz/target/release/$t" > "$out/$t.log" 2>&1 || status=$?
  stats="$out/$t/default/fuzzer_stats"
  if [[ ! -f $stats ]]; then
    echo "fuzz: $t did not run (exit $status); see $out/$t.log" >&2
    tail -20 "$out/$t.log" >&2
    failed=1
    continue
  fi
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes="$(stat saved_crashes)"
  hangs="$(stat saved_hangs)"
  echo "fuzz: $t execs=$(stat execs_done) crashes=$crashes hangs=$hangs corpus=$(stat corpus_count) edges=$(stat edges_found) seconds=$(stat run_time)"
  if [[ $crashes != 0 || $hangs != 0 ]]; then
    echo "fuzz: $t found something: $out/$t/default/crashes $out/$t/default/hangs" >&2
    failed=1
  fi
done
exit "$failed"
