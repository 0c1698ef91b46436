#!/usr/bin/env bash
# GO-MACE (128x0e, spherical harmonics to L=3, r_max 6 Å) from 64 to 10,000 atoms of the built-in
# graphene-oxide slab, macelerate (default fused runtime and the unfused lever) beside mace-torch's MACECalculator,
# float32 (the model's own precision), every run in its own process. ~20 min on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
day=$(date -u +%Y-%m-%d)
macelerate bench ../shared/data/models/go_mace_tutorial/GO_10pct_MACE_swa.model \
  --system oxide-slab --atoms "${ATOMS:-64,512,1000,5000,10000}" --dtype float32 \
  --lever exact,unfused --repeats 3 --warmup 3 \
  --json "benchmarks/results/bench_go_mace_cpu_${day}.json" --markdown
