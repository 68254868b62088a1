"""Fused CPU kernels (numba): many tiny MLPs trained in one call, runs as SIMD lanes.

The CPU twin of kernels/mlp.py. The kernel ``train_blocks(depth, multi)`` returns (one
compiled function per depth and output kind) trains blocks of runs of one group (same
architecture, input normalization and optimizer family) from epoch ``e0`` to ``e1``,
evaluating each run after its evaluation epochs, in one call: the loops over epochs,
batches and rows are compiled, and the weights, gradients and optimizer state of a block
of ``LANES`` runs stay in one small workspace (``[rows, LANES]`` float32, in L1/L2) for
the whole call. Blocks are independent; the host spreads them over threads. A run's
arithmetic never depends on its block, its lane or the thread that trains it.

SIMD across runs: each quantity of a block is a workspace row of ``LANES`` floats, one
per run, and the per-row math is written with explicit vectors of W = 64 lanes
(the section "explicit SIMD vectors" below): ``vload`` a row's lanes, compute, ``vstore``. Within a row a
chunk's values stay in registers (a unit's pre-activation summed over its inputs,
the output, its delta), so memory holds only what outlives a row: parameters, gradient
sums, activations. Models with K outputs (digits' 64-32-10) take a segment's rows four at
a time through each layer, two units at a time ("tiles of rows" below): a weight loaded
once for four rows, eight independent FMA chains. The exponentials are vectors too:
``_exp`` is Cephes' expf (a Cody-Waite reduction and a degree-5 polynomial, 1.3 ulp),
where ``math.exp`` is a libm call per lane (numba has no vector math library here).
bench/NOTES.md has what the assembly holds.

Lanes step through the rows in lockstep, one position ``p`` of their epoch's order at a
time; each lane takes its optimizer step when its own batch ends (``(p + 1) % batch_size
== 0`` or ``p == n - 1``), masked. Lanes with different batch sizes therefore never wait
for one another (the triton kernel's batch-lockstep loops each step to the longest batch
of the block: 3.0x the rows of an epoch, counted on the line study's blocks). When
all lanes of a block read the same order (the same seed, or none shuffled: the host sorts
runs so), position ``p`` is one row for every lane, loaded once and broadcast; else each
lane gathers its own row.

Shuffled lanes read their row from ``order`` (int32 permutation tables, one per (seed,
epoch), written by ``order_tables``: trainer/spec/order.py's counter-based Feistel permutation,
ported here).

The math (the triton kernel's), for layers 0..depth with weights W_k [out, in], biases b_k:

    h_0 = x  (batchnorm: xhat = (x - mean_batch) * rsqrt(var_batch + eps), h_0 = xhat g + b)
    a_k = W_k h_{k-1} + b_k;   h_k = act(a_k) (k < depth);   z = a_depth
    dz = mse: 2 (z - y) | bce: sigmoid(z) - y;   gradients summed over a batch, * 1/rows
    K outputs z_j: mse 2 (z_j - y_j) / K | cross_entropy softmax(z)_j - [y == j] (the
    softmax shifted by max_j z_j)
    dW_k += d_k h_{k-1}^T;  db_k += d_k;  d_{k-1} = (W_k^T d_k) * act'(h_{k-1})
    batchnorm: dh_0 = W_0^T d_0;  dg += dh_0 xhat;  db += dh_0

A run is evaluated (eval mode, every training and validation row) after every
``eval_every``-th epoch and its last; one whose training loss or state is non-finite there
is marked diverged and takes no further step: its state, steps and curves stay those of
that evaluation, as the reference decides it.

``train_rows`` (the section "rows as lanes" at the end) is the other kernel, with the same
arguments and state: one run at a time, the units of a layer as the lanes of W-wide
vectors, for groups of a wide model whose runs are few (digits' 64-16-10 and 64-32-10);
the host (trainer/backends/numba_backend.py: group_lanes) chooses per group.
"""

from __future__ import annotations

import math
import sys
import threading
import types as pytypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


# ---- explicit SIMD vectors ------------------------------------------------------------
# FVEC: W = 64 float32 lanes in one LLVM <64 x float> value; MVEC: a mask of W lanes.
#
# The kernels keep one run per lane; their per-row loops are written with these vectors
# rather than left to LLVM's loop vectorizer. The vectorizer has to prove that a
# loop's workspace rows do not overlap, and numba gives it no ``noalias``: it emitted a
# runtime check per pair of rows before every lane loop (a fused backward loop of 8 rows: 18
# checks, about as many instructions as the loop's own work), and where the trip count was
# a constant 32 it unrolled the loop first and vectorized nothing. With explicit vectors
# there is nothing to prove: a load is ``vmovups``, an add ``vaddps``, and LLVM lowers
# ``<64 x float>`` to four zmm (AVX-512) or eight ymm (AVX2) registers. Four registers an
# operation, not one: the independent halves keep both FMA pipes busy through the long
# dependent chains of an exponential, and each scalar instruction of the loops around
# (addresses, counters, the activation's constants) serves 64 runs. The 1-16-1 MLP kernel
# took 12.4 to 12.8 cpu-ns per lane-row with 16-lane vectors, 12.0 to 12.4 with 32, 7.9 to
# 8.7 with 64 and 8.8 with 128 (one process, taken in turns); the line model 0.72 to 0.75
# with each; the 2-32-32-1 batchnorm MLP 221 with 16 lanes and 281 with 64 (its workspace
# no longer fits the 1 MB L2).
#
# Every function here is a numba ``@intrinsic`` that emits one or a few LLVM instructions.
# Arithmetic takes vectors or float32 scalars (a scalar is broadcast). Multiplications and
# additions carry LLVM's ``contract`` flag, so a * b + c may become one FMA, as in the rest of
# the kernels. Comparisons give ``MVEC`` masks (ordered: false where a lane is NaN), which
# ``vwhere`` selects with. ``mxcsr_ftz`` and ``mxcsr_restore`` set and restore the x86
# flush-to-zero mode around the kernels (train_blocks says why).
#
# They live in this file, not one of their own: numba's disk cache checks only the file
# that defines a cached function, so kernels compiled against another file's vectors would
# outlive a change to them (a new W: the host's lanes and the cached code's would differ).
W = 64                                  # lanes of a vector
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VF = ir.VectorType(_F32, W)
_VI = ir.VectorType(_I32, W)
_VB = ir.VectorType(ir.IntType(1), W)


class FVecType(types.Type):
    def __init__(self):
        super().__init__(name=f"FVec{W}")


class MVecType(types.Type):
    def __init__(self):
        super().__init__(name=f"MVec{W}")


FVEC = FVecType()       # a vector of W float32 lanes
MVEC = MVecType()       # a mask of W lanes


@register_model(FVecType)
class _FVecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VF)


@register_model(MVecType)
class _MVecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VB)


def _is_f32(t) -> bool:
    return t == types.float32


def _vector(builder, value, t):
    """``value`` of numba type ``t`` (FVEC or float32) as an LLVM vector."""
    if t == FVEC:
        return value
    one = builder.insert_element(ir.Constant(_VF, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, ir.Constant(_VI, [0] * W))


def _pointer(context, builder, aryty, ary, index):
    data = context.make_array(aryty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [index], inbounds=True), _VF.as_pointer())


# ---- memory ------------------------------------------------------------------------------
@intrinsic
def vload(typingctx, flat, index):
    """flat[index:index + W] (flat: a 1-D float32 array) as a vector; unaligned."""
    if not (isinstance(flat, types.Array) and flat.dtype == types.float32):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)
    return FVEC(flat, index), codegen


@intrinsic
def vstore(typingctx, flat, index, value):
    """flat[index:index + W] = value."""
    if not (isinstance(flat, types.Array) and flat.dtype == types.float32 and value == FVEC):
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _pointer(context, builder, sig.args[0], args[0], args[1]),
                      align=4)
        return context.get_dummy_value()
    return types.none(flat, index, value), codegen


@intrinsic
def vbroadcast(typingctx, flat, index):
    """A vector of W copies of flat[index] (flat: a 1-D float32 array), loaded without
    numba's wraparound of a negative index (a few scalar operations a load, in loops
    that do one FMA per load)."""
    if not (isinstance(flat, types.Array) and flat.dtype == types.float32):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        value = builder.load(builder.gep(data, [args[1]], inbounds=True), align=4)
        return _vector(builder, value, types.float32)
    return FVEC(flat, index), codegen


@intrinsic
def vsplat(typingctx, value):
    """A vector of W copies of the float32 ``value``."""
    if not _is_f32(value):
        return None

    def codegen(context, builder, sig, args):
        return _vector(builder, args[0], types.float32)
    return FVEC(value), codegen


# ---- arithmetic ---------------------------------------------------------------------------
def _binary(opname, doc):
    def typer(typingctx, a, b):
        if not ((a == FVEC or _is_f32(a)) and (b == FVEC or _is_f32(b)) and FVEC in (a, b)):
            return None

        def codegen(context, builder, sig, args):
            x = _vector(builder, args[0], sig.args[0])
            y = _vector(builder, args[1], sig.args[1])
            return getattr(builder, opname)(x, y, flags=("contract",))
        return FVEC(a, b), codegen
    typer.__doc__ = doc
    typer.__name__ = typer.__qualname__ = f"v{opname[1:]}"
    return intrinsic(typer)


vadd = _binary("fadd", "a + b, lane by lane (a, b: FVEC or float32).")
vsub = _binary("fsub", "a - b.")
vmul = _binary("fmul", "a * b.")
vdiv = _binary("fdiv", "a / b (IEEE division).")


def _compare(op, doc):
    def typer(typingctx, a, b):
        if not ((a == FVEC or _is_f32(a)) and (b == FVEC or _is_f32(b)) and FVEC in (a, b)):
            return None

        def codegen(context, builder, sig, args):
            x = _vector(builder, args[0], sig.args[0])
            y = _vector(builder, args[1], sig.args[1])
            return builder.fcmp_ordered(op, x, y)
        return MVEC(a, b), codegen
    typer.__doc__ = doc
    return intrinsic(typer)


vlt = _compare("<", "a < b (false for NaN).")
vgt = _compare(">", "a > b (false for NaN).")
veq = _compare("==", "a == b (false for NaN).")


@intrinsic
def vwhere(typingctx, mask, a, b):
    """mask ? a : b, lane by lane (a, b: FVEC or float32)."""
    if not (mask == MVEC and (a == FVEC or _is_f32(a)) and (b == FVEC or _is_f32(b))):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], _vector(builder, args[1], sig.args[1]),
                              _vector(builder, args[2], sig.args[2]))
    return FVEC(mask, a, b), codegen


def _unary_intrinsic(llvm_name, doc):
    def typer(typingctx, a):
        if a != FVEC:
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VF, [_VF]),
                                                f"llvm.{llvm_name}.v{W}f32")
            return builder.call(fn, [args[0]])
        return FVEC(a), codegen
    typer.__doc__ = doc
    return intrinsic(typer)


vfloor = _unary_intrinsic("floor", "floor(a), lane by lane.")
vsqrt = _unary_intrinsic("sqrt", "sqrt(a) (IEEE).")
vabs = _unary_intrinsic("fabs", "|a|.")


def _reduce(combine, doc):
    """A horizontal reduction of a vector's W lanes to a float32: log2(W) halvings, each
    lane i combined with lane i + half (a tree, not a chain)."""
    def typer(typingctx, a):
        if a != FVEC:
            return None

        def codegen(context, builder, sig, args):
            v, half = args[0], W // 2
            while half >= 1:
                picks = [i + half if i < half else i for i in range(W)]
                other = builder.shuffle_vector(v, v, ir.Constant(_VI, picks))
                v = combine(builder, v, other)
                half //= 2
            return builder.extract_element(v, ir.Constant(_I32, 0))
        return types.float32(a), codegen
    typer.__doc__ = doc
    return intrinsic(typer)


vhsum = _reduce(lambda b, x, y: b.fadd(x, y), "The sum of a vector's lanes (in a tree).")
vhmax = _reduce(lambda b, x, y: b.select(b.fcmp_ordered(">", x, y), x, y),
                "The largest of a vector's lanes (a NaN lane may be passed over).")


# ---- bits ---------------------------------------------------------------------------------
@intrinsic
def vpow2i(typingctx, k):
    """2 ** k for integral k in [-126, 127] (one convert, an integer add and shift): the
    scale of exp's range reduction."""
    if k != FVEC:
        return None

    def codegen(context, builder, sig, args):
        ki = builder.fptosi(args[0], _VI)
        bits = builder.shl(builder.add(ki, ir.Constant(_VI, [127] * W)), ir.Constant(_VI, [23] * W))
        return builder.bitcast(bits, _VF)
    return FVEC(k), codegen


@intrinsic
def vexponent(typingctx, a):
    """floor(log2(a)) for normal a > 0, as a float (its exponent bits): log's range
    reduction."""
    if a != FVEC:
        return None

    def codegen(context, builder, sig, args):
        bits = builder.lshr(builder.bitcast(args[0], _VI), ir.Constant(_VI, [23] * W))
        return builder.sitofp(builder.sub(bits, ir.Constant(_VI, [127] * W)), _VF)
    return FVEC(a), codegen


# ---- the x86 floating-point control register ----------------------------------------------
_FTZ_DAZ = 0x8040          # MXCSR bits: flush results below 2**-126 to zero, read such inputs as 0


