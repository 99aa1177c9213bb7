#!/usr/bin/env bash
# Issue 13: DuoTok's ablations (the paper's §5), each a variant of duotok-small's stages 2-3 from the same
# stage-1 (or stage-2) export, with the same configs and budgets; only the named option differs (and for
# no-mss what depends on the head):
#   no-noise     stage 2 without feature-replacement noise (duotok.noise_prob=0), then stage 3
#   no-mss       stage 2 without the source-separation head (duotok.mss_weight=0), then stage 3 without the
#                quarter of self-separated inputs (duotok.separated_share=0): they come from that head, which is
#                untrained here, so "no MSS" necessarily means no separated inputs either
#   no-symbolic  stages 2 and 3 without the score head (duotok.symbolic_weight=0)
#   no-freeze    stage 3 with the encoder trained too (duotok.freeze_encoder=false), from duotok-small's stage 2
# Token predictability needs only stage 3 (the tokens); no stage 4 is trained. Each ≈ 25 min on a quiet 2-core
# CPU (no-freeze ≈ 20). Runs go to runs/duotok-small-<ablation>-stage{2,3}; restartable at any time
# (scripts/lib/stage_runs.sh). Then score them against duotok-small's stage 3 under one LM protocol (the
# ablation claims are judged on parallel cnBPT and Mel distance, so the track-to-track LM is skipped):
#   musictok bench --dual --no-track-to-track --name duotok-ablations-s0 \
#     --tokenizers runs/duotok-small-stage3/export,runs/duotok-small-no-noise-stage3/export,...
#   nohup scripts/duotok_ablations.sh > runs/duotok-ablations.log 2>&1 &
# Arguments: the ablations to run (default: all four, in the order above). Environment: MUSICTOK, PYTHON (see
# the library), PREFIX (default duotok-small: its configs and runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/stage_runs.sh
PREFIX=${PREFIX:-duotok-small}
ABLATIONS=("$@")
[ ${#ABLATIONS[@]} -gt 0 ] || ABLATIONS=(no-noise no-mss no-symbolic no-freeze)
S1=runs/$PREFIX-stage1/export
S2=runs/$PREFIX-stage2/export
for n in 1 2; do  # never start from a mid-run snapshot
  finished "runs/$PREFIX-stage$n" "$(steps_of "configs/$PREFIX-stage$n.yaml")" || {
    echo "runs/$PREFIX-stage$n has not finished; run scripts/duotok_small.sh first" >&2; exit 1; }
done
for a in "${ABLATIONS[@]}"; do
  out=runs/$PREFIX-$a
  case $a in
    no-noise)    set2=(--set duotok.noise_prob=0);      set3=() ;;
    no-mss)      set2=(--set duotok.mss_weight=0);      set3=(--set duotok.separated_share=0) ;;
    no-symbolic) set2=(--set duotok.symbolic_weight=0); set3=(--set duotok.symbolic_weight=0) ;;
    no-freeze)   set2=();                               set3=(--set duotok.freeze_encoder=false) ;;
    *) echo "$a: not an ablation (no-noise, no-mss, no-symbolic, no-freeze)" >&2; exit 2 ;;
  esac
  if [ ${#set2[@]} -gt 0 ]; then
    run_stage "configs/$PREFIX-stage2.yaml" "$out-stage2" --init-from "$S1" "${set2[@]}"
    from=$out-stage2/export
  else
    from=$S2
  fi
  run_stage "configs/$PREFIX-stage3.yaml" "$out-stage3" --init-from "$from" ${set3[@]+"${set3[@]}"}
done
