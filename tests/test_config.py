"""Tests for tinysweep.trainer.spec.config and trainer.space: reading, checking and expanding a config.

Every config is written to a file under tmp_path and read back through load_config, as the
CLI does; runs come from expand(). Each user mistake must be one UserError, one line, naming
the key.
"""

import json
import pathlib

import numpy as np
import pytest

from tinysweep.trainer.spec.config import RunParams, check_run_value, load_config, parse_config
from tinysweep.trainer.spec.errors import UserError
from tinysweep.trainer.spec.space import expand

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

MINIMAL = "name: t\ndata: {source: line}\n"


def write(tmp_path, text, filename="config.yaml"):
    path = tmp_path / filename
    path.write_text(text)
    return path


def load(tmp_path, text, filename="config.yaml"):
    return load_config(write(tmp_path, text, filename))


def runs_of(tmp_path, text, filename="config.yaml"):
    return expand(load(tmp_path, text, filename)).rows()


def yaml_config(train=None, sweep=None, model=None, data=None, name="t"):
    """A config's YAML text from Python dicts (flow style through json, which YAML reads)."""
    raw = {"name": name, "data": {"source": "line"} if data is None else data}
    if model is not None:
        raw["model"] = model
    if train is not None:
        raw["train"] = train
    if sweep is not None:
        raw["sweep"] = sweep
    return json.dumps(raw)


