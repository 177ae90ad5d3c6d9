#!/bin/bash
# What an idle room costs: ten rooms whose only session never connects (a loopback offer from
# tests/offers/), measured from every thread's schedstat over 3 s, after 3 s of settling.
# Usage: bash scripts/idle-rooms.sh [path to tessera] (default target/release/tessera; build it
# with `cargo build --release --bin tessera`). Loopback only.
cd "$(dirname "$0")/.."
OUT=$(mktemp); ERR=$(mktemp); trap 'rm -f "$OUT" "$ERR"' EXIT
BIN=${1:-target/release/tessera}
OFFER=tests/offers/webrtc-rs-contributor.sdp
$BIN serve --listen 127.0.0.1:0 --rtc-ip 127.0.0.1 > "$OUT" 2>"$ERR" &
PID=$!
for i in $(seq 50); do grep -q "listening on" "$OUT" && break; sleep 0.1; done
URL=$(grep -o "http://[0-9.:]*" "$OUT" | head -1)
cpu() { cat /proc/$PID/task/*/schedstat | awk '{s+=$1} END {print s/1e9}'; }
thr() { ls /proc/$PID/task | wc -l; }
sleep 3
c0=$(cpu); sleep 3; c1=$(cpu); t0=$(thr)
for i in $(seq 10); do curl -s -o /dev/null -w "%{http_code} " -X POST -H 'content-type: application/sdp' --data-binary @$OFFER "$URL/rooms/idle$i/whip"; done; echo
sleep 3
c2=$(cpu); sleep 3; c3=$(cpu); t1=$(thr)
python3 -c "
idle=($c1-$c0)/3; wait=($c3-$c2)/3
print(f'server idle {idle*100:.3f}% of a core; 10 waiting rooms {wait*100:.3f}% -> {(wait-idle)*10:.3f}% per room; threads $t0 -> $t1')"
kill $PID
