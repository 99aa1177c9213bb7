#!/usr/bin/env bash
# Issue 14: the LM separator and its discriminative baseline under one budget, then the LM separator's
# ablations under a smaller one, one training after the other (2 cores: never two at once):
#   1. sep-lm-small and sep-mask-small, 100 minutes each (configs/sep-{lm,mask}-small.yaml; steps timed there);
#   2. the ablations, ABL_MINUTES each (default 30): the LM separator as configured (the reference at this
#      budget), independent per-stem generation (model.mode=independent), a frozen pretrained encoder (the
#      tokenizer's own code embeddings of the mixture's tokens, no Conformer layer, nothing of the encoder
#      trained: encoder_input=tokens, encoder_layers=0, freeze_encoder=true) and another tokenizer
#      (rvq-dac-small). Each variant's steps come from timing 20 of its steps on this machine first (mean
#      of steps 5-19, the way the configs' budgets were set), so every variant gets the same wall time;
#      the number is kept in runs/sep-abl-<name>/budget_steps so a resumed run keeps it.
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

budget_steps() {  # budget_steps OUT CONFIG [--set ...]: steps that fill ABL_MINUTES, timed once and kept in OUT
  local out=$1 config=$2 tmp
  shift 2
  if [ ! -f "$out/budget_steps" ]; then
    tmp=$(mktemp -d)
    "${MT[@]}" train separator --config "$config" --out "$tmp/t" --steps 20 --set train.log_every=1 \
      --set train.valid_every=1000 "$@" > "$tmp/log" 2>&1 || { cat "$tmp/log" >&2; rm -rf "$tmp"; return 1; }
    mkdir -p "$out"
    "$PY" - "$tmp/t/log.jsonl" "$ABL_MINUTES" > "$out/budget_steps.tmp" <<'PYEOF' || { rm -rf "$tmp" "$out/budget_steps.tmp"; return 1; }
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
sec = statistics.fmean(r["sec_per_step"] for r in rows if "sec_per_step" in r and 5 <= r["step"] < 20)
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
        cap=$("$PY" -c "print(1.1 * $ABL_MINUTES)")
        # (a failure inside $(...) does not stop the script by itself: check it, and the number)
        steps=$(budget_steps "$out" configs/sep-lm-small.yaml "${sets[@]+"${sets[@]}"}") || exit 1
        [[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "$out: no step budget from the timing run ($steps)" >&2; exit 1; }
        STEPS=$steps run_stage configs/sep-lm-small.yaml "$out" "${sets[@]+"${sets[@]}"}" --set train.max_minutes="$cap"
      done ;;
    *) echo "$part: expected main or ablations" >&2; exit 2 ;;
  esac
done
