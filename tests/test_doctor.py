"""`tinysweep doctor SCRIPT` and tinysweep.doctor.watch(): each bug in a small training
script is reported at the script's line that did it, with its fix; a healthy script gets
"no problem found"; the script's output, arguments and exit code pass through; every hook
is gone afterwards."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tinysweep
from tinysweep.trainer import cli
from tinysweep.trainer.insight import doctor


def write_script(tmp_path, body: str, name: str = "train.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def line_of(path, marker: str) -> int:
    """The number of the script's line that holds ``# marker``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))


def run_doctor(script, *args, out):
    """cli.main(["doctor", "--out", out, script, *args]) -> (exit code, doctor.md's text)."""
    code = cli.main(["doctor", "--out", str(out), str(script), *map(str, args)])
    return code, (out / "doctor.md").read_text()


def findings_of(md: str) -> list[str]:
    """doctor.md's finding headings: '1. kind at `file:line` (N times)'."""
    return [line.removeprefix("## ") for line in md.splitlines()
            if line.startswith("## ") and not line.startswith("## The doctor")]


def heading(kind: str, where: str, count: int) -> str:
    return f"{kind} at `{where}` ({'once' if count == 1 else f'{count} times'})"


# The line study's bug exactly: a Dataset whose targets are [1, 1], so that a batch's are
# [B, 1, 1] against predictions [B, 1]; F.mse_loss then averages all B x B pairs.
LINE_STUDY = """
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class Line(Dataset):
    def __init__(self, n=200):
        self.x = torch.linspace(0, 1, n)
        self.y = -4 * self.x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].view(1), self.y[i].view(1, 1)


torch.manual_seed(0)
model = torch.nn.Linear(1, 1)
opt = torch.optim.Adam(model.parameters(), lr=0.05)
for epoch in range(4):
    for x, y in DataLoader(Line(), batch_size=20, shuffle=True):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)  # LOSS
        loss.backward()
        opt.step()
print(f"slope {model.weight.item():.2f}")
"""


def test_line_study_broadcast_is_reported_at_the_loss_line(tmp_path, capsys):
    script = write_script(tmp_path, LINE_STUDY)
    with pytest.warns(UserWarning, match="Using a target size") as warned:
        code, md = run_doctor(script, out=tmp_path / "out")
    out, err = capsys.readouterr()
    where = f"{script}:{line_of(script, 'LOSS')}"
    assert code == 0
    assert out.startswith("slope ") and out.count("\n") == 1         # the script's own stdout
    assert findings_of(md) == ["1. " + heading("broadcast_loss", where, 40)]   # 4 epochs x 10
    assert ("F.mse_loss got prediction [20, 1] and target [20, 1, 1]: they broadcast to "
            "[20, 20, 1] (400 elements, not 20)") in md
    assert f"**Fix:** {doctor.FIXES['broadcast_loss']}" in md
    assert "y.view_as(pred) / y.squeeze(-1)" in doctor.FIXES["broadcast_loss"]
    # torch's own size warning still names the script's line, not the doctor's wrapper
    assert {(w.filename, w.lineno) for w in warned} == {(str(script), line_of(script, "LOSS"))}
    # live, then the summary on stderr
    assert f"tinysweep doctor: {where}: [broadcast_loss] F.mse_loss got" in err
    assert f"\n 1. [broadcast_loss] {where}, 40 times: F.mse_loss got" in err
    assert f"    fix: {doctor.FIXES['broadcast_loss']}\n" in err
    assert err.endswith(f"report: {tmp_path / 'out' / 'doctor.md'}\n")


def test_bce_with_logits_module_broadcast_then_the_script_raises(tmp_path, capsys):
    """nn.BCEWithLogitsLoss goes through F; torch refuses these shapes, so the script dies:
    its traceback is printed as Python prints it, exit 1, and the finding is still made."""
    script = write_script(tmp_path, """
        import torch
        from torch import nn

        x = torch.randn(64, 3)
        y = (x.sum(1) > 0).float()                  # [64], the predictions are [64, 1]
        model = nn.Linear(3, 1)
        loss = nn.BCEWithLogitsLoss()(model(x), y)  # LOSS
    """)
    code, md = run_doctor(script, out=tmp_path)
    err = capsys.readouterr().err
    where = f"{script}:{line_of(script, 'LOSS')}"
    assert code == 1
    assert findings_of(md) == ["1. " + heading("broadcast_loss", where, 1)]
    assert "F.binary_cross_entropy_with_logits got prediction [64, 1] and target [64]" in md
    traceback = err[err.index("Traceback"):err.index("tinysweep doctor: 1 problem")]
    assert traceback.startswith(f'Traceback (most recent call last):\n  File "{script}", line '
                                f'{line_of(script, "LOSS")}, in <module>\n')
    assert traceback.endswith("ValueError: Target size (torch.Size([64])) must be the same as "
                              "input size (torch.Size([64, 1]))\n")
    assert "runpy" not in traceback and "cli.py" not in traceback