def user_error(tmp_path, text, match, filename="config.yaml"):
    """Loads and expands ``text``; expects one UserError matching ``match``, on one line."""
    with pytest.raises(UserError, match=match) as info:
        runs_of(tmp_path, text, filename)
    message = str(info.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert message.strip(), "empty message"
    return message


# ---------------------------------------------------------------- valid configs and defaults


def test_run_params_defaults():
    p = RunParams()
    assert (p.lr, p.batch_size, p.shuffle, p.seed) == (1e-3, 32, True, 0)
    assert (p.input_norm, p.optimizer, p.momentum, p.nesterov) == ("none", "adam", 0.0, False)
    assert (p.beta1, p.beta2, p.eps) == (0.9, 0.999, 1e-8)
    assert (p.lr_schedule, p.gamma, p.epochs) == ("constant", 0.1, 100)
    r = p.resolved()
    assert r.weight_decay == 0.0
    assert r.step_size == 33


@pytest.mark.parametrize("optimizer, expected", [("adamw", 0.01), ("adam", 0.0), ("sgd", 0.0)])
def test_resolved_weight_decay_default(optimizer, expected):
    assert RunParams(optimizer=optimizer).resolved().weight_decay == expected


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_resolved_weight_decay_set_is_kept(optimizer):
    assert RunParams(optimizer=optimizer, weight_decay=0.25).resolved().weight_decay == 0.25
    assert RunParams(optimizer=optimizer, weight_decay=0.0).resolved().weight_decay == 0.0


@pytest.mark.parametrize("epochs, step", [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (10, 3),
                                          (100, 33), (301, 100)])
def test_resolved_step_size_default(epochs, step):
    assert RunParams(epochs=epochs).resolved().step_size == step


def test_resolved_step_size_set_is_kept():
    assert RunParams(epochs=100, step_size=7).resolved().step_size == 7


def test_minimal_config_gives_one_default_run(tmp_path):
    config = load(tmp_path, MINIMAL)
    assert config.name == "t"
    assert config.data.source == "line"
    assert config.data.seed == 0 and config.data.val_fraction == 0.0
    assert config.model.hidden == () and config.model.activation == "sigmoid"
    assert config.model.loss == "mse"
    assert config.eval_every == 1
    assert config.sweep.strategy == "grid"
    assert config.base_dir == tmp_path.resolve()
    assert expand(config).rows() == [RunParams().resolved()]


def test_full_config_parses(tmp_path):
    text = """
name: full-config.v1
data:
  source: moons
  params: {n: 200, noise: 0.2}
  seed: 3
  val_fraction: 0.25
model:
  hidden: [16, 8]
  activation: relu
  loss: bce_with_logits
train:
  epochs: 12
  optimizer: sgd
  momentum: 0.9
  nesterov: true
  input_norm: standardize
  lr_schedule: step
  gamma: 0.5
  eval_every: 4
sweep:
  strategy: grid
  params:
    lr: [0.1, 0.01]
"""
    config = load(tmp_path, text)
    assert config.name == "full-config.v1"
    assert config.data.source == "moons" and config.data.params == {"n": 200, "noise": 0.2}
    assert config.data.seed == 3 and config.data.val_fraction == 0.25
    assert config.model.hidden == (16, 8)
    assert (config.model.activation, config.model.loss) == ("relu", "bce_with_logits")
    assert config.eval_every == 4
    assert "eval_every" not in config.train
    runs = expand(config).rows()
    assert [r.lr for r in runs] == [0.1, 0.01]
    for r in runs:
        assert (r.epochs, r.optimizer, r.momentum, r.nesterov) == (12, "sgd", 0.9, True)
        assert (r.input_norm, r.lr_schedule, r.gamma) == ("standardize", "step", 0.5)
        assert r.step_size == 4 and r.weight_decay == 0.0


def test_train_values_are_defaults_and_sweep_overrides(tmp_path):
    text = yaml_config(train={"lr": 0.5, "epochs": 9, "optimizer": "adamw", "batch_size": 7},
                       sweep={"params": {"lr": [0.1, 0.2], "epochs": 30}})
    runs = runs_of(tmp_path, text)
    assert [r.lr for r in runs] == [0.1, 0.2]
    for r in runs:
        assert r.epochs == 30 and r.step_size == 10          # sweep wins, step from it
        assert r.optimizer == "adamw" and r.weight_decay == 0.01
        assert r.batch_size == 7
        assert r.shuffle is True and r.seed == 0              # untouched defaults


def test_values_get_their_canonical_types(tmp_path):
    runs = runs_of(tmp_path, yaml_config(train={"lr": 1, "batch_size": 64.0, "momentum": 0},
                                         sweep={"params": {"epochs": 5.0}}))
    (r,) = runs
    assert r.lr == 1.0 and type(r.lr) is float
    assert r.batch_size == 64 and type(r.batch_size) is int
    assert type(r.momentum) is float
    assert r.epochs == 5 and type(r.epochs) is int


def test_check_run_value_direct():
    assert check_run_value("lr", 2, "x") == 2.0
    assert check_run_value("seed", 2**63 - 1, "x") == 2**63 - 1
    assert check_run_value("shuffle", False, "x") is False
    assert check_run_value("optimizer", "sgd", "x") == "sgd"
    with pytest.raises(UserError, match=r"^where\.it: "):
        check_run_value("lr", -1, "where.it")
    with pytest.raises(UserError, match="seed"):
        check_run_value("seed", 2**63, "seed")


def test_json_config_loads(tmp_path):
    raw = {"name": "j", "data": {"source": "xor"}, "train": {"epochs": 4},
           "sweep": {"params": {"batch_size": [8, 16]}}}
    runs = runs_of(tmp_path, json.dumps(raw), filename="config.json")
    assert [(r.batch_size, r.epochs) for r in runs] == [(8, 4), (16, 4)]


def test_parse_config_takes_a_dict(tmp_path):
    config = parse_config({"name": "d", "data": {"source": "line"}}, base_dir=tmp_path)
    assert config.name == "d" and config.base_dir == tmp_path


# ---------------------------------------------------------------- grid expansion


def test_grid_row_major_last_fastest(tmp_path):
    text = yaml_config(sweep={"params": {"batch_size": [8, 16],
                                         "lr": [0.1, 0.2, 0.3]}})
    runs = runs_of(tmp_path, text)
    assert [(r.batch_size, r.lr) for r in runs] == [
        (8, 0.1), (8, 0.2), (8, 0.3), (16, 0.1), (16, 0.2), (16, 0.3)]


def test_grid_order_follows_config_order_not_alphabet(tmp_path):
    text = yaml_config(sweep={"params": {"lr": [0.1, 0.2, 0.3], "batch_size": [8, 16]}})
    runs = runs_of(tmp_path, text)
    assert [(r.lr, r.batch_size) for r in runs] == [
        (0.1, 8), (0.1, 16), (0.2, 8), (0.2, 16), (0.3, 8), (0.3, 16)]


def test_grid_scalars_are_fixed(tmp_path):
    text = yaml_config(sweep={"params": {"lr": 0.05, "seed": [1, 2, 3], "shuffle": False}})
    runs = runs_of(tmp_path, text)
    assert [r.seed for r in runs] == [1, 2, 3]
    assert all(r.lr == 0.05 and r.shuffle is False for r in runs)


def test_grid_three_axes(tmp_path):
    text = yaml_config(sweep={"params": {"seed": [0, 1], "shuffle": [True, False],
                                         "batch_size": [1, 2, 3]}})
    runs = runs_of(tmp_path, text)
    expected = [(s, sh, b) for s in (0, 1) for sh in (True, False) for b in (1, 2, 3)]
    assert [(r.seed, r.shuffle, r.batch_size) for r in runs] == expected


def test_linspace_int_exact(tmp_path):
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n"
                   "    batch_size: {linspace: [10, 1000, 100], int: true}\n")
    sizes = [r.batch_size for r in runs]
    assert sizes == list(range(10, 1001, 10))
    assert all(type(b) is int for b in sizes)


