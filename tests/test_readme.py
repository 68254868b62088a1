"""The README reads in five minutes, and what it shows is true: its Python example and its
command-line example run as written, and every figure of its comparison table is one that
was measured (it appears in bench/NOTES.md or the guide's performance page). Links and
blocks common to the README and the guide are checked in test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

from test_docs import NOT_RUN, RUN, blocks, in_sandbox, run_python, run_shell

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def section(heading: str) -> str:
    """The README's text under ``heading`` (a whole heading line), up to the next one."""
    body = README.read_text().split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n#{1,2} ", body, maxsplit=1)[0]


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 210, f"{len(lines)} lines: the depth belongs in docs/"
    fenced, long = False, []
    for i, line in enumerate(lines, 1):
        fenced ^= line.startswith("```")
        if not fenced and len(line) > 400:                # prose and tables
            long.append(f"line {i}: {len(line)} characters")
    assert not long, long


def test_the_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = [c for c, marker in blocks(README, "python") if marker != NOT_RUN]
    assert len(code) == 1 and len(code[0].strip().splitlines()) <= 12
    in_sandbox(tmp_path, monkeypatch)
    scope = run_python(README)
    out = capsys.readouterr().out
    assert "final_train_loss_mean" in out and "rank" in out
    assert "the setup does not converge" in out                  # diagnose's findings
    assert len(scope["res"].table) == 18


def test_the_command_line_example_runs_as_written(tmp_path, monkeypatch, capsys):
    marked = [c for c, marker in blocks(README, "bash") if marker == RUN]
    assert len(marked) == 1 and len(marked[0].strip().splitlines()) <= 6
    in_sandbox(tmp_path, monkeypatch)
    run_shell(marked[0])
    for d in ("runs/line_batch_size", "runs/line_target_broadcast"):
        assert (tmp_path / d / "results.csv").is_file(), d
        assert (tmp_path / d / "report.html").is_file(), d
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "model.json").is_file()
    assert (tmp_path / "doctor.md").is_file()
    assert "[broadcast_loss]" in capsys.readouterr().err


def test_every_figure_of_the_comparison_is_measured():
    """A figure in the table (a time, a speedup, an accuracy) appears in bench/NOTES.md or
    docs/performance.md, where its method and device are given."""
    sources = (ROOT / "bench/NOTES.md").read_text() + (ROOT / "docs/performance.md").read_text()
    table = [line for line in section("## How fast, measured").splitlines()
             if line.startswith("|")][2:]
    assert len(table) >= 5
    figures = set()
    for row in table:
        figures |= set(re.findall(r"\d[\d,]*(?:\.\d+)?(?= ?(?:s\b|x\b))|0\.9\d\d", row))
    missing = sorted(f for f in figures if f not in sources)
    assert not missing, f"neither in bench/NOTES.md nor in docs/performance.md: {missing}"
    for row in table:                                   # every figure names its device
        assert re.search(r"CPU|H100", row.split("|")[2]), row
