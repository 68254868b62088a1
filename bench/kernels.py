"""Fused-kernel timings on a CUDA GPU (issue 3; results in kernels/NOTES.md).

    python bench/kernels.py [--variants] [--json FILE]

Times the triton backend's training launches on the two kernel workloads of
bench/workloads/ (each one launch of the whole sweep: eval_every = epochs) with
triton.testing.do_bench, the median of repeated launches on the loaded state; and, for
the MLP workload, torch.func ensembling (vmap + grad + functional_call, Adam on stacked
parameters) under torch.compile on the same GPU, timed over some steps and scaled to the
workload's 10,000 steps. --variants also times other lane layouts (runs per program,
warps per program). mlp_1k, a tenth of mlp_10k's runs, is timed with 1, 2, 4 and 8 lanes
per run (SPLIT): how few runs fill the GPU (issue 18); mlp_10k with 1 (the backend's choice),
2 and 4. line_scale is bench/run.py's workload (b), half of its runs shuffled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from tinysweep.trainer.backends import triton_backend

HERE = Path(__file__).resolve().parent
WORKLOADS = {"line_100k": HERE / "workloads" / "line_100k.yaml",
             "mlp_10k": HERE / "workloads" / "mlp_10k.yaml",
             "mlp_1k": HERE / "workloads" / "mlp_1k.yaml",
             "line_scale": HERE / "workloads" / "line_scale.yaml"}
# The FP32 floor of each workload on an H100 (issue 3; line_scale: bench/NOTES.md's (b)):
# arithmetic, not memory.
FLOOR_MS = {"line_100k": 1.5, "mlp_10k": 41.0, "mlp_1k": 4.1, "line_scale": 2.4}
DEFAULT_SPLIT = triton_backend.SPLIT    # the backend's own; layouts below change it


def loaded_group(path):
    """The workload's one group of runs, loaded into the kernels' layout, and its sample-steps."""
    from tinysweep.trainer.pipeline.sweep import prepare
    from tinysweep.trainer.backends.torch_backend import group_rows

    plan = prepare(path, backend="triton", device="cuda")
    chunk = plan.chunk
    (rows,) = group_rows(chunk)
    group = triton_backend._TritonGroup(chunk, rows, torch.device("cuda"), chunk.empty_result())
    group.load()
    samples = int(chunk.runs.epochs.sum()) * chunk.data.n_train
    return group, samples


def time_kernel(name: str, block_r: int, num_warps: int, unroll: int, split) -> dict:
    from triton.testing import do_bench

    triton_backend.BLOCK_R, triton_backend.NUM_WARPS = block_r, num_warps
    triton_backend.UNROLL = unroll
    triton_backend.SPLIT = DEFAULT_SPLIT if split is None else split
    t0 = time.perf_counter()
    group, samples = loaded_group(WORKLOADS[name])
    setup_s = time.perf_counter() - t0
    epochs = int(group.boundaries[-1])
    launch = lambda: group.train_interval(0, epochs)
    t0 = time.perf_counter()
    launch()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    ms = do_bench(launch, warmup=1, rep=400, return_mode="median")
    finite = bool(torch.isfinite(group.state["par"]).all())
    compiled = group.compiled
    return {"workload": name, "block_r": block_r, "num_warps": num_warps, "unroll": unroll,
            "split": group.split, "ms": ms,
            "sample_steps_per_s": samples / (ms / 1e3), "floor_ms": FLOOR_MS[name],
            "of_floor": FLOOR_MS[name] / ms, "first_call_s": first_s, "setup_s": setup_s,
            "finite": finite, "n_regs": getattr(compiled, "n_regs", None),
            "n_spills": getattr(compiled, "n_spills", None)}


def torch_func_mlp(runs: int = 10_000, steps: int = 200, mode: str | None = None) -> dict:
    """torch.func ensembling of the MLP workload: ms for its 10,000 Adam steps (scaled)."""
    from torch import nn
    from torch.func import functional_call, grad, vmap

    dev = "cuda"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 1, generator=gen).to(dev)
    y = (torch.rand(1000, generator=gen) > 0.5).float().to(dev)
    model = nn.Sequential(nn.Linear(1, 16), nn.Sigmoid(), nn.Linear(16, 1)).to(dev)
    params = {k: (torch.randn(runs, *v.shape, generator=gen) * 0.5).to(dev)
              for k, v in model.named_parameters()}
    lr = torch.logspace(-4, -1, runs).to(dev)
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}

    def loss_fn(p, xb, yb):
        z = functional_call(model, p, (xb,)).squeeze(-1)
        return nn.functional.binary_cross_entropy_with_logits(z, yb)

    grads_of = vmap(grad(loss_fn), in_dims=(0, None, None))

    def step(params, m, v2, t, xb, yb):
        g = grads_of(params, xb, yb)
        out = ({}, {}, {})
        for k in params:
            shape = (runs,) + (1,) * (params[k].dim() - 1)
            mk = 0.9 * m[k] + 0.1 * g[k]
            vk = 0.999 * v2[k] + 0.001 * g[k] * g[k]
            denom = (vk / (1 - torch.pow(0.999, t))).sqrt() + 1e-8
            out[0][k] = params[k] - lr.view(shape) * (mk / (1 - torch.pow(0.9, t))) / denom
            out[1][k], out[2][k] = mk, vk
        return out

    compiled = torch.compile(step, mode=mode)
    batches = [(x[i:i + 100], y[i:i + 100]) for i in range(0, 1000, 100)]
    t0 = time.perf_counter()
    # the step count is a tensor: a Python float would recompile at every value
    counts = [torch.tensor(float(t), device=dev) for t in range(1, 21 + steps)]
    def call(t, params, m, v2):
        xb, yb = batches[t % 10]
        if mode == "reduce-overhead":   # outputs of one graph replay feed the next
            torch.compiler.cudagraph_mark_step_begin()
            out = compiled(params, m, v2, counts[t - 1], xb, yb)
            return tuple({k: t.clone() for k, t in d.items()} for d in out)
        return compiled(params, m, v2, counts[t - 1], xb, yb)

    for t in range(1, 21):   # compile and warm up
        params, m, v2 = call(t, params, m, v2)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in range(21, 21 + steps):
        params, m, v2 = call(t, params, m, v2)
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / steps
    return {"contender": f"torch.func+compile(mode={mode})", "runs": runs,
            "ms_per_step": per_step * 1e3, "ms_10000_steps": per_step * 1e3 * 10_000,
            "compile_s": compile_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", action="store_true", help="also time other lane layouts")
    ap.add_argument("--skip-torch-func", action="store_true")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "triton": triton.__version__, "kernels": [], "contenders": []}
    # (lanes per program, warps per program, unrolling of the row loop, lanes per run;
    # None: the backend's choice)
    layouts = {"line_100k": [(32, 1, 1, None)] + ([(32, 1, 2, None), (64, 2, 1, None)]
                                                  if args.variants else []),
               "mlp_10k": [(32, 1, 1, None), (32, 1, 1, 2), (32, 1, 1, 4)] + (
                   [(32, 1, 1, 8), (64, 2, 1, None), (32, 1, 2, None)] if args.variants else []),
               "mlp_1k": [(32, 1, 1, split) for split in (1, 2, 4, 8)],
               "line_scale": [(32, 1, 1, None)]}
    # Each figure is printed and saved as soon as it is measured: a device call's time
    # limit (SIGINT, bench/gpu_check.sh) keeps what was done and still prints the table.
    try:
        for name in WORKLOADS:
            for block_r, num_warps, unroll, split in layouts[name]:
                try:
                    row = time_kernel(name, block_r, num_warps, unroll, split)
                except Exception as e:   # keep the other numbers
                    row = {"workload": name, "block_r": block_r, "num_warps": num_warps,
                           "unroll": unroll, "split": split, "error": repr(e)[:300]}
                report["kernels"].append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(report, indent=1))
        if not args.skip_torch_func:
            for mode in (None, "reduce-overhead"):
                try:
                    row = torch_func_mlp(mode=mode)
                except Exception as e:
                    row = {"contender": f"torch.func+compile(mode={mode})",
                           "error": repr(e)[:300]}
                report["contenders"].append(row)
                print(json.dumps(row), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the figures so far", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"\n{report['device']}, torch {report['torch']}, triton {report['triton']}")
    print(f"{'workload':10} {'lanes':>6} {'warps':>5} {'unroll':>6} {'split':>5} {'ms':>9} "
          f"{'floor':>6} {'of floor':>8} regs spills")
    for r in report["kernels"]:
        if "error" in r:
            print(f"{r['workload']:10} {r['block_r']:6} {r['num_warps']:5} {r['unroll']:6} "
                  f"{str(r['split']):>5} error: {r['error'][:80]}")
        else:
            print(f"{r['workload']:10} {r['block_r']:6} {r['num_warps']:5} {r['unroll']:6} "
                  f"{r['split']:5} {r['ms']:9.2f} "
                  f"{r['floor_ms']:6.1f} {r['of_floor']:8.1%} {r['n_regs']} {r['n_spills']}")
    for r in report["contenders"]:
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