def test_linspace_float(tmp_path):
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n    lr: {linspace: [0.1, 0.5, 5]}\n")
    np.testing.assert_allclose([r.lr for r in runs], [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-12)


def test_logspace_is_powers_of_ten(tmp_path):
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n    lr: {logspace: [-4, -1, 7]}\n")
    np.testing.assert_allclose([r.lr for r in runs], 10.0 ** np.linspace(-4, -1, 7), rtol=1e-12)


def test_logspace_int(tmp_path):
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n"
                   "    batch_size: {logspace: [0, 3, 4], int: true}\n")
    assert [r.batch_size for r in runs] == [1, 10, 100, 1000]


def test_int_rounds_and_keeps_duplicates(tmp_path):
    # 1, 1.333, 1.667, 2 -> 1, 1, 2, 2 (no .5 ties, so the rounding rule does not matter)
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n"
                   "    batch_size: {linspace: [1, 2, 4], int: true}\n")
    assert [r.batch_size for r in runs] == [1, 1, 2, 2]


def test_single_point_linspace(tmp_path):
    runs = runs_of(tmp_path, MINIMAL + "sweep:\n  params:\n"
                   "    epochs: {linspace: [7, 7, 1], int: true}\n")
    assert [r.epochs for r in runs] == [7]


def test_line_batch_size_example():
    config = load_config(EXAMPLES / "line_batch_size.yaml")
    assert config.name == "line_batch_size"
    runs = expand(config).rows()
    assert len(runs) == 200
    expected = [(b, sh) for b in range(10, 1001, 10) for sh in (True, False)]
    assert [(r.batch_size, r.shuffle) for r in runs] == expected
    for r in runs:
        assert (r.lr, r.seed, r.epochs, r.optimizer) == (0.01, 0, 100, "adam")
        assert r.step_size == 33 and r.weight_decay == 0.0


# ---------------------------------------------------------------- random search


def random_text(params, samples=50, seed=0):
    return yaml_config(sweep={"strategy": "random", "samples": samples, "seed": seed,
                              "params": params})


RANDOM_PARAMS = {"lr": {"loguniform": [1e-4, 1e-1]}, "momentum": {"uniform": [0.2, 0.7]},
                 "optimizer": ["sgd", "adam", "adamw"], "epochs": 5}


def test_random_gives_samples_runs(tmp_path):
    runs = runs_of(tmp_path, random_text(RANDOM_PARAMS, samples=37))
    assert len(runs) == 37


def test_random_is_reproducible_for_a_seed(tmp_path):
    a = runs_of(tmp_path, random_text(RANDOM_PARAMS, seed=5))
    b = runs_of(tmp_path, random_text(RANDOM_PARAMS, seed=5))
    assert a == b


def test_random_differs_for_another_seed(tmp_path):
    a = runs_of(tmp_path, random_text(RANDOM_PARAMS, seed=5))
    b = runs_of(tmp_path, random_text(RANDOM_PARAMS, seed=6))
    assert [r.lr for r in a] != [r.lr for r in b]
    assert [r.momentum for r in a] != [r.momentum for r in b]


def test_random_bounds_and_choices(tmp_path):
    runs = runs_of(tmp_path, random_text(RANDOM_PARAMS, samples=300, seed=1))
    lrs = np.array([r.lr for r in runs])
    moms = np.array([r.momentum for r in runs])
    assert ((lrs >= 1e-4) & (lrs <= 1e-1)).all()
    assert ((moms >= 0.2) & (moms <= 0.7)).all()
    assert {r.optimizer for r in runs} == {"sgd", "adam", "adamw"}
    assert all(r.epochs == 5 for r in runs)
    # loguniform is spread in log space: each decade gets a fair share of 300 draws
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert (decades > 60).all(), decades
    # uniform is spread linearly: each half of [0.2, 0.7] gets a fair share
    assert 100 < (moms < 0.45).sum() < 200


