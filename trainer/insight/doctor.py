"""``tinysweep doctor SCRIPT``: run the user's own training script under PyTorch hooks and
report the bugs seen in it, each with the file:line of the user's code that did it and the
fix.

``tinysweep diagnose`` sweeps around a setup that tinysweep trains; the doctor watches a
script that trains by itself (plain PyTorch or Lightning), because the cause of "my tiny
model does not converge" is often a bug in that script. It reports, by kind:

  broadcast_loss   a loss whose prediction and target shapes differ but broadcast
                   (pred [B, 1] against target [B, 1, 1]: every prediction meets every target)
  double_sigmoid   BCE-with-logits fed a sigmoid's output: probabilities, not logits
  double_softmax   cross_entropy fed a softmax's output
  no_zero_grad     optimizer.step() twice with the gradients not cleared in between
  input_scale      the model's first nn.Linear fed features far from unit scale
  saturated        half or more of a layer's sigmoid or tanh units stuck at an asymptote
  dead_relu        half or more of a layer's ReLU units zero on every row of a window
  nonfinite_loss   a NaN or infinite loss reaching backward()
  growing_loss     a loss whose last steps sit well above its first ones

and, from doctor_checks.py (LoopChecks, which Doctor inherits), the training loop's own
mistakes: parameters never updated, no gradient flow, train/eval mode, loss/target
mismatches, gradients and update ratios, lr schedules, symmetric init, data order, a loss
stuck at chance, overfitting, evaluation on training rows, and no optimizer step.

How it sees them (all of it undone on exit, also when the script raises):
- losses: torch.nn.functional's losses wrapped; nn.MSELoss, nn.BCEWithLogitsLoss and their
  kin look them up in F at call time, so the loss modules are covered too;
- activations: torch.sigmoid, tanh, relu, relu_ and Tensor.sigmoid, tanh, relu wrapped
  (nn.Sigmoid, nn.Tanh, nn.ReLU, F.relu, F.sigmoid and F.tanh call them); only calls inside
  a model's forward count, and not the model's output (a final sigmoid may saturate);
- modules: global forward pre- and post-hooks find the top-level call and its first
  nn.Linear;
- optimizers: the global step pre-hook, Optimizer.zero_grad and Module.zero_grad wrapped,
  and whether each .grad is still the tensor it was at the previous step;
- the loss that trains: torch.autograd.backward wrapped (Tensor.backward calls it);
- optimizers built (Optimizer.__init__ wrapped), stepped (the global step pre- and
  post-hooks), schedulers stepped (LRScheduler.step and its overrides wrapped), DataLoaders
  iterated (DataLoader.__iter__ wrapped: which sampler), nll_loss wrapped like the others.
A function imported by name before watching began (``from torch.nn.functional import
mse_loss``) escapes; zeroing a .grad by hand in place (``p.grad.zero_()``) is not seen and
reads as not cleared.

Cost: shape checks and the optimizer's are Python only; the checks that need a value on the
host (input scale) run on a layer's first SAMPLE_FIRST calls, then every SAMPLE_EVERY-th;
activations and losses are reduced on the device and read once per window (WINDOW_CALLS)
or per LOSS_FLUSH steps, never with an .item() per call.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import runpy
import shlex
import statistics
import sys
import sysconfig
import traceback
import types
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import doctor_checks
from .doctor_checks import LoopChecks
from ..spec.errors import UserError, WriteError

FIXES = {
    "broadcast_loss": "make the target's shape match the prediction's, e.g. y.view_as(pred) / "
                      "y.squeeze(-1)",
    "double_sigmoid": "remove the model's final sigmoid (BCE-with-logits applies its own), or "
                      "keep it and use nn.BCELoss / F.binary_cross_entropy",
    "double_softmax": "remove the model's final softmax (cross_entropy applies log_softmax "
                      "itself)",
    "no_zero_grad": "call optimizer.zero_grad() once per step, before loss.backward(); to "
                    "accumulate gradients on purpose, call it after every k-th step()",
    "input_scale": "standardize the inputs ((x - mean) / std of the training rows, per "
                   "feature) or start the model with nn.BatchNorm1d",
    "saturated": "bring the pre-activations near 0: standardize the inputs, lower the learning "
                 "rate, or use ReLU",
    "dead_relu": "lower the learning rate, standardize the inputs, or use nn.LeakyReLU",
    "nonfinite_loss": "lower the learning rate; look for NaN or inf in the data and for log(0) "
                      "or x / 0 in the loss; clip gradients (torch.nn.utils.clip_grad_norm_)",
    "growing_loss": "lower the learning rate (try 10x lower); check that the loss is minimized, "
                    "not maximized (its sign)",
    **doctor_checks.FIXES,
}

# The elementwise losses, checked for shapes that broadcast; cross_entropy only for a softmax
# in front of it (its target has no feature dimension, so its shapes differ by design).
ELEMENTWISE_LOSSES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                      "binary_cross_entropy", "binary_cross_entropy_with_logits")

# Input scale, per feature of the first nn.Linear's input, over a batch's rows. Far from unit
# scale: |mean| > 5 or std > 10 (heart rates around 92 bpm, std 15, are both: the first
# layer's pre-activations are then ~100 and a sigmoid or tanh after it saturates), or a
# feature whose |mean| and std are both below 0.01 and not 0 (it barely moves the layer).
INPUT_MEAN_MAX = 5.0
INPUT_STD_MAX = 10.0
INPUT_TINY = 0.01

# Saturated: within 0.01 of an asymptote, where the gradient is 25x (sigmoid: 0.0099 against
# 0.25 at 0, |z| > 4.6) or 50x (tanh: 0.0199 against 1, |z| > 2.65) smaller than at 0; a
# unit is saturated when 95% of a window's rows are (as tinysweep diagnose counts).
SATURATED_WITHIN = 0.01
SATURATED_ROWS = 0.95
# A layer is reported when at least half of its units are dead or saturated: a few dead
# ReLUs are normal (10-20% in healthy nets), half means half the layer is lost.
UNITS_SHARE = 0.5
# A window: an activation's outputs over at least this many calls and rows (one batch of 8
# rows says little about a unit; 20 batches of 32 rows do).
WINDOW_CALLS = 20
WINDOW_ROWS = 64

# A growing loss: with at least LOSS_MIN_STEPS finite losses at one backward() line, the
# median of the last k (k = max(5, n // 10)) above LOSS_GROWTH x the median of the first k,
# and the second half's median above LOSS_GROWTH x the first half's. Medians, not means: one
# spiky mini-batch moves neither. The halves keep unshuffled data from looking like growth:
# the first batches of an epoch of sorted x can have the smaller losses (2.4x between the
# first and last 5 of 20 steps of a line fitted for 2 epochs, 0.48x between its epochs),
# while a diverging loss grows by orders of magnitude.
LOSS_MIN_STEPS = 20
LOSS_GROWTH = 2.0
LOSS_FLUSH = 64             # losses read from the device in groups of this many: one sync

# The model's checks (input scale, activations) see a model's first SAMPLE_FIRST calls, then
# every SAMPLE_EVERY-th: they cost 115 us a call on a 2-16-16-1 MLP (2-core CPU), where a
# whole training step (batch 32, Adam) takes 510-530 us. Sampled, a step under the doctor
# takes 1.2-1.3x as long (hooks on every module call and the optimizer's checks remain).
SAMPLE_FIRST = 20
SAMPLE_EVERY = 10

# grad_fn names that only reshape or copy: a sigmoid behind them still feeds the loss.
_SHAPE_ONLY = {"ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward", "SqueezeBackward",
               "UnsqueezeBackward", "SelectBackward", "SliceBackward", "ExpandBackward",
               "CloneBackward", "ToCopyBackward", "PermuteBackward", "TransposeBackward",
               "TBackward", "AliasBackward", "AsStridedBackward"}


@dataclass
class Finding:
    """One bug at one line of the user's code."""
    kind: str               # broadcast_loss, no_zero_grad, ... (FIXES's keys)
    message: str            # what was seen the first time, with its numbers
    where: str              # file:line of the user's code that did it
    fix: str                # what to change
    count: int = 1          # how many times it was seen at that line (input_scale: of
                            # the sampled calls, see SAMPLE_FIRST)

    def __str__(self) -> str:
        return (f"[{self.kind}] {self.where}, {_times(self.count)}: {self.message}\n"
                f"    fix: {self.fix}")


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


