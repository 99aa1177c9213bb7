#!/usr/bin/env bash
# Issue 12, part 4: rvq-dac-small against rvq-dac-mmd-small under one budget — 2,000 steps each, seeds 1 and 2.
# A seed sets the codec's initial weights, the k-means picks of its codebook init and its quantizer-dropout draws
# (model.seed: RVQCodec builds itself under it), the trainer's random stream (train.seed: the MMD term's halves
# and shuffles) and the data order (data.seed). The two codecs of one seed start from the same weights and see
# the same clips; only the MMD weight differs.
# Runs one after the other (one training at a time on 2 cores) and can be started again at any time: a run
# with a finished summary is skipped, an interrupted one resumes from its last checkpoint — unless its export
# says its model was built with another seed (e.g. a run started before this script set model.seed): then the
# script stops and says which folder to delete.
#   nohup scripts/rvq_seed_study.sh > runs/rvq-seed-study.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2000}

# The model seed a run folder's export records (config.json: config.seed), or nothing when it has no export.
exported_model_seed() {
  local meta=$1/export/config.json
  [ -f "$meta" ] || return 0
  .venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"].get("seed", 0))' "$meta"
}

# Stop before skipping or resuming a run folder whose model was not built with the requested seed.
check_model_seed() {
  local out=$1 seed=$2 found
  [ -f "$out/checkpoint.pt" ] || [ -f "$out/summary.json" ] || return 0
  found=$(exported_model_seed "$out")
  if [ -z "$found" ]; then
    echo "$out: holds a training but no export/config.json, so its model seed cannot be checked;" \
         "delete the folder (rm -r $out) and start this script again" >&2
    exit 1
  fi
  if [ "$found" != "$seed" ]; then
    echo "$out: its model was built with model seed $found, not $seed (started before this script set" \
         "model.seed?); continuing would pass it off as seed $seed. Delete the folder (rm -r $out) and start" \
         "this script again" >&2
    exit 1
  fi
}

for seed in 1 2; do
  for codec in rvq-dac-small rvq-dac-mmd-small; do
    out=runs/seeds/${codec}-s${seed}
    check_model_seed "$out" "$seed"
    if [ -f "$out/summary.json" ]; then echo "$out: done"; continue; fi
    resume=(); [ -f "$out/checkpoint.pt" ] && resume=(--resume)
    echo "$(date +%H:%M) $out ${resume[*]}"
    .venv/bin/musictok train tokenizer --config "configs/${codec}.yaml" --out "$out" --steps "$STEPS" \
      --set model.seed=$seed --set train.seed=$seed --set data.seed=$seed --set train.valid_every=1000 "${resume[@]}"
  done
done
