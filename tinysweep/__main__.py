"""``python -m tinysweep``: the same as the ``tinysweep`` command."""

from tinysweep.trainer.cli import entry

raise SystemExit(entry())