# ---- whose code is it ---------------------------------------------------------------------
@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Directories whose code is not the user's: torch, tinysweep, the standard library and
    the installed packages."""
    here = Path(__file__).resolve().parent.parent       # trainer/, as tinysweep.trainer
    import tinysweep
    dirs = {os.path.dirname(torch.__file__), str(here), str(here.parent / "kernels"),
            os.path.dirname(tinysweep.__file__)}
    paths = sysconfig.get_paths()
    dirs.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


@functools.cache
def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):        # <frozen runpy>, <string> (generated code), ...
        return filename.startswith(("<stdin>", "<ipython-input"))
    path = os.path.realpath(filename)
    if any(f"{os.sep}{d}{os.sep}" in path for d in ("site-packages", "dist-packages")):
        return False
    return not path.startswith(_library_dirs())


def user_line() -> str:
    """file:line of the innermost frame on the stack that is the user's code: the first one,
    walking out, outside torch, tinysweep, the standard library and installed packages."""
    frame = sys._getframe(1)
    while frame is not None:
        if _is_user_file(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "unknown"


def _produced_by(t: torch.Tensor, op: str) -> bool:
    """Whether t comes out of the autograd op ``op`` (e.g. "Sigmoid"), seen through at most a
    few reshapes and copies."""
    fn = t.grad_fn
    for _ in range(8):
        if fn is None:
            return False
        name = fn.name().rstrip("0123456789")
        if name == f"{op}Backward":
            return True
        if name not in _SHAPE_ONLY or not fn.next_functions:
            return False
        fn = fn.next_functions[0][0]
    return False


def _loss_inputs(args: tuple, kwargs: dict):
    """(prediction, target) of a call F.some_loss(input, target, ...)."""
    return (args[0] if args else kwargs.get("input"),
            args[1] if len(args) > 1 else kwargs.get("target"))


def _call(f, args, kwargs):
    return f(*args, **kwargs)


def _call_from(filename: str, lineno: int, module_globals: dict):
    """_call, as a function whose frame stands at filename:lineno in module_globals: a
    warning that torch raises with stacklevel=2 below it names that line (catching and
    re-issuing it instead would reset every once-per-line registry of the process)."""
    key = (filename, lineno, id(module_globals))
    call = _CALLS.get(key)
    if call is None:
        # the call in _call's body is one line below its def
        name = {"co_name": "<through tinysweep doctor>"}
        if hasattr(_call.__code__, "co_qualname"):          # Python 3.11+
            name["co_qualname"] = name["co_name"]
        code = _call.__code__.replace(co_filename=filename, co_firstlineno=lineno - 1, **name)
        call = _CALLS[key] = types.FunctionType(code, module_globals)
    return call


_CALLS: dict = {}


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


# ---- what the hooks accumulate -------------------------------------------------------------
@dataclass
class _Units:
    """One activation's window: per unit, the rows near an asymptote (sigmoid, tanh) or
    whether any row was positive (relu), summed on the device; read once when it closes."""
    kind: str               # sigmoid | tanh | relu
    where: str
    width: int              # units: the output's last dimension
    acc: torch.Tensor | None = None     # [width]
    calls: int = 0
    rows: int = 0


@dataclass
class _Losses:
    """The scalars that reached backward() at one line, in order."""
    pending: list = field(default_factory=list)     # 0-d tensors not yet read
    values: list = field(default_factory=list)      # the finite ones, as floats
    seen: int = 0                                   # read so far
    nonfinite: int = 0


@dataclass
class _LastStep:
    """An optimizer at its previous step(): its parameters' .grad tensors then, and whether
    zero_grad() ran since."""
    optimizer: weakref.ref
    grads: list             # (weakref to the parameter, weakref to its .grad)
    cleared: bool = False


# ---- the doctor --------------------------------------------------------------------------
class Doctor(LoopChecks):
    """The findings of one watch(): ``findings`` (one per kind and line, in the order first
    seen), what it watched (``steps``, ``backwards``, ``forwards``, ``loss_calls``) and
    ``errors`` (checks of its own that failed, and were switched off: tinysweep's bugs)."""

    def __init__(self, live: bool = True):
        self.live = live                # print each new finding to stderr as it happens
        self.findings: list[Finding] = []
        self.errors: list[str] = []
        self.steps = 0                  # optimizer steps
        self.backwards = 0              # backward() calls
        self.forwards = 0               # top-level module calls (a model, a loss module)
        self.loss_calls = 0             # functional losses (nn.*Loss modules included)
        self._found: dict[tuple[str, str], Finding] = {}
        self._undo: list = []
        self._broken: set[str] = set()
        self._calls: dict = {}          # sampling counters
        self._top = None                # the module whose forward is running, outermost
        self._linear_seen = False       # the top-level call's first nn.Linear was seen
        self._sampled = False           # the top-level call is one the model's checks see
        self._ordinal = 0               # activations so far in the top-level call
        self._pending: list = []        # (key, output) of this call's activations
        self._units: dict = {}          # key -> _Units
        self._inputs: dict = {}         # id(first layer) -> [sum, sum of squares, rows]
        self._losses: dict[str, _Losses] = {}
        self._last_step: dict[int, _LastStep] = {}
        self._in_scheduler = False
        self._loss_where: dict = {}     # (code, line) of a loss call in the user's code -> where
        self._step_line: str | None = None  # the user's line of the step under way, once asked
        self._zeroed: set[int] = set()  # ids of parameters that Module.zero_grad cleared
        self._lc_init()                 # the training loop's checks (doctor_checks.py)

    # -- findings --
    def _record(self, kind: str, where: str, message: str, count: int = 1) -> None:
        f = self._found.get((kind, where))
        if f is not None:
            f.count += count
            return
        f = self._found[kind, where] = Finding(kind, message, where, FIXES[kind], count)
        self.findings.append(f)
        if self.live:
            print(f"tinysweep doctor: {where}: [{kind}] {message}", file=sys.stderr, flush=True)

    def _guard(self, check, *args):
        """Runs one of the doctor's checks; one that raises is switched off and named in
        ``errors``, and the user's script goes on as it would without the doctor."""
        name = check.__name__
        if name in self._broken:
            return
        try:
            return check(*args)
        except Exception as e:          # noqa: BLE001 -- the script must not pay for our bug
            self._broken.add(name)
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def _due(self, key) -> bool:
        n = self._calls[key] = self._calls.get(key, 0) + 1
        return n <= SAMPLE_FIRST or n % SAMPLE_EVERY == 0

    # -- installing --
    def _patch(self, owner, name: str, make) -> None:
        """Replaces owner.name by make(original); undone on exit, as it was (an inherited
        attribute is deleted again, not copied onto owner)."""
        original = getattr(owner, name)
        own = name in vars(owner)
        before = vars(owner).get(name)
        setattr(owner, name, functools.wraps(original)(make(original)))
        self._undo.append(lambda: setattr(owner, name, before) if own else delattr(owner, name))

    def _install(self) -> None:
        from torch.nn.modules import module as module_hooks
        from torch.optim import lr_scheduler
        from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                           register_optimizer_step_pre_hook)

        self._undo.append(module_hooks.register_module_forward_pre_hook(self._pre_forward).remove)
        self._undo.append(module_hooks.register_module_forward_hook(
            self._post_forward, always_call=True).remove)
        self._undo.append(register_optimizer_step_pre_hook(self._before_step).remove)
        self._undo.append(register_optimizer_step_post_hook(self._after_step).remove)
        for name in (*ELEMENTWISE_LOSSES, "cross_entropy", "nll_loss"):
            self._patch(F, name, functools.partial(self._loss_wrapper, name))
        for owner, name, kind in ((torch, "sigmoid", "sigmoid"), (torch, "tanh", "tanh"),
                                  (torch, "relu", "relu"), (torch, "relu_", "relu"),
                                  (torch.Tensor, "sigmoid", "sigmoid"),
                                  (torch.Tensor, "tanh", "tanh"), (torch.Tensor, "relu", "relu")):
            self._patch(owner, name, functools.partial(self._activation_wrapper, kind))
        self._patch(torch.autograd, "backward", self._backward_wrapper)
        self._patch(torch.optim.Optimizer, "zero_grad", self._optimizer_zero_grad_wrapper)
        self._patch(nn.Module, "zero_grad", self._module_zero_grad_wrapper)
        self._patch(torch.optim.Optimizer, "__init__", self._optimizer_init_wrapper)
        # schedulers: the base class's step and the subclasses that define their own
        for cls in {lr_scheduler.LRScheduler, *(
                c for c in vars(lr_scheduler).values() if isinstance(c, type)
                and issubclass(c, lr_scheduler.LRScheduler) and "step" in vars(c))}:
            self._patch(cls, "step", self._scheduler_step_wrapper)
        self._patch(torch.utils.data.DataLoader, "__iter__", self._loader_iter_wrapper)

    def _uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- wrappers: each calls the original whatever the check does --
    def _loss_wrapper(self, name, original):
        def loss(*args, **kwargs):
            self._guard(self._check_loss, name, args, kwargs)
            where = self._guard(self._before_loss, name, args, kwargs, sys._getframe(1))
            pred, target = _loss_inputs(args, kwargs)
            if not (name in ELEMENTWISE_LOSSES and isinstance(pred, torch.Tensor)
                    and isinstance(target, torch.Tensor) and pred.shape != target.shape):
                out = original(*args, **kwargs)
            else:
                # torch warns about the sizes with stacklevel=2, which would name this
                # wrapper: called through a frame that has the caller's file, line and
                # globals, the warning names the caller's line and counts in its registry,
                # as without us.
                caller = sys._getframe(1)
                call = _call_from(caller.f_code.co_filename, caller.f_lineno,
                                  caller.f_globals)
                out = call(original, args, kwargs)
            if where is not None:
                self._guard(self._lc_loss, name, pred, target, kwargs, out, where)
            return out
        return loss

    def _before_loss(self, name, args, kwargs, caller) -> str:
        """The user's line of a loss call; its targets checked on the sampled calls (per
        calling line: the first SAMPLE_FIRST, then every SAMPLE_EVERY-th). A call from the
        user's own code is known by its frame's code and line: the stack is walked on the
        sampled calls only."""
        key = ("loss", caller.f_code, caller.f_lineno)
        due = self._due(key)
        own = _is_user_file(caller.f_code.co_filename)      # not nn.MSELoss.forward
        where = self._loss_where.get(key) if own and not due else None
        if where is None:
            where = user_line()
            if own:
                self._loss_where[key] = where
        if due:
            pred, target = _loss_inputs(args, kwargs)
            self._lc_loss_before(name, pred, target, kwargs, where)
        return where

    def _optimizer_init_wrapper(self, original):
        def __init__(optimizer, *args, **kwargs):
            original(optimizer, *args, **kwargs)
            self._guard(self._lc_optimizer_built, optimizer, user_line())
        return __init__

    def _scheduler_step_wrapper(self, original):
        def step(scheduler, *args, **kwargs):
            # LRScheduler.__init__ steps once itself (_initial_step); SequentialLR steps the
            # schedulers it holds: only the user's own calls count
            if self._in_scheduler or sys._getframe(1).f_code.co_name == "_initial_step":
                return original(scheduler, *args, **kwargs)
            self._in_scheduler = True
            # torch's own warnings (stepped before the optimizer) name the caller's line
            caller = sys._getframe(1)
            call = _call_from(caller.f_code.co_filename, caller.f_lineno, caller.f_globals)
            try:
                return call(original, (scheduler, *args), kwargs)
            finally:
                self._in_scheduler = False
                self._guard(self._lc_scheduler_step, user_line())
        return step

    def _loader_iter_wrapper(self, original):
        def __iter__(loader):
            self._guard(self._lc_loader_iter, loader, user_line())
            return original(loader)
        return __iter__


    def _activation_wrapper(self, kind, original):
        def activation(*args, **kwargs):
            out = original(*args, **kwargs)
            if self._top is not None:               # inside a model's forward
                self._guard(self._saw_activation, kind, out)
            return out
        return activation

    def _backward_wrapper(self, original):
        def backward(tensors, *args, **kwargs):
            self._guard(self._saw_backward, tensors)
            return original(tensors, *args, **kwargs)
        return backward

    def _optimizer_zero_grad_wrapper(self, original):
        def zero_grad(optimizer, *args, **kwargs):
            last = self._last_step.get(id(optimizer))
            if last is not None and last.optimizer() is optimizer:
                last.cleared = True
            return original(optimizer, *args, **kwargs)
        return zero_grad

    def _module_zero_grad_wrapper(self, original):
        def zero_grad(module, *args, **kwargs):
            self._zeroed.update(id(p) for p in module.parameters())
            return original(module, *args, **kwargs)
        return zero_grad

    # -- losses --
    def _check_loss(self, name: str, args: tuple, kwargs: dict) -> None:
        self.loss_calls += 1
        pred, target = _loss_inputs(args, kwargs)
        if not isinstance(pred, torch.Tensor):
            return
        if name == "cross_entropy":
            if _produced_by(pred, "Softmax"):
                self._record("double_softmax", user_line(),
                             "F.cross_entropy got a softmax's output as its logits: it applies "
                             "log_softmax again, so the predicted probabilities stay close to "
                             "uniform and the gradients shrink")
            return
        if name == "binary_cross_entropy_with_logits" and _produced_by(pred, "Sigmoid"):
            # sigmoid of [0, 1] is [0.5, 0.731]: -log(0.731) = 0.31, -log(1 - 0.5) = 0.69
            self._record("double_sigmoid", user_line(),
                         f"F.binary_cross_entropy_with_logits got a sigmoid's output (all in "
                         f"[0, 1], shape {_shape(pred)}) as its logits: it applies a second "
                         f"sigmoid, so every prediction lies in [0.5, 0.73] and the loss cannot "
                         f"go below 0.31 for a 1 or 0.69 for a 0")
        if not isinstance(target, torch.Tensor) or pred.shape == target.shape:
            return
        try:
            shape = torch.broadcast_shapes(pred.shape, target.shape)
        except RuntimeError:
            return                                  # torch raises its own error
        if math.prod(shape) > max(pred.numel(), target.numel()):
            self._record("broadcast_loss", user_line(),
                         f"F.{name} got prediction {_shape(pred)} and target "
                         f"{_shape(target)}: they broadcast to {list(shape)} "
                         f"({math.prod(shape)} elements, not {max(pred.numel(), target.numel())}),"
                         f" so the loss averages every prediction against every target, not "
                         f"each against its own")

    def _saw_backward(self, tensors) -> None:
        self.backwards += 1
        if isinstance(tensors, (list, tuple)) and len(tensors) == 1:
            tensors = tensors[0]
        if not isinstance(tensors, torch.Tensor) or tensors.numel() != 1:
            self._lc_backward(tensors, user_line())
            return
        where = user_line()
        self._lc_backward(tensors, where)
        series = self._losses.get(where)
        if series is None:
            series = self._losses[where] = _Losses()
        series.pending.append(tensors.detach().reshape(()).float())
        if len(series.pending) >= LOSS_FLUSH:
            self._read_losses(where, series)

    def _read_losses(self, where: str, series: _Losses) -> None:
        """Reads the pending losses in one sync; reports the non-finite ones."""
        pending, series.pending = series.pending, []
        try:
            values = torch.stack(pending).tolist()
        except RuntimeError:                        # on several devices
            values = [float(v) for v in pending]
        bad, first = 0, ""
        for v in values:
            series.seen += 1
            if math.isfinite(v):
                series.values.append(v)
                continue
            if not bad:
                first = (f"the loss reaching backward() is {v} at its call {series.seen} from "
                         f"this line ({len(series.values)} finite before it)")
            bad += 1
        if bad:
            series.nonfinite += bad
            self._record("nonfinite_loss", where, first, count=bad)

    def _check_growth(self, where: str, series: _Losses) -> None:
        v = series.values
        if len(v) < LOSS_MIN_STEPS:
            return
        k, half = max(5, len(v) // 10), len(v) // 2
        first, last = statistics.median(v[:k]), statistics.median(v[-k:])
        halves = statistics.median(v[:half]), statistics.median(v[-half:])
        if first > 0 and last > LOSS_GROWTH * first and halves[1] > LOSS_GROWTH * halves[0]:
            self._record("growing_loss", where,
                         f"the loss grows: median {first:.4g} over its first {k} of {len(v)} "
                         f"steps, {last:.4g} over its last {k} ({last / first:.3g}x; "
                         f"{halves[1] / halves[0]:.3g}x between its halves)")

    # -- the model --
    def _pre_forward(self, module, args) -> None:
        if self._top is None:
            self._top, self._linear_seen, self._ordinal = module, False, 0
            self.forwards += 1
            # the model's checks (input scale, activations) run on sampled calls only
            self._sampled = self._due(id(module))
            if self._sampled or not torch.is_grad_enabled() or self._lc_forward_due():
                self._guard(self._lc_forward, module, args, user_line)
        if not self._sampled:
            return
        if not self._linear_seen and isinstance(module, nn.Linear):
            self._linear_seen = True
            if args:
                self._guard(self._check_inputs, module, args[0])

    def _post_forward(self, module, args, output) -> None:
        if module is not self._top:
            return
        self._top = None
        pending, self._pending = self._pending, []
        if pending:
            self._guard(self._read_activations, pending, output)

    def _check_inputs(self, layer: nn.Linear, x) -> None:
        """Per feature of the model's first layer's input, over all rows of the sampled
        calls so far (one batch of unshuffled data says little about the data): mean and
        std against unit scale."""
        if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2):
            return
        if x.requires_grad:
            return          # another module's output (a decoder after an encoder), not data
        # float64 sums: a mean of 92 and a std of 0.1 stay exact (MPS has no float64)
        rows = x.detach().reshape(-1, x.shape[-1]).to(
            torch.float32 if x.device.type == "mps" else torch.float64)
        sums = self._inputs.get(id(layer))
        if sums is None or sums[0].shape != rows.shape[1:]:
            sums = self._inputs[id(layer)] = [rows.new_zeros(rows.shape[1]),
                                              rows.new_zeros(rows.shape[1]), 0]
        sums[0] += rows.sum(0)
        sums[1] += (rows * rows).sum(0)
        sums[2] += rows.shape[0]
        n = sums[2]
        if n < 2:
            return
        mean = sums[0] / n
        std = ((sums[1] - n * mean * mean).clamp(min=0) / (n - 1)).sqrt()
        means, stds = torch.stack([mean, std]).tolist()
        far = [j for j, (m, s) in enumerate(zip(means, stds))
               if abs(m) > INPUT_MEAN_MAX or s > INPUT_STD_MAX or 0 < max(abs(m), s) < INPUT_TINY]
        if not far:
            return
        j = max(far, key=lambda j: max(abs(means[j]), stds[j]))
        which = f"{len(far)} of {len(means)} features are, e.g. " if len(means) > 1 else ""
        self._record("input_scale", user_line(),
                     f"the model's first layer ({layer}) gets inputs far from unit scale: "
                     f"{which}feature {j} with mean {means[j]:.4g} and std {stds[j]:.4g} over "
                     f"the {n} rows so far (|mean| > {INPUT_MEAN_MAX:g} or std > "
                     f"{INPUT_STD_MAX:g}, or both below {INPUT_TINY:g})")

    def _saw_activation(self, kind: str, y) -> None:
        # A [B, H] output with more than one unit: a hidden layer, not a binary output
        if not (self._sampled and isinstance(y, torch.Tensor) and y.is_floating_point()
                and y.dim() >= 2 and y.shape[-1] > 1):
            return
        key = (kind, id(self._top), self._ordinal)
        self._ordinal += 1
        if key not in self._units:
            self._units[key] = _Units(kind, user_line(), y.shape[-1])
        self._pending.append((key, y))

    def _read_activations(self, pending: list, output) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for key, y in pending:
            if any(y is o for o in outputs):       # the model's own output, e.g. a final sigmoid
                continue
            w = self._units[key]
            if w.width != y.shape[-1]:
                w = self._units[key] = _Units(w.kind, w.where, y.shape[-1])
            rows = y.detach().reshape(-1, w.width)
            if w.kind == "relu":
                part = (rows > 0).any(0)
                w.acc = part if w.acc is None else w.acc | part
            else:
                near = (rows.abs() > 1 - SATURATED_WITHIN if w.kind == "tanh" else
                        (rows < SATURATED_WITHIN) | (rows > 1 - SATURATED_WITHIN))
                part = near.sum(0)
                w.acc = part if w.acc is None else w.acc + part
            w.calls += 1
            w.rows += rows.shape[0]
            if w.calls >= WINDOW_CALLS and w.rows >= WINDOW_ROWS:
                self._close_window(w)

    def _close_window(self, w: _Units) -> None:
        if w.rows >= WINDOW_ROWS:
            if w.kind == "relu":
                bad = w.width - int(w.acc.sum())
                text = (f"{bad} of {w.width} ReLU units output 0 on every one of "
                        f"{w.rows} rows ({w.calls} calls): they get no gradient and cannot "
                        f"recover")
            else:
                bad = int((w.acc >= SATURATED_ROWS * w.rows).sum())
                ends = "0 or 1" if w.kind == "sigmoid" else "-1 or 1"
                text = (f"{bad} of {w.width} {w.kind} units are saturated: within "
                        f"{SATURATED_WITHIN:g} of {ends} on {SATURATED_ROWS:.0%} or more of "
                        f"{w.rows} rows ({w.calls} calls), where almost no gradient flows")
            if bad >= UNITS_SHARE * w.width:
                self._record("dead_relu" if w.kind == "relu" else "saturated", w.where, text)
        w.acc, w.calls, w.rows = None, 0, 0

    # -- optimizers --
    def _before_step(self, optimizer, args, kwargs) -> None:
        self._step_line = None
        self._guard(self._check_step, optimizer)
        self._guard(self._lc_before_step, optimizer, self._step_where)

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self._lc_after_due:
            self._guard(self._lc_after_step, optimizer, self._step_where)

    def _step_where(self) -> str:
        if self._step_line is None:
            self._step_line = user_line()
        return self._step_line

    def _check_step(self, optimizer) -> None:
        """Flags a step whose .grad tensors are the ones of the previous step, with no
        zero_grad() (of the optimizer or a module holding them) in between: backward() added
        to them. A .grad set to None or replaced since counts as cleared."""
        self.steps += 1
        params = [p for group in optimizer.param_groups for p in group["params"]
                  if p.grad is not None]
        last = self._last_step.get(id(optimizer))
        if last is not None and last.optimizer() is optimizer and not last.cleared:
            kept = replaced = 0
            for p_ref, g_ref in last.grads:
                p, g = p_ref(), g_ref()
                if p is None:
                    continue
                if g is not None and p.grad is g and id(p) not in self._zeroed:
                    kept += 1
                else:
                    replaced += 1
            if kept and not replaced:
                self._record("no_zero_grad", self._step_where(),
                             f"{type(optimizer).__name__}.step() ran with the previous step's "
                             f"gradients still in .grad (no zero_grad() since): backward() adds "
                             f"to them, so each step follows the sum of all gradients so far")
        self._zeroed.difference_update(id(p) for p in params)
        self._last_step[id(optimizer)] = _LastStep(
            weakref.ref(optimizer), [(weakref.ref(p), weakref.ref(p.grad)) for p in params])

    # -- the end --
    def _finish(self) -> None:
        """Reads what is still on the device: pending losses, the last activation windows
        (when they hold WINDOW_ROWS rows), the loss trends."""
        for where, series in self._losses.items():
            if series.pending:
                self._guard(self._read_losses, where, series)
            self._guard(self._check_growth, where, series)
        for w in self._units.values():
            if w.calls:
                self._guard(self._close_window, w)
        self._lc_finish()

    # -- reporting --
    def _watched(self) -> str:
        """What it watched; several optimizers or models are each checked on their own."""
        optimizers = sum(o.ref() is not None or o.steps > 0 for o in self._optims.values())
        models = len(self._models)
        several = (f", {optimizers} optimizers" if optimizers > 1 else "") + \
            (f", {models} models" if models > 1 else "")
        return (f"{self.steps} optimizer steps, {self.backwards} backward passes, "
                f"{self.forwards} module calls{several}")

    def __str__(self) -> str:
        """The findings, one per kind: the first line it was seen at and how often, as
        `tinysweep doctor` prints them."""
        lines = []
        if not self.findings:
            if not (self.steps or self.backwards or self.forwards or self.loss_calls):
                lines.append("tinysweep doctor: saw no training (no module call, loss, "
                             "backward pass or optimizer step while it watched): nothing to "
                             "check")
            elif not self.steps:
                lines.append(f"tinysweep doctor: no problem found, but no optimizer step "
                             f"either ({self._watched()}): nothing was trained")
            else:
                lines.append(f"tinysweep doctor: no problem found ({self._watched()})")
        else:
            kinds: dict[str, list[Finding]] = {}
            for f in self.findings:
                kinds.setdefault(f.kind, []).append(f)
            lines.append(f"tinysweep doctor: {len(kinds)} problem{'s' * (len(kinds) > 1)} "
                         f"found ({self._watched()})")
            for i, (kind, fs) in enumerate(kinds.items(), 1):
                first = fs[0]
                others = (f" (and {len(fs) - 1} other line{'s' * (len(fs) > 2)})"
                          if len(fs) > 1 else "")
                lines.append(f"{i:2d}. [{kind}] {first.where}{others}, "
                             f"{_times(sum(f.count for f in fs))}: {first.message}")
                lines.append(f"    fix: {first.fix}")
        if self.errors:
            lines.append("tinysweep doctor: some of its own checks failed and were switched "
                         "off (a bug in tinysweep): " + "; ".join(self.errors))
        return "\n".join(lines)

    def markdown(self, command: str | None = None, exit_code: int | None = None) -> str:
        """doctor.md: every finding, one per kind and line."""
        lines = ["# tinysweep doctor", ""]
        if command is not None:
            lines += [f"`{command}` exited with code {exit_code}.", ""]
        lines += [f"Watched {self._watched()}.", ""]
        if not self.findings:
            lines += ["Saw no training: nothing to check." if not (
                self.steps or self.backwards or self.forwards or self.loss_calls) else
                "No problem found." if self.steps else
                "No problem found, but no optimizer step either: nothing was trained.", ""]
        for i, f in enumerate(self.findings, 1):
            lines += [f"## {i}. {f.kind} at `{f.where}` ({_times(f.count)})", "", f.message, "",
                      f"**Fix:** {f.fix}", ""]
        if self.errors:
            lines += ["## The doctor's own errors", "", *[f"- {e}" for e in self.errors], ""]
        return "\n".join(lines)

    def write(self, out: str | Path = ".", command: str | None = None,
              exit_code: int | None = None) -> Path:
        """Writes ``out/doctor.md`` (the directory made if missing) and returns its path."""
        from ..pipeline.results import atomic_write
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "doctor.md"
        text = self.markdown(command, exit_code).encode()
        atomic_write(path, lambda f: f.write(text))
        return path


