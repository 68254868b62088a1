"""Runs as columns: the search space expands, is checked and chunks column by column, and
says exactly what checking run after run said (same runs, same values, same first error).

The per-run expansion below is the one tinysweep had before columns (a RunParams per run,
each value checked as it came): it is the specification the columns must equal.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinysweep.trainer.spec.config import RUN_PARAM_NAMES, RunParams, check_run_value, parse_config
from tinysweep.trainer.spec.errors import UserError
from tinysweep.trainer.spec.runs import Runs, check_column
from tinysweep.trainer.spec.space import MAX_RUNS, expand


def _python(x, rounded):
    return int(round(float(x))) if rounded else float(x)


def _axis(value):
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        form = next(k for k in value if k != "int")
        lo, hi, n = value[form]
        xs = np.linspace(lo, hi, int(n)) if form == "linspace" else np.logspace(lo, hi, int(n))
        return [_python(x, value.get("int", False)) for x in xs]
    return [value]


def _draw(value, rng):
    if isinstance(value, list):
        return value[int(rng.integers(len(value)))]
    if isinstance(value, dict):
        form = next(k for k in value if k != "int")
        lo, hi = value[form]
        x = rng.uniform(lo, hi) if form == "uniform" else np.exp(rng.uniform(np.log(lo), np.log(hi)))
        return _python(x, value.get("int", False))
    return value


def per_run_expand(config) -> list[RunParams]:
    """Run after run, as before columns: each value checked, then the run's own checks."""
    names = list(config.sweep.params)
    if config.sweep.strategy == "grid":
        combos = itertools.product(*[_axis(config.sweep.params[k]) for k in names])
    else:
        rng = np.random.default_rng(config.sweep.seed)
        combos = [tuple(_draw(config.sweep.params[k], rng) for k in names)
                  for _ in range(config.sweep.samples)]
    runs = []
    for run_id, combo in enumerate(combos):
        values = dict(config.train)
        for k, v in zip(names, combo):
            values[k] = check_run_value(k, v, f"sweep.params.{k}")
        run = RunParams(**values).resolved()
        if run.optimizer == "sgd" and run.nesterov and run.momentum <= 0:
            raise UserError(f"sweep: run {run_id}: nesterov: true needs momentum > 0 (as in "
                            f"torch.optim.SGD), got momentum {run.momentum}")
        runs.append(run)
    return runs


def outcome(fn, config):
    try:
        return fn(config)
    except UserError as e:
        return f"UserError: {e}"


def config_of(params: dict, strategy="grid", samples=None, seed=0, train=None):
    sweep = {"strategy": strategy, "params": params, "seed": seed}
    if samples is not None:
        sweep["samples"] = samples
    return parse_config({"name": "t", "data": {"source": "line"}, "train": train or {},
                         "sweep": sweep}, base_dir=".")


# ---- the columns equal the per-run expansion ---------------------------------------------
VALUES = {   # per hyperparameter: good and bad values, as a config could hold them
    "lr": [0.1, 1, 1e-3, -1, 0, "x", True],
    "batch_size": [1, 7, 32.0, 0, 2.5, 10**10],
    "shuffle": [True, False, 1],
    "seed": [0, 3, 2**63 - 1, -1, 2**63],
    "optimizer": ["sgd", "adam", "adamw", "adom"],
    "momentum": [0, 0.9, -0.1],
    "nesterov": [True, False],
    "beta2": [0.5, 0.999, 1.0],
    "input_norm": ["none", "batchnorm", "standardize"],
    "epochs": [1, 3],
}
FORMS = st.one_of(
    st.builds(lambda lo, hi, n, r: {"linspace": [lo, hi, n], **({"int": True} if r else {})},
              st.sampled_from([-2, 0, 0.5, 1, 3]), st.sampled_from([0.5, 1, 4, 64]),
              st.integers(1, 5), st.booleans()),
    st.builds(lambda lo, hi, n: {"logspace": [lo, hi, n]}, st.sampled_from([-4, -1, 0]),
              st.sampled_from([-1, 0, 1]), st.integers(1, 4)))


@st.composite
def search_spaces(draw):
    names = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4, unique=True))
    params = {}
    for name in names:
        kind = draw(st.sampled_from(["scalar", "list", "form"]))
        if kind == "scalar":
            params[name] = draw(st.sampled_from(VALUES[name]))
        elif kind == "list":
            params[name] = draw(st.lists(st.sampled_from(VALUES[name]), min_size=1, max_size=4))
        else:
            params[name] = draw(FORMS)
    return params


@settings(max_examples=300, deadline=None)
@given(search_spaces())
def test_grid_columns_equal_the_per_run_expansion(params):
    config = config_of(params)
    want = outcome(per_run_expand, config)
    got = outcome(lambda c: expand(c).rows(), config)
    assert got == want


@settings(max_examples=200, deadline=None)
@given(search_spaces(), st.integers(0, 40), st.integers(0, 2**32))
def test_random_columns_equal_the_per_run_draws(params, samples, seed):
    forms = {"linspace": "uniform", "logspace": "loguniform"}
    for name, value in params.items():     # grid forms become their random counterparts
        if isinstance(value, dict):
            form = next(k for k in value if k != "int")
            lo, hi = sorted(value[form][:2])
            lo = max(lo, 0.1) if form == "logspace" else lo
            params[name] = {forms[form]: [lo, max(hi, lo)], **{k: v for k, v in value.items()
                                                               if k == "int"}}
    config = config_of(params, "random", samples=max(1, samples), seed=seed)
    assert outcome(lambda c: expand(c).rows(), config) == outcome(per_run_expand, config)


