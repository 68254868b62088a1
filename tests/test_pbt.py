"""Population based training inside a sweep (sweep.pbt): every interval epochs the bottom
quantile takes the state of a top member and perturbs its hyperparameters; the same on
every backend, its history kept, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer.pipeline import sweep as sweep_module
from tinysweep.trainer.pipeline.sweep import prepare

from conftest import assert_same_runs


def pbt_sweep(**pbt) -> dict:
    """8 members on moons, 6 epochs, a round after epochs 2 and 4: two exploit each round."""
    return {"data": {"source": "moons", "params": {"n": 40}, "val_fraction": 0.25},
            "model": {"hidden": [3], "activation": "tanh", "loss": "bce_with_logits"},
            "train": {"epochs": 6, "batch_size": 10, "optimizer": "adam"},
            "sweep": {"strategy": "random", "samples": 8, "seed": 4,
                      "params": {"lr": {"loguniform": [0.001, 0.3]}, "seed": [0, 1]},
                      "pbt": {"interval": 2, "quantile": 0.25,
                              "perturb": {"lr": [0.8, 1.2], "beta1": [0.9, 1.1]}, **pbt}}}


def recording_stages(monkeypatch) -> list:
    """Every chunk trained, as (chunk, its result): sweep.train_chunk, wrapped."""
    seen = []
    train = sweep_module.train_chunk

    def recorded(plan, chunk, progress=None):
        part = train(plan, chunk, progress)
        seen.append((chunk, part))
        return part
    monkeypatch.setattr(sweep_module, "train_chunk", recorded)
    return seen


def test_exploit_copies_the_parents_state_and_explore_a_listed_factor(monkeypatch):
    from test_halving import counting_steps
    stages = recording_stages(monkeypatch)
    counted = counting_steps(monkeypatch)
    res = tinysweep.run(pbt_sweep(), backend="reference")
    history = res.history()
    assert len(stages) == 3                           # epochs 0-2, 2-4, 4-6: one chunk each
    assert counted["steps"] == res.steps_trained
    for k, epoch in enumerate((2, 4)):
        (_, before), (after, _) = stages[k], stages[k + 1]
        at = history[history.epoch == epoch].set_index("run_id")
        prev = history[history.epoch == epoch - 2].set_index("run_id")
        children = at.index[at.parent >= 0].to_numpy()
        assert len(children) == 2                     # ceil(0.25 * 8)
        # the ranking: parents from the top 2 by val_loss at the round, children the bottom 2
        value = res.curves["val_loss"][:, list(res.curves["epoch"]).index(epoch)]
        # (a child's own curve up to the round is its own: the ranking's values)
        ranked = np.lexsort((np.arange(8), value))
        assert set(children) == set(ranked[-2:]) and set(at.parent[children]) <= set(ranked[:2])
        start = after.start
        rows = list(np.flatnonzero(after.runs.epochs))          # every member trains on
        for child in children:
            parent = int(at.parent[child])
            i = rows.index(child)
            assert start.steps[i] == before.steps[parent]
            for name, table in before.final.items():
                np.testing.assert_array_equal(start.model[name][i], table[parent], err_msg=name)
            for name, table in before.optim.items():
                np.testing.assert_array_equal(start.optim[name][i], table[parent], err_msg=name)
            # explore: the parent's value times one of the listed factors
            assert at.lr[child] / prev.lr[parent] == pytest.approx(0.8) or \
                at.lr[child] / prev.lr[parent] == pytest.approx(1.2)
            assert min(abs(at.beta1[child] / 0.9 - f) for f in (0.9, 1.1)) < 1e-9 or \
                at.beta1[child] == sweep_module.PBT_BELOW_ONE
            assert after.runs.lr[i] == at.lr[child]
        others = at.index[at.parent < 0]
        assert (at.lr[others] == prev.lr[others]).all()
        for other in others:                          # the others go on from their own state
            i = rows.index(other)
            for name, table in before.final.items():
                np.testing.assert_array_equal(start.model[name][i], table[other])


def test_the_history_table_and_results_csv(tmp_path):
    res = tinysweep.run(pbt_sweep(resample_probability=1.0), backend="reference",
                        out=tmp_path / "out")
    history = res.history()
    assert list(history.columns) == ["run_id", "epoch", "lr", "beta1", "parent"]
    assert len(history) == 8 * 3 and sorted(set(history.epoch)) == [0, 2, 4]
    last = history[history.epoch == 4].set_index("run_id")
    np.testing.assert_array_equal(res.table.lr, last.lr)          # results.csv: final values
    np.testing.assert_array_equal(res.table.beta1, last.beta1)
    resampled = history[history.parent >= 0]
    assert ((0.001 <= resampled.lr) & (resampled.lr <= 0.3)).all()   # from the search space
    assert (resampled.beta1 == 0.9).all()                         # not swept: its value
    loaded = tinysweep.load(tmp_path / "out")
    assert (tmp_path / "out" / "history.csv").is_file()
    np.testing.assert_allclose(loaded.history().lr, history.lr, rtol=1e-15)
    assert loaded.history().parent.tolist() == history.parent.tolist()
    with pytest.raises(ValueError, match="only a sweep.pbt sweep"):
        tinysweep.run({**pbt_sweep(), "sweep": {"params": {}}}, backend="reference").history()


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_pbt_matches_the_reference(backend):
    pytest.importorskip(backend)
    config = pbt_sweep(perturb={"lr": [0.5, 2.0], "batch_size": [5, 10],
                                "weight_decay": [2.0]}, resample_probability=0.25)
    config["train"]["weight_decay"] = 0.01
    ref = tinysweep.run(config, backend="reference")
    assert (ref.history().parent >= 0).any()
    out = tinysweep.run(config, backend=backend, chunk_runs=3)
    assert_same_runs(out, ref)
    assert out.history().equals(ref.history())


@pytest.mark.parametrize("kernel", ["lanes", "wide"])
def test_pbt_on_triton_matches_the_reference(monkeypatch, kernel):
    """Under the interpreter: 8 members on 12 training rows, batch_size and beta2 perturbed
    (a child's batches change size mid-run), chunks of 3; with one lane per run, and with
    the wide kernel (a program per run)."""
    pytest.importorskip("triton")
    import torch

    from tinysweep.trainer.backends import triton_backend
    if kernel == "wide":
        monkeypatch.setattr(triton_backend, "LANE_WEIGHTS", 0)
    config = pbt_sweep(perturb={"lr": [0.5, 2.0], "batch_size": [4, 6], "beta2": [0.9, 1.01]},
                       resample_probability=0.25)
    config["data"]["params"]["n"] = 16
    ref = tinysweep.run(config, backend="reference")
    history = ref.history()
    assert (history.batch_size[history.parent >= 0] != 10).any()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = tinysweep.run(config, backend="triton", device=device, chunk_runs=3)
    assert_same_runs(out, ref)
    assert out.history().equals(history)


def test_resume_finishes_an_interrupted_pbt_sweep(tmp_path, monkeypatch):
    """Killed in the second round's stage (its first chunk done, after the first exploit):
    the resumed sweep copies and perturbs as the sweep trained at once, and ends as it,
    history included."""
    from test_halving import interrupted_then_resumed
    whole, resumed, steps = interrupted_then_resumed(tmp_path, monkeypatch, pbt_sweep(),
                                                     dies_at=5)
    assert (whole.history().parent >= 0).any()
    assert 0 < steps < whole.steps_trained
    for res in (resumed, tinysweep.load(tmp_path / "out")):
        assert_same_runs(res, whole)
        assert res.history().equals(whole.history())


@pytest.mark.parametrize("change, match", [
    ({"halving": {"rungs": [2]}}, r"^sweep\.pbt: not used with sweep\.halving"),
    ({"hyperband": {"min_epochs": 1}}, r"^sweep\.pbt: not used with sweep\.hyperband"),
    ({"pbt": {"perturb": {"lrr": [0.8]}}},
     r"^sweep\.pbt\.perturb\.lrr: not a per-run hyperparameter; did you mean 'lr'\?$"),
    ({"pbt": {"perturb": {"hidden": [2]}}}, r"^sweep\.pbt\.perturb\.hidden: cannot change "),
    ({"pbt": {"perturb": {"optimizer": ["sgd"]}}}, r"^sweep\.pbt\.perturb\.optimizer: cannot"),
    ({"pbt": {"perturb": {"activation": ["relu"]}}},
     r"^sweep\.pbt\.perturb\.activation: cannot change mid-run"),
    ({"pbt": {"perturb": {"input_norm": ["standardize"]}}},
     r"^sweep\.pbt\.perturb\.input_norm: cannot change mid-run"),
    ({"pbt": {"perturb": {"batch_size": [0]}}}, r"^sweep\.pbt\.perturb\.batch_size\[0\]: "),
    ({"pbt": {"interval": 0}}, r"^sweep\.pbt\.interval: expected an integer >= 1, got 0$"),
    ({"pbt": {"resample_probability": 1.5}}, r"^sweep\.pbt\.resample_probability: "),
    ({"pbt": {"metric": "val_accuracy"}}, r"^sweep\.pbt\.metric: expected one of"),
    ({"pbt": {"perturb": {"epochs": [2]}}}, r"^sweep\.pbt\.perturb\.epochs: cannot change"),
    ({"pbt": {"perturb": {"lr": [0]}}}, r"^sweep\.pbt\.perturb\.lr\[0\]: expected a factor"),
    ({"pbt": {"quantile": 0.6}}, r"^sweep\.pbt\.quantile: expected a fraction in \(0, 0\.5\]"),
    ({"pbt": {"quantile": 0}}, r"^sweep\.pbt\.quantile: expected a fraction in \(0, 0\.5\]"),
    ({"pbt": {"interval": 6}}, r"^sweep\.pbt\.interval: 6 is not below the runs' epochs \(6\)$"),
    ({"data": {"source": "moons", "params": {"n": 40}}},
     r"^sweep\.pbt\.metric: val_loss needs a validation split"),
    ({"data": {"source": "moons", "params": {"n": 40}, "cv": {"folds": 2}}},
     r"^sweep\.pbt: not used with data\.cv"),
    ({"params": {"optimizer": ["sgd", "adam"]}}, r"^sweep\.pbt: members copy each other's "
                                                 r"state, so optimizer must be one value"),
])
def test_bad_pbt_gets_one_line(change, match):
    config = pbt_sweep()
    sweep = config["sweep"]
    if "pbt" in change:
        sweep["pbt"].update(change["pbt"])
    for key in ("halving", "hyperband"):
        if key in change:
            sweep[key] = change[key]
    if "params" in change:
        sweep["params"].update(change["params"])
    if "data" in change:
        config["data"] = change["data"]
        if "cv" not in change["data"]:
            sweep["pbt"]["metric"] = "val_loss"
    with pytest.raises(tinysweep.UserError, match=match):
        prepare(config)


def test_bad_pbt_exits_2_before_writing(tmp_path, capsys):
    import yaml

    from tinysweep.trainer import cli
    config = pbt_sweep(quantile=0.75)
    path, out = tmp_path / "pbt.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.pbt.quantile" in err[0]
    assert not out.exists() or not any(out.iterdir())
