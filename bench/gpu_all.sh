#!/usr/bin/env bash
# Everything this project measures on a lent GPU, in one command that ends within GPU_ALL_SECONDS (default 560 s):
#   1. bench/gpu.sh: frames/s of the inference configurations (issue 13), start no configuration after
#      GPU_BENCH_BUDGET_S;
#   2. the claim sweep (issue 12): Manydepth, Manydepth2-NF, Manydepth2 with exact flow, with the RAFT-small flow
#      network trained here (runs/flow_raft_small/flow.pth, when present) and Manydepth2 + Dyna-DM, training seeds
#      1-3, all runs at once on the GPU (one process each), held-out scores every 200 steps merged into
#      claim_gpu.json as they come; stopped at its deadline (what each run reached is kept, with its step);
#   3. the theta filter (issue 16) with every run's last checkpoint, one CPU process per run, until the deadline.
# Results in $OUT (the device tool's output folder; else bench/results/gpu_all): gpu.json, claim_gpu.json,
# theta_gpu.tar.gz (one JSON per run), logs.tar.gz. Pure Python mgdepth_core on PYTHONPATH, no ROS; kornia
# travels as wheels in .whl (see docs/training.md). Check it here with:
#   GPU_ALL_SECONDS=240 SWEEP_STEPS=4 SWEEP_EVERY=2 SWEEP_METHODS="manydepth manydepth2_nf" SWEEP_SEEDS=1 \
#   DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_all.sh --tiny
# (extra arguments go to bench/gpu.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_all}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
START=$(date +%s)
END=$((START + ${GPU_ALL_SECONDS:-560}))
THETA_S=${THETA_S:-120}
SWEEP_STEPS=${SWEEP_STEPS:-5000}
SWEEP_EVERY=${SWEEP_EVERY:-200}
SWEEP_SEEDS=${SWEEP_SEEDS:-1-3}
SWEEP_METHODS=${SWEEP_METHODS:-manydepth manydepth2_nf manydepth2_oracle_flow manydepth2_flow_net manydepth2_oracle_flow_dyna_dm}
FLOW_WEIGHTS=runs/flow_raft_small/flow.pth
RUNS=$(mktemp -d)
mkdir -p "$OUT" "$RUNS/claim" "$RUNS/theta" "$RUNS/logs"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# run_until DEADLINE COMMAND...: run COMMAND in a process group of its own; at DEADLINE (epoch s) stop the group
run_until() {
    local deadline=$1
    shift
    setsid "$@" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "[gpu_all] deadline: stopping $*"
        kill -TERM -- "-$pid" 2>/dev/null
        sleep 5
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    wait "$pid"
}

pack() {  # everything so far into $OUT (at most 8 files come back)
    tar -czf "$OUT/theta_gpu.tar.gz" -C "$RUNS/theta" . 2>/dev/null
    find "$RUNS/claim" -name claim_progress.json -printf '%P\n' | tar -czf "$RUNS/logs/progress.tar.gz" -C "$RUNS/claim" -T -
    tar -czf "$OUT/logs.tar.gz" -C "$RUNS/logs" .
}

echo "[gpu_all] $(date -u +%FT%TZ) device $DEVICE; $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")')"
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader 2>/dev/null

echo "[gpu_all] 1. inference benchmark"
run_until $((START + ${GPU_BENCH_S:-120})) bash bench/gpu.sh --out "$OUT" --device "$DEVICE" \
    --budget-s "${GPU_BENCH_BUDGET_S:-75}" "$@" > "$RUNS/logs/gpu_bench.log" 2>&1
tail -n 25 "$RUNS/logs/gpu_bench.log"

echo "[gpu_all] 2. claim sweep until $((END - THETA_S - START)) s"
methods=$SWEEP_METHODS
flow_args=()
if [ -f "$FLOW_WEIGHTS" ]; then
    flow_args=(--flow-weights "$FLOW_WEIGHTS" --flow-backend raft_small)
else
    methods=${methods//manydepth2_flow_net/}
    echo "[gpu_all] $FLOW_WEIGHTS absent: manydepth2_flow_net left out"
fi
read -ra method_list <<< "$methods"
jobs=$(( ${#method_list[@]} * 3 ))
run_until $((END - THETA_S)) "$PY" bench/bench_manydepth2.py --part claim --device "$DEVICE" \
    --methods "${method_list[@]}" --seeds "$SWEEP_SEEDS" --steps "$SWEEP_STEPS" --eval-every "$SWEEP_EVERY" \
    --jobs "$jobs" --threads 1 --train-sequences 8 --frames-per-sequence 30 --test-seeds 2000-2003 --test-stride 3 \
    --claim-json "$OUT/claim_gpu.json" --run-root "$RUNS/claim" "${flow_args[@]}" > "$RUNS/logs/claim.log" 2>&1
grep -E "step [0-9]+:" "$RUNS/logs/claim.log" | tail -n 20
pack

echo "[gpu_all] 3. theta filter with each run's last checkpoint until $((END - START)) s"
for run in "$RUNS"/claim/*/; do
    [ -d "$run/models" ] || continue
    name=$(basename "$run")
    run_until $((END - 5)) "$PY" bench/bench_theta_filter.py --runs "$run" --threads 1 --skip-true-geometry \
        --remedies own,pose,forward ground_contact,photometric,both \
        --results "$RUNS/theta/$name.json" > "$RUNS/logs/theta_$name.log" 2>&1 &
done
wait
pack
echo "[gpu_all] done in $(( $(date +%s) - START )) s; $OUT:"
ls -la "$OUT"
