"""tinysweep: train hundreds to millions of tiny MLPs at once, to see why one does not converge.

    import tinysweep
    res = tinysweep.run("examples/line_batch_size.yaml")
    res.table                  # one row per run
    res.model(0)               # run 0's trained model, an nn.Sequential on raw inputs
"""

from tinysweep.trainer.errors import UserError

__all__ = ["run", "load", "Results", "UserError"]
__version__ = "0.1.0"

# run, load and Results are imported on first use: `import tinysweep` (which the
# `tinysweep` command and `python -m tinysweep` do first) stays free of torch and pandas.
_LAZY = {"run": "tinysweep.trainer.sweep", "load": "tinysweep.trainer.results",
         "Results": "tinysweep.trainer.results"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'tinysweep' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value          # the next look-up is a plain one
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