def _mxcsr_call(builder, name, slot):
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()]),
        f"llvm.x86.sse.{name}")
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def mxcsr_ftz(typingctx):
    """Sets this thread's flush-to-zero and denormals-are-zero modes; returns the previous
    MXCSR for ``mxcsr_restore``. Does nothing (returns -1) off x86."""
    def codegen(context, builder, sig, args):
        if "x86_64" not in builder.module.triple and "i686" not in builder.module.triple:
            return ir.Constant(ir.IntType(64), -1)
        slot = cgutils.alloca_once(builder, _I32)
        _mxcsr_call(builder, "stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(_I32, _FTZ_DAZ)), slot)
        _mxcsr_call(builder, "ldmxcsr", slot)
        return builder.zext(old, ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def mxcsr_restore(typingctx, saved):
    """Puts back the MXCSR that ``mxcsr_ftz`` returned."""
    if saved != types.int64:
        return None

    def codegen(context, builder, sig, args):
        if "x86_64" not in builder.module.triple and "i686" not in builder.module.triple:
            return context.get_dummy_value()
        slot = cgutils.alloca_once(builder, _I32)
        builder.store(builder.trunc(args[0], _I32), slot)
        _mxcsr_call(builder, "ldmxcsr", slot)
        return context.get_dummy_value()
    return types.none(saved), codegen


# Runs per block: a workspace row is LANES floats, LANES // W vectors (one: the vectors'
# section has the measurements behind 64). More lanes spread the per-row bookkeeping (the event
# loop, the row's load) over more runs; fewer keep a block's workspace in cache and give
# small sweeps more blocks to share between the cores.
LANES = W


# ---- the same kernels at another width ---------------------------------------------------
# A group of few runs leaves most of a 64-lane block empty: digits' 72-run grid is three
# groups of 24 runs, 37% of their lanes, and one run is 1 of 64. with_lanes(8) gives this
# module's kernels compiled for blocks of 8 lanes (one ymm register a vector), which such a
# group fills: the digits grid trained in 0.35 cpu-s instead of 0.93 (10 epochs, one
# thread), one run of 64-32-10 in an eighth of the time. A full block of tiny models runs
# 64 lanes faster (the 1-16-1 MLP: 0.11 against 0.22 cpu-s a lane at 8; the batchnorm
# 2-32-32-1: 0.14 against 0.22): trainer/numba_backend.lanes_for chooses per group.
#
# The copy is this file's source run again with W replaced, as a module of its own. numba
# keys its disk cache by the source file (whose changes invalidate it, as this file's do)
# and each function's qualified name, not by the globals a function reads (W, LANES): the
# copy's functions are renamed ("lanes8_" first) so the two widths never share an entry.
def _lane_njit(*args, **kwargs):
    """njit for a width's copy: the function renamed for numba's cache (see above)."""
    def decorate(fn):
        fn.__qualname__ = f"lanes{W}_{fn.__qualname__}"
        return njit(*args, **kwargs)(fn)
    return decorate


_WIDTHS: dict = {}


def with_lanes(lanes: int):
    """This module's kernels for blocks of ``lanes`` runs (8, 16, 32 or 64; 64 is this
    module itself): a module with the same names, compiled on first use."""
    if lanes == W:
        return sys.modules[__name__]
    if lanes not in (8, 16, 32):
        raise ValueError(f"with_lanes: 8, 16, 32 or 64 lanes, not {lanes}")
    with _VARIANTS_LOCK:
        if lanes not in _WIDTHS:
            with open(__file__) as f:
                source = f.read()
            mine = "\nW = 64 "
            assert source.count(mine) == 1 and source.count("@njit(") >= 30
            source = source.replace(mine, f"\nW = {lanes} ").replace("@njit(", "@_lane_njit(")
            module = pytypes.ModuleType(f"{__name__}_lanes{lanes}")
            module.__file__ = __file__
            sys.modules[module.__name__] = module
            exec(compile(source, __file__, "exec"), module.__dict__)
            _WIDTHS[lanes] = module
        return _WIDTHS[lanes]

ACT_SIGMOID, ACT_TANH, ACT_RELU = 0, 1, 2
LOSS_MSE, LOSS_BCE, LOSS_CE = 0, 1, 2     # mse (one output or k), bce_with_logits, cross_entropy
OPT_SGD, OPT_ADAM = 0, 1        # adam covers adamw (decoupled weight decay per lane)

# Rows of the per-run hyperparameter tables (host: trainer/backends/numba_backend.py).
# fhp, float64 [F_ROWS, runs]: LR is the current learning rate (StepLR multiplies it by
# GAMMA as torch's StepLR does), B1T/B2T Adam's beta ** step: state kept between calls.
F_LR, F_GAMMA, F_BETA1, F_BETA2, F_EPS, F_MOM, F_WDC, F_WDD, F_B1T, F_B2T = range(10)
F_ROWS = 10
# ihp, int64 [I_ROWS, runs]: ORDER is the run's permutation table (-1: rows in order), ROW
# its row in the curves, STEPS and ACTIVE (0 once diverged) state. Padding lanes have
# EPOCHS 0: they never train.
I_BS, I_EPOCHS, I_SSIZE, I_NEST, I_ORDER, I_ROW, I_STEPS, I_ACTIVE = range(8)
I_ROWS = 8

BN_EPS = np.float32(1e-5)       # nn.BatchNorm1d's defaults
BN_MOMENTUM = np.float32(0.1)
# Evaluation sums are float32 over this many rows, then added into float64: the loss of
# 1,000 rows keeps float64's accuracy at float32's speed.
EVAL_FLUSH = 32

# float32 constants: a Python float in numba code is float64, and would promote the math
_0, _1, _2, _HALF = np.float32(0.0), np.float32(1.0), np.float32(2.0), np.float32(0.5)
_M1 = np.float32(-1.0)
_INF = np.float32(np.inf)

_OPTS = dict(cache=True, error_model="numpy", fastmath={"contract"})
# error_model numpy: x / 0 is inf, as in numpy and torch, not a ZeroDivisionError.
# contract: a * b + c may be one FMA (more exact, not less).
# The helpers are inlined by LLVM (forceinline), before numba prunes reference counts: a
# call that passes the workspace would cost two atomic increments, more than a row's work
# for a small model. (numba's own inline="always" did the same at 6 s more compile time.)
# No Python wrapper: nothing calls a helper from Python, and numba built and optimized one
# for each (the rows kernel compiled in 7.0 s instead of 8.5 with them, a cold process).
_INLINE = dict(_OPTS, forceinline=True, no_cpython_wrapper=True)


# ---- float32 functions on vectors ---------------------------------------------------------
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (np.float32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))
_EXP_HI, _EXP_LO = np.float32(88.3762626647949), np.float32(-87.33654475)
# tanh saturates long before: exp(80) keeps 1 + e and 2 / (1 + e) normal
_SAT = np.float32(80.0)


@njit(**_INLINE)
def _exp(x):
    """exp, lane by lane (Cephes expf: 1.3 ulp at most on [-87, 88]). The argument is
    clamped so that 2**k stays a normal float; NaN stays NaN (its comparisons are false)."""
    x = vwhere(vgt(x, _EXP_HI), _EXP_HI, x)
    x = vwhere(vlt(x, _EXP_LO), _EXP_LO, x)
    k = vfloor(vadd(vmul(x, _LOG2E), _HALF))
    r = vsub(vsub(x, vmul(k, _LN2_HI)), vmul(k, _LN2_LO))
    p = vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(r, _E0), _E1), r), _E2), r), _E3),
                               r), _E4), r), _E5)
    p = vadd(vadd(vmul(p, vmul(r, r)), r), _1)
    return vmul(p, vpow2i(k))


# sigmoid's exp(-a), in base 2: 2**t = 2**k 2**f with k = round(t), |f| <= 1/2, and 2**f a
# degree-7 Taylor polynomial (truncation 6e-9). Rounding t = -a log2(e) costs up to 4e-6
# relative where |t| is large, where the sigmoid is within 1e-30 of 0 or 1: on [-150, 150]
# it is 9e-8 from the exact value at most (3.6e-6 relative, at its tiniest). 2 operations
# fewer than _exp's two-part reduction, and the 1-16-1 kernel 10% faster (16.9 against
# 18.8 cpu-ns per lane-row, taken in turns in one process).
_NLOG2E = np.float32(-1.4426950408889634)
_T_HI, _T_LO = np.float32(115.0), np.float32(-126.0)   # 1 + 2**115 and 2**-126 stay normal
_P1, _P2, _P3, _P4, _P5, _P6, _P7 = (np.float32(math.log(2) ** i / math.factorial(i))
                                     for i in range(1, 8))


@njit(**_INLINE)
def _sigmoid(a):
    """1 / (1 + exp(-a)), 9e-8 from the exact value at most. A true division: a
    bit-trick reciprocal and three Newton steps made the 1-16-1 row 16% slower (10.8
    against 9.3 ns per lane-row, taken in turns in one process)."""
    t = vmul(a, _NLOG2E)
    t = vwhere(vgt(t, _T_HI), _T_HI, t)
    t = vwhere(vlt(t, _T_LO), _T_LO, t)         # NaN stays NaN (its comparisons are false)
    k = vfloor(vadd(t, _HALF))
    f = vsub(t, k)
    p = vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(
        vmul(f, _P7), _P6), f), _P5), f), _P4), f), _P3), f), _P2), f), _P1), f), _1)
    return vdiv(_1, vadd(_1, vmul(p, vpow2i(k))))


_TANH_SMALL = np.float32(0.625)
_T0, _T1, _T2, _T3, _T4 = (np.float32(c) for c in (
    -5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
    -3.33332819422e-1))


@njit(**_INLINE)
def _tanh(a):
    """tanh (Cephes tanhf): an odd polynomial below 0.625, 1 - 2 / (exp(2a) + 1) above;
    both computed, one kept."""
    z = vmul(a, a)
    p = vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(z, _T0), _T1), z), _T2), z), _T3), z), _T4)
    small = vadd(vmul(vmul(p, z), a), a)
    t = vmul(a, _2)
    large = vsub(_1, vdiv(_2, vadd(_exp(vwhere(vgt(t, _SAT), _SAT, t)), _1)))
    return vwhere(vlt(vabs(a), _TANH_SMALL), small, large)


_L0, _L1, _L2, _L3, _L4, _L5, _L6, _L7 = (np.float32(2.0 / (2 * k + 1)) for k in range(8))


@njit(**_INLINE)
def _log1p_unit(u):
    """log(1 + u) for u in [0, 1]: 2 atanh(s), s = u / (2 + u) <= 1/3, to s**15."""
    s = vdiv(u, vadd(u, _2))
    q = vmul(s, s)
    p = vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(vmul(vadd(
        vmul(q, _L7), _L6), q), _L5), q), _L4), q), _L3), q), _L2), q), _L1), q), _L0)
    return vmul(s, p)


@njit(**_INLINE)
def _log_ge1(s):
    """log(s) for s >= 1 (softmax's sum of exponentials): s = 2**e m with m in [1, 2),
    e ln 2 (Cody-Waite's two parts) + log1p(m - 1); 2e-9 from the exact value at most
    in the polynomial."""
    e = vexponent(s)
    m = vmul(s, vpow2i(vmul(e, _M1)))
    return vadd(vadd(vmul(e, _LN2_HI), vmul(e, _LN2_LO)), _log1p_unit(vsub(m, _1)))


@njit(**_INLINE)
def _act(a, act):
    if act == ACT_SIGMOID:
        return _sigmoid(a)
    if act == ACT_TANH:
        return _tanh(a)
    return vwhere(vlt(a, _0), _0, a)            # relu; NaN stays NaN


@njit(**_INLINE)
def _act_grad(h, act):
    """d act / d a from the activation h = act(a), as autograd has it."""
    if act == ACT_SIGMOID:
        return vmul(h, vsub(_1, h))
    if act == ACT_TANH:
        return vsub(_1, vmul(h, h))
    return vwhere(vgt(h, _0), _1, _0)


# ---- batch order: trainer/spec/order.py's Feistel permutation ------------------------------
_MASK32 = np.uint64(0xFFFFFFFF)
_U15, _U16 = np.uint64(15), np.uint64(16)
_MIX1, _MIX2 = np.uint64(0x7FEB352D), np.uint64(0x846CA68B)


@njit(**_INLINE)
def _mix32(x):
    """trainer.order.mix32 on a uint64 holding a value < 2**32."""
    x = x ^ (x >> _U16)
    x = (x * _MIX1) & _MASK32
    x = x ^ (x >> _U15)
    x = (x * _MIX2) & _MASK32
    return x ^ (x >> _U16)


@njit(**_INLINE)
def _feistel(x, keys, half, lo_mask):
    """trainer.order.feistel of one value: four rounds on 2 * half bits; keys uint64 [4]."""
    left, right = x >> half, x & lo_mask
    for r in range(keys.shape[0]):
        left, right = right, left ^ (_mix32(right ^ keys[r]) & lo_mask)
    return (left << half) | right


@njit(nogil=True, **_OPTS)
def order_tables(keys, n, half, out):
    """out[q, p] = the row visited at position p under round keys q: order.permutations.

    keys: uint64 [Q, 4] (order.round_keys); out: int32 [Q, n]; half: order.half_bits(n).
    Releases the GIL: the host splits Q between threads.
    """
    h = np.uint64(half)
    lo_mask = np.uint64((1 << half) - 1)
    nu = np.uint64(n)
    for q in range(keys.shape[0]):
        k = keys[q]
        for p in range(n):
            x = _feistel(np.uint64(p), k, h, lo_mask)
            while x >= nu:          # cycle-walking: a few passes, as the domain is < 4 n
                x = _feistel(x, k, h, lo_mask)
            out[q, p] = np.int32(x)


# ---- one row of one chunk of W lanes --------------------------------------------------------
# flat is the block's workspace as one vector: row r's chunk c starts at r * LANES + c.
# lt is the layer table, a tuple (no memory that a store could alias, so LLVM keeps its
# entries in registers): layer k's (inputs, outputs, weight row, bias row, output row,
# delta row) at lt[6 k:6 k + 6]. depth is a constant at every call (see _segment).
@njit(**_INLINE)
def _dot(flat, c, bias, w, h, n):
    """bias + sum over i < n of w[i] h[i], for the chunk (bias, w, h: offsets of rows in
    flat, consecutive rows from w and h). One chain of FMAs: two partial sums would halve
    the 32 x 32 layer's latency, but their loop, present at all, took the 1-16-1 forward
    from 6.8 to 16 ns per lane-row."""
    a = vload(flat, bias + c)
    for i in range(n):
        a = vadd(a, vmul(vload(flat, w + i * LANES + c), vload(flat, h + i * LANES + c)))
    return a


