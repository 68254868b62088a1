"""What tf32 products (TINYSWEEP_TF32=1) do to agreement with the reference, emulated on the CPU.

    python bench/tf32.py [--json OUT]

Under TINYSWEEP_TF32=1 the triton backend's wide kernel (kernels/wide.py) computes its
layer products with ``tl.dot(..., input_precision="tf32")``: the tensor cores read each
operand with a 10-bit mantissa and accumulate in fp32. Only a GPU has tf32; this script
emulates it in the reference backend (trainer/backends/reference.py, one nn.Module and torch.optim
per run), whose Linear layers get a forward and backward that round the operands of their
three products (forward x W^T; backward g W and g^T x) to tf32 before an fp32 product.
Biases, activations, batchnorm, the loss and the optimizer stay fp32. Two roundings:

- rne: round to nearest even, on the float32 bits: (bits + ((bits >> 13) & 1) + 0xFFF)
  & 0xFFFFE000 (inf and nan left alone); an explicit cvt.rna.tf32.f32 differs only on
  exact ties;
- trunc: the low 13 bits dropped (bits & 0xFFFFE000). Triton feeds fp32 registers to the
  tensor cores without a conversion, which then ignore those bits (triton-lang/triton#4574:
  tf32 tl.dot matched torch's tf32 only after an explicit cvt.rna), so this is likely what
  the kernel does.

and two scopes (three emulations: rne and trunc in the kernel's scope, rne in every):

- kernel: the products the wide kernel computes with tl.dot, in the models the triton
  backend gives it (kernel_for): a layer whose padded input and output are both at least
  16 (inputs and outputs padded to a power of two, hidden layers to at least 16; the tile
  of rows is WIDE_ROWS = 16). A layer with 2 inputs or 1 output is a sum of broadcast
  products in fp32, and a model the lane kernel trains has no tf32 at all;
- every: every product of every Linear layer (an upper bound, and what a tf32 matmul
  everywhere would do).

Each sweep trains with the plain reference, with each emulation and with the torch
backend (fp32, vectorized: the usual float32 reordering, the yardstick), and compares the
final train loss (and accuracy) run by run (by run_id) against the plain reference: median
and max |delta|, absolute and relative to the reference's loss; the max relative delta over
the "stable" runs, those the torch backend moves by less than 1e-4 (at a large learning
rate training is chaotic and float32 reordering alone moves the final loss by O(1)); the
Spearman rank correlation of the runs' final losses; how many of the reference's 5 best
runs leave the top 5; the best learning rate (lowest median final loss over the other
parameters) and, when it moves, what the move costs in the reference's median losses;
diverged flags that differ. The emulation with an identity cast reproduces the reference
bit for bit (checked when this script was written), so every delta is the rounding's.

The sweeps are scaled down to run in about 5 minutes on a quiet 2-core CPU (the reference
is a per-run loop, 0.75 ms a step, 1.2 ms with every product cast):
1. bn_mlp: bench/workloads/bn_mlp.yaml (batchnorm, 2-32-32-1 relu, BCE, moons) with 24
   learning rates x 2 seeds and 50 epochs instead of 100 x 10 and 100;
2. spirals: examples/spirals.yaml's data and training with a 2-64-64-3 model only, tanh
   and relu, 6 learning rates x 2 seeds, 150 epochs instead of 300;
3. regression: 16 features -> 64 tanh -> 1, mse, y = sin(x a) + noise (512 rows), 12
   learning rates x 2 seeds, 60 epochs: the wide layer is the first (16 inputs).
The wide kernel's tl.dot products are the middle layer's in (1) and (2), the first
layer's in (3).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np

# (rounding, scope) of each emulation; trunc in every product left out, to keep the run short
EMULATIONS = (("rne", "kernel"), ("trunc", "kernel"), ("rne", "every"))
TOP = 5
STABLE = 1e-4     # a run float32 reordering moves less than this (relative) is "stable"


def sweeps() -> dict[str, tuple[dict, tuple | None]]:
    """The three sweeps: name -> (config, in-memory data or None)."""
    bn_mlp = {
        "name": "bn_mlp", "data": {"source": "moons", "params": {"n": 1000}},
        "model": {"hidden": [32, 32], "activation": "relu", "loss": "bce_with_logits"},
        "train": {"epochs": 50, "optimizer": "adam", "batch_size": 100,
                  "input_norm": "batchnorm", "eval_every": 50},
        "sweep": {"params": {"lr": {"logspace": [-4, -1, 24]}, "seed": [0, 1]}}}
    spirals = {
        "name": "spirals",
        "data": {"source": "spirals", "params": {"n": 300, "classes": 3, "noise": 0.05},
                 "seed": 0, "val_fraction": 0.2},
        "model": {"loss": "cross_entropy", "hidden": [64, 64]},
        "train": {"epochs": 150, "batch_size": 32, "optimizer": "adam", "eval_every": 150},
        "sweep": {"params": {"activation": ["tanh", "relu"],
                             "lr": {"logspace": [-3.5, -1, 6]}, "seed": [0, 1]}}}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 16))
    y = np.sin(x @ rng.standard_normal(16) / 2) + 0.1 * rng.standard_normal(512)
    regression = {
        "name": "regression",
        "model": {"hidden": [64], "activation": "tanh", "loss": "mse"},
        "train": {"epochs": 60, "optimizer": "adam", "batch_size": 32, "eval_every": 60},
        "sweep": {"params": {"lr": {"logspace": [-4, -0.5, 12]}, "seed": [0, 1]}}}
    return {"bn_mlp": (bn_mlp, None), "spirals": (spirals, None),
            "regression": (regression, (x, y))}


# ---------------------------------------------------------------- the emulation


def tf32(x, rounding: str):
    """x (float32) with 10-bit mantissas: rounded to nearest even or truncated; inf and
    nan as they were."""
    import torch

    bits = x.contiguous().view(torch.int32)
    if rounding == "rne":
        bits = bits + (((bits >> 13) & 1) + 0xFFF)     # no overflow for finite x
    out = (bits & -0x2000).view(torch.float32)          # -0x2000: 0xFFFFE000 as int32
    return torch.where(torch.isfinite(x), out, x)


def _linear_function():
    """A torch.autograd.Function: F.linear with each product's operands passed through
    ``cast``, computed as autograd computes F.linear's (addmm, then the two mm of its
    backward), so that an identity cast gives the reference's bits. The forward's cast
    operands serve the backward too: the same values, three casts a step instead of five."""
    import torch

    class TF32Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, cast):
            """x [B, in], weight [out, in], bias [out] -> [B, out]."""
            x, weight = cast(x), cast(weight)
            ctx.save_for_backward(x, weight)
            ctx.cast = cast
            return torch.addmm(bias, x, weight.t())

        @staticmethod
        def backward(ctx, g):
            """g [B, out] -> grad x [B, in], grad weight [out, in], grad bias [out]."""
            x, weight = ctx.saved_tensors
            g_in = ctx.cast(g)
            gx = g_in.mm(weight) if ctx.needs_input_grad[0] else None
            return gx, x.t().mm(g_in).t(), g.sum(0), None

    return TF32Linear


def dot_layers(n_features: int, hidden, batchnorm: bool, n_outputs: int) -> list[bool]:
    """For each Linear layer, first to last: does the wide kernel compute its products with
    tl.dot (tf32 under TINYSWEEP_TF32=1)? wide.py's _mm_t, _mm and _mm_tn use tl.dot when
    the tile's rows (WIDE_ROWS) and the layer's padded input and output are all >= 16."""
    from tinysweep.trainer.backends.triton_backend import WIDE_ROWS, _pow2, kernel_for

    if kernel_for(n_features, list(hidden), batchnorm, n_outputs) != "wide" or WIDE_ROWS < 16:
        return [False] * (len(hidden) + 1)
    widths = [_pow2(n_features), *(max(16, _pow2(h)) for h in hidden), _pow2(n_outputs)]
    return [a >= 16 and b >= 16 for a, b in zip(widths, widths[1:])]


@contextlib.contextmanager
def emulated(rounding: str, scope: str):
    """The reference backend with tf32 products (``rounding``, ``scope`` as in the module
    docstring): its models' Linear layers get TF32Linear's forward."""
    from torch import nn

    from tinysweep.trainer.backends import reference

    function, plain = _linear_function(), reference.seeded_model
    cast = lambda t: tf32(t, rounding)

    def seeded_model(seed, n_features, hidden, activation, input_norm, stats=None,
                     n_outputs=1):
        model = plain(seed, n_features, hidden, activation, input_norm, stats, n_outputs)
        layers = [m for m in model if isinstance(m, nn.Linear)]
        rounded = (dot_layers(n_features, hidden, input_norm == "batchnorm", n_outputs)
                   if scope == "kernel" else [True] * len(layers))
        for layer, r in zip(layers, rounded):
            if r:
                layer.forward = lambda x, m=layer: function.apply(x, m.weight, m.bias, cast)
        return model

    reference.seeded_model = seeded_model
    try:
        yield
    finally:
        reference.seeded_model = plain


# ---------------------------------------------------------------- the comparison


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties get distinct ranks: final losses rarely tie)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def lr_medians(table, loss: np.ndarray):
    """The median final loss of each learning rate, over the other parameters."""
    return table.assign(loss=loss).groupby("lr")["loss"].median()


def relative(ref: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """|loss - ref| / |ref|, per run."""
    return np.abs(loss - ref) / np.maximum(np.abs(ref), 1e-30)


def compare(ref, other, stable: np.ndarray) -> dict:
    """``other``'s final train loss and accuracy against the reference's, run by run (both
    tables in run_id order). ``stable``: the runs that float32 reordering (the torch
    backend) moves by less than STABLE, relative."""
    a, b = ref.table, other.table
    assert (a["run_id"].to_numpy() == b["run_id"].to_numpy()).all()
    la, lb = a["final_train_loss"].to_numpy(), b["final_train_loss"].to_numpy()
    both = np.isfinite(la) & np.isfinite(lb) & ~a["diverged"].to_numpy() & ~b["diverged"].to_numpy()
    d, rel = np.abs(la - lb)[both], relative(la, lb)[both]
    top_a, top_b = set(np.argsort(la)[:TOP]), set(np.argsort(np.where(both, lb, np.inf))[:TOP])
    medians = lr_medians(a, la)
    lr0, lr1 = medians.idxmin(), lr_medians(b, lb).idxmin()
    out = {"runs": len(a), "compared": int(both.sum()),
           "median_abs": float(np.median(d)), "max_abs": float(d.max()),
           "median_rel": float(np.median(rel)), "max_rel": float(rel.max()),
           "stable_runs": int((stable & both).sum()),
           "stable_max_rel": float(np.max(relative(la, lb)[stable & both], initial=0.0)),
           "spearman": spearman(la[both], lb[both]), "top5_changed": len(top_a - top_b),
           "best_lr": [float(lr0), float(lr1)],
           "best_lr_regret": float(medians[lr1] - medians[lr0]),   # in the reference's losses
           "diverged_differ": int((a["diverged"] != b["diverged"]).sum()),
           "loss": lb.tolist()}
    if "final_train_accuracy" in a:
        acc = np.abs(a["final_train_accuracy"].to_numpy() - b["final_train_accuracy"].to_numpy())
        out["max_abs_acc"] = float(acc[both].max())
    return out


def measure(config: dict, data) -> dict:
    """Trains one sweep with the reference, the torch backend and each emulation, and
    compares the last three with the first."""
    import tinysweep

    kwargs = {} if data is None else {"data": data}
    ref = tinysweep.run(config, backend="reference", **kwargs)
    rows = {"torch backend (fp32)": tinysweep.run(config, backend="torch", device="cpu", **kwargs)}
    for rounding, scope in EMULATIONS:
        with emulated(rounding, scope):
            rows[f"tf32 {rounding}, {scope}"] = tinysweep.run(config, backend="reference",
                                                              **kwargs)
    la = ref.table["final_train_loss"].to_numpy()
    fp32 = rows["torch backend (fp32)"].table["final_train_loss"].to_numpy()
    stable = relative(la, fp32) < STABLE
    return {"reference_loss": la.tolist(),
            "against": {label: compare(ref, res, stable) for label, res in rows.items()}}


def table(results: dict) -> str:
    """The markdown table of every sweep's comparisons."""
    lines = ["| sweep | against the reference | runs | median abs | max abs | median rel | "
             "max rel | max rel, stable runs | max abs acc | Spearman | top-5 out | best lr "
             "(regret) | diverged differ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for label, c in r["against"].items():
            lr0, lr1 = c["best_lr"]
            lr = (f"same ({lr0:.3g})" if lr0 == lr1 else
                  f"{lr0:.3g} -> {lr1:.3g} ({c['best_lr_regret']:+.2g})")
            acc = f"{c['max_abs_acc']:.3g}" if "max_abs_acc" in c else "-"
            lines.append(f"| {name} | {label} | {c['compared']}/{c['runs']} | "
                         f"{c['median_abs']:.2g} | {c['max_abs']:.2g} | {c['median_rel']:.2g} | "
                         f"{c['max_rel']:.2g} | {c['stable_max_rel']:.2g} ({c['stable_runs']}) | "
                         f"{acc} | {c['spearman']:.4f} | {c['top5_changed']} | {lr} | "
                         f"{c['diverged_differ']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures and every run's loss here")
    args = parser.parse_args(argv)
    import torch

    # products of at most 64 x 64: one thread is as fast (0.73 against 0.75 ms a reference
    # step), and two fight any other work on the 2 cores (beside a pytest run, with two
    # threads, a smaller version of this script took 21 minutes; alone, with one, 3)
    torch.set_num_threads(1)
    start, results = time.perf_counter(), {}
    for name, (config, data) in sweeps().items():
        t = time.perf_counter()
        results[name] = measure(config, data)
        results[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {len(results[name]['reference_loss'])} runs, "
              f"{results[name]['seconds']} s", flush=True)
    print()
    print(table(results))
    print(f"\n(emulated on the CPU, {time.perf_counter() - start:.0f} s. Deltas of the final "
          f"train loss; rel: over the reference's loss; stable runs: those the torch backend "
          f"moves by less than {STABLE:g} relative (how many); regret: the reference's median "
          f"loss at the moved best lr minus at its own)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
