"""How the fused kernel's compile time and speed grow with the model (decides
trainer/triton_backend.LANE_WEIGHTS).

    python bench/sizes.py [--timeout 90]

For each hidden-layer shape below, in a subprocess with a time limit (a kernel too large
for registers can take minutes to compile): 1,024 runs of adam on moons (1,000 rows, batch
100, 10 epochs, input batchnorm), the triton backend's first launch (compile) and its
median launch (do_bench), and the torch backend's wall time on the same sweep. Needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SHAPES = [[16], [32], [8, 8], [16, 16], [32, 32]]


def config_for(hidden: list[int]) -> dict:
    """The sweep measured for one hidden-layer shape (bench/sass.py compiles it too)."""
    return {
        "name": "sizes", "data": {"source": "moons", "params": {"n": 1000}},
        "model": {"hidden": hidden, "activation": "relu", "loss": "bce_with_logits"},
        "train": {"epochs": 10, "optimizer": "adam", "batch_size": 100,
                  "input_norm": "batchnorm", "eval_every": 10},
        "sweep": {"params": {"lr": {"logspace": [-4, -1, 32]},
                             "seed": {"linspace": [0, 31, 32], "int": True}}}}


def one(hidden: list[int]) -> dict:
    import torch
    from triton.testing import do_bench

    from tinysweep.trainer.backends import torch_backend, triton_backend
    from tinysweep.trainer.spec.config import parse_config
    from tinysweep.trainer.pipeline.sweep import Plan, prepare, train_chunk

    config = parse_config(config_for(hidden), Path.cwd())
    chunk = prepare(config, backend="torch", device="cpu").chunk
    (rows,) = torch_backend.group_rows(chunk)
    n_runs = len(rows)
    with torch.no_grad():
        group = triton_backend._TritonGroup(chunk, rows, torch.device("cuda"),
                                            chunk.empty_result())
        group.load()
        t = time.perf_counter()
        group.train_interval(0, 10)
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        ms = do_bench(lambda: group.train_interval(0, 10), warmup=1, rep=200,
                      return_mode="median")
    plan = Plan(None, chunk, "torch", "cuda", n_runs)
    train_chunk(plan, chunk)
    torch.cuda.synchronize()
    t = time.perf_counter()
    train_chunk(plan, chunk)
    torch.cuda.synchronize()
    return {"hidden": hidden, "params": group.spec["P"], "compile_s": first - ms / 1e3,
            "triton_ms": ms, "torch_backend_ms": (time.perf_counter() - t) * 1e3,
            "n_regs": getattr(group.compiled, "n_regs", None),
            "n_spills": getattr(group.compiled, "n_spills", None)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=90, help="seconds per shape")
    ap.add_argument("--shape", action="append", type=json.loads,
                    help="a hidden-layer shape, e.g. [24,24] (repeatable; default: SHAPES)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(json.loads(args.one))), flush=True)
        return 0
    for hidden in args.shape or SHAPES:
        # its own process group: on a timeout the compiler's processes (ptxas) go too,
        # instead of running on and slowing whatever is measured next
        proc = subprocess.Popen([sys.executable, __file__, "--one", json.dumps(hidden)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=args.timeout)
            line = (out.strip().splitlines() or [""])[-1]
            row = json.loads(line) if proc.returncode == 0 else \
                {"hidden": hidden, "error": err.strip()[-300:]}
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            row = {"hidden": hidden, "error": f"not compiled within {args.timeout:.0f} s"}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
