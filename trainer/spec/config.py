"""The sweep config: reading it, checking it, and the one dataclass of per-run hyperparameters.

A config has five sections (see README, "Config"): ``name``, ``data``, ``model``, ``train``
(defaults for every per-run hyperparameter, plus ``eval_every``) and ``sweep`` (the search
space). Every mistake a user can make in it becomes a :class:`UserError` whose message is
one line naming the key and what is expected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, _suggest, check_keys

ACTIVATIONS = ("sigmoid", "tanh", "relu")
LOSSES = ("mse", "bce_with_logits", "cross_entropy")
INPUT_NORMS = ("none", "standardize", "batchnorm")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "step")
# Known mistakes of training code, reproduced on purpose (see reference.py for each one's
# buggy line): a run with a bug trains as that code would; its curves are the task's true
# loss, so they show what the bug does.
BUGS = ("none", "target_broadcast", "double_sigmoid", "no_zero_grad", "loss_sum")
BACKENDS = ("auto", "reference", "torch", "triton", "numba")   # tinysweep run --backend
DEVICES = ("cpu", "cuda")
MAX_HIDDEN_LAYERS = 3
MAX_WIDTH = 4096           # units in a hidden layer: far past "tiny"
MAX_SEED = 2**63 - 1
MAX_COUNT = 10**9          # batch_size, epochs, step_size: far beyond use, safe in int64 math


# The checks take a number or a numpy array of numbers (one per run): `&`, not `and`.
def _positive(x):
    return x > 0


def _non_negative(x):
    return x >= 0


def _unit_interval(x):
    return (0 <= x) & (x < 1)


def _seed_range(x):
    return (0 <= x) & (x <= MAX_SEED)


def _count(x):
    return (1 <= x) & (x <= MAX_COUNT)


# Each field's metadata says how a config value is checked: its kind ("float", "int",
# "bool" or "choice"), the allowed choices, and a predicate with the words for the error.
def _hp(default, kind, *, check=None, expect="", choices=()):
    return field(default=default, metadata={"kind": kind, "check": check, "expect": expect,
                                            "choices": choices})


@dataclass(frozen=True)
class RunParams:
    """The hyperparameters of one run: the single source of their names and defaults.

    ``weight_decay`` and ``step_size`` default to None, meaning "the optimizer's default"
    (0.01 for adamw, else 0) and ``max(1, epochs // 3)``; :meth:`resolved` fills them in.
    """

    lr: float = _hp(1e-3, "float", check=_positive, expect="> 0")
    batch_size: int = _hp(32, "int", check=_count, expect="in [1, 10**9]")
    shuffle: bool = _hp(True, "bool")
    seed: int = _hp(0, "int", check=_seed_range, expect=f"in [0, {MAX_SEED}]")
    input_norm: str = _hp("none", "choice", choices=INPUT_NORMS)
    optimizer: str = _hp("adam", "choice", choices=OPTIMIZERS)
    momentum: float = _hp(0.0, "float", check=_non_negative, expect=">= 0")
    nesterov: bool = _hp(False, "bool")
    beta1: float = _hp(0.9, "float", check=_unit_interval, expect="in [0, 1)")
    beta2: float = _hp(0.999, "float", check=_unit_interval, expect="in [0, 1)")
    eps: float = _hp(1e-8, "float", check=_positive, expect="> 0")
    weight_decay: float | None = _hp(None, "float", check=_non_negative, expect=">= 0")
    lr_schedule: str = _hp("constant", "choice", choices=LR_SCHEDULES)
    step_size: int | None = _hp(None, "int", check=_count, expect="in [1, 10**9]")
    gamma: float = _hp(0.1, "float", check=_positive, expect="> 0")
    epochs: int = _hp(100, "int", check=_count, expect="in [1, 10**9]")
    # The architecture: widths of the hidden layers, () for Linear(d, 1); their activation.
    # model.hidden and model.activation are their defaults.
    hidden: tuple[int, ...] = _hp((), "widths")
    activation: str = _hp("sigmoid", "choice", choices=ACTIVATIONS)
    bug: str = _hp("none", "choice", choices=BUGS)

    def resolved(self) -> RunParams:
        """This run with the optimizer-dependent defaults filled in."""
        wd = self.weight_decay
        if wd is None:
            wd = 0.01 if self.optimizer == "adamw" else 0.0
        step = self.step_size if self.step_size is not None else max(1, self.epochs // 3)
        return dataclasses.replace(self, weight_decay=wd, step_size=step)


RUN_PARAM_NAMES = tuple(f.name for f in dataclasses.fields(RunParams))
_RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunParams)}
# Per-run hyperparameters whose defaults come from the model section, not from train.
MODEL_PARAMS = ("hidden", "activation")


def widths_text(hidden) -> str:
    """An architecture's hidden widths as results.csv writes them: "16-16", "none" for ()."""
    return "-".join(str(int(w)) for w in hidden) or "none"


def widths_of(text: str) -> tuple[int, ...]:
    """The inverse of widths_text."""
    return () if text == "none" else tuple(int(w) for w in text.split("-"))


def check_run_value(name: str, value: Any, where: str) -> Any:
    """Checks one hyperparameter value and returns it in its canonical Python type.

    ``where`` is the config key to blame in the error, e.g. ``sweep.params.lr``.
    """
    meta = _RUN_FIELDS[name].metadata
    kind = meta["kind"]
    if kind == "widths":
        if not isinstance(value, (list, tuple)) or len(value) > MAX_HIDDEN_LAYERS:
            raise UserError(f"{where}: expected a list of at most {MAX_HIDDEN_LAYERS} "
                            f"layer widths, got {value!r}")
        for i, w in enumerate(value):
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_WIDTH:
                raise UserError(f"{where}[{i}]: expected an integer >= 1 (at most "
                                f"{MAX_WIDTH}), got {w!r}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in meta["choices"]:
            raise UserError(f"{where}: expected one of {', '.join(meta['choices'])}, "
                            f"got {value!r}{_suggest(value, meta['choices'])}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int) and value.bit_length() > 1000:   # beyond float range
        raise UserError(f"{where}: {value} is out of range")
    if not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    if kind == "int":
        if value != int(value):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if meta["check"] is not None and not meta["check"](value):
        raise UserError(f"{where}: must be {meta['expect']}, got {value!r}")
    return value


def run_field(name: str) -> dict:
    """A hyperparameter's metadata: kind, choices, check and its words (see ``_hp``)."""
    return _RUN_FIELDS[name].metadata


@dataclass(frozen=True)
class DataSpec:
    source: str
    params: dict
    seed: int = 0            # the generator's draw and the validation split
    val_fraction: float = 0.0
    # cross-validation folds as a run axis (folds.check_cv): {folds, repeats, shuffle_seed}
    # or {folds, repeats, assignment}; None: no folds
    cv: dict | None = None


@dataclass(frozen=True)
class ModelSpec:
    hidden: tuple[int, ...] = ()       # () is Linear(d, 1); (16,) is d -> 16 -> 1
    activation: str = "sigmoid"
    loss: str = "mse"


@dataclass(frozen=True)
class SweepSpec:
    strategy: str = "grid"             # grid | random
    params: dict = field(default_factory=dict)   # name -> raw search-space value
    samples: int | None = None         # random only: how many runs to draw
    seed: int = 0                      # random only: the draw's seed
    halving: dict | None = None        # successive halving: rungs, keep, metric (checked)
    hyperband: dict | None = None      # Hyperband: min_epochs, eta, metric (checked)
    # population based training: interval, quantile, metric, perturb, resample_probability
    pbt: dict | None = None


@dataclass(frozen=True)
class Config:
    name: str
    data: DataSpec
    model: ModelSpec
    train: dict          # name -> checked default for each per-run hyperparameter it sets
    eval_every: int      # epochs between full-data evaluations
    sweep: SweepSpec
    base_dir: Path       # the config file's folder: data paths are relative to it
    memory: Any = field(default=None, repr=False, compare=False)   # data.MemoryData, for
    # source memory: the arrays given in memory (the config records their shape and hash)

    def to_dict(self) -> dict:
        """The resolved config, as written to config.yaml (and read back by load_config)."""
        data = {"source": self.data.source, "params": dict(self.data.params),
                "seed": self.data.seed, "val_fraction": self.data.val_fraction}
        if self.data.cv is not None:     # absent otherwise: older configs hash the same
            data["cv"] = dict(self.data.cv)
        if self.data.source in ("csv", "npz"):
            data["params"]["path"] = str((self.base_dir / data["params"]["path"]).resolve())
        sweep: dict[str, Any] = {"strategy": self.sweep.strategy, "params": dict(self.sweep.params)}
        if self.sweep.strategy == "random":
            sweep.update(samples=self.sweep.samples, seed=self.sweep.seed)
        if self.sweep.halving is not None:
            sweep["halving"] = dict(self.sweep.halving)
        if self.sweep.hyperband is not None:
            sweep["hyperband"] = dict(self.sweep.hyperband)
        if self.sweep.pbt is not None:
            sweep["pbt"] = {**self.sweep.pbt, "perturb": {
                k: list(v) for k, v in self.sweep.pbt["perturb"].items()}}
        return {
            "name": self.name,
            "data": data,
            "model": {"hidden": list(self.model.hidden), "activation": self.model.activation,
                      "loss": self.model.loss},
            "train": {**self.train, "eval_every": self.eval_every},
            "sweep": sweep,
        }


_SECTIONS = {
    "": ("name", "data", "model", "train", "sweep"),
    "data": ("source", "params", "seed", "val_fraction", "cv"),
    "model": ("hidden", "activation", "loss"),
    "train": tuple(n for n in RUN_PARAM_NAMES if n not in MODEL_PARAMS) + ("eval_every",),
    "sweep": ("strategy", "params", "samples", "seed", "halving", "hyperband", "pbt"),
}


def _section(raw: dict, key: str, required: bool = False) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            raise UserError(f"{key}: missing section")
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{key}: expected a mapping, got {value!r}")
    check_keys(value, _SECTIONS[key], key)
    return value


def _int(value, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise UserError(f"{where}: expected an integer >= {lo}, got {value!r}")
    return value


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads ``1e-3`` as a float (YAML 1.2), not as a string as
    YAML 1.1 does: learning rates are written that way."""


class _Dumper(yaml.SafeDumper):
    """yaml.SafeDumper that quotes the strings _Loader would read as floats ("1e5")."""


_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X)
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def dump_yaml(data: dict) -> str:
    """YAML text that load_config reads back to ``data``."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def read_config_file(path: str | Path) -> dict:
    """Reads a YAML or JSON file into a dict; YAML through safe_load, so no tag executes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = yaml.load(text, Loader=_Loader)   # safe: no tag constructs objects
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    except ValueError as e:     # e.g. an integer of more digits than Python converts
        raise UserError(f"{path}: invalid JSON: {str(e).splitlines()[0]}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "python/" in str(e) or "could not determine a constructor" in str(e):
            problem = "YAML tags are not allowed (" + problem + ")"
        raise UserError(f"{path}: invalid YAML{line}: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


DEFAULT_NAME = "sweep"      # the name of a config given as a dict without one


def load_config(config: str | Path | dict | Config, data=None, target: str | None = None
                ) -> Config:
    """Reads and checks a config: a YAML or JSON file's path, a dict of the same schema or a
    Config. ``data`` (with ``target`` for a DataFrame): data in memory, replacing the
    config's data source (see data.from_memory). Raises UserError naming the first
    problem."""
    memory = None
    if data is not None:
        from .data import from_memory
        memory = from_memory(data, target)
    elif target is not None:
        raise UserError("target: only used with data=... (a pandas DataFrame)")
    if isinstance(config, Config):
        return config if memory is None else _with_memory(config, memory)
    if isinstance(config, dict):
        return parse_config(config, base_dir=Path.cwd(), default_name=DEFAULT_NAME,
                            memory=memory)
    if not isinstance(config, (str, Path)):
        raise UserError(f"config: expected a file path, a dict or a Config, got "
                        f"{type(config).__name__}")
    path = Path(config)
    return parse_config(read_config_file(path), base_dir=path.resolve().parent,
                        default_name=_name_from(path.stem), memory=memory)


def _name_from(stem: str) -> str:
    """A file stem as a sweep name: the characters a name cannot hold become '_'."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
    return name if name not in ("", ".", "..") else DEFAULT_NAME


def _with_memory(config: Config, memory) -> Config:
    from .data import MEMORY
    data = DataSpec(MEMORY, memory.params(), config.data.seed, config.data.val_fraction,
                    config.data.cv)
    return dataclasses.replace(config, data=data, memory=memory)


def parse_config(raw: dict, base_dir: Path, default_name: str = DEFAULT_NAME,
                 memory=None) -> Config:
    """Checks a config dict (see the module docstring) and returns it typed. A config
    without ``name`` gets ``default_name``; with ``memory`` (data.MemoryData), the data
    section may be absent or hold only ``seed`` and ``val_fraction``."""
    if not isinstance(raw, dict):
        raise UserError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    check_keys(raw, _SECTIONS[""], "")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise UserError(f"name: expected a name of letters, digits, '_', '-' or '.', got {name!r}")

    data = _section(raw, "data", required=memory is None)
    from .data import MEMORY, SOURCES, check_params
    if memory is not None:
        source, params = MEMORY, memory.params()
    else:
        source = data.get("source")
        if source not in SOURCES and source != MEMORY:   # memory: a resolved config's
            raise UserError(f"data.source: expected one of {', '.join(SOURCES)}, got {source!r}"
                            f"{_suggest(source, SOURCES)}")
        params = check_params(source, data.get("params"))     # with the generator's defaults
    val_fraction = data.get("val_fraction", 0.0)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0 <= val_fraction < 1:
        raise UserError(f"data.val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    from .folds import check_cv
    data_spec = DataSpec(source, dict(params), _int(data.get("seed", 0), "data.seed"),
                         float(val_fraction), check_cv(data.get("cv"), val_fraction))

    model = _section(raw, "model")
    hidden = check_run_value("hidden", model.get("hidden", []), "model.hidden")
    for key, choices in (("activation", ACTIVATIONS), ("loss", LOSSES)):
        value = model.get(key, ModelSpec.__dataclass_fields__[key].default)
        if value not in choices:
            raise UserError(f"model.{key}: expected one of {', '.join(choices)}, got {value!r}"
                            f"{_suggest(value, choices)}")
    model_spec = ModelSpec(tuple(hidden), model.get("activation", "sigmoid"),
                           model.get("loss", "mse"))

    train = dict(_section(raw, "train"))
    eval_every = _int(train.pop("eval_every", 1), "train.eval_every", lo=1)
    train = {k: check_run_value(k, v, f"train.{k}") for k, v in train.items()}

    sweep = _section(raw, "sweep")
    strategy = sweep.get("strategy", "grid")
    if strategy not in ("grid", "random"):
        raise UserError(f"sweep.strategy: expected grid or random, got {strategy!r}")
    sweep_params = sweep.get("params") or {}
    if not isinstance(sweep_params, dict):
        raise UserError(f"sweep.params: expected a mapping, got {sweep_params!r}")
    check_keys(sweep_params, RUN_PARAM_NAMES, "sweep.params")
    samples = sweep.get("samples")
    if strategy == "random":
        samples = _int(samples, "sweep.samples", lo=1)
    elif samples is not None:
        raise UserError("sweep.samples: only used with strategy: random")
    sweep_spec = SweepSpec(strategy, dict(sweep_params), samples,
                           _int(sweep.get("seed", 0), "sweep.seed"),
                           _halving(sweep.get("halving"), eval_every),
                           _hyperband(sweep.get("hyperband"), eval_every),
                           _pbt(sweep.get("pbt"), eval_every, data_spec.val_fraction))
    if sweep_spec.halving is not None and sweep_spec.hyperband is not None:
        raise UserError("sweep.hyperband: not used with sweep.halving (Hyperband runs "
                        "halving brackets of its own); drop one of them")
    if sweep_spec.pbt is not None and (sweep_spec.halving or sweep_spec.hyperband):
        other = "halving" if sweep_spec.halving is not None else "hyperband"
        raise UserError(f"sweep.pbt: not used with sweep.{other} (PBT keeps its whole "
                        f"population training); drop one of them")
    return Config(name, data_spec, model_spec, train, eval_every, sweep_spec, base_dir,
                  memory)


HALVING_METRICS = ("train_loss", "val_loss")


def _halving(value, eval_every: int) -> dict | None:
    """sweep.halving checked: rungs (increasing evaluation epochs), keep in (0, 1), metric.
    Whether the rungs fall within the runs' epochs is checked with the runs (sweep.py)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"sweep.halving: expected a mapping, got {value!r}")
    check_keys(value, ("rungs", "keep", "metric"), "sweep.halving")
    rungs = value.get("rungs")
    if not isinstance(rungs, list) or not rungs:
        raise UserError(f"sweep.halving.rungs: expected a list of epochs, got {rungs!r}")
    for i, rung in enumerate(rungs):
        _int(rung, f"sweep.halving.rungs[{i}]", lo=1)
        if i and rung <= rungs[i - 1]:
            raise UserError(f"sweep.halving.rungs: expected increasing epochs, got {rungs!r}")
        if rung % eval_every:
            raise UserError(f"sweep.halving.rungs[{i}]: {rung} is not an evaluation epoch "
                            f"(a multiple of train.eval_every, {eval_every})")
    keep = value.get("keep", 0.5)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
        raise UserError(f"sweep.halving.keep: expected a fraction in (0, 1), got {keep!r}")
    metric = value.get("metric", "train_loss")
    if metric not in HALVING_METRICS:
        raise UserError(f"sweep.halving.metric: expected one of {', '.join(HALVING_METRICS)}, "
                        f"got {metric!r}")
    return {"rungs": list(rungs), "keep": float(keep), "metric": metric}


def _hyperband(value, eval_every: int) -> dict | None:
    """sweep.hyperband checked: min_epochs (an evaluation epoch), eta >= 2, metric. Whether
    min_epochs is below the runs' epochs is checked with the runs (sweep.py)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"sweep.hyperband: expected a mapping, got {value!r}")
    check_keys(value, ("min_epochs", "eta", "metric"), "sweep.hyperband")
    low = _int(value.get("min_epochs", eval_every), "sweep.hyperband.min_epochs", lo=1)
    if low % eval_every:
        raise UserError(f"sweep.hyperband.min_epochs: {low} is not an evaluation epoch "
                        f"(a multiple of train.eval_every, {eval_every})")
    eta = value.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 2:
        raise UserError(f"sweep.hyperband.eta: expected a number >= 2, got {eta!r}")
    metric = value.get("metric", "train_loss")
    if metric not in HALVING_METRICS:
        raise UserError(f"sweep.hyperband.metric: expected one of "
                        f"{', '.join(HALVING_METRICS)}, got {metric!r}")
    return {"min_epochs": low, "eta": eta, "metric": metric}


# The per-run hyperparameters PBT may perturb: they change what the next step does, not the
# shape of the state a member copies (hidden, activation, input_norm, optimizer) nor the
# length of the run (epochs). Floats take factors; batch_size takes choices.
PBT_PARAMS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "batch_size")


def _pbt(value, eval_every: int, val_fraction: float) -> dict | None:
    """sweep.pbt checked: interval (an evaluation epoch), quantile in (0, 0.5], metric
    (default val_loss with a validation split, else train_loss), perturb {param: [factors]}
    for float params or {batch_size: [choices]}, resample_probability in [0, 1]. Whether the
    interval is below the runs' epochs is checked with the runs (sweep.py)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"sweep.pbt: expected a mapping, got {value!r}")
    check_keys(value, ("interval", "quantile", "metric", "perturb", "resample_probability"),
               "sweep.pbt")
    interval = _int(value.get("interval"), "sweep.pbt.interval", lo=1)
    if interval % eval_every:
        raise UserError(f"sweep.pbt.interval: {interval} is not an evaluation epoch "
                        f"(a multiple of train.eval_every, {eval_every})")
    quantile = value.get("quantile", 0.25)
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) \
            or not 0 < quantile <= 0.5:
        raise UserError(f"sweep.pbt.quantile: expected a fraction in (0, 0.5], got {quantile!r}")
    metric = value.get("metric", "val_loss" if val_fraction > 0 else "train_loss")
    if metric not in HALVING_METRICS:
        raise UserError(f"sweep.pbt.metric: expected one of {', '.join(HALVING_METRICS)}, "
                        f"got {metric!r}")
    if metric == "val_loss" and val_fraction == 0:
        raise UserError("sweep.pbt.metric: val_loss needs a validation split "
                        "(data.val_fraction > 0)")
    p = value.get("resample_probability", 0.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise UserError(f"sweep.pbt.resample_probability: expected a probability in [0, 1], "
                        f"got {p!r}")
    perturb = value.get("perturb")
    if not isinstance(perturb, dict) or not perturb:
        raise UserError(f"sweep.pbt.perturb: expected a mapping of parameters to lists, "
                        f"got {perturb!r}")
    checked = {}
    for name, values in perturb.items():
        where = f"sweep.pbt.perturb.{name}"
        if name not in RUN_PARAM_NAMES:
            raise UserError(f"{where}: not a per-run hyperparameter"
                            f"{_suggest(name, PBT_PARAMS)}")
        if name not in PBT_PARAMS:
            raise UserError(f"{where}: cannot change mid-run; PBT perturbs "
                            f"{', '.join(PBT_PARAMS)}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: expected a non-empty list, got {values!r}")
        if name == "batch_size":
            checked[name] = [check_run_value(name, v, f"{where}[{i}]")
                             for i, v in enumerate(values)]
            continue
        for i, f in enumerate(values):
            if isinstance(f, bool) or not isinstance(f, (int, float)) \
                    or not math.isfinite(f) or f <= 0:
                raise UserError(f"{where}[{i}]: expected a factor > 0, got {f!r}")
        checked[name] = [float(f) for f in values]
    return {"interval": interval, "quantile": float(quantile), "metric": metric,
            "perturb": checked, "resample_probability": float(p)}
