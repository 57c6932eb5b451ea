#!/usr/bin/env bash
# The CSI benchmark on a release build (needs root, /dev/fuse and loop devices):
# CreateVolume → ControllerPublish → NodeStage (xfs) over 50 volumes (target: p50 under 2 s),
# and 100 concurrent CreateVolume calls (target: all succeed, no duplicate volume).
# Usage: bench/csi.sh [VOLUMES] [CONCURRENT]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ironhorn --example csi_bench -p ironhorn -p ironhorn-csi
exec target/release/examples/csi_bench target/release/ironhorn "${1:-50}" "${2:-100}"
