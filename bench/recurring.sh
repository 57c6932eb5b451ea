#!/usr/bin/env bash
# The recurring-job runner with 1,000 volumes bound to the seed's three jobs: its idle CPU
# over 65 s (target: under 1% of a core), and a run due for all 1,000 with concurrency 10
# (target: at most 10 at a time). In-process, on a release build, against a real store; the
# node agent is a stand-in HTTP server answering snapshot listings after 20 ms.
# Usage: bench/recurring.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release -p ironhorn-manager --lib recurring::tests::bench_a_thousand_volumes -- --ignored --nocapture
