#!/usr/bin/env bash
# Benchmarks for `ironhorn recover` (issue #2), same machine, same run:
#  1. export of a 4 GiB volume whose data is spread over 4 fully allocated layers, against
#     `qemu-img convert -O raw` of a flat raw file with the same content (cold cache each run);
#  2. opening a replica with 200 snapshot layers holding 1 GiB (`recover inspect`);
#  3. memory: peak RSS of the export, and the sector map's size (1 byte per 4 KiB sector).
# Usage: bench/recover.sh [REPEATS]   (env: SIZE, WORK)
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
SIZE=${SIZE:-$((4 << 30))}
WORK=${WORK:-$(mktemp -d /var/tmp/ironhorn-bench.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

cargo build --release --locked -q -p ironhorn
BIN=$PWD/target/release/ironhorn
command -v qemu-img >/dev/null || { echo "qemu-img missing (apt-get install qemu-utils)" >&2; exit 1; }

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
now() { date +%s.%N; }

echo "preparing a $((SIZE >> 20)) MiB volume over 4 layers in $WORK ..."
python3 bench/make_replica.py layers "$WORK/vol-4layers-00000000" "$WORK/flat.raw" "$SIZE" 4 $((4 << 20))
sha_flat=$(sha256sum "$WORK/flat.raw" | cut -d' ' -f1)

ours=(); peer=()
for i in $(seq "$REPEATS"); do
  rm -f "$WORK/out-ours.raw" "$WORK/out-peer.raw"
  drop_caches; t0=$(now)
  qemu-img convert -O raw "$WORK/flat.raw" "$WORK/out-peer.raw"; sync
  t1=$(now); peer+=("$(echo "$t1 - $t0" | bc -l)")
  drop_caches; t0=$(now)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$BIN" recover export "$WORK/vol-4layers-00000000" -o "$WORK/out-ours.raw" 2>/dev/null; sync
  t1=$(now); ours+=("$(echo "$t1 - $t0" | bc -l)")
done
sha_ours=$(sha256sum "$WORK/out-ours.raw" | cut -d' ' -f1)
[ "$sha_ours" = "$sha_flat" ] || { echo "export differs from the flat file!" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_ours=$(median "${ours[@]}"); m_peer=$(median "${peer[@]}")
rss_kib=$(cat "$WORK/rss")
rm -f "$WORK/out-ours.raw" "$WORK/out-peer.raw" "$WORK/flat.raw"
rm -rf "$WORK/vol-4layers-00000000"

echo "preparing 200 layers holding 1 GiB ..."
python3 bench/make_replica.py many "$WORK/vol-200layers-00000000" $((8 << 30)) 200 $((1 << 30))
opens=()
for i in $(seq "$REPEATS"); do
  drop_caches; t0=$(now); "$BIN" recover inspect "$WORK/vol-200layers-00000000" --json >/dev/null; t1=$(now)
  opens+=("$(echo "$t1 - $t0" | bc -l)")
done
m_open=$(median "${opens[@]}")

printf '\n| measurement | ironhorn | peer | ratio / target |\n|---|---|---|---|\n'
printf '| export %d MiB over 4 layers, s (median of %d, cold cache) | %.2f | qemu-img convert %.2f | %.2fx (target <= 1.2x) |\n' \
  $((SIZE >> 20)) "$REPEATS" "$m_ours" "$m_peer" "$(echo "$m_ours / $m_peer" | bc -l)"
printf '| open 200 layers / 1 GiB data, s (inspect, median of %d, cold cache) | %.3f | - | target < 1 s |\n' "$REPEATS" "$m_open"
printf '| export peak RSS, MiB | %.1f | - | map: %d KiB (1 byte per 4 KiB sector) |\n' \
  "$(echo "$rss_kib / 1024" | bc -l)" $((SIZE / 4096 / 1024))
