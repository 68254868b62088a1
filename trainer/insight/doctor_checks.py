"""The doctor's second generation of checks (issue 27): what a training loop does wrong
beyond a loss's shapes. ``Doctor`` (doctor.py) inherits them from ``LoopChecks`` and calls
them from its hooks; each reports through ``Doctor._record`` with the user's file:line.

  not_updated         parameters that get gradients but sit in no optimizer's param groups,
                      or whose values never change across the optimizer's steps
  no_grad_flow        a loss with no graph behind it (rebuilt from a float), or an
                      optimizer.step() whose parameters all have .grad None
  eval_mode_training  backward() through a model whose Dropout/BatchNorm are all in eval mode
  train_mode_eval     a no_grad evaluation through Dropout/BatchNorm left in training mode
  class_target_mse    class indices 0..K-1 (K >= 3) regressed with MSE against one output
  bce_target_range    BCE targets outside [0, 1] (labels {1, 2}, or {-1, 1})
  class_target_range  cross_entropy/nll targets out of [0, C), or one-hot where indices go
  nll_no_log_softmax  nll_loss fed values that are not log-probabilities
  vanishing_gradient  the first weight layer's gradient norm a tiny fraction of the last's
  exploding_gradient  a layer's gradient norm grown by orders of magnitude, or not finite
  update_ratio        |update| / |weight| per step far from ~1e-3 (the lr far off)
  lr_schedule         a schedule that has the lr at ~0 for a large share of the steps
  symmetric_init      a layer whose hidden units (weight rows) are all identical after training
  data_order          most training batches hold a single class (rows sorted by label)
  stuck_at_chance     the loss sits at the best constant predictor's (log K, the targets'
                      variance)
  overfitting         an evaluation loss that rises while the training loss falls
  eval_leak           every evaluation runs on the rows the model trains on
  no_step             backward() ran but no optimizer ever stepped

Every threshold below is a module constant with the figure behind it; bench/doctor_thresholds.py
measured them on randomized healthy and buggy training runs (README: the false-alarm rates).
"""

from __future__ import annotations

import math
import statistics
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

FIXES = {
    "not_updated": "pass every trained parameter to the optimizer (optimizer(model.parameters()))"
                   "; to freeze a layer on purpose, set its requires_grad_(False) (no gradient "
                   "is then computed for it); a param group with lr 0 trains nothing",
    "no_grad_flow": "compute the loss from the model's output tensor: no .item(), float(), "
                    ".detach() or torch.tensor(...) in between; call optimizer.zero_grad() "
                    "before loss.backward(), not between backward() and step()",
    "eval_mode_training": "call model.train() before the training steps (and model.eval() only "
                          "around the evaluation)",
    "train_mode_eval": "call model.eval() before evaluating (and model.train() after it): "
                       "Dropout stays on and BatchNorm updates its statistics in training mode",
    "class_target_mse": "for K classes, give the model K outputs and use nn.CrossEntropyLoss "
                        "with the class indices as targets (if these are counts, not classes, "
                        "ignore this)",
    "bce_target_range": "BCE targets must be probabilities in [0, 1]: map the labels to 0 and "
                        "1 (e.g. y - 1 for labels {1, 2}, (y + 1) / 2 for {-1, 1})",
    "class_target_range": "cross_entropy/nll_loss take class indices 0..C-1, one per row (e.g. "
                          "y - 1 for labels 1..C, y.argmax(1) for one-hot rows), with C the "
                          "model's number of outputs",
    "nll_no_log_softmax": "end the model with nn.LogSoftmax(dim=1) before nn.NLLLoss, or use "
                          "nn.CrossEntropyLoss on the raw logits",
    "vanishing_gradient": "use ReLU (or a residual/normalized architecture) instead of deep "
                          "sigmoid/tanh stacks, a variance-preserving init (nn.init."
                          "kaiming_normal_), or fewer layers",
    "exploding_gradient": "lower the learning rate, clip gradients (torch.nn.utils."
                          "clip_grad_norm_), standardize the inputs",
    "update_ratio": "move the learning rate toward the ratio's ~1e-3 (the ratio scales with the "
                    "lr: a ratio of 1e-6 wants about 1000x the lr)",
    "lr_schedule": "step the scheduler once per epoch (after the epoch's batches), or give it "
                   "its period in batches (StepLR(step_size=k * batches_per_epoch), "
                   "T_max = epochs * batches_per_epoch)",
    "symmetric_init": "keep nn.Linear's default random initialization (or nn.init.kaiming_/"
                      "xavier_): identical rows get identical gradients and never differ",
    "data_order": "shuffle the training rows (DataLoader(..., shuffle=True)): batches of one "
                  "class pull the model to that class, then to the next",
    "stuck_at_chance": "check that the targets belong to the inputs (no shuffle of one without "
                       "the other, the right columns), then the learning rate and the other "
                       "findings: the model has learned nothing beyond the target's average",
    "overfitting": "stop at the evaluation loss's minimum (early stopping), or regularize: "
                   "weight decay, dropout, a smaller model, more training rows",
    "eval_leak": "evaluate on rows held out from training (a validation split): a loss on the "
                 "training rows measures memorization, not generalization",
    "no_step": "call optimizer.step() after loss.backward() (Lightning: return the loss from "
               "training_step)",
}

# ---- thresholds ------------------------------------------------------------------------------
# The figures below come from `python bench/doctor_thresholds.py --healthy 1000 --buggy 30`:
# 1,000 randomized healthy runs (798 of which learned: validation loss under 0.9x chance's)
# and 30 runs per bug, each under watch() (2-core shared CPU, 4 minutes).
# The optimizer's checks (gradient norms, update ratios, the lr) run on its first STEP_FIRST
# steps, then every STEP_EVERY-th: a sampled step costs ~150 us (clones, norms) on a
# 2-16-16-1 MLP whose whole step takes ~340 us; every 10th step cost 1.45x per step in all,
# every 50th 1.3x.
STEP_FIRST = 20
STEP_EVERY = 50

# Parameters never updated / symmetric units are judged at these optimizer steps (a doubling
# schedule: a run of any length is seen at a step within 2x of its end). Fewer than
# MIN_STEPS_STATIC steps say nothing: a layer can sit still for a few steps under Adam's
# warm-up of its moments, or momentum that has not built up.
CHECK_STEPS = frozenset(10 * 2 ** k for k in range(40))
MIN_STEPS_STATIC = 10
# Values compared with their first step's are copied once, up to this many (a 10M-parameter
# model's copy is 40 MB); a larger model is not checked for unchanged values.
SNAPSHOT_MAX = 10_000_000

