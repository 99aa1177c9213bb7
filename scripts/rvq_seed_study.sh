#!/usr/bin/env bash
# Issue 12, part 4: rvq-dac-small against rvq-dac-mmd-small under one budget — 2,000 steps each, seeds 1 and 2
# (the seed sets model initialisation and the data order; the two codecs of one seed see the same clips).
# Runs one after the other (one training at a time on 2 cores) and can be started again at any time: a run
# with a finished summary is skipped, an interrupted one resumes from its last checkpoint.
#   nohup scripts/rvq_seed_study.sh > runs/rvq-seed-study.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2000}
for seed in 1 2; do
  for codec in rvq-dac-small rvq-dac-mmd-small; do
    out=runs/seeds/${codec}-s${seed}
    if [ -f "$out/summary.json" ]; then echo "$out: done"; continue; fi
    resume=(); [ -f "$out/checkpoint.pt" ] && resume=(--resume)
    echo "$(date +%H:%M) $out ${resume[*]}"
    .venv/bin/musictok train tokenizer --config "configs/${codec}.yaml" --out "$out" --steps "$STEPS" \
      --set train.seed=$seed --set data.seed=$seed --set train.valid_every=1000 "${resume[@]}"
  done
done
