# Shared by scripts/duotok_small.sh, scripts/duotok_ablations.sh and scripts/separation.sh (source it): run
# one training so that the chain can be started again at any time — a run that finished all its steps (or spent
# its wall-time budget, train.budget_minutes) is skipped, an interrupted one resumes from its last checkpoint
# (exactly), and a run that did not finish stops the chain (its export is a mid-run snapshot the next stage must
# not start from).
# Environment: MUSICTOK (the command, default .venv/bin/musictok), PYTHON (default .venv/bin/python), KIND (what
# `musictok train` trains, default tokenizer), STEPS (steps instead of the config's, passed as --steps).
read -r -a MT <<< "${MUSICTOK:-.venv/bin/musictok}"
PY=${PYTHON:-.venv/bin/python}

steps_of() {  # train.steps of a config
  "$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["train"]["steps"])' "$1"
}

# finished OUT STEPS: the run in OUT reached step STEPS or spent its wall-time budget (train.budget_minutes); an
# interrupted run writes summary.json too, at an earlier step and with another stop_reason
finished() {
  "$PY" - "$1/summary.json" "$2" <<'PYEOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if s.get("end_step") == int(sys.argv[2]) or s.get("stop_reason") == "budget" else 1)
PYEOF
}

run_stage() {  # run_stage CONFIG OUT [`musictok train $KIND` options, e.g. --init-from DIR --set key=value]
  local config=$1 out=$2 steps
  shift 2
  [ -f "$config" ] || { echo "$config: no such config" >&2; return 2; }
  steps=${STEPS:-$(steps_of "$config")}
  if finished "$out" "$steps"; then echo "$out: done ($steps steps)"; return 0; fi
  local opts=("$@"); [ -f "$out/checkpoint.pt" ] && opts+=(--resume)
  [ -n "${STEPS:-}" ] && opts+=(--steps "$STEPS")
  echo "$(date +%H:%M) $out: $steps steps${opts[*]:+ ${opts[*]}}"
  "${MT[@]}" train "${KIND:-tokenizer}" --config "$config" --out "$out" ${opts[@]+"${opts[@]}"}
  if ! finished "$out" "$steps"; then
    echo "$out: stopped before step $steps; run this script again to resume it" >&2
    return 1
  fi
  echo "$(date +%H:%M) $out: done"
}
