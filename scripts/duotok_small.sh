#!/usr/bin/env bash
# Issue 13: the four stages of duotok-small (configs/duotok-small-stage{1..4}.yaml, ≈ 150 min on this 2-core
# CPU; each config's header has its budget), one after the other: stage n starts from stage n - 1's export.
# It can be started again at any time: a stage that finished all its steps is skipped, an interrupted one
# resumes from its last checkpoint (exactly), and a stage that did not finish stops the chain (its export
# is a mid-run snapshot the next stage must not start from).
#   nohup scripts/duotok_small.sh > runs/duotok-small.log 2>&1 &
#   nohup scripts/duotok_small.sh stage3 stage4 4096-stage3 4096-stage4 > runs/duotok-small-4096.log 2>&1 &
# Arguments: the runs to make, named by their config's suffix (default: stage1 … stage4; the 4,096-code
# variant, 4096-stage3 and 4096-stage4, starts from the same stage-2 export). Environment: MUSICTOK (the
# command, default .venv/bin/musictok), PYTHON (default .venv/bin/python), PREFIX (default duotok-small).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a MT <<< "${MUSICTOK:-.venv/bin/musictok}"
PY=${PYTHON:-.venv/bin/python}
PREFIX=${PREFIX:-duotok-small}
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(stage1 stage2 stage3 stage4)

steps_of() {  # train.steps of a config
  "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["train"]["steps"])' "$1"
}

finished() {  # the run in $1 reached step $2 (an interrupted run writes summary.json too, at an earlier step)
  "$PY" - "$1/summary.json" "$2" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if s.get("end_step") == int(sys.argv[2]) else 1)
EOF
}

for run in "${RUNS[@]}"; do
  config=configs/${PREFIX}-${run}.yaml
  out=runs/${PREFIX}-${run}
  [ -f "$config" ] || { echo "$config: no such config" >&2; exit 2; }
  steps=$(steps_of "$config")
  if finished "$out" "$steps"; then echo "$out: done ($steps steps)"; continue; fi
  resume=(); [ -f "$out/checkpoint.pt" ] && resume=(--resume)
  echo "$(date +%H:%M) $out: $steps steps ${resume[*]}"
  "${MT[@]}" train tokenizer --config "$config" --out "$out" "${resume[@]}"
  if ! finished "$out" "$steps"; then
    echo "$out: stopped before step $steps; run this script again to resume it" >&2
    exit 1
  fi
  echo "$(date +%H:%M) $out: done"
done
