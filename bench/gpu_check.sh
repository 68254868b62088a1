#!/usr/bin/env bash
# The fused kernels on a lent GPU, prepared without one: two device calls of about 220 s
# each, so that both fit in a session's 15 minutes with the machine's start and time to
# rerun one (issue 30; kernels/NOTES.md says which call answers which question).
#   bash bench/gpu_check.sh tests     # (a) are the kernels right on hardware?
#   bash bench/gpu_check.sh timings   # (b) how fast are they?
# Run from the checkout on the lent machine; $OUT is where the figures go. Every step runs
# under `timeout -s INT`: pytest and the benchmarks stop at the interrupt and still print
# what they have (pytest its summary line, bench/kernels.py its table), and each call ends
# with $OUT/summary.txt.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
source bench/gpu_env.sh
step() {    # step NAME SECONDS COMMAND...: runs it, its output in $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout -s INT -k 15 "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}
T=tests/test_triton_backend.py
case "${1:-}" in
tests)
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
    # What never ran on hardware, most important first (pytest keeps this order): the
    # issue-30 fixes, lanes per run (v5), the shuffled copies (v6), the wide kernel (v2);
    # then the older kernel tests while time is left. Not the compile, SASS and
    # specialization tests: they need no GPU and run in CI.
    step tests 200 python3 -P -m pytest -q -rfE --durations=20 -p no:cacheprovider \
        "$T::test_the_lanes_of_a_run_end_with_bitwise_identical_state" \
        "$T::test_curve_offsets_are_int64_past_2_31" \
        "$T::test_order_kernel_matches_the_reference_permutations" \
        "$T::test_the_order_kernel_loops_when_rows_pass_the_grid_limit" \
        "$T::test_lanes_per_run_change_nothing_but_rounding" \
        "$T::test_long_intervals_are_split_when_shuffled_copies_would_not_fit" \
        "$T::test_the_wide_kernel_trains_the_mixed_sweep" \
        "$T::test_two_hidden_layers_of_64_train_on_the_triton_backend" \
        "$T::test_lanes_per_run_are_chosen_from_the_whole_sweep" \
        "$T::test_optimizer_settings_and_schedules_match" \
        "$T::test_k_outputs_match_the_reference" \
        "$T::test_diverging_runs_are_flagged_and_isolated" \
        "$T::test_mixed_sweep_matches_reference"
    tail -n 25 "$OUT/tests.txt" >> "$OUT/summary.txt"
    ;;
timings)
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
    # the lane kernel: mlp_10k and mlp_1k by lanes per run, line_100k, line_scale
    # (shuffled copies); then workload (d), the wide kernel with its barriers
    step kernels 140 python3 bench/kernels.py --skip-torch-func --json "$OUT/kernels.json"
    step run 75 python3 bench/run.py --workload d --repeats 2 --out "$OUT"
    tail -n 14 "$OUT/kernels.txt" "$OUT/run.txt" >> "$OUT/summary.txt"
    ;;
*)
    echo "usage: bash bench/gpu_check.sh tests|timings" >&2
    exit 2
    ;;
esac
cat "$OUT/summary.txt"