@njit(**_INLINE)
def _forward(flat, c, lt, depth, act, row_h0):
    """The chunk's forward pass from its input rows row_h0: each hidden layer's
    activations in its rows; returns the output z. The last hidden layer folds each unit
    into z as it is computed (the output layer has one unit)."""
    row_in = row_h0
    w_out, b_out = lt[6 * depth + 2], lt[6 * depth + 3]
    z = vload(flat, b_out * LANES + c)
    for k in range(depth):
        n_in, n_out, w, b, out = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3], lt[6 * k + 4]
        top = k == depth - 1
        for o in range(n_out):
            a = _dot(flat, c, (b + o) * LANES, (w + o * n_in) * LANES, row_in * LANES, n_in)
            h = _act(a, act)
            vstore(flat, (out + o) * LANES + c, h)
            if top:
                z = vadd(z, vmul(vload(flat, (w_out + o) * LANES + c), h))
        row_in = out
    if depth == 0:
        z = _dot(flat, c, b_out * LANES, w_out * LANES, row_h0 * LANES, lt[0])
    return z


@njit(**_INLINE)
def _add_to(flat, row, c, value):
    """flat row's chunk += value (a gradient sum)."""
    at = row * LANES + c
    vstore(flat, at, vadd(vload(flat, at), value))


@njit(**_INLINE)
def _bn_grads(flat, c, g0, gamma, d, row_dh0, row_xhat):
    """Batchnorm's weight and bias gradients of one row, from its dL/dh0 and xhat."""
    for f in range(d):
        dh = vload(flat, (row_dh0 + f) * LANES + c)
        _add_to(flat, g0 + gamma + f, c, vmul(dh, vload(flat, (row_xhat + f) * LANES + c)))
        _add_to(flat, g0 + gamma + d + f, c, dh)


@njit(**_INLINE)
def _backward(flat, c, z, lt, depth, act, loss, row_h0, row_y, g0, bn, row_xhat, row_dh0,
              gamma, d):
    """Adds the chunk's gradients of one row (output z) to the gradient rows (g0 + a
    parameter's row); hidden layer k's deltas go to its delta rows, batchnorm's dL/dh0 to
    row_dh0."""
    y = vload(flat, row_y * LANES + c)
    if loss == LOSS_MSE:
        dz = vmul(vsub(z, y), _2)
    else:
        dz = vsub(_sigmoid(z), y)
    w_out, b_out = lt[6 * depth + 2], lt[6 * depth + 3]
    _add_to(flat, g0 + b_out, c, dz)
    if depth == 0:          # the output layer reads the input
        for i in range(lt[0]):
            _add_to(flat, g0 + w_out + i, c, vmul(dz, vload(flat, (row_h0 + i) * LANES + c)))
            if bn:
                vstore(flat, (row_dh0 + i) * LANES + c, vmul(vload(flat, (w_out + i) * LANES + c), dz))
    for k in range(depth - 1, -1, -1):
        n_in, n_out, w, b = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3]
        out, dl = lt[6 * k + 4], lt[6 * k + 5]
        row_in = row_h0 if k == 0 else lt[6 * k - 2]         # layer k - 1's output rows
        propagate = k > 0 or bn
        din = row_dh0 if k == 0 else lt[6 * k - 1]           # layer k - 1's delta rows
        if propagate:
            for i in range(n_in):
                vstore(flat, (din + i) * LANES + c, vsplat(_0))
        for o in range(n_out):
            if k == depth - 1:       # the output's delta through its weight
                h = vload(flat, (out + o) * LANES + c)
                _add_to(flat, g0 + w_out + o, c, vmul(dz, h))
                dv = vmul(vmul(dz, vload(flat, (w_out + o) * LANES + c)), _act_grad(h, act))
            else:                    # the layer above propagated its sum here
                dv = vmul(vload(flat, (dl + o) * LANES + c),
                          _act_grad(vload(flat, (out + o) * LANES + c), act))
            _add_to(flat, g0 + b + o, c, dv)
            # the unit's weights' gradients, and its share of each input's delta sum
            # sum_o W[o, i] d[o]: along the unit's row of weights, whose rows are adjacent
            # (input-major, the sums in registers, read them 4 KB apart with 32 lanes: the
            # 32 x 32 layer's backward took 720 ns per lane-row)
            wo = w + o * n_in
            for i in range(n_in):
                hv = vload(flat, (row_in + i) * LANES + c)
                _add_to(flat, g0 + wo + i, c, vmul(dv, hv))
                if propagate:
                    _add_to(flat, din + i, c, vmul(vload(flat, (wo + i) * LANES + c), dv))
    if bn:
        _bn_grads(flat, c, g0, gamma, d, row_dh0, row_xhat)


# ---- K outputs (cross_entropy's K logits, k regression targets) ---------------------------
# The output layer is one more layer: its outputs and deltas in workspace rows, as the
# hidden layers', where the one-output functions above keep z and dz in registers (and fold
# the output into the top hidden layer's loop). The one-output model, the speed that
# matters most, keeps its own code.
@njit(**_INLINE)
def _forward_k(flat, c, lt, depth, act, row_h0):
    """The chunk's forward pass with every layer's outputs in its rows: the hidden layers'
    activations and, in layer ``depth``'s, the K outputs (no activation)."""
    row_in = row_h0
    for k in range(depth + 1):
        n_in, n_out, w, b, out = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3], lt[6 * k + 4]
        for o in range(n_out):
            a = _dot(flat, c, (b + o) * LANES, (w + o * n_in) * LANES, row_in * LANES, n_in)
            if k < depth:
                a = _act(a, act)
            vstore(flat, (out + o) * LANES + c, a)
        row_in = out


@njit(**_INLINE)
def _softmax_terms(flat, c, zr, kout):
    """(max_j z_j, sum_j exp(z_j - max)) of the K outputs in rows zr..: the stable
    softmax's shift and normalizer."""
    m = vload(flat, zr * LANES + c)
    for j in range(1, kout):
        z = vload(flat, (zr + j) * LANES + c)
        m = vwhere(vgt(z, m), z, m)
    s = vsplat(_0)
    for j in range(kout):
        s = vadd(s, _exp(vsub(vload(flat, (zr + j) * LANES + c), m)))
    return m, s


@njit(**_INLINE)
def _output_delta(flat, c, lt, depth, loss, row_y, off):
    """dL/dz of the K outputs (layer depth's output rows) into its delta rows, for a loss
    that is the mean over the batch (the 1 / rows comes with the step):
    mse: 2 (z_j - y_j) / K (F.mse_loss averages over the outputs too);
    cross_entropy: softmax(z)_j - [y == j], y the class in row_y. off: the row's slot
    (its output and delta rows are off rows below layer depth's)."""
    zr, dr, kout = lt[6 * depth + 4] + off, lt[6 * depth + 5] + off, lt[6 * depth + 1]
    if loss == LOSS_MSE:
        scale = np.float32(2.0 / kout)
        for j in range(kout):
            t = vsub(vload(flat, (zr + j) * LANES + c), vload(flat, (row_y + j) * LANES + c))
            vstore(flat, (dr + j) * LANES + c, vmul(t, scale))
    else:
        m, s = _softmax_terms(flat, c, zr, kout)
        y = vload(flat, row_y * LANES + c)
        for j in range(kout):
            p = vdiv(_exp(vsub(vload(flat, (zr + j) * LANES + c), m)), s)
            vstore(flat, (dr + j) * LANES + c, vsub(p, vwhere(veq(y, np.float32(j)), _1, _0)))


@njit(**_INLINE)
def _backward_k(flat, c, lt, depth, act, row_h0, g0, bn, row_xhat, row_dh0, gamma, d):
    """Adds the chunk's gradients of one row to the gradient rows, from the output deltas
    that _output_delta left in layer depth's delta rows: _backward's loop, with the output
    layer one of its layers."""
    for k in range(depth, -1, -1):
        n_in, n_out, w, b = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3]
        out, dl = lt[6 * k + 4], lt[6 * k + 5]
        row_in = row_h0 if k == 0 else lt[6 * k - 2]         # layer k - 1's output rows
        propagate = k > 0 or bn
        din = row_dh0 if k == 0 else lt[6 * k - 1]           # layer k - 1's delta rows
        if propagate:
            for i in range(n_in):
                vstore(flat, (din + i) * LANES + c, vsplat(_0))
        for o in range(n_out):
            dv = vload(flat, (dl + o) * LANES + c)
            if k < depth:
                dv = vmul(dv, _act_grad(vload(flat, (out + o) * LANES + c), act))
            _add_to(flat, g0 + b + o, c, dv)
            wo = w + o * n_in
            for i in range(n_in):
                _add_to(flat, g0 + wo + i, c, vmul(dv, vload(flat, (row_in + i) * LANES + c)))
                if propagate:
                    _add_to(flat, din + i, c, vmul(vload(flat, (wo + i) * LANES + c), dv))
    if bn:
        _bn_grads(flat, c, g0, gamma, d, row_dh0, row_xhat)


@njit(**_INLINE)
def _eval_k(flat, c, lt, depth, loss, y, r, off):
    """The loss of training row r (y [N, k]) summed over the K outputs (mse: the host
    divides by K) and its hit (cross_entropy: the first largest logit is the class, as
    torch.argmax; a NaN logit counts as +inf); off: the row's slot."""
    zr, kout = lt[6 * depth + 4] + off, lt[6 * depth + 1]
    if loss == LOSS_MSE:
        acc = vsplat(_0)
        for j in range(kout):
            t = vsub(vload(flat, (zr + j) * LANES + c), y[r, j])
            acc = vadd(acc, vmul(t, t))
        return acc, vsplat(_0)
    yv = vsplat(y[r, 0])
    m, s = _softmax_terms(flat, c, zr, kout)
    picked = vsplat(_0)
    for j in range(kout):
        picked = vwhere(veq(yv, np.float32(j)), vload(flat, (zr + j) * LANES + c), picked)
    best = vload(flat, zr * LANES + c)
    best = vwhere(veq(best, best), best, _INF)
    arg = vsplat(_0)
    for j in range(1, kout):
        z = vload(flat, (zr + j) * LANES + c)
        take = vgt(vwhere(veq(z, z), z, _INF), best)
        best = vwhere(take, z, best)
        arg = vwhere(take, np.float32(j), arg)
    lv = vsub(vadd(m, _log_ge1(s)), picked)          # logsumexp(z) - z_y
    return lv, vwhere(veq(arg, yv), _1, _0)


@njit(**_INLINE)
def _normalize(flat, c, d, row_x, row_mean, row_rstd, row_xhat, row_h0, gamma):
    """Batchnorm of the chunk's inputs: xhat = (x - mean) * rstd, h0 = xhat g + b."""
    for f in range(d):
        xh = vmul(vsub(vload(flat, (row_x + f) * LANES + c), vload(flat, (row_mean + f) * LANES + c)),
                  vload(flat, (row_rstd + f) * LANES + c))
        vstore(flat, (row_xhat + f) * LANES + c, xh)
        vstore(flat, (row_h0 + f) * LANES + c,
               vadd(vmul(xh, vload(flat, (gamma + f) * LANES + c)),
                    vload(flat, (gamma + d + f) * LANES + c)))


# ---- tiles of rows (K outputs) ---------------------------------------------------------
# Row by row, a layer's weights are read once per row and each unit's sum is one chain of
# dependent FMAs (_dot); the weights' gradient sums are read and written back once per row
# too. A tile takes TILE rows of a segment (none of them ends a lane's batch but the last)
# through each layer together: a weight is loaded once for the four rows, the four sums are
# independent chains, and a gradient sum takes four products between its load and store.
# The rows' inputs, activations and deltas lie in TILE slots, ``S`` floats apart (the
# kernel's rows XR.. up to the layers' deltas, repeated). Each gradient sum adds the rows'
# products in the rows' order, as row by row does: the same operations on the same values,
# so the same bits. 64-32-10 per lane-row (2-core Xeon, 2026-12-06): digits' 24 runs of it
# in the grid (3 blocks of 8, batch 32 and 128) 505 cpu-ns row by row, 311 in tiles of one
# unit; 128 runs, one batch an epoch, 224 to 231 in tiles of one unit, 188 to 195 of two,
# of which the first layer's forward pass takes 50 and its gradients 48, near the 43 of
# its FMAs at two 8-lane FMAs a cycle and 3 GHz. (Tiles of 8 rows gained nothing on 4.)
TILE = 4
assert EVAL_FLUSH % TILE == 0


@njit(**_INLINE)
def _dot_tile(flat, c, bias, w, h, n, S):
    """_dot of the tile's rows: their inputs at h, h + S, h + 2 S, h + 3 S."""
    a0 = vload(flat, bias + c)
    a1, a2, a3 = a0, a0, a0
    for i in range(n):
        wv = vload(flat, w + i * LANES + c)
        at = h + i * LANES + c
        a0 = vadd(a0, vmul(wv, vload(flat, at)))
        a1 = vadd(a1, vmul(wv, vload(flat, at + S)))
        a2 = vadd(a2, vmul(wv, vload(flat, at + 2 * S)))
        a3 = vadd(a3, vmul(wv, vload(flat, at + 3 * S)))
    return a0, a1, a2, a3