def test_first_error_is_the_first_bad_run_in_run_order():
    # run 0 is fine; lr's bad value first appears at run 2 * 3 = 6, batch_size's at run 1
    config = config_of({"lr": [0.1, 0.2, -1], "batch_size": [4, 0, 8]})
    with pytest.raises(UserError, match=r"^sweep.params.batch_size: must be in \[1, 10\*\*9\], got 0$"):
        expand(config)
    config = config_of({"lr": [0.1, -1], "batch_size": [4, 8, 0]})
    with pytest.raises(UserError, match=r"^sweep.params.batch_size: .* got 0$"):
        expand(config)     # batch_size 0 at run 2, lr -1 at run 3


def test_cross_check_names_the_run():
    config = config_of({"momentum": [0.9, 0], "nesterov": [True]}, train={"optimizer": "sgd"})
    with pytest.raises(UserError, match=r"^sweep: run 1: nesterov: true needs momentum > 0"):
        expand(config)


def test_value_and_cross_check_errors_come_in_run_order():
    # run 0 fails across params (nesterov without momentum), run 1 has a bad beta2
    config = config_of({"beta2": [0.5, 1.0], "nesterov": [True]},
                       train={"optimizer": "sgd", "momentum": 0})
    with pytest.raises(UserError, match=r"^sweep: run 0: nesterov"):
        expand(config)
    # both in run 0: its values are checked first
    config = config_of({"beta2": [1.0, 0.5], "nesterov": [True]},
                       train={"optimizer": "sgd", "momentum": 0})
    with pytest.raises(UserError, match=r"^sweep.params.beta2: must be in \[0, 1\), got 1.0$"):
        expand(config)
    assert outcome(lambda c: expand(c).rows(), config) == outcome(per_run_expand, config)


@pytest.mark.parametrize("name", ["lr", "batch_size", "seed", "momentum", "beta1", "eps",
                                  "epochs", "shuffle", "optimizer"])
@pytest.mark.parametrize("rounded", [False, True])
def test_vector_checks_agree_with_the_scalar_check(name, rounded):
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.normal(0, 3, 200), rng.uniform(0, 1, 50), np.arange(-3.0, 40),
                         [0.0, -0.0, 1.0, 1e9, 1e9 + 1, 2.0**62, 2.0**63, -2.0**63, 1e300,
                          2.0**1000, 0.999, np.nextafter(1.0, 0)]])
    if rounded:
        xs = np.round(xs)
    column, bad = check_column(name, xs, rounded)
    for i, x in enumerate(xs):
        value = int(x) if rounded else float(x)
        try:
            want = check_run_value(name, value, "w")
        except UserError:
            assert bad[i], (name, value)
            continue
        assert not bad[i], (name, value)
        got = column[i] if isinstance(column, np.ndarray) else column.choices[column.codes[i]]
        assert got == want and type(got.item() if hasattr(got, "item") else got) is type(want)


# ---- scale -------------------------------------------------------------------------------
def test_a_million_runs_expand_check_and_chunk_as_columns():
    from tinysweep.trainer.pipeline.sweep import prepare
    config = parse_config({
        "name": "m", "data": {"source": "line", "params": {"n": 100}},
        "train": {"epochs": 1},
        "sweep": {"params": {"lr": {"logspace": [-4, 0, 1000]},
                             "batch_size": {"linspace": [1, 100, 100], "int": True},
                             "seed": {"linspace": [0, 9, 10], "int": True}}}}, base_dir=".")
    plan = prepare(config, backend="torch", device="cpu", chunk_runs=300_000)
    runs = plan.chunk.runs
    assert len(runs) == 10**6
    # row-major: the last param varies fastest
    i = 123_457
    run = runs.row(i)
    assert run.seed == i % 10 and run.batch_size == 1 + (i // 10) % 100
    assert run.lr == np.logspace(-4, 0, 1000)[i // 1000]
    # a hyperparameter no run varies costs nothing per run
    for name in ("momentum", "optimizer", "weight_decay", "step_size", "epochs"):
        col = getattr(runs, name)
        assert getattr(col, "codes", col).strides == (0,), name
    assert runs.step_size[0] == 1 and runs.weight_decay[0] == 0.0
    chunks = [runs[lo:lo + plan.chunk_runs] for lo in range(0, len(runs), plan.chunk_runs)]
    assert [len(c) for c in chunks] == [300_000] * 3 + [100_000]
    assert np.array_equal(np.concatenate([c.lr for c in chunks]), runs.lr)
    # Ray ships the plan: a constant column pickles as one value
    assert len(pickle.dumps(runs)) < 3 * 8 * 10**6 + 10**5      # the 3 swept columns
    assert pickle.loads(pickle.dumps(chunks[3])) == chunks[3]


def test_too_many_runs_are_refused_before_any_column_is_built():
    config = config_of({"lr": {"linspace": [0.1, 1, 10**4]}, "batch_size": list(range(1, 1002))})
    with pytest.raises(UserError, match=f"more than a sweep holds \\({MAX_RUNS:,}\\)"):
        expand(config)


def test_runs_round_trip_through_rows_and_group_like_dicts():
    from tinysweep.trainer.backends.torch_backend import group_rows
    config = config_of({"input_norm": ["none", "standardize"], "optimizer": ["sgd", "adam", "adamw"],
                        "lr": [0.1, 0.01, 0.5]})
    runs = expand(config)
    assert Runs.from_rows(runs.rows()) == runs
    groups: dict = {}
    for i, r in enumerate(runs.rows()):
        groups.setdefault((r.input_norm, r.optimizer == "sgd"), []).append(i)

    class Chunk:   # group_rows reads the runs alone
        pass
    chunk = Chunk()
    chunk.runs = runs
    assert [g.tolist() for g in group_rows(chunk)] == list(groups.values())
    assert set(RUN_PARAM_NAMES) == set(runs.columns)
