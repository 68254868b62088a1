"""The README's Python examples run as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading is ``section``."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n{section}\n", 1)[1]
    body = re.split(r"\n#{2,3} ", body, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_python_section_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks("### Python")
    assert len(blocks) == 5                  # the first: tinysweep.sklearn (scikit-learn)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:       # one namespace: a later block uses the data of the first
        exec(compile(block, "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "final_train_loss" in out and "final_train_accuracy" in out
    assert "the setup" in out                                   # diagnose's findings
    assert isinstance(scope["res"].table, pd.DataFrame)
    assert scope["search"].best_score_ > 0.9 and len(scope["search"].results_.table) == 40
    for d in ("runs/heart", "runs/line_batch_size", "runs/copy"):
        assert (tmp_path / d / "results.csv").is_file(), d
    assert (tmp_path / "runs/heart/data.npz").is_file()