@njit(**_INLINE)
def _dot_tile2(flat, c, bias, w, h, n, S):
    """_dot_tile of two adjacent units (bias rows bias and bias + 1; their weights' rows
    from w, n apart): eight independent chains, each input loaded once for both. Four
    chains leave the FMA units waiting on their latency: a loop of this shape took 0.185
    ns a vector FMA against 0.246 for _dot_tile's (8 lanes, data in L1, 2026-12-06)."""
    a0 = vload(flat, bias + c)
    b0 = vload(flat, bias + LANES + c)
    a1, a2, a3 = a0, a0, a0
    b1, b2, b3 = b0, b0, b0
    for i in range(n):
        wa = vload(flat, w + i * LANES + c)
        wb = vload(flat, w + (n + i) * LANES + c)
        at = h + i * LANES + c
        h0, h1 = vload(flat, at), vload(flat, at + S)
        h2, h3 = vload(flat, at + 2 * S), vload(flat, at + 3 * S)
        a0, b0 = vadd(a0, vmul(wa, h0)), vadd(b0, vmul(wb, h0))
        a1, b1 = vadd(a1, vmul(wa, h1)), vadd(b1, vmul(wb, h1))
        a2, b2 = vadd(a2, vmul(wa, h2)), vadd(b2, vmul(wb, h2))
        a3, b3 = vadd(a3, vmul(wa, h3)), vadd(b3, vmul(wb, h3))
    return a0, a1, a2, a3, b0, b1, b2, b3


@njit(**_INLINE)
def _store_tile(flat, at, S, a0, a1, a2, a3, act, hidden):
    """A unit's four rows (through the activation in a hidden layer) into rows at, at + S,
    at + 2 S, at + 3 S."""
    if hidden:
        a0, a1, a2, a3 = _act(a0, act), _act(a1, act), _act(a2, act), _act(a3, act)
    vstore(flat, at, a0)
    vstore(flat, at + S, a1)
    vstore(flat, at + 2 * S, a2)
    vstore(flat, at + 3 * S, a3)


@njit(**_INLINE)
def _forward_k_tile(flat, c, lt, depth, act, row_h0, S):
    """_forward_k of the tile's rows, two units at a time."""
    row_in = row_h0
    for k in range(depth + 1):
        n_in, n_out, w, b, out = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3], lt[6 * k + 4]
        for o in range(0, n_out - 1, 2):
            a0, a1, a2, a3, b0, b1, b2, b3 = _dot_tile2(
                flat, c, (b + o) * LANES, (w + o * n_in) * LANES, row_in * LANES, n_in, S)
            _store_tile(flat, (out + o) * LANES + c, S, a0, a1, a2, a3, act, k < depth)
            _store_tile(flat, (out + o + 1) * LANES + c, S, b0, b1, b2, b3, act, k < depth)
        if n_out % 2:
            o = n_out - 1
            a0, a1, a2, a3 = _dot_tile(flat, c, (b + o) * LANES, (w + o * n_in) * LANES,
                                       row_in * LANES, n_in, S)
            _store_tile(flat, (out + o) * LANES + c, S, a0, a1, a2, a3, act, k < depth)
        row_in = out


@njit(**_INLINE)
def _deltas_tile(flat, at, S, ah, act, hidden):
    """A unit's deltas in the tile's four rows (rows at, at + S, ..), times the
    activation's derivative at its outputs (rows ah, ..) in a hidden layer."""
    d0, d1 = vload(flat, at), vload(flat, at + S)
    d2, d3 = vload(flat, at + 2 * S), vload(flat, at + 3 * S)
    if hidden:
        d0 = vmul(d0, _act_grad(vload(flat, ah), act))
        d1 = vmul(d1, _act_grad(vload(flat, ah + S), act))
        d2 = vmul(d2, _act_grad(vload(flat, ah + 2 * S), act))
        d3 = vmul(d3, _act_grad(vload(flat, ah + 3 * S), act))
    return d0, d1, d2, d3


@njit(**_INLINE)
def _sum_tile(flat, at, d0, d1, d2, d3, h0, h1, h2, h3):
    """flat row at's chunk += d0 h0, then d1 h1, d2 h2, d3 h3 (a gradient sum, in the
    rows' order); h None: += d0, d1, d2, d3 (a bias's)."""
    if h0 is None:
        vstore(flat, at, vadd(vadd(vadd(vadd(vload(flat, at), d0), d1), d2), d3))
    else:
        g = vadd(vadd(vload(flat, at), vmul(d0, h0)), vmul(d1, h1))
        vstore(flat, at, vadd(vadd(g, vmul(d2, h2)), vmul(d3, h3)))


@njit(**_INLINE)
def _backward_k_tile(flat, c, lt, depth, act, row_h0, g0, bn, row_xhat, row_dh0, gamma, d,
                     S, s_rows):
    """_backward_k of the tile's rows (S: their slots' distance in floats, s_rows in
    rows), two units at a time: each input loaded once for both, their shares of an
    input's delta added in one load and store. Every sum adds in _backward_k's order."""
    for k in range(depth, -1, -1):
        n_in, n_out, w, b = lt[6 * k], lt[6 * k + 1], lt[6 * k + 2], lt[6 * k + 3]
        out, dl = lt[6 * k + 4], lt[6 * k + 5]
        row_in = row_h0 if k == 0 else lt[6 * k - 2]
        propagate = k > 0 or bn
        din = row_dh0 if k == 0 else lt[6 * k - 1]
        if propagate:
            for i in range(n_in):
                at = (din + i) * LANES + c
                for t in range(TILE):
                    vstore(flat, at + t * S, vsplat(_0))
        for o in range(0, n_out, 2):
            pair = o + 1 < n_out
            d0, d1, d2, d3 = _deltas_tile(flat, (dl + o) * LANES + c, S,
                                          (out + o) * LANES + c, act, k < depth)
            _sum_tile(flat, (g0 + b + o) * LANES + c, d0, d1, d2, d3, None, None, None, None)
            e0, e1, e2, e3 = d0, d1, d2, d3
            if pair:
                e0, e1, e2, e3 = _deltas_tile(flat, (dl + o + 1) * LANES + c, S,
                                              (out + o + 1) * LANES + c, act, k < depth)
                _sum_tile(flat, (g0 + b + o + 1) * LANES + c, e0, e1, e2, e3,
                          None, None, None, None)
            wa, wb = w + o * n_in, w + (o + 1) * n_in
            for i in range(n_in):
                ah = (row_in + i) * LANES + c
                h0, h1 = vload(flat, ah), vload(flat, ah + S)
                h2, h3 = vload(flat, ah + 2 * S), vload(flat, ah + 3 * S)
                _sum_tile(flat, (g0 + wa + i) * LANES + c, d0, d1, d2, d3, h0, h1, h2, h3)
                if pair:
                    _sum_tile(flat, (g0 + wb + i) * LANES + c, e0, e1, e2, e3, h0, h1, h2, h3)
                if propagate:
                    xa = vload(flat, (wa + i) * LANES + c)
                    ai = (din + i) * LANES + c
                    if pair:
                        xb = vload(flat, (wb + i) * LANES + c)
                        vstore(flat, ai, vadd(vadd(vload(flat, ai), vmul(xa, d0)), vmul(xb, e0)))
                        vstore(flat, ai + S, vadd(vadd(vload(flat, ai + S), vmul(xa, d1)),
                                                  vmul(xb, e1)))
                        vstore(flat, ai + 2 * S, vadd(vadd(vload(flat, ai + 2 * S), vmul(xa, d2)),
                                                      vmul(xb, e2)))
                        vstore(flat, ai + 3 * S, vadd(vadd(vload(flat, ai + 3 * S), vmul(xa, d3)),
                                                      vmul(xb, e3)))
                    else:
                        vstore(flat, ai, vadd(vload(flat, ai), vmul(xa, d0)))
                        vstore(flat, ai + S, vadd(vload(flat, ai + S), vmul(xa, d1)))
                        vstore(flat, ai + 2 * S, vadd(vload(flat, ai + 2 * S), vmul(xa, d2)))
                        vstore(flat, ai + 3 * S, vadd(vload(flat, ai + 3 * S), vmul(xa, d3)))
    if bn:
        for t in range(TILE):
            _bn_grads(flat, c, g0, gamma, d, row_dh0 + t * s_rows, row_xhat + t * s_rows)


# ---- a block's rows ------------------------------------------------------------------------
@njit(**_INLINE)
def _fill_rows(flat, x, y, d, ky, r, row_x, row_y):
    """The input rows (row_x.., row_y..) <- training row r (x [n, d], y [n, ky]), the same
    for every lane. ky is a constant 1 in the one-output loops."""
    for f in range(d):
        v = vsplat(x[r, f])
        for c in range(0, LANES, W):
            vstore(flat, (row_x + f) * LANES + c, v)
    for j in range(ky):
        v = vsplat(y[r, j])
        for c in range(0, LANES, W):
            vstore(flat, (row_y + j) * LANES + c, v)


@njit(**_INLINE)
def _gather_rows(flat, x, y, d, ky, rows, row_x, row_y):
    """The input rows <- for each lane l, training row rows[l]."""
    for f in range(d):
        base = (row_x + f) * LANES
        for l in range(LANES):
            flat[base + l] = x[rows[l], f]
    for j in range(ky):
        for l in range(LANES):
            flat[(row_y + j) * LANES + l] = y[rows[l], j]


@njit(**_INLINE)
def _position_rows(rows, oq, order, te, pos):
    """rows[l] = the row lane l visits at position pos of epoch te of the tables."""
    for l in range(LANES):
        q = oq[l]
        rows[l] = pos if q < 0 else order[q, te, pos]


@njit(**_INLINE)
def _batch_stats(flat, bstart, bend, on, p, uniform, first_q, oq, order, te, x, y, ky, d, rows,
                 XR, YR, BM, BR, BV, S1, S2, CNT, START):
    """Batch mean (BM), biased variance (BV) and rsqrt(var + eps) (BR) of every lane whose
    batch starts at p (its rows p..bend), in two passes, summed then divided, as
    BatchNorm1d; the other lanes keep theirs."""
    longest = -1
    for l in range(LANES):
        starts = on[l] and bstart[l] == p
        flat[START * LANES + l] = _1 if starts else _0
        flat[CNT * LANES + l] = np.float32(bend[l] - p + 1) if starts else _0
        if starts:
            longest = max(longest, bend[l])
    if longest < 0:
        return
    for f in range(d):
        for c in range(0, LANES, W):
            vstore(flat, (S1 + f) * LANES + c, vsplat(_0))
            vstore(flat, (S2 + f) * LANES + c, vsplat(_0))
    for stage in range(2):
        for pos in range(p, longest + 1):
            i = np.float32(pos - p)
            if uniform:
                _fill_rows(flat, x, y, d, ky,
                           pos if first_q < 0 else order[first_q, te, pos], XR, YR)
            else:
                _position_rows(rows, oq, order, te, pos)
                _gather_rows(flat, x, y, d, ky, rows, XR, YR)
            for c in range(0, LANES, W):
                valid = vlt(vsplat(i), vload(flat, CNT * LANES + c))
                for f in range(d):
                    v = vload(flat, (XR + f) * LANES + c)
                    if stage == 0:
                        _add_to(flat, S1 + f, c, vwhere(valid, v, _0))
                    else:
                        dv = vsub(v, vload(flat, (S1 + f) * LANES + c))
                        _add_to(flat, S2 + f, c, vwhere(valid, vmul(dv, dv), _0))
        if stage == 0:      # the sums become means (0/0 in lanes not starting: unused)
            for f in range(d):
                for c in range(0, LANES, W):
                    at = (S1 + f) * LANES + c
                    vstore(flat, at, vdiv(vload(flat, at), vload(flat, CNT * LANES + c)))
    for f in range(d):
        for c in range(0, LANES, W):
            starts = vgt(vload(flat, START * LANES + c), _0)
            var = vdiv(vload(flat, (S2 + f) * LANES + c), vload(flat, CNT * LANES + c))
            at_m, at_v, at_r = (BM + f) * LANES + c, (BV + f) * LANES + c, (BR + f) * LANES + c
            vstore(flat, at_m, vwhere(starts, vload(flat, (S1 + f) * LANES + c), vload(flat, at_m)))
            vstore(flat, at_v, vwhere(starts, var, vload(flat, at_v)))
            vstore(flat, at_r, vwhere(starts, vdiv(_1, vsqrt(vadd(var, BN_EPS))), vload(flat, at_r)))


@njit(**_INLINE)
def _running_stats(flat, d, RM, RV, BM, BV, TAKE, CNT):
    """BatchNorm1d's running statistics after a step (momentum 0.1, unbiased variance)."""
    for f in range(d):
        for c in range(0, LANES, W):
            take = vgt(vload(flat, TAKE * LANES + c), _0)
            cnt = vload(flat, CNT * LANES + c)
            unbiased = vmul(vload(flat, (BV + f) * LANES + c), vdiv(cnt, vsub(cnt, _1)))
            am, av = (RM + f) * LANES + c, (RV + f) * LANES + c
            rm, rv = vload(flat, am), vload(flat, av)
            new_m = vadd(vmul(rm, _1 - BN_MOMENTUM), vmul(vload(flat, (BM + f) * LANES + c), BN_MOMENTUM))
            new_v = vadd(vmul(rv, _1 - BN_MOMENTUM), vmul(unbiased, BN_MOMENTUM))
            vstore(flat, am, vwhere(take, new_m, rm))
            vstore(flat, av, vwhere(take, new_v, rv))


@njit(**_INLINE)
def _adam(w, m, v, gsum, scale, wdc, step, decay, omb1, b2, omb2, eps):
    """Adam's (adamw's) new parameter, exp_avg and exp_avg_sq from gradient sums, in
    torch.optim's order (_step's formulas) but for its second bias correction c, which
    comes folded into ``step`` and ``eps``: s m / (sqrt(v) / c + eps) = (s c) m / (sqrt(v)
    + eps c) (_adam_factors), a division a parameter fewer. The divider holds a root and
    two divisions at about 10 cycles each: digits' groups trained 5 to 9% faster with one
    division, the rows kernel's step beside its gradient sums (bench/NOTES.md)."""
    g = vadd(vmul(gsum, scale), vmul(wdc, w))
    m2 = vadd(m, vmul(omb1, vsub(g, m)))
    v2 = vadd(vmul(v, b2), vmul(omb2, vmul(g, g)))
    return vsub(vmul(w, decay), vmul(step, vdiv(m2, vadd(vsqrt(v2), eps)))), m2, v2


