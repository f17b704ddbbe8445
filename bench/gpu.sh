#!/usr/bin/env bash
# The whole GPU benchmark in one command, under 5 minutes on a datacenter GPU: bench/bench_gpu.py (frames/s of
# Manydepth2 with and without Mask R-CNN, float32/float16/bfloat16, eager/compiled/CUDA graphs) writes gpu.json
# into $OUT (the device tool's output folder), else bench/results; extra arguments go to bench_gpu.py
# (e.g. --out DIR, or --device cpu --tiny to check it on a CPU). Pure Python mgdepth_core on PYTHONPATH: needs
# torch, torchvision, timm, numpy, opencv and PyYAML, no ROS, nothing downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/bench_gpu.py --out "${OUT:-bench/results}" "$@"
