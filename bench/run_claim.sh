#!/usr/bin/env bash
# Issue 12's claim run: Manydepth, Manydepth2-NF, Manydepth2 (exact flow; the flow network trained here with
# FLOW_WEIGHTS set) and Manydepth2 + Dyna-DM, the same budget, training seeds 1-3 (seed-major, so a cut-off sweep
# still covers every method), held-out seeds 2000-2003, random initialisation. Resumable: rerun the same command
# and every run continues from its last evaluation point (runs/claim/<method>_<seed>_<steps>/); each evaluation
# point is merged into docs/results/claim.json with the step it reached.
#   bash bench/run_claim.sh                       # STEPS=1000 SEEDS="1 2 3" JOBS=6 EVAL_EVERY=100 by default
#   FLOW_WEIGHTS=runs/flow_raft_small/flow.pth bash bench/run_claim.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-1000}
SEEDS=${SEEDS:-1 2 3}
EVAL_EVERY=${EVAL_EVERY:-100}
JOBS=${JOBS:-6}  # every method of a seed at once: a sweep cut off leaves them all at the same step
METHODS=(manydepth manydepth2_nf manydepth2_oracle_flow manydepth2_oracle_flow_dyna_dm
         manydepth2_oracle_flow_dyna_dm_sizes)
EXTRA=()
if [ -n "${FLOW_WEIGHTS:-}" ]; then
  METHODS+=(manydepth2_flow_net)
  EXTRA=(--flow-weights "$FLOW_WEIGHTS" --flow-backend raft_small)
fi
if [ -n "${ONLY:-}" ]; then read -r -a METHODS <<< "$ONLY"; fi
for seed in $SEEDS; do
  "$PY" bench/bench_manydepth2.py --part claim --methods "${METHODS[@]}" --seeds "$seed" --steps "$STEPS" \
    --eval-every "$EVAL_EVERY" --jobs "$JOBS" --threads 1 --train-sequences 8 --frames-per-sequence 30 \
    --test-seeds 2000-2003 --test-stride 3 --claim-json docs/results/claim.json --run-root runs/claim --resume \
    --results "bench/results/claim_seed$seed.json" "${EXTRA[@]}"
done
