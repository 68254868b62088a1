"""A random sweep's draws, column by column, bit for bit those of the old run-by-run loop.

The old loop (``space._draw``) drew, with ``rng = np.random.default_rng(seed)``, run after
run and param after param in config order:

    list of n values    -> rng.integers(n)                      (a choice)
    {uniform: [lo, hi]} -> rng.uniform(lo, hi)
    {loguniform: ...}   -> np.exp(rng.uniform(np.log(lo), np.log(hi)))
    scalar              -> nothing

Here the same numbers come from PCG64's raw 64-bit outputs (``bit_generator.random_raw``),
rebuilt the way numpy 2.x consumes them (numpy/random/src/distributions/distributions.c):

- a uniform takes one raw output r: ``lo + (hi - lo) * ((r >> 11) * 2**-53)``;
- a choice of n >= 2 takes 32-bit halves, Lemire's method (``buffered_bounded_lemire_uint32``):
  m = x * n, value m >> 32, drawn again while the low 32 bits of m are below
  (2**32 - n) % n. PCG64 hands out the low half of a fresh raw output and keeps the high
  half for the next 32-bit draw, even with uniforms between the two; a uniform takes the
  next unused raw output and leaves that kept half alone;
- a choice of n = 1 draws nothing.

A run's draws follow a fixed pattern until a choice is redrawn, which happens with
probability (2**32 - n) % n / 2**32 per draw: about 7e-8 for n = 1000, never for n a power
of two. So whole blocks of runs are computed at once, up to the first redrawn choice; that
run is drawn one number at a time and the next block starts after it.
"""

from __future__ import annotations

import numpy as np

_M32 = 0xFFFFFFFF
# Runs per block: 2**16 runs, a few MB of temporaries, drew 10**7 runs of three params in
# 0.3 s of CPU on the 2-core machine; 2**14 and 2**18 took 0.45 s.
_BLOCK = 2**16


class _Raws:
    """PCG64's raw outputs of ``default_rng(seed)`` with numpy's kept 32-bit half.

    ``ahead`` holds outputs fetched but not yet consumed, so that a block cut short by a
    redrawn choice gives back what it did not use; ``half`` is the kept high half (numpy's
    ``has_uint32``/``uinteger``) or None.
    """

    def __init__(self, seed: int):
        self.bitgen = np.random.default_rng(seed).bit_generator
        self.ahead = np.empty(0, np.uint64)
        self.half = None

    def peek(self, k: int) -> np.ndarray:
        """The next k raw outputs [k] uint64, not consumed."""
        if len(self.ahead) < k:
            self.ahead = np.concatenate([self.ahead, self.bitgen.random_raw(k - len(self.ahead))])
        return self.ahead[:k]

    def skip(self, k: int):
        self.ahead = self.ahead[k:]

    def next64(self) -> int:
        r = int(self.peek(1)[0])
        self.skip(1)
        return r

    def next32(self) -> int:
        if self.half is not None:
            x, self.half = self.half, None
            return x
        r = self.next64()
        self.half = r >> 32
        return r & _M32


class _Param:
    """One drawn param: a uniform (``lo``, ``span``) or a choice (``n``, ``threshold``), and
    ``d``/``h``, how many uniforms/choices come before it in a run."""

    def __init__(self, spec: tuple, d: int, h: int):
        kind = spec[0]
        self.d, self.h, self.is_choice = d, h, kind == "choice"
        if self.is_choice:
            self.n = int(spec[1])
            self.threshold = (2**32 - self.n) % self.n
        else:
            lo, hi = spec[1], spec[2]
            if kind == "loguniform":
                lo, hi = np.log(lo), np.log(hi)
            self.lo, self.span = float(lo), float(hi) - float(lo)
            if not np.isfinite(self.span):    # as Generator.uniform refuses it
                raise OverflowError("high - low range exceeds valid bounds")

    def uniform(self, r):
        """The uniform of raw output(s) r (int or uint64 array)."""
        return self.lo + self.span * ((r >> 11) * 2.0**-53)


def _check(spec: tuple) -> bool:
    """Whether spec draws; raises ValueError for a spec the old loop could not have had."""
    if spec == ("fixed",):
        return False
    if len(spec) == 3 and spec[0] in ("uniform", "loguniform"):
        return True
    if len(spec) == 2 and spec[0] == "choice":
        if not 1 <= spec[1] <= 2**32:
            # Beyond 2**32 numpy switches to 64-bit draws; no config holds such a list.
            raise ValueError(f"choice among {spec[1]} values: expected 1 to 2**32")
        return spec[1] > 1
    raise ValueError(f"unknown draw spec {spec!r}: expected ('fixed',), ('choice', n), "
                     "('uniform', lo, hi) or ('loguniform', lo, hi)")