def test_random_uniform_int(tmp_path):
    runs = runs_of(tmp_path, random_text({"batch_size": {"uniform": [4, 9], "int": True}},
                                         samples=100))
    sizes = [r.batch_size for r in runs]
    assert all(type(b) is int and 4 <= b <= 9 for b in sizes)


def test_random_without_samples_refused(tmp_path):
    text = yaml_config(sweep={"strategy": "random", "params": {"lr": [0.1, 0.2]}})
    user_error(tmp_path, text, "sweep.samples")


@pytest.mark.parametrize("samples", [0, -3, 2.5, True, "ten"])
def test_random_bad_samples_refused(tmp_path, samples):
    text = yaml_config(sweep={"strategy": "random", "samples": samples,
                              "params": {"lr": [0.1, 0.2]}})
    user_error(tmp_path, text, "sweep.samples")


def test_samples_under_grid_refused(tmp_path):
    text = yaml_config(sweep={"strategy": "grid", "samples": 4, "params": {"lr": [0.1]}})
    user_error(tmp_path, text, "sweep.samples")


@pytest.mark.parametrize("form", [{"linspace": [0.1, 0.5, 3]}, {"logspace": [-3, -1, 3]}])
def test_grid_forms_under_random_refused(tmp_path, form):
    user_error(tmp_path, random_text({"lr": form}), r"sweep\.params\.lr")


@pytest.mark.parametrize("form", [{"uniform": [0.1, 0.5]}, {"loguniform": [0.001, 0.1]}])
def test_random_forms_under_grid_refused(tmp_path, form):
    user_error(tmp_path, yaml_config(sweep={"params": {"lr": form}}), r"sweep\.params\.lr")


def test_unknown_strategy_refused(tmp_path):
    user_error(tmp_path, yaml_config(sweep={"strategy": "bayes"}), "sweep.strategy")


# ---------------------------------------------------------------- errors: unknown keys


@pytest.mark.parametrize("text, match", [
    (MINIMAL + "nmae: x\n", r"nmae: unknown key; did you mean 'name'\?"),
    (MINIMAL + "modle: {}\n", r"modle: unknown key; did you mean 'model'\?"),
    (MINIMAL + "model: {hiden: [4]}\n", r"model\.hiden: unknown key; did you mean 'hidden'\?"),
    ("name: t\ndata: {source: line, sede: 1}\n", r"data\.sede: unknown key; did you mean 'seed'\?"),
    (MINIMAL + "train: {epocs: 3}\n", r"train\.epocs: unknown key; did you mean 'epochs'\?"),
    (MINIMAL + "sweep: {stratgy: grid}\n",
     r"sweep\.stratgy: unknown key; did you mean 'strategy'\?"),
    (MINIMAL + "sweep: {params: {batch_sise: [8]}}\n",
     r"sweep\.params\.batch_sise: unknown key; did you mean 'batch_size'\?"),
    (MINIMAL + "sweep: {params: {eval_every: [1, 2]}}\n", r"sweep\.params\.eval_every: unknown key"),
])
def test_unknown_key_with_suggestion(tmp_path, text, match):
    user_error(tmp_path, text, match)


def test_unknown_key_without_close_match(tmp_path):
    user_error(tmp_path, MINIMAL + "sweep: {params: {lerning_rate: [0.1]}}\n",
               r"^sweep\.params\.lerning_rate: unknown key")


# ---------------------------------------------------------------- errors: values