def test_sigmoid_before_bce_with_logits(tmp_path, capsys):
    script = write_script(tmp_path, """
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.manual_seed(0)
        x = torch.randn(256, 2)
        y = (x[:, :1] * x[:, 1:] > 0).float()
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for epoch in range(3):
            for i in range(0, 256, 32):
                opt.zero_grad()
                loss = F.binary_cross_entropy_with_logits(model(x[i:i + 32]), y[i:i + 32])  # LOSS
                loss.backward()
                opt.step()
    """)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'LOSS')}"
    # only this: the model's own final sigmoid is its output, not a saturated hidden layer
    assert findings_of(md) == ["1. " + heading("double_sigmoid", where, 24)]
    assert "every prediction lies in [0.5, 0.73]" in md
    assert "remove the model's final sigmoid" in doctor.FIXES["double_sigmoid"]
    assert "nn.BCELoss" in doctor.FIXES["double_sigmoid"]


NO_ZERO_GRAD = """
import torch
from torch import nn

torch.manual_seed(0)
x = torch.linspace(0, 1, 200).unsqueeze(1)
y = -4 * x
model = nn.Linear(1, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(3):
    for i in range(0, 200, 20):
        loss = nn.functional.mse_loss(model(x[i:i + 20]), y[i:i + 20])
        loss.backward()
        opt.step()  # STEP
"""


def test_step_without_zero_grad(tmp_path, capsys):
    script = write_script(tmp_path, NO_ZERO_GRAD)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'STEP')}"
    assert findings_of(md) == ["1. " + heading("no_zero_grad", where, 29)]  # all but the first
    assert "SGD.step() ran with the previous step's gradients still in .grad" in md
    assert "call optimizer.zero_grad() once per step" in doctor.FIXES["no_zero_grad"]


@pytest.mark.parametrize("clear", ["opt.zero_grad(set_to_none=False)", "opt.zero_grad()",
                                   "model.zero_grad(set_to_none=False)",
                                   "for p in model.parameters(): p.grad = None"])
def test_gradient_accumulation_on_purpose_is_not_flagged(tmp_path, capsys, clear):
    """Four backward() per step and the gradients cleared after each step: healthy."""
    script = write_script(tmp_path, f"""
        import torch
        from torch import nn

        torch.manual_seed(0)
        x = torch.linspace(0, 1, 200).unsqueeze(1)
        y = -4 * x
        model = nn.Linear(1, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(5):
            for k, i in enumerate(range(0, 200, 10)):
                loss = nn.functional.mse_loss(model(x[i:i + 10]), y[i:i + 10]) / 4
                loss.backward()
                if k % 4 == 3:
                    opt.step()
                    {clear}
    """)
    code, md = run_doctor(script, out=tmp_path)
    err = capsys.readouterr().err
    assert code == 0 and findings_of(md) == []
    assert ("tinysweep doctor: no problem found (25 optimizer steps, 100 backward passes, "
            "100 module calls)") in err


