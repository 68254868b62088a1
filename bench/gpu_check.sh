#!/usr/bin/env bash
# One device call for the fused kernels' figures (issue 18), prepared without a GPU:
#   bash bench/gpu_check.sh        (on the lent machine, from the checkout; $OUT: where to write)
# About 8 minutes on an H100: the triton tests on CUDA, the kernels' timings, compile time
# and speed by model shape (both kernels), and workloads (c) and (d) of bench/run.py.
# Each step has its own time limit, so one stuck step leaves the others' figures.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
source bench/gpu_env.sh
step() {    # step NAME SECONDS COMMAND...: runs it, its output in $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - start)) s"
}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
step tests 240 python3 -P -m pytest -q -x tests/test_triton_backend.py tests/test_architectures.py
step kernels 90 python3 bench/kernels.py --skip-torch-func --json "$OUT/kernels.json"
step sizes 180 python3 bench/sizes.py --timeout 40 --shape '[16]' --shape '[8,8]' \
    --shape '[16,16]' --shape '[32,32]' --shape '[64,64]'
step run 240 python3 bench/run.py --workload d --workload c --out "$OUT"
tail -n 3 "$OUT"/*.txt