def _block(raws: _Raws, params: list[_Param], cols: list[np.ndarray], start: int, runs: int) -> int:
    """Fills cols[k][start:start+runs] as if no choice is redrawn; returns how many runs
    (from start) are right, i.e. come before the first redrawn choice, and consumes their
    raw outputs."""
    u = sum(not p.is_choice for p in params)     # raw outputs per run for uniforms
    c = len(params) - u                          # 32-bit halves per run for choices
    kept = raws.half is not None
    # The 32-bit draws counted from the last fresh raw output taken for one, plus the kept
    # half: an even count takes a fresh output, an odd one the other half of the last.
    def used(i):  # raw outputs taken by runs before run i
        return i * u + (kept + i * c + 1) // 2 - kept
    r = raws.peek(max(used(runs), 1))   # never empty: the kept half's clipped index reads r[0]
    i = np.arange(runs)
    good = runs
    for p, col in zip(params, cols):
        g = kept + i * c + p.h                   # 32-bit draws before this one, + kept
        at = i * u + p.d + (g + 1) // 2 - kept   # raw outputs consumed before this draw
        if not p.is_choice:
            col[start:start + runs] = p.uniform(r[at])
            continue
        # An odd draw takes the high half of the output the choice before it (cyclically, in
        # this run or the last) took: `between` uniforms ago, before its own output.
        prev = next(q for q in params if q.is_choice and q.h == (p.h - 1) % c)
        between = p.d - prev.d + (u if p.h == 0 else 0)
        odd = g & 1
        x = (r[np.maximum(at - odd * (1 + between), 0)] >> (odd.astype(np.uint64) * 32)) & _M32
        if kept and p.h == 0 and runs:
            x[0] = raws.half                     # its output was taken in an earlier block
        m = x * np.uint64(p.n)
        col[start:start + runs] = m >> 32
        redrawn = np.flatnonzero((m & _M32) < p.threshold)
        if len(redrawn):
            good = min(good, int(redrawn[0]))
    if good and c:
        if (kept + good * c) % 2:   # the last choice took a fresh output: keep its high half
            last = next(q for q in params if q.is_choice and q.h == c - 1)
            raws.half = int(r[used(good) - 1 - (u - last.d)]) >> 32
        else:
            raws.half = None
    raws.skip(used(good))
    return good


def _one_run(raws: _Raws, params: list[_Param], cols: list[np.ndarray], run: int):
    """Draws run `run` one number at a time, redrawn choices included."""
    for p, col in zip(params, cols):
        if not p.is_choice:
            col[run] = p.uniform(raws.next64())
            continue
        m = raws.next32() * p.n
        while (m & _M32) < p.threshold:
            m = raws.next32() * p.n
        col[run] = m >> 32


def draw_columns(seed: int, specs: list[tuple], samples: int) -> list[np.ndarray | None]:
    """Every run's draw of every param, as ``np.random.default_rng(seed)`` drew them run by
    run (see the module docstring), bit for bit.

    specs, one per param in config order: ("fixed",) for a scalar, ("choice", n) for a list of
    n values, ("uniform", lo, hi), ("loguniform", lo, hi). Returns, in the same order, None for
    a fixed param, int64 [samples] indices into the list for a choice, float64 [samples]
    values for a uniform or loguniform.
    """
    draws = [_check(s) for s in specs]
    out: list[np.ndarray | None] = [None] * len(specs)
    params, cols = [], []
    for k, spec in enumerate(specs):
        if spec[0] == "choice":
            out[k] = np.zeros(samples, np.int64)
        elif spec[0] != "fixed":
            out[k] = np.empty(samples, np.float64)
        if draws[k]:
            cols.append(out[k])
            params.append(_Param(spec, d=sum(not q.is_choice for q in params),
                                 h=sum(q.is_choice for q in params)))
    raws = _Raws(seed)
    # Blocks of about twice the expected runs between two redraws (at least 64 runs): the work
    # a block does past its first redraw is thrown away, so keep it about as large as the
    # work kept. Only long lists redraw often: n = 10**6 redraws every 4,400 runs, and 10**7
    # runs drawing from 10**6 and 1000 values took 0.7 s of CPU, against 0.3-0.5 s without.
    p_redraw = sum(p.threshold for p in params if p.is_choice) / 2**32
    block = int(min(_BLOCK, max(64, 2 / p_redraw))) if p_redraw else _BLOCK
    start = 0
    while start < samples and params:
        runs = min(block, samples - start)
        good = _block(raws, params, cols, start, runs)
        start += good
        if good < runs:    # run `start` redraws a choice
            _one_run(raws, params, cols, start)
            start += 1
    for spec, col in zip(specs, out):
        if spec[0] == "loguniform":
            np.exp(col, out=col)
    return out