def test_unscaled_inputs_and_saturated_sigmoids(tmp_path, capsys):
    """The heart-rate study's setup: rates around 92 bpm into 16 sigmoid units."""
    script = write_script(tmp_path, """
        import torch
        from torch import nn

        torch.manual_seed(0)
        rate = 92 + 15 * torch.randn(512, 1)          # heart rates in bpm, unscaled
        label = (rate >= 91).float()
        model = nn.Sequential(nn.Linear(1, 16), nn.Sigmoid(), nn.Linear(16, 1))
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(5):
            for i in range(0, 512, 32):
                opt.zero_grad()
                logits = model(rate[i:i + 32])  # MODEL
                loss = loss_fn(logits, label[i:i + 32])  # LOSS
                loss.backward()
                opt.step()
    """)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'MODEL')}"
    # 80 calls, sampled: the first 20, then every 10th (30, ..., 80): 26; windows of 20;
    # and with its units saturated the model learns nothing: the loss stays at chance's
    assert findings_of(md) == ["1. " + heading("input_scale", where, 26),
                               "2. " + heading("saturated", where, 2),
                               "3. " + heading("stuck_at_chance",
                                               f"{script}:{line_of(script, 'LOSS')}", 1)]
    assert ("the model's first layer (Linear(in_features=1, out_features=16, bias=True)) gets "
            "inputs far from unit scale: feature 0 with mean 9") in md
    assert ("of 16 sigmoid units are saturated: within 0.01 of 0 or 1 on 95% or more of 640 "
            "rows") in md
    assert "standardize the inputs" in doctor.FIXES["input_scale"]
    assert "nn.BatchNorm1d" in doctor.FIXES["input_scale"]


def test_saturated_tanh_called_in_the_users_forward(tmp_path, capsys):
    """torch.tanh inside a model's own forward: reported at that line of forward."""
    script = write_script(tmp_path, """
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.hidden = nn.Linear(3, 8)
                self.out = nn.Linear(8, 1)

            def forward(self, x):
                h = torch.tanh(self.hidden(x))  # TANH
                return self.out(h)


        torch.manual_seed(0)
        x = torch.randn(256, 3)
        y = x.sum(1, keepdim=True)
        model = Net()
        with torch.no_grad():
            model.hidden.weight.mul_(100.0)             # pre-activations ~ 100
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(4):
            for i in range(0, 256, 32):
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
                loss.backward()
                opt.step()
    """)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'TANH')}"
    assert findings_of(md) == ["1. " + heading("saturated", where, 1)]
    assert "of 8 tanh units are saturated: within 0.01 of -1 or 1" in md


def test_dead_relus(tmp_path, capsys):
    script = write_script(tmp_path, """
        import torch
        from torch import nn

        torch.manual_seed(0)
        x = torch.randn(512, 4)
        y = x.sum(1, keepdim=True)
        model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
        with torch.no_grad():
            model[0].bias.fill_(-10.0)      # below 0 on every row, as a too-large step leaves it
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for epoch in range(3):
            for i in range(0, 512, 32):
                opt.zero_grad()
                pred = model(x[i:i + 32])  # MODEL
                loss = nn.functional.mse_loss(pred, y[i:i + 32])  # LOSS
                loss.backward()
                opt.step()  # STEP
    """)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'MODEL')}"
    # 48 calls, 28 sampled: one full window of 20 and the rest at the end (8 x 32 rows);
    # dead units pass no gradient back: the first layer's weights never change
    assert findings_of(md) == ["1. " + heading("dead_relu", where, 2),
                               "2. " + heading("not_updated",
                                               f"{script}:{line_of(script, 'STEP')}", 1)]
    assert ("2 parameter tensors in the optimizer (Sequential.0.weight, Sequential.2.weight) "
            "have the same values after 40 steps") in md
    assert "32 of 32 ReLU units output 0 on every one of 640 rows (20 calls)" in md
    assert "nn.LeakyReLU" in doctor.FIXES["dead_relu"]


def test_diverging_loss_is_growing_then_not_finite(tmp_path, capsys):
    script = write_script(tmp_path, """
        import torch
        from torch import nn

        torch.manual_seed(0)
        x = torch.randn(200, 3)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=1.5)     # far too large: it diverges
        for epoch in range(20):
            for i in range(0, 200, 20):
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x[i:i + 20]), y[i:i + 20])
                loss.backward()  # BACKWARD
                opt.step()
    """)
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    where = f"{script}:{line_of(script, 'BACKWARD')}"
    found = findings_of(md)
    assert [f.split(" at ")[0] for f in found] == ["1. nonfinite_loss", "2. growing_loss",
                                                   "3. exploding_gradient"]
    assert all(f"at `{where}`" in f for f in found[:2])
    finite = int(md.split(" finite before it")[0].rsplit("(", 1)[1])
    assert 20 <= finite < 200 and found[0].endswith(f"({200 - finite} times)")
    assert f"is inf at its call {finite + 1} from this line" in md or \
        f"is nan at its call {finite + 1} from this line" in md
    assert "the loss grows: median " in md
    assert "lower the learning rate" in doctor.FIXES["growing_loss"]


