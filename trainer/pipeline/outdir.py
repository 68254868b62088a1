"""The results directory while a sweep writes it: one writer at a time, and what --resume
keeps and --overwrite clears.

A run holds an exclusive lock on ``DIR/.lock`` (fcntl.flock) from before it looks at DIR
until its results are written. The kernel releases a flock when its process ends, however
it ends, so a killed run never blocks the next one; the file itself stays (removing it
would let two runs lock two different files of one name). It holds the holder's pid, for
the message a second run prints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..spec.errors import UserError

LOCK = ".lock"


def check_out(out: Path, flag: str = "--out") -> None:
    """Refuses an ``out`` that cannot become a results directory."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag}: {out} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag}: cannot create {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: cannot write in {parent}")


def holds_results(out: Path) -> bool:
    """Whether ``out`` holds a sweep's results or finished chunks of one."""
    from .results import WRITTEN_FILES
    from .store import ChunkStore
    return any((out / name).exists() for name in WRITTEN_FILES) or ChunkStore(out).exists()


@contextlib.contextmanager
def locked(out: Path, flag: str = "--out"):
    """Holds the exclusive lock on the results directory ``out`` (created if missing) for
    the ``with`` block. Another process holding it: a UserError naming the directory and
    that process. Without fcntl (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:                                  # pragma: no cover (not POSIX)
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(f"{flag}: {out} is in use by another tinysweep run (pid {holder}); "
                            f"wait for it to finish or pick another {flag}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)                           # releases the lock


def prepare_out(out: Path, plan, resume: bool, overwrite: bool, flag: str = "--out"):
    """Readies the locked results directory ``out`` for ``plan`` and returns its ChunkStore,
    or None when ``resume`` finds the sweep already finished there. Without ``resume`` or
    ``overwrite``, a directory that holds results is refused; ``overwrite`` removes them."""
    from .results import WRITTEN_FILES
    from .store import ChunkStore
    if resume and overwrite:
        raise UserError("--resume and --overwrite: pass one or the other")
    store = ChunkStore(out)
    if resume:
        store.check_matches(plan)
        if (out / "results.csv").is_file() and not store.exists():
            return None
        return store
    if holds_results(out) and not overwrite:
        raise UserError(f"{flag}: {out} already holds results; pass --resume to finish "
                        f"them or --overwrite to replace them")
    from ..spec.data import SAVED_DATA
    for name in (*WRITTEN_FILES, SAVED_DATA):   # --overwrite: what the sweep replaces
        (out / name).unlink(missing_ok=True)
    (out / "report.md").unlink(missing_ok=True)
    shutil.rmtree(out / "plots", ignore_errors=True)
    store.clear()                      # and chunks, or a manifest of a failed start
    return store