_active: Doctor | None = None


@contextlib.contextmanager
def watch(live: bool = True) -> Iterator[Doctor]:
    """Watches the PyTorch training that runs inside the ``with`` block:

        with tinysweep.doctor.watch() as d:
            train()
        d.findings          # [Finding(kind, message, where, fix, count), ...]
        print(d)            # as `tinysweep doctor` prints them

    ``live`` prints each new finding to stderr as it happens. Every hook and patch is
    removed on exit, also when the block raises. A watch() inside another one shares the
    outer one's Doctor."""
    global _active
    if _active is not None:
        yield _active
        return
    d = Doctor(live)
    _active = d
    try:
        d._install()
        yield d
    finally:
        d._uninstall()
        _active = None
        d._finish()


# ---- tinysweep doctor SCRIPT ---------------------------------------------------------------
def run_script(script: str, args: list[str], out: str | Path | None = None) -> int:
    """Runs ``script`` as ``python SCRIPT ARGS...`` would (as __main__, sys.argv = [SCRIPT,
    *ARGS], its directory first on sys.path) under watch(), then prints the findings to
    stderr and writes doctor.md into ``out`` (default: the current directory). Returns the
    script's exit code: SystemExit's, 1 when it raised (its traceback printed as Python
    would), 130 after Ctrl+C.

    Everything the doctor says goes to stderr: the script's stdout stays the script's own,
    so that ``tinysweep doctor train.py > log.csv`` keeps what the script writes."""
    shown = Path(out if out is not None else ".") / "doctor.md"    # as the user named it
    out = shown.parent.absolute()                   # before the script can chdir
    try:
        out.mkdir(parents=True, exist_ok=True)      # a bad --out fails now, not after training
    except OSError as e:
        raise UserError(f"--out: cannot make directory {out}: {e.strerror}") from None
    with watch() as d:
        code = _run_as_main(script, args)
    sys.stdout.flush()
    print(d, file=sys.stderr)
    try:
        d.write(out, "tinysweep doctor " + shlex.join([script, *args]), code)
    except WriteError as e:
        print(f"tinysweep: error: {e}", file=sys.stderr)
        return code or 1
    print(f"report: {shown}", file=sys.stderr)
    return code


