#!/usr/bin/env bash
# Issue 13: the four stages of duotok-small (configs/duotok-small-stage{1..4}.yaml, ≈ 150 min on this 2-core
# CPU under load, 70–80 min on a quiet one; each config's header has its budget), one after the other: stage
# n starts from stage n - 1's export. It can be started again at any time (scripts/lib/stage_runs.sh).
#   nohup scripts/duotok_small.sh > runs/duotok-small.log 2>&1 &
#   nohup scripts/duotok_small.sh stage3 stage4 4096-stage3 4096-stage4 > runs/duotok-small-4096.log 2>&1 &
# Arguments: the runs to make, named by their config's suffix (default: stage1 … stage4; the 4,096-code
# variant, 4096-stage3 and 4096-stage4, starts from the same stage-2 export). Environment: MUSICTOK, PYTHON
# (see the library), PREFIX (default duotok-small).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/stage_runs.sh
PREFIX=${PREFIX:-duotok-small}
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(stage1 stage2 stage3 stage4)
for run in "${RUNS[@]}"; do
  run_stage "configs/${PREFIX}-${run}.yaml" "runs/${PREFIX}-${run}"
done
