#!/usr/bin/env bash
# Installs what tessera needs on Debian 12 (run as root; does nothing when all is present) and
# makes sure a Rust toolchain is on PATH. Called by scripts/serve.sh and scripts/test.sh; the
# Dockerfile installs the same package lists.
set -euo pipefail

# Needed to build and to run the server (GStreamer 1.22, libopus) ... Every package that ships
# an element the pipelines name is listed here, even when another package would pull it in:
# tests/it/packages.rs checks that (gstreamer1.0-x is textoverlay, for the camera-off tile;
# libgstreamer1.0-0 is queue, tee, valve, capsfilter, filesink).
BUILD_PACKAGES=(
  build-essential pkg-config cmake curl ca-certificates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstreamer1.0-0 gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice
  gstreamer1.0-x libopus-dev
)
# ... and only to run the tests: network namespaces for the browser, ACME and relay tests
# (iproute2, unshare and nsenter from util-linux), /proc tools, the real browser with its
# WebDriver, gst-discoverer-1.0 to read recordings back, pebble (Let's Encrypt's ACME test
# server, with its mock DNS), coturn (the TURN relay the relay tests start themselves) and
# nftables (a relay test drops UDP inside its client namespace).
TEST_PACKAGES=(
  iproute2 procps util-linux chromium chromium-driver gstreamer1.0-plugins-base-apps pebble
  coturn nftables
)

want=("${BUILD_PACKAGES[@]}")
if [[ "${1:-}" == "--test" || "${1:-}" == "--fuzz" ]]; then
  want+=("${TEST_PACKAGES[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Install only: a package's service (coturn's turnserver on every address, with the stock
  # configuration) must not start on this machine because the tests need its binary.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
  if ((made_policy)); then rm -f "$policy"; fi
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable coturn >/dev/null 2>&1 || true
  fi
  if [[ -n "${status:-}" ]]; then exit "$status"; fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# The tests and scripts/fuzz.sh also need, from crates.io (built once into ~/.cargo/bin):
# cargo-afl (AFL++ for Rust on stable; `cargo afl config --build` compiles its AFL++ runtime)
# and cargo-deny (licences, bans and sources of every dependency).
if [[ "${1:-}" == "--test" || "${1:-}" == "--fuzz" ]]; then
  if ! cargo afl --version >/dev/null 2>&1; then
    echo "setup: installing cargo-afl" >&2
    cargo install --locked cargo-afl@0.18.2
  fi
  # Builds AFL++'s runtime for this toolchain if it is missing; refuses (harmlessly) if present.
  cargo afl config --build >/dev/null 2>&1 || true
fi
if [[ "${1:-}" == "--test" ]] && ! cargo deny --version >/dev/null 2>&1; then
  echo "setup: installing cargo-deny" >&2
  cargo install --locked cargo-deny
fi