@pytest.mark.parametrize("section", ["train", "sweep"])
@pytest.mark.parametrize("key, value, match", [
    ("lr", "abc", "expected a number"),
    ("batch_size", 3.5, "expected an integer"),
    ("shuffle", "yes", "expected true or false"),
    ("nesterov", 1, "expected true or false"),
    ("epochs", True, "expected a number"),
    ("seed", -1, "must be"),
    ("lr", 0, "must be > 0"),
    ("lr", -0.1, "must be > 0"),
    ("batch_size", 0, r"must be in \[1, 10\*\*9\]"),
    ("batch_size", -8, r"must be in \[1, 10\*\*9\]"),
    ("batch_size", 10**30, r"must be in \[1, 10\*\*9\]"),
    ("epochs", 0, r"must be in \[1, 10\*\*9\]"),
    ("step_size", 0, r"must be in \[1, 10\*\*9\]"),
    ("step_size", 2**70, r"must be in \[1, 10\*\*9\]"),
    ("beta1", 1.0, r"must be in \[0, 1\)"),
    ("beta1", 1.5, r"must be in \[0, 1\)"),
    ("beta2", -0.1, r"must be in \[0, 1\)"),
    ("momentum", -0.5, "must be >= 0"),
    ("weight_decay", -1e-3, "must be >= 0"),
    ("eps", 0, "must be > 0"),
    ("gamma", 0, "must be > 0"),
    ("optimizer", "adamm", r"got 'adamm'; did you mean 'adam'\?"),
    ("optimizer", "rmsprop", "expected one of sgd, adam, adamw"),
    ("input_norm", "batchnrom", r"did you mean 'batchnorm'\?"),
    ("lr_schedule", "cosine", "expected one of constant, step"),
])
def test_bad_run_value(tmp_path, section, key, value, match):
    if section == "train":
        text, where = yaml_config(train={key: value}), f"train.{key}"
    else:
        text, where = yaml_config(sweep={"params": {key: [value]}}), f"sweep.params.{key}"
    message = user_error(tmp_path, text, match)
    assert message.startswith(where + ":"), message


def test_bad_value_in_a_grid_axis_names_the_key(tmp_path):
    message = user_error(tmp_path, yaml_config(sweep={"params": {"lr": [0.1, -1, 0.2]}}),
                         r"sweep\.params\.lr: must be > 0")
    assert "-1" in message


def test_non_finite_values_refused(tmp_path):
    user_error(tmp_path, MINIMAL + "train: {lr: .inf}\n", r"train\.lr: expected a finite number")
    user_error(tmp_path, MINIMAL + "train: {lr: .nan}\n", r"train\.lr: expected a finite number")


def test_huge_integer_refused_as_user_error(tmp_path):
    # An integer beyond float range must be refused as a UserError, not OverflowError.
    user_error(tmp_path, MINIMAL + "train: {seed: " + "9" * 400 + "}\n", r"train\.seed")


def test_seed_out_of_range_refused(tmp_path):
    user_error(tmp_path, yaml_config(train={"seed": 2**63}), r"^train\.seed: ")


def test_yaml_yes_is_a_bool_but_quoted_yes_is_not(tmp_path):
    (run,) = runs_of(tmp_path, MINIMAL + "train: {shuffle: false}\n")
    assert run.shuffle is False
    user_error(tmp_path, MINIMAL + 'train: {shuffle: "yes"}\n', r"train\.shuffle")


@pytest.mark.parametrize("section", ["train", "sweep"])
def test_nesterov_without_momentum_refused_naming_the_run(tmp_path, section):
    if section == "train":
        text = yaml_config(train={"optimizer": "sgd", "nesterov": True},
                           sweep={"params": {"lr": [0.1, 0.2]}})
        match = r"sweep: run 0\b.*nesterov.*momentum"
    else:
        text = yaml_config(train={"optimizer": "sgd"},
                           sweep={"params": {"momentum": [0.9, 0.0], "nesterov": [True]}})
        match = r"sweep: run 1\b.*nesterov.*momentum"
    user_error(tmp_path, text, match)


def test_nesterov_with_momentum_accepted(tmp_path):
    runs = runs_of(tmp_path, yaml_config(train={"optimizer": "sgd", "momentum": 0.9,
                                                "nesterov": True}))
    assert runs[0].nesterov is True


@pytest.mark.parametrize("model, match", [
    ({"hidden": [4, 4, 4, 4]}, r"model\.hidden: expected a list of at most 3"),
    ({"hidden": 16}, r"model\.hidden"),
    ({"hidden": [4, 2.5]}, r"model\.hidden\[1\]"),
    ({"hidden": ["8"]}, r"model\.hidden\[0\]"),
    ({"hidden": [0]}, r"model\.hidden\[0\]: expected an integer >= 1"),
    ({"hidden": [8, -1]}, r"model\.hidden\[1\]"),
    ({"hidden": [True]}, r"model\.hidden\[0\]"),
    ({"activation": "gelu"}, r"model\.activation: expected one of sigmoid, tanh, relu"),
    ({"activation": "reLu"}, r"model\.activation: .*did you mean 'relu'\?"),
    ({"loss": "bce"}, r"model\.loss: expected one of mse, bce_with_logits"),
    ({"loss": "bce_with_logit"}, r"model\.loss: .*did you mean 'bce_with_logits'\?"),
])
def test_bad_model(tmp_path, model, match):
    user_error(tmp_path, yaml_config(model=model), match)


