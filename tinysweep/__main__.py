"""``python -m tinysweep``: the same as the ``tinysweep`` command."""

from tinysweep.trainer.cli import main

raise SystemExit(main())
