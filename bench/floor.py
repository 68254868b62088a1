"""The hardware floor of a workload: the least time any implementation could take.

Three counts, each over the device's measured peak; the largest is the floor
(bench/NOTES.md explains the count):

- FP32-pipe instructions. Per sample-step, for each Linear(in, out): forward ``in * out``
  FMAs, backward ``in * out`` for the weight gradient and ``in * out`` for the input
  gradient (not for the first layer); plus ``out`` adds for the bias gradient and, per
  hidden unit, 2 for the activation's derivative; plus 3 for the loss gradient. Per
  optimizer step and parameter: 12 (Adam's moments, bias corrections and update).
- Special-function operations (exp, reciprocal, sqrt): per hidden unit and sample-step 2
  for sigmoid (exp, reciprocal), 2 for tanh, 0 for relu; 2 for the BCE gradient's sigmoid;
  per optimizer step and parameter 2 (sqrt, reciprocal).
- HBM bytes: each run's parameters and optimizer state read and written once per launch,
  the data read once (it is shared by all runs and stays in cache).
"""

from __future__ import annotations

from tinysweep.trainer.spec.model import layer_sizes

SFU_PER_UNIT = {"sigmoid": 2, "tanh": 2, "relu": 0}


def counts(n_features: int, hidden, activation: str, loss: str, sample_steps: float,
           optimizer_steps: float, runs: int, n_rows: int, n_outputs: int = 1) -> dict[str, float]:
    """FP32 instructions, special-function operations and HBM bytes of a workload (a model
    with ``n_outputs`` outputs: cross_entropy's classes)."""
    sizes = layer_sizes(n_features, list(hidden), n_outputs)
    params = sum(i * o + o for i, o in sizes)
    fp32 = 3.0
    for k, (i, o) in enumerate(sizes):
        fp32 += i * o * (2 if k == 0 else 3) + o
    units = sum(hidden)
    fp32 += 2 * units
    sfu = SFU_PER_UNIT[activation] * units + (2 if loss == "bce_with_logits" else 0)
    return {
        "fp32": fp32 * sample_steps + 12 * params * optimizer_steps,
        "sfu": sfu * sample_steps + 2 * params * optimizer_steps,
        "bytes": runs * params * 3 * 4 * 2 + n_rows * (n_features + 1) * 4,
    }


def floor_seconds(c: dict[str, float], peaks: dict[str, float]) -> dict[str, float]:
    """Seconds of each count at its peak, and the floor (the largest)."""
    out = {"fp32_s": c["fp32"] / peaks["fp32_per_s"], "sfu_s": c["sfu"] / peaks["sfu_per_s"],
           "bytes_s": c["bytes"] / peaks["bytes_per_s"]}
    out["floor_s"] = max(out.values())
    return out


# On the CPU an exp or a reciprocal square root is a polynomial on the FMA pipes, not a
# pipe of its own: kernels/numba_mlp.py's _exp is a Cody-Waite reduction and a degree-5
# polynomial, about 16 FMA-pipe operations a lane.
CPU_SFU_COST = 16


def measure_cpu_peaks() -> dict[str, float]:
    """This CPU's FP32 FMA rate on every core torch uses (a 2048^3 fp32 matmul, the best of
    5: MKL/oneDNN reach near the FMA pipes' peak at that size), its special-function rate
    (CPU_SFU_COST FMA slots each), and its copy bandwidth (a 256 MB numpy copy, read +
    written, the best of 5): the floor of a CPU workload, as measure_peaks is a GPU's."""
    import time

    import numpy as np
    import torch

    a = torch.randn(2048, 2048)
    a @ a                                   # warm: threads started, pages touched
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    fma_per_s = 2048 ** 3 / best
    big = np.ones(1 << 26, np.float32)
    dst = np.empty_like(big)
    copy = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, big)
        copy = min(copy, time.perf_counter() - t)
    return {"fp32_per_s": fma_per_s, "sfu_per_s": fma_per_s / CPU_SFU_COST,
            "bytes_per_s": 2 * big.nbytes / copy}


def measure_peaks() -> dict[str, float]:
    """The CUDA device's FP32 FMA rate (an 8192^3 fp32 matmul, TF32 off), its special-
    function rate (1/8 of it: 16 SFU lanes against 128 FP32 lanes per SM on Hopper and
    Ampere), and its copy bandwidth (bytes read + written)."""
    import torch
    from triton.testing import do_bench

    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(8192, 8192, device="cuda")
    ms = do_bench(lambda: a @ a, return_mode="median")
    fma_per_s = 8192 ** 3 / (ms / 1e3)
    big = torch.empty(1 << 28, device="cuda")
    dst = torch.empty_like(big)
    ms = do_bench(lambda: dst.copy_(big), return_mode="median")
    return {"fp32_per_s": fma_per_s, "sfu_per_s": fma_per_s / 8,
            "bytes_per_s": 2 * big.numel() * 4 / (ms / 1e3)}
