"""A sweep written in Python instead of YAML.

    import tinysweep
    res = (tinysweep.Sweep(data=(X, y), hidden=[16], loss="bce_with_logits", epochs=50)
           .grid(lr=tinysweep.logspace(-4, -1, 10), batch_size=[16, 64])
           .run())

``Sweep`` only builds the config dict a YAML file would hold (``Sweep.config``), and
``logspace`` and the others return the search-space values the YAML writes as
``{logspace: [-4, -1, 10]}``: every check, default and error is the config's own, and a
sweep built here runs through the same code path as a file.
"""

from __future__ import annotations

import copy
from typing import Any

MODEL_KEYS = ("hidden", "activation", "loss")


def linspace(lo: float, hi: float, n: int, *, int: bool = False) -> dict:
    """n values evenly spaced from lo to hi (a grid axis); ``int``: rounded to integers."""
    return {"linspace": [lo, hi, n], **({"int": True} if int else {})}


def logspace(lo_exp: float, hi_exp: float, n: int, *, int: bool = False) -> dict:
    """n values from 10**lo_exp to 10**hi_exp, evenly spaced in log (a grid axis)."""
    return {"logspace": [lo_exp, hi_exp, n], **({"int": True} if int else {})}


def uniform(lo: float, hi: float) -> dict:
    """A value drawn uniformly from [lo, hi) (random search)."""
    return {"uniform": [lo, hi]}


def loguniform(lo: float, hi: float) -> dict:
    """A value drawn log-uniformly from [lo, hi) (random search)."""
    return {"loguniform": [lo, hi]}


class Sweep:
    """A sweep's config, built in Python.

    data: data in memory (an (X, y) pair of numpy arrays or torch tensors, or a pandas
        DataFrame with ``target``), a built-in generator's name ("line", "moons", ...), or
        the config's whole ``data`` section as a dict.
    hidden, activation, loss: the ``model`` section.
    val_fraction, data_seed: the data section's ``val_fraction`` and ``seed``.
    name: the sweep's name (default ``sweep``).
    **train: the ``train`` section: defaults for every per-run hyperparameter (lr, epochs,
        optimizer, ...) and eval_every.

    ``grid(**params)`` and ``random(samples, **params)`` return a new Sweep with that search
    space; ``config`` is the dict; ``run(**kwargs)`` is ``tinysweep.run(config, data=...,
    **kwargs)`` and ``diagnose(**kwargs)`` likewise.
    """

    def __init__(self, data: Any = None, *, target: str | None = None,
                 name: str | None = None, hidden: list[int] | None = None,
                 activation: str | None = None, loss: str | None = None,
                 val_fraction: float | None = None, data_seed: int | None = None,
                 **train: Any):
        self._memory, section = None, {}
        if isinstance(data, str):
            section = {"source": data}
        elif isinstance(data, dict):
            section = copy.deepcopy(data)
        elif data is not None:
            self._memory = data
        if val_fraction is not None:
            section["val_fraction"] = val_fraction
        if data_seed is not None:
            section["seed"] = data_seed
        self._target = target
        model = {k: v for k, v in zip(MODEL_KEYS, (hidden, activation, loss)) if v is not None}
        self._config: dict[str, Any] = {
            **({"name": name} if name is not None else {}),
            **({"data": section} if section or self._memory is None else {}),
            **({"model": model} if model else {}),
            **({"train": dict(train)} if train else {}),
        }

    def _with_sweep(self, sweep: dict) -> Sweep:
        other = copy.copy(self)
        other._config = {**copy.deepcopy(self._config), "sweep": sweep}
        return other

    def grid(self, **params: Any) -> Sweep:
        """This sweep over every combination of ``params`` (a list is an axis; see
        ``logspace`` and ``linspace``; a scalar is fixed), in the order given."""
        return self._with_sweep({"strategy": "grid", "params": params})

    def random(self, samples: int, *, seed: int = 0, **params: Any) -> Sweep:
        """This sweep over ``samples`` runs drawn from ``params`` (a list: a uniform
        choice; see ``uniform`` and ``loguniform``; a scalar is fixed)."""
        return self._with_sweep({"strategy": "random", "params": params,
                                 "samples": samples, "seed": seed})

    @property
    def config(self) -> dict:
        """The config dict, as the YAML file of the same sweep would load."""
        return copy.deepcopy(self._config)

    def run(self, **kwargs: Any):
        """Trains the sweep: ``tinysweep.run(self.config, data=..., **kwargs)``."""
        from .pipeline.sweep import run
        return run(self.config, **self._data(), **kwargs)

    def diagnose(self, **kwargs: Any):
        """Diagnoses the setup: ``tinysweep.diagnose(self.config, data=..., **kwargs)``."""
        from .insight.diagnose import diagnose
        return diagnose(self.config, **self._data(), **kwargs)

    def _data(self) -> dict:
        if self._memory is None:
            return {} if self._target is None else {"target": self._target}
        return {"data": self._memory, "target": self._target}

    def __repr__(self) -> str:
        data = "in memory" if self._memory is not None else self._config.get("data")
        return f"Sweep({self._config!r}, data={data})" if self._memory is not None \
            else f"Sweep({self._config!r})"
