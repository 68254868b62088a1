"""A sweep from plan to results: sweep (prepare, execute, the stage schedules),
the chunk store (--resume), the results directory and the Results object.
Imports backends and spec."""
