"""tinysweep: train hundreds to millions of tiny MLPs at once, to see why one does not converge.

    import numpy as np, tinysweep
    x = np.linspace(0, 1, 200)
    res = tinysweep.run({"sweep": {"params": {"lr": [0.01, 0.1], "batch_size": [10, 100]}}},
                        data=(x, -4 * x))
    res.table                  # one row per run
    res.model(0)               # run 0's trained model, an nn.Sequential on raw inputs

    tinysweep.run("examples/line_batch_size.yaml")     # a config file works the same way
    tinysweep.Sweep(data=(x, -4 * x)).grid(lr=tinysweep.logspace(-3, 0, 4)).run()
    tinysweep.diagnose({...one setup...}, data=(x, y))  # why it does or does not converge
    tinysweep.load("runs/line_batch_size")             # a results directory
    with tinysweep.doctor.watch() as d: train()        # bugs in your own training code
"""

from tinysweep.trainer.spec.errors import UserError, WriteError

__all__ = ["run", "diagnose", "tune", "doctor", "load", "Results", "Sweep", "linspace", "logspace",
           "uniform", "loguniform", "UserError", "WriteError"]
__version__ = "0.1.0"

# Imported on first use: `import tinysweep` (which the `tinysweep` command and
# `python -m tinysweep` do first) stays free of torch and pandas.
_LAZY = {"run": "tinysweep.trainer.pipeline.sweep", "load": "tinysweep.trainer.pipeline.results",
         "Results": "tinysweep.trainer.pipeline.results", "diagnose": "tinysweep.trainer.insight.diagnose",
         "tune": "tinysweep.trainer.insight.tune",
         **{name: "tinysweep.trainer.builder"
            for name in ("Sweep", "linspace", "logspace", "uniform", "loguniform")}}
# Names that are a module themselves (tinysweep.doctor.watch()), not one of its attributes.
_LAZY_MODULES = {"doctor": "tinysweep.trainer.insight.doctor"}


def __getattr__(name: str):
    import importlib
    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'tinysweep' has no attribute {name!r}")
    globals()[name] = value          # the next look-up is a plain one
    return value


def __dir__():
    return sorted([*globals(), *_LAZY, *_LAZY_MODULES])
