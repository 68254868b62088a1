"""The doctor's benchmark (issue 27): every buggy script in tests/doctor_scripts is caught,
at the line it marks `# BUG`, and no healthy one is flagged. A script's bug is its file
name: buggy_KIND[_variant].py; healthy_*.py are written the way careful people write them
(gradient accumulation, a frozen backbone, train()/eval() toggled, LogSoftmax + NLLLoss, a
warm-up, Lightning, shuffled DataLoaders, custom losses, ...). The README's detection table
is this benchmark's outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinysweep.trainer import cli

from tinysweep.trainer.insight import doctor

SCRIPTS = Path(__file__).resolve().parent / "doctor_scripts"
BUGGY = sorted(SCRIPTS.glob("buggy_*.py"))
HEALTHY = sorted(SCRIPTS.glob("healthy_*.py"))


def kind_of(script: Path) -> str:
    """buggy_no_grad_flow_order.py -> no_grad_flow: the longest kind the name starts with."""
    stem = script.stem.removeprefix("buggy_")
    return max((k for k in doctor.FIXES if stem == k or stem.startswith(k + "_")), key=len)


def findings(script: Path, out: Path) -> tuple[int, list[tuple[str, str]], str]:
    """Runs `tinysweep doctor --out OUT SCRIPT` in this process: (exit code, [(kind,
    where)], doctor.md)."""
    if "lightning" in script.read_text():
        pytest.importorskip("lightning")
    code = cli.main(["doctor", "--out", str(out), str(script)])
    md = (out / "doctor.md").read_text()
    found = []
    for line in md.splitlines():
        if line.startswith("## ") and " at `" in line:
            kind, where = line.removeprefix("## ").split(". ", 1)[1].split(" at `")
            found.append((kind, where.split("`")[0]))
    return code, found, md


def test_every_kind_has_a_buggy_script_and_there_are_12_healthy_ones():
    assert set(doctor.FIXES) == {kind_of(s) for s in BUGGY}
    assert len(HEALTHY) >= 12


@pytest.mark.parametrize("script", BUGGY, ids=lambda p: p.stem)
def test_buggy_script_is_caught_at_its_line(script, tmp_path, capsys):
    marked = [i for i, line in enumerate(script.read_text().splitlines(), 1) if "# BUG" in line]
    code, found, md = findings(script, tmp_path)
    kind = kind_of(script)
    assert (kind, f"{script}:{marked[0]}") in found, (kind, marked, found)
    assert "The doctor's own errors" not in md
    # the class_target_range scripts die in torch itself: exit 1 with their traceback
    err = capsys.readouterr().err
    if code:
        assert code == 1 and "Traceback (most recent call last)" in err


@pytest.mark.parametrize("script", HEALTHY, ids=lambda p: p.stem)
def test_healthy_script_is_not_flagged(script, tmp_path, capsys):
    code, found, md = findings(script, tmp_path)
    assert code == 0
    assert found == [], found
    assert "No problem found." in md and "The doctor's own errors" not in md
