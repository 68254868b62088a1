"""Start-up: what only answers (help, a missing command, a mistake in the config) imports no
torch, matplotlib, triton or numba, which take seconds; `import tinysweep` neither."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinysweep.trainer import cli

HEAVY = ("torch", "matplotlib", "triton", "numba")

# `python -m tinysweep ARGS` in a fresh interpreter; its last line on stdout says how it
# exited and which of HEAVY it had imported.
WRAPPER = f"""
import json, runpy, sys
sys.argv = ["tinysweep", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("tinysweep", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
print(json.dumps({{"exit": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def tinysweep_cli(*args, cwd=None):
    """(exit code, heavy modules imported, stdout before the report line, stderr)."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    *out, last = proc.stdout.splitlines() or [""]
    assert proc.returncode == 0 and last.startswith("{"), proc.stdout + proc.stderr
    report = json.loads(last)
    return report["exit"], report["heavy"], "\n".join(out), proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["diagnose", "--help"],
                                  ["report", "--help"], ["export", "--help"], ["tune", "--help"],
                                  ["doctor", "--help"]])
def test_help_imports_nothing_heavy(args):
    code, heavy, out, err = tinysweep_cli(*args)
    assert code == 0 and heavy == [], (heavy, err)
    assert "usage: tinysweep" in out


def test_missing_command_imports_nothing_heavy():
    code, heavy, out, err = tinysweep_cli()
    assert code == 2 and heavy == []
    assert err == "tinysweep: error: missing command; try 'tinysweep run CONFIG' (see tinysweep --help)\n"


@pytest.mark.parametrize("sections, expected", [
    ({"trian": {"lr": 1}}, "tinysweep: error: trian: unknown key; did you mean 'train'?"),
    ({"train": {"lr": -1}}, "tinysweep: error: train.lr: must be > 0, got -1"),
    ({"data": {"source": "lien"}}, "tinysweep: error: data.source: expected one of line, "
     "heart_rate, moons, circles, xor, blobs, spirals, csv, npz, got 'lien'; did you mean 'line'?"),
    ({"data": {"source": "line", "params": {"n": 0}}},
     "tinysweep: error: data.params.n: expected an integer in [1, 10**8], got 0"),
    ({"data": {"source": "csv", "params": {"path": "nope.csv", "target": "y"}}},
     "tinysweep: error: data.params.path: file not found: {dir}/nope.csv"),
    ({"sweep": {"params": {"lr": {"linspace": [1, 2]}}}}, "tinysweep: error: sweep.params.lr"),
], ids=["unknown key", "bad value", "bad source", "bad data param", "missing data file",
        "bad search space"])
def test_config_error_imports_nothing_heavy(write_config, tmp_path, sections, expected):
    out = tmp_path / "out"
    code, heavy, stdout, err = tinysweep_cli("run", write_config(**sections), "--out", out)
    assert code == 2 and heavy == [], (heavy, err)
    assert err.startswith(expected.format(dir=tmp_path)) and err.count("\n") == 1, err
    assert stdout == "" and not out.exists()


def test_missing_config_file_imports_nothing_heavy(tmp_path):
    code, heavy, _, err = tinysweep_cli("run", tmp_path / "missing.yaml")
    assert code == 2 and heavy == []
    assert err == f"tinysweep: error: {tmp_path / 'missing.yaml'}: config file not found\n"


def test_missing_doctor_script_imports_nothing_heavy(tmp_path):
    code, heavy, _, err = tinysweep_cli("doctor", tmp_path / "train.py", "--epochs", "3")
    assert code == 2 and heavy == []
    assert err == f"tinysweep: error: {tmp_path / 'train.py'}: file not found\n"


def test_import_tinysweep_is_light_and_its_names_work():
    code = ("import sys, tinysweep; heavy = [m for m in %r if m in sys.modules]; "
            "names = [tinysweep.run.__module__, tinysweep.load.__module__, "
            "tinysweep.Results.__name__, tinysweep.UserError.__name__]; "
            "from tinysweep import *; print(heavy, names, run is tinysweep.run)" % (HEAVY,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("[] ['tinysweep.trainer.pipeline.sweep', 'tinysweep.trainer.pipeline.results', "
                                   "'Results', 'UserError'] True")


def test_unknown_attribute_of_tinysweep_is_an_attribute_error():
    import tinysweep
    with pytest.raises(AttributeError, match="has no attribute 'runn'"):
        tinysweep.runn
    assert {"run", "load", "Results", "UserError", "doctor"} <= set(dir(tinysweep))
