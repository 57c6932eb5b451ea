#!/usr/bin/env bash
# Benchmarks for the replicated data path (issue #3), peers measured in the same run:
#  1. the shared fio suite (../shared/bench/baseline.sh) against qemu-nbd (raw, writeback) and
#     an Ironhorn volume with 1 in-process replica, 1 replica over TCP, and 3 replicas (one
#     in-process, two over TCP, as on a 3-node cluster, all on this one disk);
#  2. rebuild of a fully written 4 GiB replica against `cp --sparse=always` + sync of its files;
#  3. idle CPU of an engine with 3 replicas and no I/O.
# Usage: bench/engine.sh   (env: REPEATS=2 RUNTIME=5 MODES="local1 tcp1 mixed3" SKIP_REBUILD=1
#        POLL_WINDOW=0 to measure without the poll window, IRONHORN_BIN=path to measure that
#        binary instead of building this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPEATS:=2}" "${RUNTIME:=5}" "${MODES:=local1 tcp1 mixed3}"
SHARED=${SHARED:-$(cd .. && pwd)/shared}
# IRONHORN_BIN measures another build (an older commit's, for a before/after comparison).
if [ -z "${IRONHORN_BIN:-}" ]; then
  cargo build --release --locked -q -p ironhorn
fi
BIN=${IRONHORN_BIN:-$PWD/target/release/ironhorn}
export IRONHORN_BIN=$BIN
OUT=$(mktemp -d /tmp/ironhorn-engine-bench.XXXXXX)
echo "results in $OUT"

for mode in $MODES; do
  CANDIDATE_CMD="$PWD/bench/engine-candidate.sh $mode {sock} {dir} {size}" TARGETS=qemu-raw \
    REPEATS=$REPEATS RUNTIME=$RUNTIME RAMP=1 SKIP_VERIFY=1 OUT="$OUT/$mode" \
    "$SHARED/bench/baseline.sh" >"$OUT/$mode.log" 2>&1
  echo "== $mode"; sed -n '1,4p;/QD1 latency/,/^$/p' "$OUT/$mode/summary.txt"
  python3 "$SHARED/bench/summarize.py" "$OUT/$mode/results.tsv" --ref qemu-raw 2>/dev/null | sed -n '/ratio/,/^$/p' || true
done

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [ -z "${SKIP_REBUILD:-}" ]; then
  W=$(mktemp -d /var/tmp/ironhorn-rebuild.XXXXXX); trap 'pkill -P $$ || true; rm -rf "$W"' EXIT
  cp_=$(port); rp=$(port)
  "$BIN" engine serve --volume rb --size 4Gi --replica "file:$W/r1" --nbd "unix:$W/rb.sock" --control "127.0.0.1:$cp_" 2>"$W/engine.log" &
  eng=$!
  for _ in $(seq 100); do [ -S "$W/rb.sock" ] && break; sleep 0.1; done
  head -c $((4 << 30)) /dev/urandom | nbdcopy - "nbd+unix:///rb?socket=$W/rb.sock"
  "$BIN" replica serve --dir "$W/r2" --size 4Gi --listen "127.0.0.1:$rp" 2>"$W/r2.log" &
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rp") 2>/dev/null && break; sleep 0.1; done
  drop_caches; t0=$(date +%s.%N)
  "$BIN" engine replica add "127.0.0.1:$rp" --control "127.0.0.1:$cp_" >/dev/null
  t1=$(date +%s.%N)
  kill -TERM $eng; wait $eng || true
  mkdir "$W/cp"; drop_caches; t2=$(date +%s.%N)
  cp --sparse=always "$W"/r1/volume-* "$W/cp/"; sync
  t3=$(date +%s.%N)
  echo "== rebuild of a fully written 4 GiB replica"
  printf 'rebuild %.2f s, cp --sparse=always + sync %.2f s: speed %.2fx of cp (target >= 0.8x)\n' \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t3 - $t2" | bc)" "$(echo "($t3 - $t2) / ($t1 - $t0)" | bc -l)"
fi

echo "== idle: engine + 3 replicas, 30 s without I/O"
I=$(mktemp -d /tmp/ironhorn-idle.XXXXXX)
bench/engine-candidate.sh mixed3 "$I/i.sock" "$I" 1G &
cand=$!
for _ in $(seq 100); do [ -S "$I/i.sock" ] && break; sleep 0.1; done
pids=$(pgrep -P "$cand" | tr '\n' ' ')
ticks() { for p in $pids; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc; }
a=$(ticks); sleep 30; b=$(ticks)
kill -TERM "$cand"; wait "$cand" || true; rm -rf "$I"
printf 'CPU: %d ticks of 10 ms in 30 s = %.3f%% of one core (target < 0.5%%)\n' "$((b - a))" "$(echo "($b - $a) / 30" | bc -l)"