@njit(**_INLINE)
def _adam_factors(lr, b1t, b2t, eps):
    """Adam's step size and eps, float32, for _adam: lr / (1 - b1^t) and eps, each times
    the second bias correction sqrt(1 - b2^t) (b1t, b2t: beta ** step), in float64 as
    torch.optim computes its corrections."""
    c = math.sqrt(abs(1.0 - b2t))
    return np.float32(lr / (1.0 - b1t) * c), np.float32(eps * c)


@njit(**_INLINE)
def _sgd(w, m, gsum, scale, wdc, step, mom, nest):
    """SGD's new parameter and momentum buffer from gradient sums (nest: the lanes that
    take Nesterov's step), as _step has them."""
    g = vadd(vmul(gsum, scale), vmul(wdc, w))
    m2 = vadd(vmul(m, mom), g)
    return vsub(w, vmul(step, vwhere(nest, vadd(g, vmul(mom, m2)), m2))), m2


@njit(**_INLINE)
def _step(flat, P, G, M, V, opt, SCALE, TAKE, STEP, EPSC, DECAY, OMB1, B2, OMB2, MOM, NEST,
          WDC):
    """One optimizer step of the lanes with TAKE set, in torch.optim's order, and their
    gradients cleared; the other lanes keep their values.

    sgd: g += wd p; buf = mom buf + g; p -= lr (nesterov ? g + mom buf : buf)   (M = buf)
    adam/adamw: p *= decay (1 - lr wd for adamw, else 1); g += wd p (adam);
        m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
        p -= step m / (sqrt(v) + epsc),  step = lr sqrt(1 - b2^t) / (1 - b1^t) and
        epsc = eps sqrt(1 - b2^t): torch.optim's m / (sqrt(v) / sqrt(1 - b2^t) + eps) with the
        correction folded into the step size and eps (_adam)
    """
    for c in range(0, LANES, W):
        take = vgt(vload(flat, TAKE * LANES + c), _0)
        scale, wdc = vload(flat, SCALE * LANES + c), vload(flat, WDC * LANES + c)
        step = vload(flat, STEP * LANES + c)
        if opt == OPT_ADAM:
            omb1, b2 = vload(flat, OMB1 * LANES + c), vload(flat, B2 * LANES + c)
            omb2, eps = vload(flat, OMB2 * LANES + c), vload(flat, EPSC * LANES + c)
            decay = vload(flat, DECAY * LANES + c)
            for j in range(P):
                ap, ag, am, av = j * LANES + c, (G + j) * LANES + c, (M + j) * LANES + c, (V + j) * LANES + c
                w, m, v = vload(flat, ap), vload(flat, am), vload(flat, av)
                w2, m2, v2 = _adam(w, m, v, vload(flat, ag), scale, wdc, step, decay, omb1,
                                   b2, omb2, eps)
                vstore(flat, ap, vwhere(take, w2, w))
                vstore(flat, am, vwhere(take, m2, m))
                vstore(flat, av, vwhere(take, v2, v))
                vstore(flat, ag, vwhere(take, _0, vload(flat, ag)))
        else:
            mom = vload(flat, MOM * LANES + c)
            nest = vgt(vload(flat, NEST * LANES + c), _0)
            for j in range(P):
                ap, ag, am = j * LANES + c, (G + j) * LANES + c, (M + j) * LANES + c
                w, m = vload(flat, ap), vload(flat, am)
                w2, m2 = _sgd(w, m, vload(flat, ag), scale, wdc, step, mom, nest)
                vstore(flat, ap, vwhere(take, w2, w))
                vstore(flat, am, vwhere(take, m2, m))
                vstore(flat, ag, vwhere(take, _0, vload(flat, ag)))


@njit(**_INLINE)
def _evaluate_k(flat, ev, slot, x, y, lt, depth, act, loss, bn, d, gamma, XR, YR, XH, H0,
                BM, BR, ACC, SR):
    """_evaluate of a model with K outputs (_eval_k: y [N, k], the loss summed over the
    outputs; cross_entropy's hits: the argmax): the rows' forward passes in tiles as in
    _segment_k (the last tile's spare slots take the last row again, and count for
    nothing), their sums row by row. (A tile's rows never straddle a flush: TILE divides
    EVAL_FLUSH.)"""
    n_rows = x.shape[0]
    ky = y.shape[1]
    for r0 in range(0, n_rows, TILE):
        rows = min(TILE, n_rows - r0)
        for t in range(TILE):
            _fill_rows(flat, x, y, d, ky, min(r0 + t, n_rows - 1), XR + t * SR, YR + t * SR)
        for c in range(0, LANES, W):
            if bn:
                for t in range(TILE):
                    off = t * SR
                    _normalize(flat, c, d, XR + off, BM, BR, XH + off, H0 + off, gamma)
            _forward_k_tile(flat, c, lt, depth, act, H0, SR * LANES)
            for t in range(rows):
                lv, hit = _eval_k(flat, c, lt, depth, loss, y, r0 + t, t * SR)
                _add_to(flat, ACC, c, lv)
                _add_to(flat, ACC + 1, c, hit)
        if (r0 + TILE) % EVAL_FLUSH == 0 or r0 + rows == n_rows:
            _flush(flat, ev, slot, ACC)


@njit(**_INLINE)
def _eval_column(eval_epochs, epoch):
    """searchsorted(eval_epochs, epoch): the curves' column of an evaluation after
    ``epoch`` epochs (a loop: np.searchsorted took 0.3 s to compile)."""
    col = 0
    while col < eval_epochs.shape[0] - 1 and eval_epochs[col] < epoch:
        col += 1
    return col


@njit(**_INLINE)
def _write_curves(c_tl, c_vl, c_ta, c_va, row, col, s_tl, s_ta, s_vl, s_va, n, n_val, per_row,
                  loss):
    """A run's evaluation into the curves from its sums (loss, hits; training, then
    validation rows); returns its training loss."""
    train_loss = np.float32(s_tl / (n * per_row))
    c_tl[row, col] = train_loss
    if n_val > 0:
        c_vl[row, col] = np.float32(s_vl / (n_val * per_row))
    if loss != LOSS_MSE:
        c_ta[row, col] = np.float32(s_ta / n)
        if n_val > 0:
            c_va[row, col] = np.float32(s_va / n_val)
    return train_loss


@njit(**_INLINE)
def _flush(flat, ev, slot, ACC):
    """ev[slot], ev[slot + 1] += the float32 sums in rows ACC, ACC + 1, which restart."""
    for l in range(LANES):
        ev[slot, l] += flat[ACC * LANES + l]
        ev[slot + 1, l] += flat[(ACC + 1) * LANES + l]
        flat[ACC * LANES + l] = _0
        flat[(ACC + 1) * LANES + l] = _0


@njit(**_INLINE)
def _evaluate(flat, ev, slot, x, y, lt, depth, act, loss, bn, d, gamma, XR, YR, XH, H0, BM,
              BR, ACC):
    """ev[slot] += every lane's loss over the rows of x [N, d], y [N, 1]; ev[slot + 1] += its
    hits (bce: logit > 0 predicts 1). Eval mode: BM and BR hold the running statistics.
    Rows ACC, ACC + 1 hold float32 sums of up to EVAL_FLUSH rows."""
    n_rows = x.shape[0]
    for r in range(n_rows):
        _fill_rows(flat, x, y, d, 1, r, XR, YR)
        for c in range(0, LANES, W):
            if bn:
                _normalize(flat, c, d, XR, BM, BR, XH, H0, gamma)
            z = _forward(flat, c, lt, depth, act, H0)
            yv = vsplat(y[r, 0])
            if loss == LOSS_MSE:
                t = vsub(z, yv)
                _add_to(flat, ACC, c, vmul(t, t))
            else:   # max(z, 0) - z y + log1p(exp(-|z|)), finite for any finite z
                lv = vadd(vsub(vwhere(vgt(z, _0), z, _0), vmul(z, yv)),
                          _log1p_unit(_exp(vmul(vabs(z), _M1))))
                _add_to(flat, ACC, c, lv)
                hit = vwhere(veq(vwhere(vgt(z, _0), _1, _0), yv), _1, _0)
                _add_to(flat, ACC + 1, c, hit)
        if (r + 1) % EVAL_FLUSH == 0 or r == n_rows - 1:
            _flush(flat, ev, slot, ACC)


@njit(**_INLINE)
def _segment(flat, x, y, d, p, q, uniform, first_q, oq, order, te, rows, lt, depth, act, loss,
             bn, XR, YR, XH, H0, BM, BR, DH, G, gamma):
    """Forward and backward passes of rows p..q of the epoch's order (q: the next batch
    end of some lane), every lane's gradients summed; y [n, 1]. (The row is loaded here,
    not by a helper that picks how: through one, the line model took 1.4x as long.)"""
    for pos in range(p, q + 1):
        if uniform:
            _fill_rows(flat, x, y, d, 1, pos if first_q < 0 else order[first_q, te, pos], XR, YR)
        else:
            _position_rows(rows, oq, order, te, pos)
            _gather_rows(flat, x, y, d, 1, rows, XR, YR)
        for c in range(0, LANES, W):
            if bn:
                _normalize(flat, c, d, XR, BM, BR, XH, H0, gamma)
            z = _forward(flat, c, lt, depth, act, H0)
            _backward(flat, c, z, lt, depth, act, loss, H0, YR, G, bn, XH, DH, gamma, d)


@njit(**_INLINE)
def _segment_line(flat, x, y, p, q, uniform, first_q, oq, order, te, rows, lt, loss, XR, YR,
                  G):
    """_segment of the line model (no hidden layer, one input, one output, no batchnorm):
    the weight, the bias and their gradient sums stay in registers for the rows p..q, where
    _segment loads and stores them through the workspace at every row (LLVM cannot keep
    them: the workspace and the data might overlap, as far as it knows). The same
    operations in the same order as _forward and _backward, so the same bits.

    MSE's dz = 2 (z - y) is summed as z - y into halves of the sums, doubled at the end:
    scaling by 2 is exact in floating point (the same bits, overflow and the FTZ'd range
    below 2**-125 aside), and it spares one of the row's five vector operations, by which
    the row loop is bound: 0.099 to 0.079 cpu-ns a lane-row (64 lanes, 1,000 rows a batch,
    the 2-core Xeon), the same bits on a shuffled and unshuffled grid of odd batch sizes."""
    w_out, b_out = lt[2], lt[3]
    mse = loss == LOSS_MSE
    for c in range(0, LANES, W):
        w, b = vload(flat, w_out * LANES + c), vload(flat, b_out * LANES + c)
        gw, gb = vload(flat, (G + w_out) * LANES + c), vload(flat, (G + b_out) * LANES + c)
        if mse:
            gw, gb = vmul(gw, _HALF), vmul(gb, _HALF)
        for pos in range(p, q + 1):
            # unsigned indices: numba emits no wraparound for them (three scalar operations
            # an index; shuffled rows 0.054 -> 0.048 cpu-ns a lane-row)
            if uniform:
                u = np.uint64(pos)
                r = u if first_q < 0 else np.uint64(order[first_q, te, u])
                xv, yv = vsplat(x[r, 0]), vsplat(y[r, 0])
            else:
                _position_rows(rows, oq, order, te, pos)
                _gather_rows(flat, x, y, 1, 1, rows, XR, YR)
                xv, yv = vload(flat, XR * LANES + c), vload(flat, YR * LANES + c)
            z = vadd(b, vmul(w, xv))
            if mse:
                dz = vsub(z, yv)                  # half of it
            else:
                dz = vsub(_sigmoid(z), yv)
            gb = vadd(gb, dz)
            gw = vadd(gw, vmul(dz, xv))
        if mse:
            gw, gb = vmul(gw, _2), vmul(gb, _2)
        vstore(flat, (G + w_out) * LANES + c, gw)
        vstore(flat, (G + b_out) * LANES + c, gb)


@njit(**_INLINE)
def _segment_k(flat, x, y, d, p, q, uniform, first_q, oq, order, te, rows, lt, depth, act,
               loss, bn, XR, YR, XH, H0, BM, BR, DH, G, gamma, SR):
    """_segment of a model with K outputs; y [n, k]. Tiles of TILE rows, then the rest
    row by row; SR: the rows between two slots of a tile."""
    ky = y.shape[1]
    S = SR * LANES
    pos = p
    while pos + TILE <= q + 1:
        for t in range(TILE):
            off = t * SR
            if uniform:
                _fill_rows(flat, x, y, d, ky, pos + t if first_q < 0 else order[first_q, te, pos + t],
                           XR + off, YR + off)
            else:
                _position_rows(rows, oq, order, te, pos + t)
                _gather_rows(flat, x, y, d, ky, rows, XR + off, YR + off)
        for c in range(0, LANES, W):
            if bn:
                for t in range(TILE):
                    off = t * SR
                    _normalize(flat, c, d, XR + off, BM, BR, XH + off, H0 + off, gamma)
            _forward_k_tile(flat, c, lt, depth, act, H0, S)
            for t in range(TILE):
                _output_delta(flat, c, lt, depth, loss, YR + t * SR, t * SR)
            _backward_k_tile(flat, c, lt, depth, act, H0, G, bn, XH, DH, gamma, d, S, SR)
        pos += TILE
    for pos in range(pos, q + 1):
        if uniform:
            _fill_rows(flat, x, y, d, ky, pos if first_q < 0 else order[first_q, te, pos], XR, YR)
        else:
            _position_rows(rows, oq, order, te, pos)
            _gather_rows(flat, x, y, d, ky, rows, XR, YR)
        for c in range(0, LANES, W):
            if bn:
                _normalize(flat, c, d, XR, BM, BR, XH, H0, gamma)
            _forward_k(flat, c, lt, depth, act, H0)
            _output_delta(flat, c, lt, depth, loss, YR, 0)
            _backward_k(flat, c, lt, depth, act, H0, G, bn, XH, DH, gamma, d)


@njit(**_INLINE)
def _all_finite(flat, first, count, ok):
    """ok[l] &= every workspace row first..first+count-1 is finite in lane l."""
    for r in range(first, first + count):
        for l in range(LANES):
            v = flat[r * LANES + l]
            if not (v - v == _0):           # NaN and inf give NaN
                ok[l] = False


