"""Finished chunks on disk, so that an interrupted sweep loses nothing.

While a sweep runs, each finished chunk is written to ``DIR/.chunks/chunk-LO.npz`` (LO: its
first run_id), atomically (temp file, fsync, rename), beside ``manifest.json`` holding the
config's hash and the chunking. ``tinysweep run --resume`` trains only the chunks that are
missing; once the results directory is written, the chunks are removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

from ..backends.backend import ChunkResult
from ..spec.config import read_config_file
from ..spec.errors import UserError
from .results import atomic_write

_PARTS = ("curves", "init", "final", "optim")


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


class ChunkStore:
    """The ``.chunks`` folder of a results directory."""

    def __init__(self, out: str | Path, folder: str = ".chunks"):
        self.out = Path(out)
        self.dir = self.out / folder

    def exists(self) -> bool:
        """Does the folder hold any finished chunk, its own or a stage's (halving, Hyperband
        and PBT keep each stage's chunks in a folder of their own, .chunks/STAGE)?"""
        return self.dir.is_dir() and any(self.dir.glob("**/chunk-*.npz"))

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _manifest(self, plan) -> dict:
        return {"config_sha256": config_hash(plan.config.to_dict()),
                "chunk_runs": plan.chunk_runs, "runs": len(plan.chunk.runs)}

    def check_matches(self, plan) -> None:
        """Refuses to resume a directory that holds another sweep (or other chunking)."""
        saved = self.out / "config.yaml"
        if saved.is_file():
            if config_hash(read_config_file(saved)) != config_hash(plan.config.to_dict()):
                raise UserError(f"--resume: {self.out} holds results of a different config; "
                                f"pick another --out or pass --overwrite")
        manifest = self.dir / "manifest.json"
        if manifest.is_file():
            have = json.loads(manifest.read_text())
            want = self._manifest(plan)
            if have.get("config_sha256") != want["config_sha256"]:
                raise UserError(f"--resume: {self.out} holds chunks of a different config; "
                                f"pick another --out or pass --overwrite")
            if have.get("chunk_runs") != want["chunk_runs"]:
                raise UserError(f"--chunk-runs: {self.out} was started with --chunk-runs "
                                f"{have.get('chunk_runs')}; resume with the same value")

    def start(self, plan) -> None:
        """Creates the folder and its manifest (kept if already there)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if not manifest.is_file():
            text = json.dumps(self._manifest(plan), indent=2).encode()
            atomic_write(manifest, lambda f: f.write(text))

    def _path(self, lo: int) -> Path:
        return self.dir / f"chunk-{lo:09d}.npz"

    def load(self, lo: int) -> ChunkResult | None:
        """The finished chunk starting at run ``lo``, or None."""
        path = self._path(lo)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as f:
            arrays = dict(f)
        parts = {p: {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(p + ".")}
                 for p in _PARTS}
        return ChunkResult(diverged=arrays["diverged"], steps=arrays["steps"], **parts)

    def save(self, lo: int, res: ChunkResult) -> None:
        arrays = {"diverged": res.diverged, "steps": res.steps}
        for part in _PARTS:
            arrays.update({f"{part}.{k}": v for k, v in getattr(res, part).items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(self._path(lo), lambda f: f.write(buf.getvalue()))