# Symmetric units: every row of a Linear weight (and its bias) within this of the first row,
# relative to the layer's largest weight. Healthy layers: 0.97 or more (a random init's rows
# differ by as much as their own size); rows that got identical gradients from identical
# starts agree to float32 rounding (0 in the 30 buggy runs).
SYMMETRIC_TOL = 1e-5

# Update-to-weight ratio |w_after - w_before| / |w_before| per weight matrix, per sampled step,
# far from ~1e-3 (Karpathy's rule of thumb): its median over the run above the high mark, or
# its 90th percentile below the low mark (a warm-up's first steps and a converged model's
# last ones are small on purpose). Healthy runs: 90th percentiles from 1.9e-4 (1%: 3.9e-4),
# so the low mark is 19x under the lowest; medians up to 0.39 (99%: 0.06; over 0.1 in 0.1%
# of the runs that learned), so the high mark, half the weight rewritten per step, is past
# all of them. An lr 1e5x too low: 1.3e-9 to 8.5e-7.
UPDATE_RATIO_LOW = 1e-5
UPDATE_RATIO_HIGH = 0.5

# Vanishing: the median over sampled steps of (first weight layer's gradient norm) / (last
# weight layer's) below this (AutoTrainer's first/last ratio). Healthy MLPs (ReLU or tanh up
# to 4 hidden layers, sigmoid 1): 0.019 to 2.2; 8 sigmoid layers with the default init:
# 1.3e-8 to 1.3e-6. The mark sits 190x under the healthy minimum and 75x over the buggy max.
VANISH_RATIO = 1e-4
# Exploding: a layer's gradient norm past this multiple of its median over the first 5
# sampled steps, or non-finite. Healthy runs that learned: over 100x in 0.4%, over 1000x in
# none; runs that diverge pass 1e9.
EXPLODE_GROWTH = 1e4

# A schedule that kills the lr: the lr under LR_DEAD x its peak so far on LR_DEAD_SHARE or more
# of the steps. A cosine decay stepped per batch over the whole run reaches 1e-3 x peak only
# in its last 1-2% of steps (healthy runs: at most 1.9%); StepLR(30, 0.1) over 90 epochs ends
# at 1e-2; a StepLR meant per epoch stepped per batch: 38% to 97% of the steps.
LR_DEAD = 1e-3
LR_DEAD_SHARE = 0.25
LR_MIN_STEPS = 10
# ... when a scheduler was stepped at least this many times per optimizer step (per batch,
# not per epoch: ReduceLROnPlateau stepped per epoch may end low after a long run, on purpose)
LR_PER_BATCH = 0.5

# Stuck at chance: the median of the last third of the training losses at a loss line within
# STUCK_WITHIN (relative) of the best constant predictor's loss: the entropy of the class
# frequencies (log K when balanced), the targets' mean binary entropy (BCE), their variance
# (MSE). Healthy runs that learned: none within 5% (1.1% within 10%); labels shuffled apart
# from their rows: 0.90 to 1.04x, 24 of 30 within 5% (the other 6 memorize a few labels).
# Healthy code that did not learn in its epochs (an lr too low for it) is flagged, rightly.
STUCK_WITHIN = 0.05
STUCK_MIN_STEPS = 30

# Batches grouped by class: the mean total variation distance between a sampled training
# batch's class frequencies and all rows' (0: the data's mix; 1 - 1/K: one class of K
# balanced ones; a step's calls at one line are one batch, so a GAN's all-real and all-fake
# targets are not grouped data), over at least DATA_MIN_BATCHES batches, DATA_EXCESS or more
# above what shuffled batches of the mean size give (simulated: 200 sets of batches), and 4 standard
# deviations of that mean. Healthy runs: a distance of 0 to 0.22 (under DATA_EXCESS, so
# no simulation is needed: it runs only past it); rows sorted by label: 0.43 to 0.63 above
# what shuffling gives.
DATA_MIN_BATCHES = 5
DENSE_CALLS = 20            # = doctor.SAMPLE_FIRST: a loss line's consecutive sampled calls
DATA_EXCESS = 0.3

# Overfitting: an evaluation line with at least OVERFIT_MIN_ROUNDS evaluations whose last is
# OVERFIT_RISE x its minimum or more (and its last two above the minimum), while the training
# loss fell by OVERFIT_TRAIN_FALL or more over the same steps. Of 798 healthy runs that
# learned, a rise of 1.2x or more: 5.3%, 1.3x: 4.4%, 1.5x: 2.8%, 2x: 0.8% (real rises: wide
# models at Adam's higher rates on a few hundred rows); memorizing 37 noisy rows with 256
# units: 1.2x to 6.9x, median 3.3x.
OVERFIT_MIN_ROUNDS = 4
OVERFIT_RISE = 1.5
OVERFIT_TRAIN_FALL = 0.2

# Class targets regressed with MSE: integers exactly 0..K-1, all present, K in this range.
CLASS_MSE_K = (3, 20)
CLASS_MSE_MIN_ROWS = 50

# Evaluation on the training rows: LEAK_SHARE or more of the rows evaluated under no_grad,
# over at least 2 evaluations between training steps and LEAK_MIN_ROWS rows, are rows trained
# on (an exact fingerprint per row). Healthy runs with a held-out split: at most 1.6% of the
# rows (duplicates in the data); with fewer than LEAK_MIN_DISTINCT distinct training
# rows (xor's 4 points) there is nothing to hold out, and it is not judged. At most ROWS_CAP
# training rows (samples: an image is one) are remembered.
LEAK_SHARE = 0.95
LEAK_KNOWN_BATCHES = 20     # training batches all seen before, in a row: an epoch went by
LEAK_MIN_ROWS = 20
LEAK_MIN_DISTINCT = 64
ROWS_CAP = 200_000          # ~15 MB of Python ints

LOSS_FLUSH = 64             # loss values read from the device in groups of this many

# Mode-sensitive modules: their output differs between train() and eval().
_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
                   nn.AlphaDropout, nn.FeatureAlphaDropout)
_CLASS_LOSSES = ("cross_entropy", "nll_loss")
_BCE_LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits")
_REGRESSION_LOSSES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")


