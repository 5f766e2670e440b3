#!/usr/bin/env bash
# Runs the benchmarks (optimized build) and prints their figures:
#   scripts/bench.sh            every benchmark
#   scripts/bench.sh lifecycle  one of benches/*.rs
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ $# -eq 0 ]; then
  cargo bench --locked
else
  for bench in "$@"; do cargo bench --locked --bench "$bench"; done
fi
