"""Tests for trainer/spec/draws.py: draw_columns against the run-by-run loop it replaces, bit for bit.

The module is loaded by path so that these tests do not depend on the package's __init__.
"""

import importlib.util
import itertools
import pathlib
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

_spec = importlib.util.spec_from_file_location(
    "draws", pathlib.Path(__file__).parent.parent / "trainer" / "spec" / "draws.py")
draws = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(draws)

# 3 * 2**30 + 1 redraws about one 32-bit draw in four; 2**32 - 1 about every other one.
NS = [1, 2, 3, 7, 1000, 2**31, 3 * 2**30 + 1, 2**32 - 1, 2**32]
SEEDS = [0, 1, 12345, 2**32 + 7, 2**63 - 1]
KINDS = [("fixed",), ("choice", 3), ("choice", 1), ("uniform", -1.5, 2.0),
         ("loguniform", 1e-5, 0.1), ("choice", 3 * 2**30 + 1)]


def sequential(seed, specs, samples):
    """What space._draw did, one run and one param at a time, as columns."""
    rng = np.random.default_rng(seed)
    cols = [[] for _ in specs]
    for _ in range(samples):
        for spec, col in zip(specs, cols):
            if spec[0] == "choice":
                col.append(int(rng.integers(spec[1])))
            elif spec[0] == "uniform":
                col.append(rng.uniform(spec[1], spec[2]))
            elif spec[0] == "loguniform":
                col.append(np.exp(rng.uniform(np.log(spec[1]), np.log(spec[2]))))
    return [None if s[0] == "fixed" else np.array(c, np.int64 if s[0] == "choice" else np.float64)
            for s, c in zip(specs, cols)]


def assert_same(specs, got, want):
    assert len(got) == len(want)
    for k, (spec, g, w) in enumerate(zip(specs, got, want)):
        if w is None:
            assert g is None, (k, spec)
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, (k, spec, g.dtype, g.shape)
        if g.dtype == np.float64:      # bitwise: the same float, not a close one
            g, w = g.view(np.int64), w.view(np.int64)
        bad = np.flatnonzero(g != w)
        assert not len(bad), f"param {k} {spec}: {len(bad)} runs differ, first run {bad[0]}: " \
                             f"got {g[bad[0]]}, want {w[bad[0]]}"


def check(seed, specs, samples):
    assert_same(specs, draws.draw_columns(seed, specs, samples), sequential(seed, specs, samples))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", NS)
def test_one_choice(seed, n):
    check(seed, [("choice", n)], 2001)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("specs", [list(p) for k in (1, 2, 3) for p in itertools.product(KINDS, repeat=k)])
def test_every_combination(seed, specs):
    check(seed, specs, 301)


@pytest.mark.parametrize("samples", [0, 1, 2, 3, 64, 65, 1000, 4099])
def test_sample_counts(samples):
    check(5, [("uniform", 0, 1), ("choice", 7), ("fixed",), ("choice", 1000)], samples)
    check(6, [("choice", 3 * 2**30 + 1), ("loguniform", 1, 2), ("choice", 3)], samples)


def test_across_blocks(monkeypatch):
    # Blocks of 64 runs: the kept 32-bit half and redraws carried from block to block.
    monkeypatch.setattr(draws, "_BLOCK", 64)
    for seed, specs in enumerate([[("choice", 3)], [("choice", 3), ("uniform", 0, 1)],
                                  [("uniform", 0, 1), ("choice", 5), ("choice", 2**32 - 1)],
                                  [("choice", 7), ("loguniform", 1e-3, 1.0), ("choice", 9)]]):
        check(seed, specs, 1000)


spec_st = st.one_of(
    st.just(("fixed",)),
    st.tuples(st.just("choice"), st.one_of(st.sampled_from(NS), st.integers(1, 2**32))),
    st.tuples(st.sampled_from(["uniform", "loguniform"]), st.floats(1e-6, 10.0),
              st.floats(0.0, 1e3)).map(lambda s: (s[0], s[1], s[1] + s[2])))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), specs=st.lists(spec_st, min_size=1, max_size=4),
       samples=st.integers(0, 3000))
def test_random_specs(seed, specs, samples):
    check(seed, specs, samples)


def test_refused():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        draws.draw_columns(0, [("choice", 2**32 + 1)], 10)
    with pytest.raises(ValueError, match="unknown draw spec"):
        draws.draw_columns(0, [("normal", 0, 1)], 10)
    with pytest.raises(OverflowError):
        draws.draw_columns(0, [("uniform", -1e308, 1e308)], 10)


def test_past_one_block():
    # The default block size, with an odd number of choices: the kept half crosses blocks.
    check(3, [("choice", 7), ("uniform", 0, 1), ("choice", 1000), ("choice", 2)], 2**16 + 1001)


def test_million_runs_time():
    specs = [("uniform", 0.0, 1.0), ("choice", 7), ("loguniform", 1e-5, 1e-1)]
    t = time.perf_counter()
    cols = draws.draw_columns(0, specs, 10**6)
    print(f"\n10**6 runs x 3 params: {time.perf_counter() - t:.3f} s")
    assert [c.shape for c in cols] == [(10**6,)] * 3
