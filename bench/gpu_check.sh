#!/usr/bin/env bash
# One device call for the fused kernels' figures (issue 18), prepared without a GPU:
#   bash bench/gpu_check.sh        (on the lent machine, from the checkout; $OUT: where to write)
# About 8 minutes on an H100, inside one 600 s device call: the triton tests on CUDA (the
# kernels' several lanes per run and shuffled copies run on hardware for the first time
# there), the kernels' timings (mlp_10k and mlp_1k by lanes per run, line_scale: shuffled
# runs), workload (d) of bench/run.py, and compile time and speed by model shape.
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
step tests 200 python3 -P -m pytest -q -x tests/test_triton_backend.py tests/test_architectures.py
step kernels 150 python3 bench/kernels.py --skip-torch-func --json "$OUT/kernels.json"
step run 130 python3 bench/run.py --workload d --out "$OUT"
step sizes 90 python3 bench/sizes.py --timeout 25 --shape '[16,16]' --shape '[32,32]' \
    --shape '[64,64]'
tail -n 3 "$OUT"/*.txt
