#!/usr/bin/env bash
# Starts an Ironhorn volume for ../shared/bench/baseline.sh's CANDIDATE_CMD and stays in the
# foreground; SIGTERM stops the engine and its replica servers.
#   engine-candidate.sh MODE SOCK DIR SIZE
# MODE: local1 (one in-process replica, file:DIR), tcp1 (one replica server over TCP),
#       mixed3 (one in-process + two replica servers over TCP: a 3-node volume on one disk)
# POLL_WINDOW=0 (or a duration) passes --poll-window to the engine and the replica servers.
set -euo pipefail
mode=$1 sock=$2 dir=$3
size=$(numfmt --from=iec "$4")   # baseline.sh sizes are truncate-style (1G = 1 GiB)
bin=${IRONHORN_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/ironhorn}
pids=()
poll=(${POLL_WINDOW:+--poll-window "$POLL_WINDOW"})
# The engine first (it flushes and closes), then the replica servers.
stop() {
  kill -TERM "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true
  kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
replicas=()
server() {   # server NAME: starts a replica server, appends it to replicas
  local p; p=$(port)
  "$bin" replica serve --dir "$dir/$1" --size "$size" --listen "127.0.0.1:$p" "${poll[@]}" >/dev/null 2>>"$dir/replicas.log" &
  pids+=($!)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.05; done
  replicas+=(--replica "127.0.0.1:$p")
}
case $mode in
  local1) replicas=(--replica "file:$dir/r1") ;;
  tcp1) server r2 ;;
  mixed3) replicas=(--replica "file:$dir/r1"); server r2; server r3 ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"$bin" engine serve --volume bench --size "$size" "${replicas[@]}" --nbd "unix:$sock" \
  --control "127.0.0.1:$(port)" "${poll[@]}" 2>>"$dir/engine.log" &
pids+=($!)
wait "${pids[-1]}"
