"""tinysweep: train hundreds to millions of tiny MLPs at once, to see why one does not converge.

    import tinysweep
    res = tinysweep.run("examples/line_batch_size.yaml")
    res.table                  # one row per run
    res.model(0)               # run 0's trained model, an nn.Sequential on raw inputs
"""

from tinysweep.trainer.errors import UserError
from tinysweep.trainer.results import Results, load
from tinysweep.trainer.sweep import run

__all__ = ["run", "load", "Results", "UserError"]
__version__ = "0.1.0"