def _sensitive(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """The model's Dropout (p > 0) and BatchNorm (tracking statistics) modules, each with
    the module that holds it (its parent: the model itself at the top)."""
    out = []
    parents = {id(c): m for m in model.modules() for c in m.children()}
    for m in model.modules():
        if (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                or not isinstance(m, nn.modules.batchnorm._BatchNorm)
                and isinstance(m, _MODE_SENSITIVE) and getattr(m, "p", 0) > 0):
            out.append((m, parents.get(id(m), model)))
    return out


def _trains(parent: nn.Module) -> bool:
    """Whether any parameter of parent trains: a frozen part (a backbone with
    requires_grad False, kept in eval mode on purpose) does not."""
    return any(p.requires_grad for p in parent.parameters())


def _kinds(modules) -> str:
    counts: dict[str, int] = {}
    for m in modules:
        counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def _entropy(counts) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c > 0) if total else 0.0


def _binary_entropy(p: float) -> float:
    return -sum(q * math.log(q) for q in (p, 1 - p) if 0 < q < 1)


@dataclass
class _Model:
    """A top-level module with parameters that a forward pass ran through."""
    ref: weakref.ref
    name: str
    where: str                          # its first forward's line
    sensitive: list                     # (weakref module, weakref parent): Dropout, BatchNorm
    eval_where: str = ""                # the first forward with grad in eval mode
    train_forward: bool = False         # since the last backward(): a grad forward in train
    eval_forward: bool = False          #   ... or in eval mode
    eval_backwards: int = 0             # backward() calls after eval-mode forwards only
    backwards: int = 0                  # backward() calls after any grad forward of it
    last_train_step: int = -1           # optimizer steps at its last sampled grad forward
    eval_rows_where: str = ""           # its first evaluation (no_grad) forward's line


@dataclass
class _Optim:
    """What the optimizer checks keep for one optimizer."""
    ref: weakref.ref
    where: str                          # where it was built (else its first step)
    steps: int = 0
    sampled: int = 0
    before: list = field(default_factory=list)       # (param, clone) at a sampled step
    figures: list = field(default_factory=list)      # per sampled step: [grad norms, ratios]
    layers: int = 0                                  # weight matrices in figures
    snapshot: dict = field(default_factory=dict)     # id(p) -> (weakref p, clone at step 1)
    unchanged: list = field(default_factory=list)    # names unchanged at the last check
    checked_at: int = 0
    peak_lr: float = 0.0
    lr_steps: int = 0                   # sampled steps whose lr was read
    dead_steps: int = 0
    first_dead: int = 0
    last_lr: float = 0.0
    no_grad_steps: int = 0
    no_grad_where: str = ""
    step_where: str = ""


@dataclass
class _LossLine:
    """What one loss call line saw: its training losses, evaluations, and targets."""
    name: str
    where: str
    calls: int = 0
    train: list = field(default_factory=list)        # [step, loss] of grad calls
    evals: list = field(default_factory=list)        # [step, loss] of no-grad calls
    pending: list = field(default_factory=list)      # (list, step, 0-d tensor) not yet read
    chance_ok: bool = True          # reduction 'mean', no weights: a chance level applies
    class_counts: list | None = None                 # per class, over sampled batches
    batches: list = field(default_factory=list)      # class counts of sampled batches
    batch_steps: list = field(default_factory=list)  # (optimizer step, dense) of each
    class_calls: int = 0            # calls whose classes were counted
    several: bool = False           # several calls in one step (a GAN's real and fake)
    t_sum: float = 0.0              # regression targets: sums for the variance
    t_sq: float = 0.0
    t_n: int = 0
    p_sum: list | None = None       # BCE: per output, the targets' sum
    p_n: int = 0
    ints: set | None = field(default_factory=set)    # MSE targets while all integers
    int_rows: int = 0