# One compiled kernel per variant, the depth and the output kind (one, or K) its constants:
# the training loop exists once in each, with its layers' loops folded (the line model's
# rows took 1.56 ns per lane-row with the depth a variable, 0.20 with it a constant), and a
# config compiles the variants it uses. The activation, loss, optimizer family and
# batchnorm stay arguments: variants of those too compiled in 7 to 10 s each but a sweep of
# several architectures needed many (60 for tests/test_numba_backend.py, 6 min).
_VARIANTS: dict = {}
_VARIANTS_LOCK = threading.Lock()


def train_blocks(depth: int, multi: bool):
    """The kernel of one variant (compiled on its first call, then from numba's disk cache):

        kernel(b_lo, b_hi, ws_state, fhp, ihp, x, y, xv, yv, order, o_e0, c_tl, c_vl, c_ta,
               c_va, eval_epochs, eval_every, layers, d, n_par, gamma, act, loss, opt, bn,
               e0, e1)

    trains epochs e0..e1-1 of blocks b_lo..b_hi-1 (LANES runs each), evaluating each run
    after its evaluation epochs in that range. Releases the GIL: the host trains ranges of
    blocks from several threads (trainer/backends/numba_backend.py).

    Variant: depth (hidden layers, 0 to 2); multi: K outputs (cross_entropy, several mse
        targets), else one.
    State, per block, updated in place:
        ws_state: float32 [blocks, 3 * n_par + 2 * d, LANES]: parameters (the rows of
            torch_backend.Layout), momentum buffer or exp_avg, exp_avg_sq, then the
            batchnorm running mean and var (d rows each).
        fhp: float64 [F_ROWS, runs], ihp: int64 [I_ROWS, runs] (runs = blocks * LANES): the
            runs' hyperparameters and their state (F_* and I_* rows).
    Data: x float32 [n, d], y [n, k]; validation xv [n_val, d], yv [n_val, k] (n_val may
        be 0); k: the regression targets, or 1 (bce's label, cross_entropy's class).
    order: int32 [Q, epochs, n], the permutation tables of epochs o_e0.. (ihp[I_ORDER]
        picks a run's q); [1, 1, 1] when no run shuffles.
    c_tl, c_vl, c_ta, c_va: float32 [R, E], the curves (train loss, val loss, train and
        val accuracy; [1, 1] where the sweep has none), row ihp[I_ROW] of a run, column
        searchsorted(eval_epochs, epoch); written where evaluated.
    Model: layers int64 [depth + 1, 6]: (in, out, weight row, bias row, -, -) per Linear
        (the last one's out: K, the outputs); gamma: batchnorm's weight row (its bias d
        rows after); act, loss, opt: the ACT_, LOSS_, OPT_ codes; bn: batchnorm on the
        input.

    The MXCSR's flush-to-zero and denormals-are-zero bits are set while the blocks train
    (and restored after): saturated units drive Adam's exp_avg_sq and some gradients
    below 2**-126, where every operation takes a microcode assist; on the 1-16-1 MLP that
    cost 22.4 against 16.7 ns per lane-row. Values that small change no result at the
    tests' tolerance (the reference keeps them).
    """
    key = (int(depth), bool(multi))
    with _VARIANTS_LOCK:        # groups trained side by side share each variant
        if key not in _VARIANTS:
            _VARIANTS[key] = _variant(*key)
        return _VARIANTS[key]


def _variant(depth, multi):
    """The kernel of one variant. Its constants are the closure's variables: numba prunes
    the branches they decide before typing (a helper's literal arguments it only folds
    later: what a pruned branch calls is never compiled), and its disk cache keys each
    variant by their values. The training loop is written here, in the kernel, not in a
    helper numba inlines: inlining deep-copies the callee's IR block by block, each copy
    with every variable of its scope (6.9 of 21 s of a compile under cProfile)."""
    @njit(nogil=True, **_OPTS)
    def kernel(b_lo, b_hi, ws_state, fhp, ihp, x, y, xv, yv, order, o_e0, c_tl, c_vl, c_ta,
               c_va, eval_epochs, eval_every, layers, d, n_par, gamma, act, loss, opt, bn, e0,
               e1):
        mxcsr = mxcsr_ftz()
        for blk in range(b_lo, b_hi):    # the block's LANES runs through epochs e0..e1-1
            n, n_val = x.shape[0], xv.shape[0]
            lo = blk * LANES
            ky = y.shape[1] if multi else 1         # y's columns: a constant 1 for one output
            # ---- workspace rows ------------------------------------------------------------------
            P = n_par
            WP, G, M, V = 0 * P, P, 2 * P, 3 * P   # parameters, gradients, momentum or exp_avg,
            # exp_avg_sq (variables, not literals: a literal argument compiles its own callee)
            RM, RV = 4 * P, 4 * P + d              # batchnorm running statistics
            XR = RV + d                             # the row's input
            YR = XR + d                             # and targets (ky rows)
            XH = YR + ky                            # batchnorm: xhat, batch mean, rsqrt(var + eps),
            BM, BR, BV, DH = XH + d, XH + 2 * d, XH + 3 * d, XH + 4 * d    # var, dL/dh0,
            S1, S2 = XH + 5 * d, XH + 6 * d         # the batch's sums
            H0 = XH + 7 * d if bn else XR           # the first layer's input
            LAY = XH + 8 * d                        # layer outputs and deltas
            width = 0
            for k in range(depth + 1):
                width += layers[k, 1]
            lay = np.zeros((3, 6), np.int64)        # three layers: the deepest model's
            for k in range(depth + 1):
                for j in range(6):
                    lay[k, j] = layers[k, j]
            at = LAY
            for k in range(depth + 1):
                lay[k, 4] = at
                lay[k, 5] = at + width
                at += lay[k, 1]
            lt = (lay[0, 0], lay[0, 1], lay[0, 2], lay[0, 3], lay[0, 4], lay[0, 5],
                  lay[1, 0], lay[1, 1], lay[1, 2], lay[1, 3], lay[1, 4], lay[1, 5],
                  lay[2, 0], lay[2, 1], lay[2, 2], lay[2, 3], lay[2, 4], lay[2, 5])
            # K outputs: the rows XR..LAY + 2 width are a tile's first slot, TILE of them
            SR = LAY + 2 * width - XR if multi else 0
            PL = XR + TILE * SR if multi else LAY + 2 * width   # per-lane values of a step
            SCALE, TAKE, STEP, EPSC, DECAY, OMB1, B2, OMB2, MOM, NEST, WDC, CNT, START, ACC = \
                range(PL, PL + 14)
            rows_ws = PL + 15                       # ACC and ACC + 1
            ws = np.zeros((rows_ws, LANES), np.float32)
            flat = ws.reshape(-1)                   # the same memory, as one vector
            # parameters, optimizer state and running statistics; the gradients start at zero
            # (loops, not slice assignments: numba's lowering of those took 3 s of the compile)
            for r in range(P):
                for l in range(LANES):
                    ws[r, l] = ws_state[blk, r, l]
            for r in range(P, ws_state.shape[1]):
                for l in range(LANES):
                    ws[M - P + r, l] = ws_state[blk, r, l]

            # ---- the lanes' constants ------------------------------------------------------------
            bs = ihp[I_BS, lo:lo + LANES]
            epochs = ihp[I_EPOCHS, lo:lo + LANES]
            ssize = ihp[I_SSIZE, lo:lo + LANES]
            oq = ihp[I_ORDER, lo:lo + LANES]
            row_of = ihp[I_ROW, lo:lo + LANES]
            steps = ihp[I_STEPS, lo:lo + LANES]
            f_lr, f_wdd = fhp[F_LR, lo:lo + LANES], fhp[F_WDD, lo:lo + LANES]
            f_b1, f_b2 = fhp[F_BETA1, lo:lo + LANES], fhp[F_BETA2, lo:lo + LANES]
            f_b1t, f_b2t = fhp[F_B1T, lo:lo + LANES], fhp[F_B2T, lo:lo + LANES]
            f_eps = fhp[F_EPS, lo:lo + LANES]
            active = ihp[I_ACTIVE, lo:lo + LANES]
            inv_bs = np.zeros(LANES, np.float32)     # 1 / batch size: a full batch's scale
            for l in range(LANES):
                inv_bs[l] = _1 / np.float32(bs[l])
            for l in range(LANES):
                ws[OMB1, l] = np.float32(1.0 - fhp[F_BETA1, lo + l])
                ws[B2, l] = np.float32(fhp[F_BETA2, lo + l])
                ws[OMB2, l] = np.float32(1.0 - fhp[F_BETA2, lo + l])
                ws[MOM, l] = np.float32(fhp[F_MOM, lo + l])
                ws[NEST, l] = np.float32(ihp[I_NEST, lo + l])
                ws[WDC, l] = np.float32(fhp[F_WDC, lo + l])

            BIG = n + 1
            kout = layers[depth, 1]
            per_row = kout if loss == LOSS_MSE else 1       # mse's mean is over the outputs too
            on = np.zeros(LANES, np.bool_)
            bstart = np.zeros(LANES, np.int64)
            bend = np.zeros(LANES, np.int64)
            rows = np.zeros(LANES, np.int64)
            tk = np.zeros(LANES, np.bool_)
            ok = np.zeros(LANES, np.bool_)
            ev = np.zeros((4, LANES), np.float64)    # evaluation sums: loss and hits, train and val
            due = np.zeros(LANES, np.bool_)

            for e in range(e0, e1):
                any_on = False
                for l in range(LANES):
                    on[l] = active[l] != 0 and e < epochs[l]
                    any_on = any_on or on[l]
                if not any_on:
                    break
                # StepLR, stepped at the end of each epoch as torch's: lr *= gamma every
                # ssize epochs
                for l in range(LANES):
                    if on[l] and ssize[l] > 0 and e > 0 and e % ssize[l] == 0:
                        fhp[F_LR, lo + l] *= fhp[F_GAMMA, lo + l]
                # the epoch's per-lane values of a step that only the learning rate moves
                for l in range(LANES):
                    ws[DECAY, l] = np.float32(1.0 - f_lr[l] * f_wdd[l])
                    ws[STEP, l] = np.float32(f_lr[l])          # sgd's; Adam's: at each step
                # One order for the whole block (broadcast rows) or one per lane (gathered rows).
                first_q = np.int64(-2)
                uniform = n > 0
                for l in range(LANES):
                    if on[l]:
                        if first_q == -2:
                            first_q = oq[l]
                        elif oq[l] != first_q:
                            uniform = False
                te = e - o_e0
                for l in range(LANES):
                    bstart[l] = 0
                    bend[l] = min(bs[l], n) - 1 if on[l] else BIG
                p = np.int64(0)
                while p < n:
                    if bn:      # batch statistics of the lanes whose batch starts at p
                        _batch_stats(flat, bstart, bend, on, p, uniform, first_q, oq, order, te,
                                     x, y, ky, d, rows, XR, YR, BM, BR, BV, S1, S2, CNT, START)
                    q = BIG
                    for l in range(LANES):
                        q = min(q, bend[l])
                    # (numba prunes the branch not taken: multi is the variant's constant)
                    if multi:
                        _segment_k(flat, x, y, d, p, q, uniform, first_q, oq, order, te, rows, lt,
                                   depth, act, loss, bn, XR, YR, XH, H0, BM, BR, DH, G, gamma, SR)
                    elif depth == 0 and d == 1 and not bn:
                        _segment_line(flat, x, y, p, q, uniform, first_q, oq, order, te, rows,
                                      lt, loss, XR, YR, G)
                    else:
                        _segment(flat, x, y, d, p, q, uniform, first_q, oq, order, te, rows, lt,
                                 depth, act, loss, bn, XR, YR, XH, H0, BM, BR, DH, G, gamma)
                    # ---- the optimizer step of the lanes whose batch ends at q -------------------
                    # Every lane's values, without a branch (the lanes not taking a step
                    # keep their state: _step selects by TAKE); simple loops, one concern
                    # each, that LLVM vectorizes. Adam's bias corrections in float64, as
                    # torch.optim's; where the stepping lanes share their beta powers (the
                    # usual block: the same betas, the same step), one division and one
                    # root serve them all, lr * (1 / (1 - b1^t)) a double rounding away
                    # from lr / (1 - b1^t) in float64, then rounded to float32. (A float32
                    # division instead moved a chaotic digits run's validation loss 100x
                    # further from the reference's after 2 epochs.) Line model, batch 10,
                    # a block's step: 416 ns with a branch per lane, 285 without (sgd: 270,
                    # 147), 228 with what only the learning rate moves set once an epoch, a
                    # full batch's 1 / rows kept, and the lanes' tests as bitwise ands (sgd
                    # 124; merging these loops into one stopped their vectorizing: 399).
                    for l in range(LANES):
                        take = on[l] & (bend[l] == q)
                        tk[l] = take
                        ws[TAKE, l] = _1 if take else _0
                        cnt = bend[l] - bstart[l] + 1
                        c32 = np.float32(cnt)                        # exact: below 2**24
                        ws[SCALE, l] = inv_bs[l] if cnt == bs[l] else _1 / c32
                        ws[CNT, l] = c32
                    if opt == OPT_ADAM:   # bias corrections in float64, as torch.optim
                        for l in range(LANES):
                            f_b1t[l] = f_b1t[l] * f_b1[l] if tk[l] else f_b1t[l]
                            f_b2t[l] = f_b2t[l] * f_b2[l] if tk[l] else f_b2t[l]
                        first = 0         # a lane that steps (q is some lane's batch end)
                        while not tk[first]:
                            first += 1
                        r1, r2 = f_b1t[first], f_b2t[first]
                        differ = 0        # stepping lanes at other beta powers (no branch)
                        for l in range(LANES):
                            differ += tk[l] & ((f_b1t[l] != r1) | (f_b2t[l] != r2))
                        shared = differ == 0
                        if shared:        # one division and one root for the block
                            inv = 1.0 / (1.0 - f_b1t[first])
                            root = math.sqrt(1.0 - f_b2t[first])
                            for l in range(LANES):
                                ws[STEP, l] = np.float32(f_lr[l] * inv * root)
                                ws[EPSC, l] = np.float32(f_eps[l] * root)
                        else:
                            for l in range(LANES):
                                ws[STEP, l], ws[EPSC, l] = _adam_factors(
                                    f_lr[l], f_b1t[l], f_b2t[l], f_eps[l])
                    for l in range(LANES):
                        t = tk[l]
                        steps[l] += 1 if t else 0
                        bstart[l] = q + 1 if t else bstart[l]
                        nxt = min(q + bs[l], n - 1) if q + 1 < n else BIG
                        bend[l] = nxt if t else bend[l]
                    _step(flat, P, G, M, V, opt, SCALE, TAKE, STEP, EPSC, DECAY, OMB1, B2, OMB2,
                          MOM, NEST, WDC)
                    if bn:
                        _running_stats(flat, d, RM, RV, BM, BV, TAKE, CNT)
                    p = q + 1

                # ---- evaluations due after epoch e + 1 -------------------------------------------
                any_due = False
                for l in range(LANES):
                    due[l] = on[l] and ((e + 1) % eval_every == 0 or e + 1 == epochs[l])
                    any_due = any_due or due[l]
                if not any_due:
                    continue
                col = _eval_column(eval_epochs, e + 1)
                if bn:          # eval mode: the running statistics
                    for f in range(d):
                        for l in range(LANES):
                            ws[BM + f, l] = ws[RM + f, l]
                            ws[BR + f, l] = _1 / np.sqrt(ws[RV + f, l] + BN_EPS)
                for k in range(4):
                    for l in range(LANES):
                        ev[k, l] = 0.0
                for split in range(2 if n_val > 0 else 1):
                    xs, ys = (x, y) if split == 0 else (xv, yv)
                    if multi:
                        _evaluate_k(flat, ev, 2 * split, xs, ys, lt, depth, act, loss, bn, d,
                                    gamma, XR, YR, XH, H0, BM, BR, ACC, SR)
                    else:
                        _evaluate(flat, ev, 2 * split, xs, ys, lt, depth, act, loss, bn, d, gamma,
                                  XR, YR, XH, H0, BM, BR, ACC)
                for l in range(LANES):
                    ok[l] = True
                _all_finite(flat, WP, P, ok)
                if bn:
                    _all_finite(flat, RM, 2 * d, ok)
                for l in range(LANES):
                    if not due[l]:
                        continue
                    train_loss = _write_curves(c_tl, c_vl, c_ta, c_va, row_of[l], col, ev[0, l],
                                               ev[1, l], ev[2, l], ev[3, l], n, n_val, per_row,
                                               loss)
                    if not (ok[l] and math.isfinite(train_loss)):
                        active[l] = 0        # diverged: frozen as of this evaluation
            for r in range(P):
                for l in range(LANES):
                    ws_state[blk, r, l] = ws[r, l]
            for r in range(P, ws_state.shape[1]):
                for l in range(LANES):
                    ws_state[blk, r, l] = ws[M - P + r, l]
        mxcsr_restore(mxcsr)

    return kernel


