#!/usr/bin/env bash
# Issue 14: the LM separator and its discriminative baseline under one budget, then the LM separator's
# ablations under a smaller one, one training after the other (2 cores: never two at once):
#   1. sep-lm-small and sep-mask-small, 100 minutes each (configs/sep-{lm,mask}-small.yaml: steps timed there,
#      train.budget_minutes: 100 — the wall time over resumes, after which a run ends as done);
#   2. the ablations, ABL_MINUTES each (default 30): the LM separator as configured (the reference at this
#      budget), independent per-stem generation (model.mode=independent), a frozen pretrained encoder (the
#      tokenizer's own code embeddings of the mixture's tokens through a learned 1×1 adapter, no Conformer
#      layer: encoder_input=tokens, encoder_layers=0, freeze_encoder=true) and another tokenizer
#      (rvq-dac-small). Each variant gets the same wall time (train.budget_minutes=ABL_MINUTES) and the steps
#      that fill it, from timing 20 of its steps on this machine first, once the machine is quiet (wall time of
#      steps 5-19 from the log, data loading included); the number is kept in runs/sep-abl-<name>/budget_steps
#      so a resumed run keeps it.
# Decoding ablations (greedy / sampled / best of N by mixture consistency) need no training:
# benchmarks/separation.py scores them. Score each budget on its own, so that no comparison mixes budgets:
#   .venv/bin/python benchmarks/separation.py --separator lm=runs/sep-lm-small/export \
#       --separator mask=runs/sep-mask-small/export
#   .venv/bin/python benchmarks/separation.py --name separation-ablations --best-of 0 \
#       --separator sequential=runs/sep-abl-reference/export --separator independent=runs/sep-abl-independent/export \
#       --separator frozen-tokens=runs/sep-abl-frozen-tokens/export --separator rvq-dac=runs/sep-abl-rvq-dac/export
#   nohup scripts/separation.sh > runs/separation.log 2>&1 &
# Restartable at any time (scripts/lib/stage_runs.sh): finished runs are skipped, interrupted ones resume.
# Arguments: main, ablations or both (default). Environment: ABL_MINUTES, MUSICTOK, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
export KIND=separator
source scripts/lib/stage_runs.sh
ABL_MINUTES=${ABL_MINUTES:-30}
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(main ablations)

wait_quiet() {  # until the one-minute load average is below 0.5 (at most 5 min): a timing run must not share the CPU
  local i
  for i in $(seq 30); do
    "$PY" -c 'import os, sys; sys.exit(os.getloadavg()[0] >= 0.5)' && return 0
    sleep 10
  done
  echo "warning: load average still $(cut -d' ' -f1 /proc/loadavg) after 5 min; timing anyway" >&2
}

budget_steps() {  # budget_steps OUT CONFIG [--set ...]: steps that fill ABL_MINUTES, timed once and kept in OUT
  local out=$1 config=$2 tmp
  shift 2
  if [ ! -f "$out/budget_steps" ]; then
    wait_quiet
    tmp=$(mktemp -d)
    "${MT[@]}" train separator --config "$config" --out "$tmp/t" --steps 20 --set train.log_every=1 \
      --set train.valid_every=1000 "$@" > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; rm -rf "$tmp"; return 1; }
    mkdir -p "$out"
    "$PY" - "$tmp/t/log.jsonl" "$ABL_MINUTES" > "$out/budget_steps.tmp" <<'PYEOF' || { rm -rf "$tmp" "$out/budget_steps.tmp"; return 1; }
import json, sys
rows = {r["step"]: r["time"] for r in map(json.loads, open(sys.argv[1])) if "time" in r}
sec = (rows[19] - rows[5]) / 14  # wall time a step, data loading included
print(int(float(sys.argv[2]) * 60 / sec))
PYEOF
    mv "$out/budget_steps.tmp" "$out/budget_steps"
    rm -rf "$tmp"
  fi
  cat "$out/budget_steps"
}

for part in "${PARTS[@]}"; do
  case $part in
    main)
      run_stage configs/sep-lm-small.yaml runs/sep-lm-small
      run_stage configs/sep-mask-small.yaml runs/sep-mask-small ;;
    ablations)
      for variant in reference independent frozen-tokens rvq-dac; do
        case $variant in
          reference)     sets=() ;;
          independent)   sets=(--set model.mode=independent) ;;
          frozen-tokens) sets=(--set model.encoder_input=tokens --set model.encoder_layers=0
                               --set model.freeze_encoder=true) ;;
          rvq-dac)       sets=(--set model.tokenizer=rvq-dac-small) ;;
        esac
        out=runs/sep-abl-$variant
        # (a failure inside $(...) does not stop the script by itself: check it, and the number)
        steps=$(budget_steps "$out" configs/sep-lm-small.yaml "${sets[@]+"${sets[@]}"}") || exit 1
        [[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "$out: no step budget from the timing run ($steps)" >&2; exit 1; }
        STEPS=$steps run_stage configs/sep-lm-small.yaml "$out" "${sets[@]+"${sets[@]}"}" --set train.budget_minutes="$ABL_MINUTES"
      done ;;
    *) echo "$part: expected main or ablations" >&2; exit 2 ;;
  esac
done
