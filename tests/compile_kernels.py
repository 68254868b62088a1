"""Compiles the fused kernels for an H100 (sm_90) without a GPU; used by
test_triton_backend.py in a process where TRITON_INTERPRET is off.

    python tests/compile_kernels.py '{"DEPTH": 1, "OA": 16, ...}'   # train_kernel constexprs
    python tests/compile_kernels.py --specialization   # how each kernel's ints specialize
"""

import json
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tinysweep.kernels import mlp, wide

INT_PTRS = ("steps_ptr", "div_ptr", "bs_ptr", "ep_ptr", "ssize_ptr", "nest_ptr", "oq_ptr",
            "out_ptr")


def compile_for_h100(fn, constexprs: dict, num_warps: int = 1):
    names = fn.arg_names
    sig = {a: "constexpr" if a in constexprs else "*i32" if a in INT_PTRS else
           "*i64" if a == "keys_ptr" else "*fp32" if a.endswith("_ptr") else "i32"
           for a in names}
    src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})


def specializations() -> dict:
    """{kernel: {int argument: [its specialization bound at 1, 16, 17]}}, read from the
    binder that Triton's launcher builds for sm_90 (no GPU needed): an argument that
    specializes (the value 1 or a multiple of 16) makes a new compile per value class."""
    import torch
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", 90, 32))
    out = {}
    for fn in (mlp.train_kernel, wide.train_wide_kernel, mlp.order_kernel):
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        args = {p.name: 1 if p.is_constexpr else torch.zeros(4) if p.name.endswith("_ptr")
                else 7 for p in fn.params}
        ints = [i for i, p in enumerate(fn.params)
                if not p.is_constexpr and not p.name.endswith("_ptr")]
        seen = {}
        for i in ints:
            name = fn.params[i].name
            seen[name] = [repr(binder(**{**args, name: value})[1][i]) for value in (1, 16, 17)]
        out[fn.__name__] = seen
    return out


def main(spec: dict) -> None:
    """spec: train_kernel's constexprs, or with "wide": true, train_wide_kernel's."""
    is_wide = spec.pop("wide", False)
    common = dict(D=1, DP=1, K=1, KP=1, YK=1, YKP=1, OFF_N=0, OFF_A=0, OFF_B=0, OFF_C=0,
                  ACT=0, LOSS=0, OPT=1, BN=False)
    if is_wide:
        kernel, own = wide.train_wide_kernel, dict(BLOCK_M=16, PRECISION="ieee")
    else:
        kernel, own = mlp.train_kernel, dict(UNROLL=1, SPLIT=1, BLOCK_R=32, SHUFFLED=False)
    start = time.perf_counter()
    compiled = [compile_for_h100(kernel, {**common, **own, **spec}, 4 if is_wide else 1)]
    seconds = time.perf_counter() - start
    compiled.append(compile_for_h100(mlp.order_kernel, {"BLOCK": 256}))
    print(" ".join(k.name for k in compiled), f"{seconds:.1f} s")


if __name__ == "__main__":
    if sys.argv[1] == "--specialization":
        print(json.dumps(specializations()))
    else:
        main(json.loads(sys.argv[1]))