def _run_as_main(script: str, args: list[str]) -> int:
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)            # sys.exit("message"), as Python does
        return 1
    except BaseException as e:                      # noqa: BLE001 -- the script's, reported
        _print_traceback(e, script)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _print_traceback(e: BaseException, script: str) -> None:
    """The traceback as ``python SCRIPT`` prints it: from the script's own frame, without
    the doctor's and runpy's above it."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb or e.__traceback__, file=sys.stderr)


# ---- Lightning -----------------------------------------------------------------------------
def _lightning_doctor():
    """LightningDoctor, a Callback of the Lightning that is installed (lightning.pytorch,
    else pytorch_lightning): it watches Trainer.fit and prints the findings at its end."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError:
            raise ImportError("tinysweep.doctor.LightningDoctor needs Lightning: "
                              "pip install lightning") from None

    class LightningDoctor(pl.Callback):
        """``Trainer(callbacks=[LightningDoctor()])``: watches fit() (training and
        validation) as watch() does; ``doctor`` holds the findings, printed to stderr when
        fit ends or raises."""

        def __init__(self, live: bool = True):
            self.live = live
            self.doctor: Doctor | None = None
            self._stack: contextlib.ExitStack | None = None

        @property
        def findings(self) -> list[Finding]:
            return self.doctor.findings if self.doctor is not None else []

        def on_fit_start(self, trainer, pl_module) -> None:
            self._stack = contextlib.ExitStack()
            self.doctor = self._stack.enter_context(watch(self.live))

        def _stop(self) -> None:
            if self._stack is not None:
                self._stack, stack = None, self._stack
                stack.close()
                print(self.doctor, file=sys.stderr)

        def on_fit_end(self, trainer, pl_module) -> None:
            self._stop()

        def on_exception(self, trainer, pl_module, exception) -> None:
            self._stop()

    return LightningDoctor


def __getattr__(name: str):
    if name == "LightningDoctor":          # imports Lightning only when asked for
        value = globals()[name] = _lightning_doctor()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
