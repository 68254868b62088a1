"""The fused kernels' machine code for an H100, and the time it predicts, without a GPU.

    python bench/sass.py [--workloads b c d] [--wide] [--sizes] [--shape [12,12] ...]
                         [--inputs 300 ...] [--split N] [--json OUT]

For each workload of bench/run.py, the triton backend's kernel for its first group is
compiled for sm_90 (Triton's compiler and ptxas, which run on any machine), and cuobjdump
reads its registers, spills and SASS. The training loop over a batch's rows is the
innermost loop with the most instructions; its instructions per sample-step give two
predicted times, each over a peak the H100 measured (bench/results, `peaks`):

- issue: every instruction issued once per warp, at the FP32 pipe's rate (128 lanes a
  clock and SM: the schedulers' issue rate too), as if latency were hidden;
- sfu: the special-function instructions (MUFU) at their pipe's rate.

The larger is what the kernel could reach with enough warps to hide latency; the measured
time over it says how far latency keeps it (kernels/NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ["TRITON_INTERPRET"] = "0"      # compile, do not interpret
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="sass-")   # compile times: cold

H100 = HERE / "results" / "NVIDIA-H100-80GB-HBM3-2026-11-22.json"
WORKLOADS = {"b": "line_scale.yaml", "c": "mlp_10k.yaml", "d": "bn_mlp.yaml"}
INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
BRANCH = re.compile(r"\bBRA\s+(?:U?!?P\w+,\s*)?0x([0-9a-f]+)")


def kernel_of(key: str):
    """The triton backend's kernel, its constexprs and warps for the first group of a
    workload (or of a bench/sizes.py shape: "[16, 16]"), as the backend would launch it
    (the group loaded on the CPU, not trained)."""
    import torch

    from tinysweep.kernels import mlp, wide
    from tinysweep.trainer.backends import torch_backend, triton_backend
    from tinysweep.trainer.pipeline.sweep import prepare

    if key in WORKLOADS:
        config = HERE / "workloads" / WORKLOADS[key]
    elif key.startswith("inputs:"):
        config = inputs_config(int(key.split(":")[1]))
    else:
        from sizes import config_for
        config = config_for(json.loads(key))
    plan = prepare(config, backend="torch", device="cpu")
    chunk = plan.chunk
    rows = next(iter(torch_backend.group_rows(chunk)))
    group = triton_backend._TritonGroup(chunk, rows, torch.device("cpu"), chunk.empty_result(),
                                        None)
    group.load()
    if group.wide:
        return wide.train_wide_kernel, group.spec, triton_backend.WIDE_WARPS, chunk, group
    return mlp.train_kernel, group.spec, triton_backend.NUM_WARPS, chunk, group


def inputs_config(features: int) -> dict:
    """A linear model on ``features`` inputs (two blobs, one logit), swept as bench/sizes.py
    sweeps a shape: what a lane holds when the inputs are many (issue 30)."""
    return {"name": f"inputs_{features}",
            "data": {"source": "blobs", "params": {"n": 1000, "classes": 2,
                                                    "features": features}},
            "model": {"hidden": [], "loss": "bce_with_logits"},
            "train": {"epochs": 10, "optimizer": "adam", "batch_size": 100, "eval_every": 10},
            "sweep": {"params": {"lr": {"logspace": [-4, -1, 32]},
                                 "seed": {"linspace": [0, 31, 32], "int": True}}}}


def sass_of(fn, spec: dict, warps: int) -> tuple[str, str, float]:
    """SASS text, resource usage and compile seconds of ``fn`` for sm_90."""
    from compile_kernels import compile_for_h100
    import triton

    start = time.perf_counter()
    compiled = compile_for_h100(fn, spec, warps)
    seconds = time.perf_counter() - start
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([tools / "cuobjdump", "-sass", f.name], capture_output=True,
                              text=True, check=True).stdout
        usage = subprocess.run([tools / "cuobjdump", "-res-usage", f.name],
                               capture_output=True, text=True, check=True).stdout
    return sass, usage, seconds


def loops(sass: str) -> list[dict]:
    """The innermost loops (backward branches enclosing no other), each with its
    instruction count and the counts of a few opcodes."""
    index, ops, backs = {}, [], []
    for line in sass.splitlines():
        m = INSTRUCTION.search(line)
        if not m:
            continue
        address = int(m.group(1), 16)
        index[address] = len(ops)
        ops.append(m.group(3))
        b = BRANCH.search(line)
        if b and int(b.group(1), 16) < address:
            backs.append((int(b.group(1), 16), address))
    backs = [(index[s], index[e]) for s, e in backs if s in index]
    inner = [(s, e) for s, e in backs
             if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in backs)]
    out = []
    for s, e in inner:
        body = ops[s:e + 1]
        out.append({"start": s, "instructions": len(body),
                    "MUFU": sum(o.startswith("MUFU") for o in body),
                    "FFMA": sum(o.startswith("FFMA") for o in body),
                    "FMUL/FADD": sum(o.startswith(("FMUL", "FADD")) for o in body),
                    "LDG": sum(o.startswith("LDG") for o in body),
                    "LDS/STS": sum(o.startswith(("LDS", "STS")) for o in body)})
    return out


def predict(key: str, peaks: dict) -> dict:
    fn, spec, warps, chunk, group = kernel_of(key)
    sass, usage, seconds = sass_of(fn, spec, warps)
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    local = int(re.search(r"LOCAL:(\d+)", usage).group(1))
    found = loops(sass)
    row = max(found, key=lambda lp: lp["instructions"])
    runs = chunk.runs
    sample_steps = float((runs.epochs * chunk.data.n_train).sum())
    if group.wide:      # a program's warps each run the body once per tile of BLOCK_M rows
        per_step = row["instructions"] * warps / spec["BLOCK_M"]
        sfu_per_step = row["MUFU"] * warps / spec["BLOCK_M"]
    else:               # a warp's instruction serves 32 lanes, one row each
        per_step = row["instructions"] / 32 / spec["UNROLL"]
        sfu_per_step = row["MUFU"] / 32 / spec["UNROLL"]
    issue_rate = peaks["fp32_per_s"] / 32           # warp instructions a second
    sfu_rate = peaks["sfu_per_s"] / 32
    return {
        "workload": key, "kernel": fn.__name__, "runs": len(runs), "warps": warps,
        "split": group.split,
        "registers": regs, "local_bytes": local, "compile_s": round(seconds, 1),
        "sass_instructions": sum(1 for _ in INSTRUCTION.finditer(sass)),
        "row_loop": row, "innermost_loops": found,
        "warp_instructions_per_sample_step": per_step,
        "sample_steps": sample_steps,
        "predicted_issue_s": sample_steps * per_step / issue_rate,
        "predicted_sfu_s": sample_steps * sfu_per_step / sfu_rate,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--wide", action="store_true",
                        help="every model through the wide kernel (one program per run)")
    parser.add_argument("--sizes", action="store_true",
                        help="bench/sizes.py's model shapes instead of the workloads")
    parser.add_argument("--shape", action="append", type=json.loads,
                        help="a bench/sizes.py sweep of this hidden-layer shape (repeatable)")
    parser.add_argument("--inputs", action="append", type=int,
                        help="a linear model on this many features (repeatable)")
    parser.add_argument("--split", type=int,
                        help="lanes per run of the lane kernel (default: one, as on the CPU)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    from tinysweep.trainer.backends import triton_backend
    if args.wide:
        triton_backend.LANE_WEIGHTS = 0
    triton_backend.SPLIT = args.split
    peaks = json.loads(H100.read_text())["peaks"]
    results = []
    from sizes import SHAPES
    shapes = (args.shape or []) + (SHAPES if args.sizes else [])
    keys = ([json.dumps(shape) for shape in shapes] + [f"inputs:{d}" for d in args.inputs or []]
            or args.workloads)
    for key in keys:
        r = predict(key, peaks)
        results.append(r)
        loop = r["row_loop"]
        lanes = f", {r['split']} lanes per run" if r["split"] > 1 else ""
        print(f"({key}) {r['kernel']}{lanes}, {r['runs']:,} runs: {r['registers']} registers, "
              f"{r['local_bytes']} bytes local (spills), {r['sass_instructions']:,} SASS "
              f"instructions, compiled in {r['compile_s']} s")
        print(f"    row loop: {loop['instructions']} instructions ({loop['MUFU']} MUFU, "
              f"{loop['FFMA']} FFMA, {loop['FMUL/FADD']} FMUL/FADD, {loop['LDG']} LDG, "
              f"{loop['LDS/STS']} LDS/STS); {r['warp_instructions_per_sample_step']:.3g} "
              f"warp instructions per sample-step")
        print(f"    predicted on the H100: issue-bound {r['predicted_issue_s'] * 1e3:.1f} ms, "
              f"SFU-bound {r['predicted_sfu_s'] * 1e3:.1f} ms "
              f"({r['sample_steps']:.3g} sample-steps)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