def test_three_hidden_layers_accepted(tmp_path):
    assert load(tmp_path, yaml_config(model={"hidden": [3, 5, 7]})).model.hidden == (3, 5, 7)


@pytest.mark.parametrize("name", ["a/b", "../up", "", "has space", ".", "..", 12, None, ["x"]])
def test_bad_name_refused(tmp_path, name):
    user_error(tmp_path, json.dumps({"name": name, "data": {"source": "line"}}), r"^name: ")


@pytest.mark.parametrize("filename, name", [("line_study.yaml", "line_study"),
                                            ("my study (2).json", "my_study__2_"),
                                            ("..yaml", "sweep")])
def test_a_config_without_a_name_is_named_after_its_file(tmp_path, filename, name):
    assert load(tmp_path, json.dumps({"data": {"source": "line"}}), filename).name == name


def test_a_dict_config_without_a_name_is_named_sweep(tmp_path):
    assert load_config({"data": {"source": "line"}}).name == "sweep"
    assert load_config({"name": "mine", "data": {"source": "line"}}).name == "mine"


@pytest.mark.parametrize("data, match", [
    ({"source": "lnie"}, r"data\.source: .*'lnie'; did you mean 'line'\?"),
    ({"source": "sql"}, r"data\.source: expected one of line, heart_rate"),
    ({}, r"data\.source"),
    ({"source": "line", "val_fraction": 1.0}, r"data\.val_fraction: expected a number in \[0, 1\)"),
    ({"source": "line", "val_fraction": -0.1}, r"data\.val_fraction"),
    ({"source": "line", "val_fraction": "half"}, r"data\.val_fraction"),
    ({"source": "line", "seed": -1}, r"data\.seed"),
    ({"source": "line", "seed": 1.5}, r"data\.seed"),
    ({"source": "line", "params": [1, 2]}, r"data\.params: expected a mapping"),
])
def test_bad_data(tmp_path, data, match):
    user_error(tmp_path, yaml_config(data=data), match)


def test_missing_data_section_refused(tmp_path):
    user_error(tmp_path, "name: t\n", r"^data: missing section")


@pytest.mark.parametrize("section", ["data", "model", "train", "sweep"])
def test_section_not_a_mapping_refused(tmp_path, section):
    raw = {"name": "t", "data": {"source": "line"}, section: [1, 2]}
    user_error(tmp_path, json.dumps(raw), rf"^{section}: expected a mapping")


@pytest.mark.parametrize("eval_every", [0, -1, 1.5, True])
def test_bad_eval_every_refused(tmp_path, eval_every):
    user_error(tmp_path, yaml_config(train={"eval_every": eval_every}), r"train\.eval_every")


def test_sweep_params_not_a_mapping_refused(tmp_path):
    user_error(tmp_path, yaml_config(sweep={"params": [0.1]}), r"sweep\.params: expected a mapping")


def test_empty_grid_list_refused(tmp_path):
    user_error(tmp_path, yaml_config(sweep={"params": {"lr": [0.1], "batch_size": []}}),
               r"sweep\.params\.batch_size: .*empty")


def test_empty_list_under_random_refused(tmp_path):
    user_error(tmp_path, random_text({"batch_size": []}), r"sweep\.params\.batch_size")


@pytest.mark.parametrize("form, match", [
    ({"linspace": [1, 2]}, r"sweep\.params\.lr\.linspace: expected a list of 3 "),
    ({"linspace": [1, 2, 0]}, r"sweep\.params\.lr\.linspace: the count"),
    ({"linspace": [1, 2, 2.5]}, r"sweep\.params\.lr\.linspace: the count"),
    ({"logspace": [-3, "a", 2]}, r"sweep\.params\.lr\.logspace"),
    ({"linspace": [0.1, 0.2, 2], "int": "yes"}, r"sweep\.params\.lr\.int"),
    ({"linspace": [0.1, 0.2, 2], "logspace": [0, 1, 2]}, r"sweep\.params\.lr"),
    ({"range": [1, 2, 3]}, r"sweep\.params\.lr"),
])
def test_bad_grid_form_refused(tmp_path, form, match):
    user_error(tmp_path, yaml_config(sweep={"params": {"lr": form}}), match)