def test_healthy_script_has_no_problem(tmp_path, capsys):
    script = write_script(tmp_path, """
        import torch
        from torch import nn

        torch.manual_seed(0)
        x = torch.randn(512, 2)
        y = (x[:, :1] + x[:, 1:] > 0).float()
        model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                              nn.Linear(16, 1))
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(5):
            for i in range(0, 512, 32):
                opt.zero_grad()
                loss = loss_fn(model(x[i:i + 32]), y[i:i + 32])
                loss.backward()
                opt.step()
        with torch.no_grad():
            print(f"accuracy {((model(x) > 0).float() == y).float().mean():.2f}")
    """)
    code, md = run_doctor(script, out=tmp_path / "new" / "dir")
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "accuracy 0.99\n"
    assert err == ("tinysweep doctor: no problem found (80 optimizer steps, 80 backward passes, "
                   f"161 module calls)\nreport: {tmp_path / 'new' / 'dir' / 'doctor.md'}\n")
    assert findings_of(md) == [] and "No problem found." in md
    assert f"`tinysweep doctor {script}` exited with code 0." in md


def test_arguments_and_exit_code_pass_through(tmp_path, capsys, monkeypatch):
    """Everything after SCRIPT is the script's (--options too); sys.exit(3) exits 3; the
    script's directory comes first on sys.path, as with `python SCRIPT`."""
    (tmp_path / "helper.py").write_text("VALUE = 'from the script directory'\n")
    script = write_script(tmp_path, """
        import sys
        import helper

        print(sys.argv[1:], helper.VALUE, __name__)
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """)
    monkeypatch.chdir(tmp_path)
    code, md = run_doctor(script, "--lr", "0.1", "--out", "x", "-h", out=tmp_path / "o")
    out, err = capsys.readouterr()
    assert code == 3
    assert out == "['--lr', '0.1', '--out', 'x', '-h'] from the script directory __main__\n"
    assert err.startswith("to stderr\ntinysweep doctor: saw no training")
    assert "exited with code 3" in md
    assert sys.argv[0] != str(script) and str(tmp_path) not in sys.path[:1]