def state_rows(n_par: int, d: int) -> int:
    """Rows of a block's state tile (train_blocks' ws_state)."""
    return 3 * n_par + 2 * d


# ---- rows as lanes: one run at a time ----------------------------------------------------
# train_blocks keeps a run per lane, so a block's weights are LANES copies: digits' 64-16-10
# is 1,184 weights, 76 KB a block at 16 lanes and twice that with its gradient sums, more
# than L1 holds, and every row streams them from L2 (126 cpu-ns a lane-row at 8 lanes,
# about a quarter of the FMA pipes' peak, and slower at 16). A group of few runs of a wide
# model trains better one run at a time: its weights (4.7 KB) stay in L1 and the lanes of
# a vector are the units of a layer (W of them, the layer padded with zero units to a
# multiple of W), RT rows of the batch at a time, each row's unit a scalar broadcast:
#
#   forward   a[r, o..o+W] = b[o..] + sum_i h[r, i] WT[i, o..]      RT chains, one WT load
#   weights   G[i, o..] = sum_r h[r, i] d[r, o..], stepped at once   8 inputs' chains
#   inputs    d'[r, i..i+W] = (sum_o d[r, o] W[o, i..]) act'(h[r, i..])   RT chains
#
# The parameters are kept transposed (WT [in, out padded]: the forward pass and the
# gradient sums read them along the outputs), with a copy of each hidden-to-next layer's
# weights as [out, in padded] (WN, for the deltas), refreshed after each step. Zero units
# stay zero: their weights get no gradient (the output deltas of padded units are masked)
# and the optimizer step keeps them at zero. Same math as train_blocks, in a different
# order of summation (the reference's tolerances, not its bits). No batchnorm: a group
# with it trains in lanes.
RT = 8                      # rows a tile: RT independent chains of FMAs
R_EVAL = 64                 # rows an evaluation holds at a time


@njit(**_INLINE)
def _fma8(w, src, a0, a1, a2, a3, a4, a5, a6, a7, i0, i1, i2, i3, i4, i5, i6, i7):
    """a_k + w src[i_k] for k = 0..7: eight FMA chains, a scalar of src broadcast each."""
    return (vadd(a0, vmul(w, vbroadcast(src, i0))), vadd(a1, vmul(w, vbroadcast(src, i1))),
            vadd(a2, vmul(w, vbroadcast(src, i2))), vadd(a3, vmul(w, vbroadcast(src, i3))),
            vadd(a4, vmul(w, vbroadcast(src, i4))), vadd(a5, vmul(w, vbroadcast(src, i5))),
            vadd(a6, vmul(w, vbroadcast(src, i6))), vadd(a7, vmul(w, vbroadcast(src, i7))))


@njit(**_INLINE)
def _load8(f, at, step):
    """The eight vectors at f[at], f[at + step], ..., f[at + 7 step]."""
    return (vload(f, at), vload(f, at + step), vload(f, at + 2 * step), vload(f, at + 3 * step),
            vload(f, at + 4 * step), vload(f, at + 5 * step), vload(f, at + 6 * step),
            vload(f, at + 7 * step))


@njit(**_INLINE)
def _store8(f, at, step, a0, a1, a2, a3, a4, a5, a6, a7):
    """f[at + k step] = a_k for k = 0..7."""
    vstore(f, at, a0)
    vstore(f, at + step, a1)
    vstore(f, at + 2 * step, a2)
    vstore(f, at + 3 * step, a3)
    vstore(f, at + 4 * step, a4)
    vstore(f, at + 5 * step, a5)
    vstore(f, at + 6 * step, a6)
    vstore(f, at + 7 * step, a7)