class LoopChecks:
    """The checks of the training loop; mixed into Doctor, whose hooks call the ``_lc_*``
    methods. Needs from Doctor: _record, _guard, steps, backwards."""

    def _lc_init(self) -> None:
        self.stats: dict[str, list[float]] = {}     # each check's figures (the bench reads)
        self._models: dict[int, _Model] = {}
        self._optims: dict[int, _Optim] = {}
        self._opt_params: set[int] = set()          # ids of parameters in any optimizer
        self._opt_where: dict[int, str] = {}        # id(optimizer) -> where it was built
        self._had_grad: dict[int, tuple] = {}       # id(p) -> (model name, param name, numel)
        self._lines: dict[str, _LossLine] = {}
        self._sched_where: str = ""
        self._sched_steps = 0
        self._loader_info: dict[int, tuple] = {}    # id(dataset) -> (where, sampler name)
        self._probes: dict = {}                     # (features, device) -> projection
        self._lc_after_due = True                   # the step under way has after-checks
        self._trains_cache: dict = {}               # (id(module), steps // 10) -> trains
        self._not_models = weakref.WeakSet()        # top-level modules without parameters
        self._train_rows: set[int] = set()          # fingerprints of the rows trained on
        self._known_batches = 0                     # training batches in a row seen before
        self._eval_rows: list = []                  # (step, rows trained on, rows, _Model)
        self._last_backward_where = ""

    def _stat(self, name: str, value: float) -> None:
        self.stats.setdefault(name, []).append(value)

    # -- models: forward passes ---------------------------------------------------------------
    def _lc_forward_due(self) -> bool:
        """Whether an unsampled training forward still has something to check: until the
        training rows repeat (their fingerprints, for eval_leak)."""
        return (self._known_batches < LEAK_KNOWN_BATCHES
                and len(self._train_rows) < ROWS_CAP)

    def _lc_forward(self, module: nn.Module, args, where_fn) -> None:
        """A top-level forward: mode checks, and the data source (train or evaluation)."""
        model = self._models.get(id(module))
        if model is None or model.ref() is not module:
            if module in self._not_models:
                return
            if next(module.parameters(), None) is None:
                self._not_models.add(module)            # a loss module, an activation
                return
            model = self._models[id(module)] = _Model(
                weakref.ref(module), type(module).__name__, where_fn(),
                [(weakref.ref(m), weakref.ref(parent)) for m, parent in _sensitive(module)])
        grad = torch.is_grad_enabled()
        if grad:
            model.last_train_step = self.steps
        # training forwards on the sampled calls; evaluations (few) on every call
        if model.sensitive and (self._sampled or not grad):
            pairs = [(m(), parent()) for m, parent in model.sensitive]
            mods = [m for m, parent in pairs if m is not None and parent is not None
                    and (not grad or self._trains(parent))]
            training = [m.training for m in mods]
            if grad:
                if any(training):
                    model.train_forward = True
                elif training:
                    model.eval_forward = True
                    if not model.eval_where:
                        model.eval_where = where_fn()
            elif any(training):
                on = [m for m in mods if m.training]
                self._record("train_mode_eval", where_fn(),
                             f"{model.name} ran under no_grad (an evaluation) with "
                             f"{_kinds(on)} in training mode: Dropout drops units at random "
                             f"and BatchNorm normalizes by the batch and updates its running "
                             f"statistics with evaluation data")
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2 \
                and x.numel():
            if grad:
                # every batch until the training rows repeat (an epoch has gone by), then
                # the sampled calls only
                if len(self._train_rows) < ROWS_CAP and (
                        self._known_batches < LEAK_KNOWN_BATCHES or self._sampled):
                    rows = self._fingerprints(x)
                    n = len(self._train_rows)
                    self._train_rows.update(rows)
                    self._known_batches = (self._known_batches + 1
                                           if len(self._train_rows) == n else 0)
            elif self._train_rows:
                rows = self._fingerprints(x)
                if not model.eval_rows_where:
                    model.eval_rows_where = where_fn()
                self._eval_rows.append((self.steps, sum(r in self._train_rows for r in rows),
                                        len(rows), model))

    def _trains(self, parent: nn.Module) -> bool:
        """_trains(parent), remembered for 10 optimizer steps (requires_grad changes seldom:
        between a pretraining and a fine-tuning)."""
        key = (id(parent), self.steps // 10)
        hit = self._trains_cache.get(key)
        if hit is None or hit[0]() is not parent:
            if len(self._trains_cache) > 1000:
                self._trains_cache.clear()
            hit = self._trains_cache[key] = (weakref.ref(parent), _trains(parent))
        return hit[1]

    def _fingerprints(self, x: torch.Tensor) -> list[int]:
        """One integer per sample of x [B, ...]: the sample's projection on a fixed random
        vector, to 1e-6 (float64, MPS float32; the same sample gives the same number in
        any batch)."""
        rows = x.detach().reshape(x.shape[0], -1)
        d = rows.shape[1]
        probe = self._probes.get((d, x.device))
        if probe is None:
            gen = torch.Generator().manual_seed(d)
            probe = self._probes[d, x.device] = torch.randn(
                d, generator=gen, dtype=torch.float64).to(
                x.device, torch.float32 if x.device.type == "mps" else torch.float64)
        return torch.round((rows.to(probe.dtype) * probe).sum(1) * 1e6).long().tolist()

    def _lc_loader_iter(self, loader, where: str) -> None:
        ds = loader.dataset
        self._loader_info.setdefault(id(ds), (where, type(loader.sampler).__name__))

    def _lc_backward(self, tensors, where: str) -> None:
        self._last_backward_where = where
        if isinstance(tensors, torch.Tensor) and tensors.requires_grad \
                and tensors.grad_fn is None:
            self._record("no_grad_flow", where,
                         f"backward() got a loss with no graph behind it (a leaf tensor made "
                         f"with requires_grad=True, value {tensors.detach().reshape(-1)[0]:.4g})"
                         f": the gradient stops at the loss and no model parameter gets one")
        for model in self._models.values():
            if model.train_forward or model.eval_forward:
                model.backwards += 1
                if model.eval_forward and not model.train_forward:
                    model.eval_backwards += 1
                model.train_forward = model.eval_forward = False

    # -- optimizers ---------------------------------------------------------------------------
    def _lc_optimizer_built(self, optimizer, where: str) -> None:
        self._opt_where[id(optimizer)] = where
        self._opt_params.update(id(p) for g in optimizer.param_groups for p in g["params"])

    def _optim(self, optimizer, where_fn) -> _Optim:
        o = self._optims.get(id(optimizer))
        if o is None or o.ref() is not optimizer:
            where = where_fn()
            o = self._optims[id(optimizer)] = _Optim(
                weakref.ref(optimizer), self._opt_where.get(id(optimizer), where))
            o.step_where = where
        return o

    def _lc_before_step(self, optimizer, where_fn) -> None:
        """Before a step (where_fn() gives its line): the lr at every step (a Python float
        per group), and on sampled steps the weights as they were."""
        o = self._optim(optimizer, where_fn)
        o.steps += 1
        lr = max((g.get("lr", 0.0) for g in optimizer.param_groups), default=0.0)
        lr = float(lr) if not isinstance(lr, torch.Tensor) else float(lr.max())
        o.peak_lr = max(o.peak_lr, lr)
        o.last_lr = lr
        o.lr_steps += 1
        if o.peak_lr > 0 and lr < LR_DEAD * o.peak_lr:
            o.dead_steps += 1
            o.first_dead = o.first_dead or o.steps
        sampled = o.steps <= STEP_FIRST or o.steps % STEP_EVERY == 0
        check = o.steps == 1 or o.steps in CHECK_STEPS
        self._lc_after_due = sampled or check or o.steps == 2
        if not (sampled or check):
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if check:
            self._opt_params.update(id(p) for p in params)
        if o.steps == 1 and sum(p.numel() for p in params) <= SNAPSHOT_MAX:
            o.snapshot = {id(p): (weakref.ref(p), p.detach().clone()) for p in params
                          if p.requires_grad}
        if sampled:
            o.before = [(p, p.detach().clone()) for p in params
                        if p.requires_grad and p.dim() >= 2]

    def _lc_after_step(self, optimizer, where_fn) -> None:
        o = self._optim(optimizer, where_fn)
        sampled = o.steps <= STEP_FIRST or o.steps % STEP_EVERY == 0
        if not (sampled or o.steps in CHECK_STEPS or o.steps == 2):
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if sampled or o.steps in CHECK_STEPS:
            with_grad = [p for p in params if p.grad is not None]
            if not with_grad and any(p.requires_grad for p in params):
                o.no_grad_steps += 1
                where = where_fn()
                o.no_grad_where = o.no_grad_where or where
                self._record("no_grad_flow", where,
                             f"{type(optimizer).__name__}.step() ran with .grad None on all "
                             f"{len(params)} of its parameter tensors: no gradient reached "
                             f"them (a loss rebuilt from .item() or .detach(), or "
                             f"zero_grad() between backward() and step()), so the step "
                             f"changes nothing")
            self._note_gradients()
        if sampled and o.before:
            self._update_figures(o)
        o.before = []
        if o.steps in CHECK_STEPS and o.steps >= MIN_STEPS_STATIC:
            self._check_static(o)
        elif o.steps == 2:
            # an optimizer's second step: every optimizer of an alternating loop (a GAN's
            # two) has stepped once by then
            self._note_gradients()
            self._check_missing()

    def _note_gradients(self) -> None:
        """Which parameters of the models seen have a gradient (used, reached by a loss)."""
        for model in list(self._models.values()):
            module = model.ref()
            if module is None:
                continue
            for name, p in module.named_parameters():
                if p.grad is not None and p.requires_grad and id(p) not in self._had_grad:
                    self._had_grad[id(p)] = (model.name, name, p.numel(), weakref.ref(p))

    def _update_figures(self, o: _Optim) -> None:
        """Per weight matrix: its gradient's norm and |update| / |weight|, on the device
        (torch._foreach_norm: one kernel per list, 0.15 ms a step on a 3-matrix MLP where a
        norm per tensor took 0.45)."""
        if not o.before:
            return
        params = [p.detach() for p, _ in o.before]
        before = [b for _, b in o.before]
        grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(b)
                 for (p, _), b in zip(o.before, before)]
        try:
            g = torch.stack(torch._foreach_norm(grads)).float()
            d = torch.stack(torch._foreach_norm(torch._foreach_sub(params, before))).float()
            w = torch.stack(torch._foreach_norm(before)).float()
            o.figures.append(torch.stack([g, d / w.clamp_min(1e-12)], 1).cpu())
        except RuntimeError:                # several devices or dtypes: one at a time
            o.figures.append(torch.tensor(
                [[float(gr.float().norm()), float((p - b).float().norm()
                                                  / b.float().norm().clamp_min(1e-12))]
                 for gr, p, b in zip(grads, params, before)]))
        o.sampled += 1

    def _check_static(self, o: _Optim) -> None:
        """At a check step: parameters unchanged since step 1; layers with identical rows."""
        unchanged, checked = [], 0
        for pid, (ref, first) in o.snapshot.items():
            p = ref()
            if p is None or pid not in self._had_grad:
                continue                    # never used by a loss: nothing to update
            checked += 1
            if torch.equal(p.detach(), first):
                unchanged.append(pid)
        # all of them, or whole weight matrices: a bias right before BatchNorm gets a zero
        # gradient by design, and float32 rounding can swallow its tiny steps
        if len(unchanged) < checked:
            unchanged = [pid for pid in unchanged if o.snapshot[pid][1].dim() >= 2]
        o.unchanged, o.checked_at = unchanged, o.steps
        self._check_missing()
        for model in self._models.values():
            module = model.ref()
            if module is None:
                continue
            for name, layer in module.named_modules():
                if isinstance(layer, nn.Linear) and layer.out_features >= 2 \
                        and layer.weight.requires_grad:
                    self._check_symmetric(model, name, layer, o.steps)

    def _check_symmetric(self, model: _Model, name: str, layer: nn.Linear, steps: int) -> None:
        w = layer.weight.detach().float()
        if layer.bias is not None:
            w = torch.cat([w, layer.bias.detach().float()[:, None]], 1)
        scale = w.abs().max()
        spread = (w - w[:1]).abs().max()
        self._stat("symmetric_spread", float(spread / scale.clamp_min(1e-30)))
        if spread <= SYMMETRIC_TOL * scale:
            value = float(w[0, 0])
            self._record("symmetric_init", model.where,
                         f"all {layer.out_features} units of {model.name}.{name or 'layer'} "
                         f"({layer}) are identical after {steps} optimizer steps (every "
                         f"weight row and bias the same; [0, 0] = {value:.4g}): identical units "
                         f"get identical gradients, so the layer acts as one unit")

    # -- schedulers, losses --------------------------------------------------------------------
    def _lc_scheduler_step(self, where: str) -> None:
        self._sched_where = self._sched_where or where
        self._sched_steps += 1

    def _loss_line(self, name: str, where: str) -> _LossLine:
        line = self._lines.get(where)
        if line is None or line.name != name:
            line = self._lines[where] = _LossLine(name, where)
        return line

    def _lc_loss_before(self, name: str, pred, target, kwargs: dict, where: str) -> None:
        """Before a loss call (torch may refuse the targets itself): on the sampled calls,
        checks the targets against the loss."""
        if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor):
            line = self._loss_line(name, where)
            line.chance_ok &= (kwargs.get("reduction", "mean") == "mean"
                               and kwargs.get("weight") is None
                               and kwargs.get("pos_weight") is None
                               and kwargs.get("label_smoothing", 0.0) == 0.0)
            self._check_targets(line, pred, target, kwargs, torch.is_grad_enabled())

    def _lc_loss(self, name: str, pred, target, kwargs: dict, out, where: str) -> None:
        """After a loss call: keeps its value (read from the device in groups)."""
        if not (isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor)
                and isinstance(out, torch.Tensor) and out.numel() == 1):
            return
        line = self._loss_line(name, where)
        grad = torch.is_grad_enabled()
        line.pending.append((line.train if grad else line.evals, self.steps, out.detach()))
        if len(line.pending) >= LOSS_FLUSH:
            _read(line)
        line.calls += 1

    def _check_targets(self, line: _LossLine, pred, target, kwargs, grad: bool) -> None:
        name, where = line.name, line.where
        if name in _CLASS_LOSSES:
            c = pred.shape[1] if pred.dim() >= 2 else pred.shape[0]
            if target.dtype.is_floating_point:
                if name == "nll_loss" or target.shape != pred.shape:
                    return
                return                      # class probabilities: cross_entropy takes them
            if target.shape == pred.shape and pred.dim() >= 2:
                lo, hi = torch.aminmax(target)
                if lo >= 0 and hi <= 1:
                    self._record("class_target_range", where,
                                 f"F.{name} got targets of shape {list(target.shape)}, the "
                                 f"prediction's, with values in {{0, 1}}: one-hot rows, where "
                                 f"it expects one class index per row")
                    return
            ignore = kwargs.get("ignore_index", -100)
            t = target[target != ignore]
            if t.numel() == 0:
                return
            lo, hi = (int(v) for v in torch.aminmax(t))
            if lo < 0 or hi >= c:
                self._record("class_target_range", where,
                             f"F.{name} got class targets from {lo} to {hi} for {c} "
                             f"classes (the model's outputs): they must lie in 0..{c - 1}")
                return
            if name == "nll_loss" and not _log_probabilities(pred):
                top = float(pred.detach().max())
                lse = pred.detach().float().logsumexp(1)
                self._record("nll_no_log_softmax", where,
                             f"F.nll_loss got inputs that are not log-probabilities (largest "
                             f"{top:.4g}; logsumexp over the classes from {float(lse.min()):.4g}"
                             f" to {float(lse.max()):.4g}, where log-probabilities give 0): "
                             f"nll_loss only picks -input[target], so unnormalized scores "
                             f"can be pushed to +inf")
            if grad and pred.dim() == 2 and t.dim() == 1:
                self._class_batch(line, torch.bincount(t, minlength=c)[:c].tolist())
        elif name in _BCE_LOSSES:
            lo, hi = (float(v) for v in torch.aminmax(target.detach().float()))
            if lo < 0 or hi > 1:
                values = torch.unique(target.detach())
                shown = (f"values {values[:6].tolist()}" if values.numel() <= 6
                         else f"values from {lo:g} to {hi:g}")
                self._record("bce_target_range", where,
                             f"F.{name} got targets with {shown}, outside [0, 1]: BCE "
                             f"compares them with probabilities, so its minimum is not at "
                             f"the labels and the loss can go negative")
                return
            if not grad:
                return
            flat = target.detach().float().reshape(-1, target.shape[-1] if target.dim() > 1
                                                   else 1)
            sums = flat.sum(0).tolist()
            line.p_sum = sums if line.p_sum is None or len(line.p_sum) != len(sums) else \
                [a + b for a, b in zip(line.p_sum, sums)]
            line.p_n += flat.shape[0]
            if flat.shape[1] == 1 and bool(((flat == 0) | (flat == 1)).all()):
                ones = int(sums[0])
                self._class_batch(line, [flat.shape[0] - ones, ones])
        elif name in _REGRESSION_LOSSES and grad:
            t = target.detach().double()
            line.t_sum += float(t.sum())
            line.t_sq += float((t * t).sum())
            line.t_n += t.numel()
            one_output = pred.dim() == 1 or pred.shape[-1] == 1
            if line.ints is not None:
                if not one_output or not bool((t == t.round()).all()):
                    line.ints = None
                else:
                    line.ints.update(torch.unique(t).tolist())
                    line.int_rows += t.numel()
                    if len(line.ints) > CLASS_MSE_K[1]:
                        line.ints = None

    def _class_batch(self, line: _LossLine, counts: list[int]) -> None:
        """A training call's class counts. The calls of one optimizer step are one batch:
        the step's gradient sums them (a GAN's all-real and all-fake targets, micro-batches
        accumulated). Only the first SAMPLE_FIRST calls are consecutive (dense); after them,
        every SAMPLE_EVERY-th is seen."""
        if line.class_counts is None or len(line.class_counts) != len(counts):
            line.class_counts, line.batches, line.batch_steps = [0] * len(counts), [], []
        line.class_counts = [a + b for a, b in zip(line.class_counts, counts)]
        line.class_calls += 1
        dense = line.class_calls <= DENSE_CALLS
        if dense and line.batch_steps and line.batch_steps[-1] == (self.steps, True):
            line.batches[-1] = [a + b for a, b in zip(line.batches[-1], counts)]
            line.several = True
            return
        line.batches.append(counts)
        line.batch_steps.append((self.steps, dense))

    # -- the end --------------------------------------------------------------------------------
    def _lc_finish(self) -> None:
        for o in self._optims.values():
            self._guard(self._finish_optimizer, o)
        self._guard(self._finish_not_updated)
        self._guard(self._finish_modes)
        for line in self._lines.values():
            self._guard(self._finish_line, line)
        self._guard(self._finish_overfitting)
        self._guard(self._finish_leak)
        if self.backwards >= 2 and not self.steps:
            self._record("no_step", self._last_backward_where or "unknown",
                         f"backward() ran {self.backwards} times but no optimizer ever "
                         f"stepped: the script computes gradients and never applies them")

    def _finish_optimizer(self, o: _Optim) -> None:
        name = type(o.ref()).__name__ if o.ref() is not None else "the optimizer"
        # the schedule
        if o.steps >= LR_MIN_STEPS and o.lr_steps:
            share = o.dead_steps / o.lr_steps
            self._stat("lr_dead_share", share)
            # stepped about once per batch: the schedule's unit is then the batch
            if share >= LR_DEAD_SHARE and self._sched_steps >= LR_PER_BATCH * o.steps:
                per_batch = " (once per batch)" if self._sched_steps >= 0.9 * o.steps else ""
                sched = (f"; scheduler.step() ran {self._sched_steps} times for {o.steps} "
                         f"optimizer steps{per_batch}")
                self._record("lr_schedule", self._sched_where or o.step_where,
                             f"{name}'s learning rate fell below {LR_DEAD:g} x its peak "
                             f"{o.peak_lr:.3g} at step {o.first_dead} of {o.steps} and stayed "
                             f"there for {share:.0%} of the steps; it ends at "
                             f"{o.last_lr:.3g}{sched}: those steps train almost nothing")
        # gradients and updates
        if o.figures and len({f.shape[0] for f in o.figures}) == 1:
            figs = torch.stack(o.figures).double()          # [sampled, layers, 2]
            gn, ratio = figs[..., 0], figs[..., 1]
            if not torch.isfinite(gn).all():
                self._record("exploding_gradient", o.step_where,
                             f"a gradient reaching {name}.step() is not finite (inf or NaN "
                             f"in .grad at {int((~torch.isfinite(gn)).any(1).sum())} of "
                             f"{gn.shape[0]} sampled steps)")
                return
            layers = gn.shape[1]
            # matrices that move at all (one that never does is not_updated's), the low side
            # from the larger steps: a warm-up's first steps and a converged model's last
            # ones are small on purpose; an lr 1000x too low is small throughout
            moving = ratio[:, (ratio > 0).any(0)] if bool((ratio > 0).any()) else ratio
            med_ratio = float(moving.median(0).values.median())
            high_ratio = float(moving.quantile(0.9, dim=0).median())
            self._stat("update_ratio", med_ratio)
            self._stat("update_ratio_p90", high_ratio)
            if gn.shape[0] >= 5:
                k = min(5, gn.shape[0])
                start = gn[:k].median(0).values.clamp_min(1e-30)
                growth = float((gn / start).max())
                self._stat("grad_growth", growth)
                if growth > EXPLODE_GROWTH:
                    j = int((gn / start).max(0).values.argmax())
                    self._record("exploding_gradient", o.step_where,
                                 f"the gradient norm of weight matrix {j + 1} of {layers} grew "
                                 f"{growth:.3g}x from its first sampled steps "
                                 f"({float(start[j]):.3g} to {float(gn[:, j].max()):.3g})")
                if layers >= 2:
                    # a first layer with no gradient at all (inputs all 0) is not vanishing:
                    # not_updated says it never changes
                    r = (gn[:, 0] / gn[:, -1].clamp_min(1e-30))
                    r = r[(gn[:, -1] > 0) & (gn[:, 0] > 0)]
                    if r.numel():
                        med = float(r.median())
                        self._stat("grad_first_last", med)
                        if med < VANISH_RATIO:
                            self._record("vanishing_gradient", o.step_where,
                                         f"the first weight layer's gradient norm is {med:.3g}"
                                         f" x the last's (median over {r.numel()} sampled "
                                         f"steps, {layers} weight matrices; under "
                                         f"{VANISH_RATIO:g}): the first layers barely train")
                if ratio.abs().max() > 0 and (high_ratio < UPDATE_RATIO_LOW
                                              or med_ratio > UPDATE_RATIO_HIGH):
                    low = high_ratio < UPDATE_RATIO_LOW
                    shown = high_ratio if low else med_ratio
                    side = ("too small: the weights hardly move; raise the learning rate"
                            if low else
                            "too large: each step rewrites much of the weights; lower the "
                            "learning rate")
                    self._record("update_ratio", o.step_where,
                                 f"{name}'s steps change the weight matrices by {shown:.3g} of "
                                 f"their norm ({'90th percentile' if low else 'median'} over "
                                 f"{gn.shape[0]} sampled steps, median over {layers} "
                                 f"matrices; lr {o.peak_lr:.3g}), far from ~1e-3 "
                                 f"(flagged under {UPDATE_RATIO_LOW:g} or over "
                                 f"{UPDATE_RATIO_HIGH:g}): {side}")

    def _check_missing(self) -> None:
        """Parameters (alive) that got gradients and are in no optimizer built or stepped."""
        missing: dict[str, list] = {}
        for pid, (model, pname, numel, ref) in self._had_grad.items():
            if pid not in self._opt_params and ref() is not None:
                missing.setdefault(model, []).append((pname, numel))
        # at the optimizer's construction when there is one, else the model's first call
        built = [o.where for o in self._optims.values() if o.ref() is not None]
        for model, params in missing.items():
            where = built[0] if len(built) == 1 else next(
                m.where for m in self._models.values() if m.name == model)
            names = ", ".join(n for n, _ in params[:6]) + (", ..." if len(params) > 6 else "")
            self._record("not_updated", where,
                         f"{len(params)} parameter tensors of {model} ({names}; "
                         f"{sum(n for _, n in params)} values) get gradients but are in no "
                         f"optimizer's param groups: they keep their initial values")

    def _finish_not_updated(self) -> None:
        for o in self._optims.values():
            if not o.unchanged or self.steps < MIN_STEPS_STATIC:
                continue
            names = [f"{self._had_grad[pid][0]}.{self._had_grad[pid][1]}"
                     for pid in o.unchanged if pid in self._had_grad][:6]
            self._record("not_updated", o.step_where,
                         f"{len(o.unchanged)} parameter tensors in the optimizer "
                         f"({', '.join(names)}{', ...' if len(o.unchanged) > 6 else ''}) have "
                         f"the same values "
                         f"after {o.checked_at} steps as before the first (lr "
                         f"{o.peak_lr:.3g}, or gradients that are always 0)")

    def _finish_modes(self) -> None:
        for model in self._models.values():
            if model.backwards:
                self._stat("eval_backward_share", model.eval_backwards / model.backwards)
            if model.eval_backwards >= 3 and model.eval_backwards >= 0.1 * model.backwards:
                mods = [m() for m, _ in model.sensitive if m() is not None]
                self._record("eval_mode_training", model.eval_where,
                             f"{model.name} was in eval mode ({_kinds(mods)} all off) in the "
                             f"forward passes behind {model.eval_backwards} of its "
                             f"{model.backwards} backward() calls: Dropout does not drop and "
                             f"BatchNorm uses its running statistics while training")

    def _finish_line(self, line: _LossLine) -> None:
        _read(line)
        values = [v for _, v in line.train if math.isfinite(v)]
        # class indices regressed with MSE
        if line.ints and line.int_rows >= CLASS_MSE_MIN_ROWS:
            k = len(line.ints)
            if CLASS_MSE_K[0] <= k <= CLASS_MSE_K[1] and line.ints == set(range(k)):
                self._record("class_target_mse", line.where,
                             f"F.{line.name} regresses one output onto targets that are the "
                             f"integers 0..{k - 1} ({line.int_rows} rows seen): class indices, "
                             f"whose order and spacing mean nothing; the model learns the "
                             f"classes' average, not which one")
        # data order
        if line.class_counts and sum(1 for c in line.class_counts if c) >= 2:
            self._check_order(line)
        # stuck at chance: the last third of its losses against the constant predictor's
        # over all sampled rows
        chance = self._chance(line)
        if chance and len(values) >= STUCK_MIN_STEPS:
            last = statistics.median(values[-(len(values) // 3):])
            ratio = last / chance
            self._stat("loss_over_chance", ratio)
            if abs(ratio - 1) <= STUCK_WITHIN:
                what = {"cross_entropy": "the entropy of the class frequencies",
                        "nll_loss": "the entropy of the class frequencies"}.get(
                    line.name, "the targets' variance" if line.name in _REGRESSION_LOSSES
                    else "the binary entropy of the targets' mean")
                self._record("stuck_at_chance", line.where,
                             f"the training loss at F.{line.name} sits at {last:.4g} over its "
                             f"last {len(values) // 3} of {len(values)} calls, {ratio:.3f}x the "
                             f"loss of predicting the target's average ({chance:.4g}, {what}):"
                             f" the model has learned nothing from the inputs")

    def _check_order(self, line: _LossLine) -> None:
        """The batches' class mix against the data's: the mean total variation distance
        between each batch's class frequencies and all rows', against the same for batches
        drawn at random (shuffled) of the same sizes."""
        # with several calls a step, only the dense calls group into whole steps
        batches = ([b for b, (_, dense) in zip(line.batches, line.batch_steps) if dense]
                   if line.several else line.batches)
        if len(batches) < DATA_MIN_BATCHES:
            return
        counts = torch.tensor(batches, dtype=torch.float64)              # [batches, K]
        sizes = counts.sum(1)
        p = counts.sum(0) / sizes.sum()
        observed = float((counts / sizes[:, None] - p).abs().sum(1).mean() / 2)
        self._stat("batch_mix", observed)
        if observed < DATA_EXCESS:
            return                          # under the margin whatever shuffling gives
        # shuffled batches of the mean size, 200 sets of as many batches as were seen
        b, n = max(1, round(float(sizes.mean()))), len(batches)
        gen = torch.Generator().manual_seed(0)
        sample = torch.multinomial(p.expand(200 * n, -1), b, replacement=True, generator=gen)
        freq = torch.nn.functional.one_hot(sample, p.numel()).double().mean(1)
        draws = ((freq - p).abs().sum(1) / 2).view(200, n)   # [sets, batches]
        expected, sd = float(draws.mean()), float(draws.mean(1).std())
        self._stat("batch_mix_excess", observed - expected)
        if observed - expected >= max(DATA_EXCESS, 4 * sd):
            single = int(((counts > 0).sum(1) == 1).sum())
            loaders = [f"{w} ({s})" for w, s in self._loader_info.values()
                       if s == "SequentialSampler"]
            hint = f"; the DataLoader at {loaders[0]} does not shuffle" if loaders else ""
            self._record("data_order", line.where,
                         f"the training batches at F.{line.name} are grouped by class: their "
                         f"class mix differs from the data's by {observed:.2f} (total "
                         f"variation, mean over {len(batches)} sampled batches; "
                         f"shuffled batches of {float(sizes.mean()):.0f} rows: "
                         f"{expected:.2f}), and {single} hold a single class{hint}")

    def _chance(self, line: _LossLine) -> float | None:
        if not line.chance_ok:
            return None
        if line.name in _CLASS_LOSSES and line.class_counts:
            return _entropy(line.class_counts)
        if line.name in _BCE_LOSSES and line.p_sum and line.p_n:
            return statistics.fmean(_binary_entropy(s / line.p_n) for s in line.p_sum)
        if line.name == "mse_loss" and line.t_n > 1:
            mean = line.t_sum / line.t_n
            return max(line.t_sq / line.t_n - mean * mean, 0.0)
        return None

    def _finish_overfitting(self) -> None:
        train = sorted((s, v) for line in self._lines.values() for s, v in line.train)
        if not train:
            return
        for line in self._lines.values():
            if not line.evals:
                continue
            rounds: dict[int, list] = {}
            for s, v in line.evals:
                rounds.setdefault(s, []).append(v)
            steps = sorted(rounds)
            if len(steps) < OVERFIT_MIN_ROUNDS:
                continue
            ev = [statistics.fmean(rounds[s]) for s in steps]
            m = min(range(len(ev)), key=ev.__getitem__)
            if ev[m] <= 0:
                continue
            rise = ev[-1] / ev[m]
            self._stat("overfit_rise", rise)

            def train_near(i):
                """The training loss around evaluation i: the values since the evaluation
                before it, else the last one before it."""
                lo = steps[i - 1] if i else -1
                near = ([v for s, v in train if lo < s <= steps[i]]
                        or [v for s, v in train if s <= steps[i]][-1:])
                return statistics.median(near) if near else None

            t_min, t_end = train_near(m), train_near(len(ev) - 1)
            if (m < len(ev) - 2 and rise >= OVERFIT_RISE and ev[-2] > ev[m]
                    and t_min and t_end is not None and t_end <= (1 - OVERFIT_TRAIN_FALL) * t_min):
                self._record("overfitting", line.where,
                             f"the evaluation loss at F.{line.name} rose from {ev[m]:.4g} "
                             f"(evaluation {m + 1} of {len(ev)}, step {steps[m]}) to "
                             f"{ev[-1]:.4g} ({rise:.2f}x) while the training loss fell from "
                             f"{t_min:.4g} to {t_end:.4g}: the model memorizes the training "
                             f"rows")

    def _finish_leak(self) -> None:
        # evaluations of a model that trains on after them: a teacher trained first, then
        # run under no_grad on the student's batches, is not being evaluated
        evals = [e for e in self._eval_rows if e[3].last_train_step > e[0]]
        rounds = {s for s, *_ in evals}
        rows = sum(e[2] for e in evals)
        if not rows or len(self._train_rows) < LEAK_MIN_DISTINCT:
            return                  # a handful of distinct inputs (xor's 4): none to hold out
        inside = sum(e[1] for e in evals)
        self._stat("eval_on_train_share", inside / rows)
        # evaluations between training steps (not only before or after training)
        if len(rounds - {0}) >= 2 and rows >= LEAK_MIN_ROWS and inside >= LEAK_SHARE * rows:
            self._record("eval_leak", evals[0][3].eval_rows_where,
                         f"{inside} of the {rows} rows evaluated under no_grad ({len(rounds)} "
                         f"evaluations) are rows the model trains on: no held-out row is "
                         f"measured, so the evaluation cannot show overfitting (if a "
                         f"training-set metric is meant, evaluate a validation split too)")


def _read(line: _LossLine) -> None:
    """Reads a line's pending losses from the device in one sync."""
    pending, line.pending = line.pending, []
    if not pending:
        return
    try:                                    # one sync for the lot
        values = torch.stack([v for *_, v in pending]).float().reshape(-1).tolist()
    except RuntimeError:                    # several devices, dtypes or shapes ([] and [1])
        values = [float(v.reshape(())) for *_, v in pending]
    for (series, step, _), v in zip(pending, values):
        series.append((step, v))


def _log_probabilities(pred: torch.Tensor) -> bool:
    """Whether each row of pred [B, C] is a log-probability vector: LogSoftmax's output, or
    values <= 0 whose logsumexp over the classes is 0."""
    fn = pred.grad_fn
    if fn is not None and fn.name().startswith("LogSoftmaxBackward"):
        return True
    if pred.dim() < 2:
        return True
    p = pred.detach().float()
    return bool((p <= 1e-4).all()) and bool((p.logsumexp(1).abs() <= 1e-3).all())