def test_the_command_exits_with_the_scripts_code(tmp_path):
    script = write_script(tmp_path, NO_ZERO_GRAD + "raise SystemExit(3)\n")
    proc = subprocess.run([sys.executable, "-m", "tinysweep", "doctor", str(script), "--x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert f"[no_zero_grad] {script}:{line_of(script, 'STEP')}, 29 times" in proc.stderr
    assert proc.stdout == ""
    assert (tmp_path / "doctor.md").is_file()         # the current directory by default


def test_missing_script_is_one_line(tmp_path, capsys):
    assert cli.main(["doctor", str(tmp_path / "nope.py")]) == 2
    assert capsys.readouterr().err == f"tinysweep: error: {tmp_path / 'nope.py'}: file not found\n"


def test_the_readme_example_prints_what_the_readme_shows(tmp_path, capsys, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("$ tinysweep doctor examples/line_bug.py\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(root)
    with pytest.warns(UserWarning, match="Using a target size"):   # its two lines: pytest's
        assert cli.main(["doctor", "--out", str(tmp_path), "examples/line_bug.py"]) == 0
    out, err = capsys.readouterr()
    shown = [line for line in block.splitlines()
             if "UserWarning" not in line and "loss = F.mse_loss" not in line]
    printed = [line for line in shown if line.startswith("slope ")]   # the script's stdout
    assert out == "".join(f"{line}\n" for line in printed)
    assert err.replace(f"report: {tmp_path}/", "report: ") == "".join(
        f"{line}\n" for line in shown if line not in printed)


# ---- the Python API ----------------------------------------------------------------------
def _train_line(epochs=3, target_shape=(-1, 1, 1), eval_too=False):
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 100).unsqueeze(1)
    y = (-4 * x).view(*target_shape)
    model = nn.Linear(1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    lines = []
    for _ in range(epochs):
        for i in range(0, 100, 25):
            opt.zero_grad()
            lines.append(inspect.currentframe().f_lineno + 1)
            loss = F.mse_loss(model(x[i:i + 25]), y[i:i + 25])
            loss.backward()
            opt.step()
    if eval_too:
        lines.append(inspect.currentframe().f_lineno + 1)
        F.mse_loss(model(x), y)
    return sorted(set(lines))


def test_watch_reports_findings_in_python(capsys):
    assert tinysweep.doctor is doctor
    with tinysweep.doctor.watch(live=False) as d:
        train_line, eval_line = _train_line(eval_too=True)
    assert capsys.readouterr().err == ""                    # live=False: quiet
    assert [(f.kind, f.where, f.count) for f in d.findings] == [
        ("broadcast_loss", f"{__file__}:{train_line}", 12),
        ("broadcast_loss", f"{__file__}:{eval_line}", 1)]
    assert d.findings[0].fix == doctor.FIXES["broadcast_loss"]
    assert d.findings[0].message.startswith("F.mse_loss got prediction [25, 1] and target "
                                            "[25, 1, 1]")
    assert d.errors == [] and (d.steps, d.backwards, d.forwards) == (12, 12, 13)
    # one line per kind: its first line, the others counted
    assert str(d).splitlines()[:2] == [
        "tinysweep doctor: 1 problem found (12 optimizer steps, 12 backward passes, 13 module "
        "calls)",
        f" 1. [broadcast_loss] {__file__}:{train_line} (and 1 other line), 13 times: "
        f"{d.findings[0].message}"]
    with tinysweep.doctor.watch(live=False) as healthy:
        _train_line(target_shape=(-1, 1))
    assert healthy.findings == [] and "no problem found" in str(healthy)


def _hooks_and_patches():
    from torch.nn.modules import module
    from torch.optim import optimizer
    return ([len(module._global_forward_pre_hooks), len(module._global_forward_hooks),
             len(optimizer._global_optimizer_pre_hooks)],
            [torch.sigmoid, torch.tanh, torch.relu, torch.relu_, F.mse_loss, F.cross_entropy,
             F.binary_cross_entropy_with_logits, torch.autograd.backward,
             torch.optim.Optimizer.zero_grad, nn.Module.zero_grad],
            [name for name in ("sigmoid", "tanh", "relu") if name in vars(torch.Tensor)])


def test_watch_undoes_everything_even_when_the_block_raises():
    before = _hooks_and_patches()
    with doctor.watch(live=False):
        assert _hooks_and_patches() != before
    assert _hooks_and_patches() == before
    with pytest.raises(RuntimeError, match="the script's own error"):
        with doctor.watch(live=False):
            raise RuntimeError("the script's own error")
    assert _hooks_and_patches() == before
    assert before[2] == []                              # Tensor's methods are inherited


def test_a_model_that_raises_leaves_the_next_call_watched():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x):
            self.layer(x)
            raise KeyError("broken")

    with doctor.watch(live=False) as d:
        with pytest.raises(KeyError):
            Broken()(torch.randn(4, 2))
        nn.Linear(1, 4)(torch.full((30, 1), 92.0) + torch.randn(30, 1))
    assert [f.kind for f in d.findings] == ["input_scale"]


def test_softmax_before_cross_entropy():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    with doctor.watch(live=False) as d:
        line = inspect.currentframe().f_lineno + 1
        F.cross_entropy(model(x), y).backward()
    assert [(f.kind, f.where) for f in d.findings] == [("double_softmax", f"{__file__}:{line}")]


# ---- Lightning -----------------------------------------------------------------------------
LIGHTNING = """
import sys

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LineModel(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)  # LOSS

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def fit(callbacks=()):
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 200).unsqueeze(1)
    data = DataLoader(TensorDataset(x, (-4 * x).unsqueeze(1)), batch_size=20)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks))
    trainer.fit(LineModel(), data)


if __name__ == "__main__":
    fit()
"""


def test_lightning_script_and_callback(tmp_path, capsys):
    pytest.importorskip("lightning")
    script = write_script(tmp_path, LIGHTNING, name="lightning_line.py")
    where = f"{script}:{line_of(script, 'LOSS')}"
    code, md = run_doctor(script, out=tmp_path)
    assert code == 0
    assert findings_of(md) == ["1. " + heading("broadcast_loss", where, 20)]
    # the callback, in this process: the script's module imported, its fit() called
    sys.path.insert(0, str(tmp_path))
    try:
        import lightning_line
        callback = doctor.LightningDoctor(live=False)
        lightning_line.fit([callback])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lightning_line", None)
    assert [(f.kind, f.where, f.count) for f in callback.findings] == [
        ("broadcast_loss", where, 20)]
    assert "tinysweep doctor: 1 problem found" in capsys.readouterr().err
    assert _hooks_and_patches()[0] == [0, 0, 0]


# ---- the second generation's findings, through watch() and the Lightning callback ------------
def _train_with_three_bugs():
    """An optimizer on the head only, labels {1, 2} into BCE-with-logits, and a model in
    eval mode while it trains."""
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x.sum(1, keepdim=True) > 0).float() + 1
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2))
    head = nn.Linear(16, 1)
    model = nn.Sequential(body, head).eval()
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    lines = {"opt": inspect.currentframe().f_lineno - 1}
    for epoch in range(3):
        for i in range(0, 256, 32):
            opt.zero_grad()
            lines["loss"] = inspect.currentframe().f_lineno + 1
            loss = F.binary_cross_entropy_with_logits(model(x[i:i + 32]), y[i:i + 32])
            loss.backward()
            opt.step()
    return lines