@njit(**_INLINE)
def _r_forward(f, src, ro, n_in, wt, bo, op, hout, rows, act, hidden):
    """hout[r, :op] = (act of, for hidden layers) h[r, :n_in] WT + b for r < rows (a
    multiple of RT); row r of h is src[ro[r]:] (the data's rows where they lie, or a
    layer's outputs in f), hout's rows op floats apart."""
    for r0 in range(0, rows, RT):
        h0, h1, h2, h3 = ro[r0], ro[r0 + 1], ro[r0 + 2], ro[r0 + 3]
        h4, h5, h6, h7 = ro[r0 + 4], ro[r0 + 5], ro[r0 + 6], ro[r0 + 7]
        for ob in range(0, op, W):
            a0 = vload(f, bo + ob)
            a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
            for i in range(n_in):
                a0, a1, a2, a3, a4, a5, a6, a7 = _fma8(
                    vload(f, wt + i * op + ob), src, a0, a1, a2, a3, a4, a5, a6, a7,
                    h0 + i, h1 + i, h2 + i, h3 + i, h4 + i, h5 + i, h6 + i, h7 + i)
            if hidden:
                a0, a1, a2, a3 = _act(a0, act), _act(a1, act), _act(a2, act), _act(a3, act)
                a4, a5, a6, a7 = _act(a4, act), _act(a5, act), _act(a6, act), _act(a7, act)
            _store8(f, hout + r0 * op + ob, op, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(**_INLINE)
def _r_grads(f, src, ro, n_in, n_out, wt, bo, op, dl, cnt, iota, Pp, hp):
    """A layer's optimizer step: the gradient sums of WT[i, o..], sum over rows r < cnt of
    h[r, i] d[r, o..] (row r of h: src[ro[r]:]), and the bias's, each stepped (_r_step)
    as soon as it is summed, eight inputs at a time. The sums never touch memory, and
    Adam's root and divisions, which hold the divider, run beside the next inputs' FMA
    chains, which hold the FMA pipes (with a pass of its own, the step took a fifth of a
    batch of 32 rows). The deltas of the layer below read WN, the weights before this
    step."""
    for ob in range(0, op, W):
        valid = vlt(vadd(vload(f, iota), np.float32(ob)), np.float32(n_out))
        i = 0
        while i + 8 <= n_in:
            a0 = vsplat(_0)
            a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
            for r in range(cnt):
                h = ro[r] + i
                a0, a1, a2, a3, a4, a5, a6, a7 = _fma8(
                    vload(f, dl + r * op + ob), src, a0, a1, a2, a3, a4, a5, a6, a7,
                    h, h + 1, h + 2, h + 3, h + 4, h + 5, h + 6, h + 7)
            at = wt + i * op + ob
            _r_step(f, at, Pp, valid, a0, hp)
            _r_step(f, at + op, Pp, valid, a1, hp)
            _r_step(f, at + 2 * op, Pp, valid, a2, hp)
            _r_step(f, at + 3 * op, Pp, valid, a3, hp)
            _r_step(f, at + 4 * op, Pp, valid, a4, hp)
            _r_step(f, at + 5 * op, Pp, valid, a5, hp)
            _r_step(f, at + 6 * op, Pp, valid, a6, hp)
            _r_step(f, at + 7 * op, Pp, valid, a7, hp)
            i += 8
        for i in range(i, n_in):
            a = vsplat(_0)
            for r in range(cnt):
                a = vadd(a, vmul(vload(f, dl + r * op + ob), vbroadcast(src, ro[r] + i)))
            _r_step(f, wt + i * op + ob, Pp, valid, a, hp)
        a = vsplat(_0)
        for r in range(cnt):
            a = vadd(a, vload(f, dl + r * op + ob))
        _r_step(f, bo + ob, Pp, valid, a, hp)


@njit(**_INLINE)
def _r_deltas(f, wn, n_out, ip, dl, op, dprev, hprev, rows, act):
    """dprev[r, i..] = (sum_o d[r, o] W[o, i..]) act'(hprev[r, i..]) for r < rows (a
    multiple of RT): the previous layer's deltas (its outputs ip floats a row)."""
    for r0 in range(0, rows, RT):
        d = dl + r0 * op
        for ib in range(0, ip, W):
            a0 = vsplat(_0)
            a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
            for o in range(n_out):
                at = d + o
                a0, a1, a2, a3, a4, a5, a6, a7 = _fma8(
                    vload(f, wn + o * ip + ib), f, a0, a1, a2, a3, a4, a5, a6, a7,
                    at, at + op, at + 2 * op, at + 3 * op, at + 4 * op, at + 5 * op,
                    at + 6 * op, at + 7 * op)
            h0, h1, h2, h3, h4, h5, h6, h7 = _load8(f, hprev + r0 * ip + ib, ip)
            _store8(f, dprev + r0 * ip + ib, ip,
                    vmul(a0, _act_grad(h0, act)), vmul(a1, _act_grad(h1, act)),
                    vmul(a2, _act_grad(h2, act)), vmul(a3, _act_grad(h3, act)),
                    vmul(a4, _act_grad(h4, act)), vmul(a5, _act_grad(h5, act)),
                    vmul(a6, _act_grad(h6, act)), vmul(a7, _act_grad(h7, act)))


@njit(**_INLINE)
def _r_state(f, ws_state, blk, l, layers, ly, P, Pp, back):
    """Run l of block blk's parameters, momentum or exp_avg and exp_avg_sq (ws_state's rows
    0, P and 2P on: train_blocks' layout) into the workspace, transposed and padded (at 0,
    Pp and 2 Pp), or ``back``. A layer's bias is WT's row n_in."""
    for k in range(ly.shape[0]):
        n_in, n_out, op, wt = ly[k, 0], ly[k, 1], ly[k, 2], ly[k, 3]
        for o in range(n_out):
            for i in range(n_in + 1):
                src = layers[k, 2] + o * n_in + i if i < n_in else layers[k, 3] + o
                dst = wt + i * op + o
                for s in range(3):
                    if back:
                        ws_state[blk, s * P + src, l] = f[dst + s * Pp]
                    else:
                        f[dst + s * Pp] = ws_state[blk, s * P + src, l]


@njit(**_INLINE)
def _r_transpose(f, wn, wt, n_out, n_in, op, ip):
    """WN[o, i] = WT[i, o] (WN's rows ip floats apart, WT's op): a layer's weights for the
    deltas. Unsigned indices: numba then emits no wraparound for negative ones (a third
    of the copy's instructions)."""
    for o in range(np.uint64(n_out)):
        dst = np.uint64(wn) + o * np.uint64(ip)
        src = np.uint64(wt) + o
        for i in range(np.uint64(n_in)):
            f[dst + i] = f[src + i * np.uint64(op)]


@njit(**_INLINE)
def _r_exps(f, z, e, op, kout, iota):
    """e[..op] = exp(z_j - max_j z_j) for the kout outputs in z, 0 on the padding; returns
    (the max, the sum of the exponentials)."""
    kf = np.float32(kout)
    m = -_INF
    for ob in range(0, op, W):
        valid = vlt(vadd(vload(f, iota), np.float32(ob)), kf)
        m = max(m, vhmax(vwhere(valid, vload(f, z + ob), -_INF)))
    s = _0
    for ob in range(0, op, W):
        valid = vlt(vadd(vload(f, iota), np.float32(ob)), kf)
        v = vwhere(valid, _exp(vsub(vload(f, z + ob), m)), _0)
        vstore(f, e + ob, v)
        s += vhsum(v)
    return m, s


@njit(**_INLINE)
def _r_delta(f, z, dz, yr, op, kout, loss, iota):
    """dL/dz of one row's outputs z (a batch mean's: the 1 / rows comes with the step)
    into dz, 0 on the padding; yr: the row's targets (mse) or its label or class."""
    if loss == LOSS_MSE:
        scale = np.float32(2.0 / kout)
        for ob in range(0, op, W):
            vstore(f, dz + ob, vmul(vsub(vload(f, z + ob), vload(f, yr + ob)), scale))
    elif loss == LOSS_BCE:
        v = vsub(_sigmoid(vload(f, z)), f[yr])
        vstore(f, dz, vwhere(vlt(vload(f, iota), _1), v, _0))
    elif op == W:           # up to W classes: _r_exps' work in registers, one vector (its
        # store and reload of the exponentials cost 64-16-10 about 5% of a row, one thread)
        lane = vload(f, iota)
        valid = vlt(lane, np.float32(kout))
        zv = vload(f, z)
        m = vhmax(vwhere(valid, zv, -_INF))
        e = vwhere(valid, _exp(vsub(zv, m)), _0)
        p = vmul(e, _1 / vhsum(e))      # one division a row, not one a lane
        vstore(f, dz, vsub(p, vwhere(veq(lane, f[yr]), _1, _0)))
    else:
        _, s = _r_exps(f, z, dz, op, kout, iota)
        inv = _1 / s                # one division a row, not one a lane
        cls = f[yr]
        for ob in range(0, op, W):
            lane = vadd(vload(f, iota), np.float32(ob))
            p = vmul(vload(f, dz + ob), inv)
            vstore(f, dz + ob, vsub(p, vwhere(veq(lane, cls), _1, _0)))


@njit(**_INLINE)
def _r_step(f, at, Pp, valid, gsum, hp):
    """_step of one vector of parameters at ``at`` (the momentum or exp_avg Pp after, then
    exp_avg_sq) from its gradient sums ``gsum``, its lanes outside ``valid`` kept at zero.
    hp: the step's (opt, scale, wdc, step, decay, omb1, b2, omb2, eps, mom, nest), nest a
    mask of every lane or none; Adam's step and eps with its second bias correction folded
    in (_adam). vrcp14ps and vrsqrt14ps with a Newton step each were 3 to 4% faster than
    a root and two divisions, within the machine's noise (bench/NOTES.md)."""
    opt, scale, wdc, step, decay, omb1, b2, omb2, eps, mom, nest = hp
    w, m = vload(f, at), vload(f, at + Pp)
    if opt == OPT_ADAM:
        w2, m2, v2 = _adam(w, m, vload(f, at + 2 * Pp), gsum, scale, wdc, step, decay, omb1,
                           b2, omb2, eps)
        vstore(f, at + 2 * Pp, vwhere(valid, v2, _0))
    else:
        w2, m2 = _sgd(w, m, gsum, scale, wdc, step, mom, nest)
    vstore(f, at, vwhere(valid, w2, _0))
    vstore(f, at + Pp, vwhere(valid, m2, _0))


@njit(**_INLINE)
def _r_eval_row(f, z, e, yrow, op, kout, loss, iota):
    """(loss, hit) of one row's outputs z against its targets yrow (y[r]), float32, as
    _eval_k and _evaluate have them (mse: summed over the outputs)."""
    if loss == LOSS_MSE:
        acc = _0
        for j in range(kout):
            t = f[z + j] - yrow[j]
            acc += t * t
        return acc, _0
    if loss == LOSS_BCE:
        v = f[z]
        lv = (v if v > _0 else _0) - v * yrow[0] + np.float32(math.log1p(math.exp(-abs(v))))
        return lv, _1 if (_1 if v > _0 else _0) == yrow[0] else _0
    m, s = _r_exps(f, z, e, op, kout, iota)
    cls = int(yrow[0])
    best, arg = f[z], 0
    best = best if best == best else _INF
    for j in range(1, kout):
        v = f[z + j]
        v = v if v == v else _INF
        if v > best:
            best, arg = v, j
    return m + np.float32(math.log(s)) - f[z + cls], _1 if arg == cls else _0


@njit(nogil=True, **_OPTS)
def train_rows(b_lo, b_hi, ws_state, fhp, ihp, x, y, xv, yv, order, o_e0, c_tl, c_vl, c_ta,
               c_va, eval_epochs, eval_every, layers, d, n_par, gamma, act, loss, opt, bn, e0,
               e1):
    """train_blocks' kernel (the same arguments and state), one run at a time with the
    units of a layer as lanes (the section above); any depth and output kind, no
    batchnorm (``bn`` must be false)."""
    mxcsr = mxcsr_ftz()
    L = ws_state.shape[2]
    n, n_val = x.shape[0], xv.shape[0]
    ky = y.shape[1]
    depth = layers.shape[0] - 1
    kout = layers[depth, 1]
    per_row = kout if loss == LOSS_MSE else 1
    P = n_par
    xf = x.reshape(-1)
    # ---- the workspace: padded parameters, momentum or exp_avg, exp_avg_sq, the WN
    # copies, then the rows of a batch (or of an evaluation) layer by layer
    ly = np.zeros((depth + 1, 8), np.int64)    # n_in, n_out, op, wt, bo, wn, h, dl
    for k in range(depth + 1):
        op = -(-layers[k, 1] // W) * W
        ly[k, 0], ly[k, 1], ly[k, 2] = layers[k, 0], layers[k, 1], op
        ly[k, 3] = ly[k - 1, 4] + ly[k - 1, 2] if k > 0 else 0
        ly[k, 4] = ly[k, 3] + layers[k, 0] * op
    # the padded parameters' count, never a literal 0 on the way: numba would compile each
    # helper taking it twice, for Literal[int](0) and int64 (0.6 s)
    Pp = ly[depth, 4] + ly[depth, 2]
    at = 3 * Pp
    for k in range(1, depth + 1):
        ly[k, 5] = at
        at += ly[k, 1] * ly[k - 1, 2]
    iota = at
    at += W
    for blk in range(b_lo, b_hi):
        lo = blk * L
        big = 1
        for l in range(L):
            if ihp[I_ACTIVE, lo + l] != 0:
                big = max(big, min(ihp[I_BS, lo + l], n))
        R = max(-(-big // RT) * RT, R_EVAL)
        yb = at
        top = yb + R * ly[depth, 2]
        for k in range(depth + 1):
            ly[k, 6] = top
            ly[k, 7] = top + R * ly[k, 2]
            top += 2 * R * ly[k, 2]
        f = np.zeros(top, np.float32)
        for j in range(W):
            f[iota + j] = np.float32(j)
        # where each row of a batch's layers lies: the data's rows are read where they
        # lie in x (ro0, a batch's; its tile's spare rows repeat its first), the layers'
        # outputs in f (roff[k])
        roff = np.zeros((depth + 2, R), np.int64)
        ro0 = roff[depth + 1]       # a view: one allocation type fewer for numba to compile
        for k in range(depth + 1):
            for r in range(R):
                roff[k, r] = ly[k, 6] + r * ly[k, 2]
        for l in range(L):
            run = lo + l
            if ihp[I_ACTIVE, run] == 0 or ihp[I_EPOCHS, run] <= e0:
                continue
            # ---- the run's state in (transposed, padded), the rest of the workspace zero
            for j in range(iota):
                f[j] = _0
            _r_state(f, ws_state, blk, l, layers, ly, P, Pp, False)
            for k in range(1, depth + 1):
                _r_transpose(f, ly[k, 5], ly[k, 3], ly[k, 1], ly[k, 0], ly[k, 2], ly[k - 1, 2])
            bs, epochs, ssize = ihp[I_BS, run], ihp[I_EPOCHS, run], ihp[I_SSIZE, run]
            q, row_of = ihp[I_ORDER, run], ihp[I_ROW, run]
            nest = vlt(vsplat(_0), np.float32(ihp[I_NEST, run]))     # every lane or none
            lr, wdd = fhp[F_LR, run], fhp[F_WDD, run]
            wdc, mom = np.float32(fhp[F_WDC, run]), np.float32(fhp[F_MOM, run])
            omb1, b2 = np.float32(1.0 - fhp[F_BETA1, run]), np.float32(fhp[F_BETA2, run])
            omb2 = np.float32(1.0 - fhp[F_BETA2, run])
            inv_bs = _1 / np.float32(bs)
            for e in range(e0, e1):
                if ihp[I_ACTIVE, run] == 0 or e >= epochs:
                    break
                if ssize > 0 and e > 0 and e % ssize == 0:      # StepLR, as train_blocks
                    lr *= fhp[F_GAMMA, run]
                    fhp[F_LR, run] = lr
                decay = np.float32(1.0 - lr * wdd)
                te = e - o_e0
                p = 0
                while p < n:
                    cnt = min(bs, n - p)
                    rows = -(-cnt // RT) * RT
                    # the batch's rows and targets
                    for t in range(cnt):
                        r = p + t if q < 0 else order[q, te, p + t]
                        ro0[t] = r * d
                        for j in range(ky):
                            f[yb + t * ly[depth, 2] + j] = y[r, j]
                    for t in range(cnt, rows):
                        ro0[t] = ro0[0]
                    _r_forward(f, xf, ro0, d, ly[0, 3], ly[0, 4], ly[0, 2], ly[0, 6], rows, act,
                               depth > 0)
                    for k in range(1, depth + 1):
                        _r_forward(f, f, roff[k - 1], ly[k, 0], ly[k, 3], ly[k, 4], ly[k, 2],
                                   ly[k, 6], rows, act, k < depth)
                    op = ly[depth, 2]
                    for t in range(cnt):
                        _r_delta(f, ly[depth, 6] + t * op, ly[depth, 7] + t * op,
                                 yb + t * op, op, kout, loss, iota)
                    for t in range(cnt, rows):
                        for j in range(op):
                            f[ly[depth, 7] + t * op + j] = _0
                    # ---- the optimizer step (train_blocks' _step, one run), a layer's as
                    # its gradients are summed, from the last layer down
                    scale = inv_bs if cnt == bs else _1 / np.float32(cnt)
                    step, eps = np.float32(lr), _0         # sgd's (its eps unused)
                    if opt == OPT_ADAM:
                        fhp[F_B1T, run] *= fhp[F_BETA1, run]
                        fhp[F_B2T, run] *= fhp[F_BETA2, run]
                        step, eps = _adam_factors(lr, fhp[F_B1T, run], fhp[F_B2T, run],
                                                  fhp[F_EPS, run])
                    hp = (opt, scale, wdc, step, decay, omb1, b2, omb2, eps, mom, nest)
                    for k in range(depth, -1, -1):
                        if k == 0:
                            _r_grads(f, xf, ro0, d, ly[0, 1], ly[0, 3], ly[0, 4], ly[0, 2],
                                     ly[0, 7], cnt, iota, Pp, hp)
                        else:
                            _r_grads(f, f, roff[k - 1], ly[k, 0], ly[k, 1], ly[k, 3], ly[k, 4],
                                     ly[k, 2], ly[k, 7], cnt, iota, Pp, hp)
                            _r_deltas(f, ly[k, 5], ly[k, 1], ly[k - 1, 2], ly[k, 7], ly[k, 2],
                                      ly[k - 1, 7], ly[k - 1, 6], rows, act)
                    for k in range(1, depth + 1):
                        _r_transpose(f, ly[k, 5], ly[k, 3], ly[k, 1], ly[k, 0], ly[k, 2],
                                     ly[k - 1, 2])
                    ihp[I_STEPS, run] += 1
                    p += cnt
                # ---- the evaluation due after epoch e + 1
                if not ((e + 1) % eval_every == 0 or e + 1 == epochs):
                    continue
                col = _eval_column(eval_epochs, e + 1)
                # float32 sums of EVAL_FLUSH rows, added into float64 (train_blocks' _flush:
                # a loss past float32's range is inf here too, as the reference's mean)
                sums = np.zeros(4)
                part = np.zeros(2, np.float32)
                for split in range(2 if n_val > 0 else 1):
                    xs, ys = (x, y) if split == 0 else (xv, yv)
                    xsf = xs.reshape(-1)
                    for r0 in range(0, xs.shape[0], R):
                        cnt = min(R, xs.shape[0] - r0)
                        rows = -(-cnt // RT) * RT
                        for t in range(rows):
                            ro0[t] = (r0 + min(t, cnt - 1)) * d
                        _r_forward(f, xsf, ro0, d, ly[0, 3], ly[0, 4], ly[0, 2], ly[0, 6], rows,
                                   act, depth > 0)
                        for k in range(1, depth + 1):
                            _r_forward(f, f, roff[k - 1], ly[k, 0], ly[k, 3], ly[k, 4], ly[k, 2],
                                       ly[k, 6], rows, act, k < depth)
                        op = ly[depth, 2]
                        for t in range(cnt):
                            lv, hit = _r_eval_row(f, ly[depth, 6] + t * op, ly[depth, 7],
                                                  ys[r0 + t], op, kout, loss, iota)
                            part[0] += lv
                            part[1] += hit
                            r = r0 + t
                            if (r + 1) % EVAL_FLUSH == 0 or r == xs.shape[0] - 1:
                                sums[2 * split] += part[0]
                                sums[2 * split + 1] += part[1]
                                part[0], part[1] = _0, _0
                train_loss = _write_curves(c_tl, c_vl, c_ta, c_va, row_of, col, sums[0], sums[1],
                                           sums[2], sums[3], n, n_val, per_row, loss)
                ok = math.isfinite(train_loss)
                for j in range(Pp):
                    v = f[j]
                    ok = ok and v - v == _0
                if not ok:
                    ihp[I_ACTIVE, run] = 0       # diverged: frozen as of this evaluation
            _r_state(f, ws_state, blk, l, layers, ly, P, Pp, True)     # the run's state out
    mxcsr_restore(mxcsr)
