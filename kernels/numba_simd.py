"""Explicit SIMD vectors for numba: ``FVec``, W = 64 float32 lanes in one LLVM ``<64 x float>``.

kernels/numba_mlp.py keeps one run per lane; its per-row loops are written with these
vectors rather than left to LLVM's loop vectorizer. The vectorizer has to prove that a
loop's workspace rows do not overlap, and numba gives it no ``noalias``: it emitted a
runtime check per pair of rows before every lane loop (a fused backward loop of 8 rows: 18
checks, about as many instructions as the loop's own work), and where the trip count was
a constant 32 it unrolled the loop first and vectorized nothing. With explicit vectors
there is nothing to prove: a load is ``vmovups``, an add ``vaddps``, and LLVM lowers
``<64 x float>`` to four zmm (AVX-512) or eight ymm (AVX2) registers. Four registers an
operation, not one: the independent halves keep both FMA pipes busy through the long
dependent chains of an exponential, and each scalar instruction of the loops around
(addresses, counters, the activation's constants) serves 64 runs. The 1-16-1 MLP kernel
took 12.4 to 12.8 cpu-ns per lane-row with 16-lane vectors, 12.0 to 12.4 with 32, 7.9 to
8.7 with 64 and 8.8 with 128 (one process, taken in turns); the line model 0.72 to 0.75
with each; the 2-32-32-1 batchnorm MLP 221 with 16 lanes and 281 with 64 (its workspace
no longer fits the 1 MB L2).

Every function here is a numba ``@intrinsic`` that emits one or a few LLVM instructions.
Arithmetic takes vectors or float32 scalars (a scalar is broadcast). Multiplications and
additions carry LLVM's ``contract`` flag, so a * b + c may become one FMA, as in the rest of
the kernels. Comparisons give ``MVEC`` masks (ordered: false where a lane is NaN), which
``vwhere`` selects with. ``mxcsr_ftz`` and ``mxcsr_restore`` set and restore the x86
flush-to-zero mode around the kernels (numba_mlp.train_blocks says why).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

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