def test_watch_sees_the_new_findings():
    with doctor.watch(live=False) as d:
        lines = _train_with_three_bugs()
    found = {(f.kind, f.where) for f in d.findings}
    assert ("not_updated", f"{__file__}:{lines['opt']}") in found
    assert ("bce_target_range", f"{__file__}:{lines['loss']}") in found
    assert ("eval_mode_training", f"{__file__}:{lines['loss']}") in found
    assert d.errors == []
    message = next(f.message for f in d.findings if f.kind == "bce_target_range")
    assert "targets with values [1.0, 2.0], outside [0, 1]" in message
    message = next(f.message for f in d.findings if f.kind == "not_updated")
    assert message.startswith("2 parameter tensors of Sequential (0.0.weight, 0.0.bias; 48 "
                              "values) get gradients but are in no optimizer's param groups")


def test_no_optimizer_step_and_several_optimizers_are_said():
    model = nn.Linear(2, 1)
    x, y = torch.randn(64, 2), torch.randn(64, 1)
    with doctor.watch(live=False) as d:
        with torch.no_grad():
            model(x)
    assert str(d) == ("tinysweep doctor: no problem found, but no optimizer step either (0 "
                      "optimizer steps, 0 backward passes, 1 module calls): nothing was "
                      "trained")
    encoder, decoder = nn.Linear(2, 3), nn.Linear(3, 2)
    opts = [torch.optim.SGD(encoder.parameters(), lr=0.1),
            torch.optim.SGD(decoder.parameters(), lr=0.1)]
    with doctor.watch(live=False) as d:
        for _ in range(12):
            for o in opts:
                o.zero_grad()
            F.mse_loss(decoder(encoder(x)), x).backward()
            for o in opts:
                o.step()
    assert d.findings == []
    assert "(24 optimizer steps, 12 backward passes, 24 module calls, 2 optimizers, 2 models)" \
        in str(d)
    del y


LIGHTNING_BUGS = """
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.nll_loss(self.head(self.body(x)), y)  # LOSS

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.parameters(), lr=0.01)  # OPT


def fit(callbacks=()):
    torch.manual_seed(0)
    x = torch.randn(192, 2)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks))
    trainer.fit(Classifier(), DataLoader(TensorDataset(x, y), batch_size=32,  # FIT
                                         shuffle=True))
"""


def test_lightning_callback_sees_the_new_findings(tmp_path, capsys):
    pytest.importorskip("lightning")
    script = write_script(tmp_path, LIGHTNING_BUGS, name="lightning_bugs.py")
    sys.path.insert(0, str(tmp_path))
    try:
        import lightning_bugs
        callback = doctor.LightningDoctor(live=False)
        lightning_bugs.fit([callback])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lightning_bugs", None)
    found = {(f.kind, f.where) for f in callback.findings}
    assert ("nll_no_log_softmax", f"{script}:{line_of(script, 'LOSS')}") in found
    # the optimizer was built before fit() started the watch: the finding names fit()'s line
    assert ("not_updated", f"{script}:{line_of(script, 'FIT')}") in found
    assert callback.doctor.errors == []
    assert _hooks_and_patches()[0] == [0, 0, 0]