def test_non_finite_linspace_count_refused(tmp_path):
    # The count .inf must be refused as a UserError, not raise OverflowError from int(inf).
    user_error(tmp_path, MINIMAL + "sweep: {params: {epochs: {linspace: [1, 5, .inf]}}}\n",
               r"sweep\.params\.epochs")


@pytest.mark.parametrize("form, match", [
    ({"uniform": [0.5, 0.1]}, r"sweep\.params\.lr\.uniform: expected lo <= hi"),
    ({"loguniform": [0, 0.1]}, r"sweep\.params\.lr\.loguniform: expected 0 < lo <= hi"),
    ({"loguniform": [0.1, 0.01]}, r"sweep\.params\.lr\.loguniform"),
    ({"uniform": [0.1]}, r"sweep\.params\.lr\.uniform: expected a list of 2 "),
])
def test_bad_random_form_refused(tmp_path, form, match):
    user_error(tmp_path, random_text({"lr": form}), match)


def test_infinite_uniform_bound_refused(tmp_path):
    # {uniform: [0, .inf]} must be a UserError, not numpy's OverflowError.
    text = MINIMAL + ("sweep: {strategy: random, samples: 2, seed: 0,\n"
                      "        params: {momentum: {uniform: [0, .inf]}}}\n")
    user_error(tmp_path, text, r"sweep\.params\.momentum")


# ---------------------------------------------------------------- errors: the file itself


def test_python_tag_refused_and_not_executed(tmp_path):
    marker = tmp_path / "marker"
    text = (f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
            "data: {source: line}\n")
    message = user_error(tmp_path, text, r"config\.yaml: invalid YAML")
    assert "tag" in message.lower()
    assert not marker.exists()


def test_python_name_tag_refused(tmp_path):
    user_error(tmp_path, "name: !!python/name:os.system\ndata: {source: line}\n",
               r"config\.yaml: invalid YAML")


@pytest.mark.parametrize("text", [
    "name: [unclosed\n",
    "name: t\ndata:\n  source: line\n   bad: indent\n",
    "name: t\n\tdata: {source: line}\n",
    "name: 'unterminated\n",
])
def test_malformed_yaml_refused(tmp_path, text):
    user_error(tmp_path, text, r"config\.yaml: invalid YAML")


def test_malformed_json_refused(tmp_path):
    user_error(tmp_path, '{"name": "t",}', r"config\.json: invalid JSON", filename="config.json")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "str"),
                                        ("", "NoneType"), ("42\n", "int")])
def test_top_level_not_a_mapping_refused(tmp_path, text, kind):
    user_error(tmp_path, text, rf"config\.yaml: expected a mapping at the top level, got {kind}")


def test_top_level_json_list_refused(tmp_path):
    user_error(tmp_path, "[1, 2]", r"config\.json: expected a mapping", filename="config.json")


def test_missing_config_file_refused(tmp_path):
    with pytest.raises(UserError, match=r"nope\.yaml: config file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert "\n" not in str(info.value)


def test_directory_as_config_refused(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path)


def test_non_utf8_config_refused(tmp_path):
    # Bytes that are not UTF-8 must give a UserError naming the file, not UnicodeDecodeError.
    path = tmp_path / "config.yaml"
    path.write_bytes(b"name: t\ndata: {source: line}\n# \xff\xfe\n")
    with pytest.raises(UserError, match=r"config\.yaml") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_message_with_odd_key_stays_one_line(tmp_path):
    # A key holding a newline must not break the one-line rule of the message.
    raw = {"name": "t", "data": {"source": "line"}, "foo\nbar": 1}
    with pytest.raises(UserError, match="unknown key") as info:
        runs_of(tmp_path, json.dumps(raw), filename="config.json")
    assert "\n" not in str(info.value), repr(str(info.value))


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML's default) reads `1e-3` as a string; learning rates are written so.
    path = tmp_path / "c.yaml"
    path.write_text("name: s\ndata: {source: line}\ntrain: {lr: 1e-3, eps: 1E-8}\n"
                    "sweep: {params: {lr: [1e-2, 3e-4], weight_decay: [1e-1]}}\n")
    runs = expand(load_config(path)).rows()
    assert [r.lr for r in runs] == [1e-2, 3e-4]
    assert runs[0].eps == 1e-8 and runs[0].weight_decay == 0.1
