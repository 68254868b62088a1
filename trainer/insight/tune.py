"""``tinysweep tune``: an Optuna study whose trials are trained in batches, one sweep each.

Optuna's samplers (TPE, CMA-ES, random) propose the next trials from the results so far,
one trial per objective call. Here each round asks the sampler for ``batch`` trials at
once, trains them as one tinysweep sweep (one launch for all of them), and tells Optuna
each trial's metric; a diverged trial is told as failed. The config's search space is its
random form: ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}`` (``int: true``, or an
integer hyperparameter, keeps it integer), lists (a choice) and single values.

With ``out``, the study lives in ``DIR/optuna.db`` (Optuna's SQLite storage: optuna-dashboard
opens it; ``resume`` continues it), each round's runs are kept in ``DIR/.rounds`` as they
finish, and DIR is a results directory of every trial (a ``trial`` column), so report,
export and load work on it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..spec.config import Config, RunParams, check_run_value, run_field, widths_of
from ..spec.errors import UserError
from ..spec.space import fixed_values

SAMPLERS = ("tpe", "random", "cmaes")
METRICS = ("final_val_loss", "final_train_loss")
STORAGE = "optuna.db"
ROUNDS = ".rounds"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("tune: optuna is not installed; pip install 'tinysweep[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(config: Config) -> dict:
    """The search space as Optuna distributions, by hyperparameter; single values are not
    in it (they stay fixed). Raises UserError for a grid-only form or an empty list."""
    optuna = _optuna()
    D = optuna.distributions
    out = {}
    for name, value in config.sweep.params.items():
        where = f"sweep.params.{name}"
        kind = run_field(name)["kind"]
        if name == "hidden" and isinstance(value, list) and not any(isinstance(v, list) for v in value):
            continue                                  # one architecture: fixed
        if isinstance(value, list):
            if not value:
                raise UserError(f"{where}: an empty list gives no trials")
            if len(value) == 1:
                continue
            choices = [check_run_value(name, v, where) for v in value]
            if kind == "widths":
                choices = ["-".join(map(str, c)) or "none" for c in choices]
            out[name] = D.CategoricalDistribution(choices)
        elif isinstance(value, dict):
            form = next((k for k in value if k != "int"), None)
            if form in ("linspace", "logspace"):
                raise UserError(f"{where}: {form} is a grid form; tune draws from "
                                f"uniform, loguniform, lists and single values")
            if form not in ("uniform", "loguniform") or not isinstance(value[form], list) \
                    or len(value[form]) != 2:
                raise UserError(f"{where}: expected a scalar, a list, {{uniform: [lo, hi]}} "
                                f"or {{loguniform: [lo, hi]}}, got {value!r}")
            lo, hi = value[form]
            log = form == "loguniform"
            if log and not 0 < lo <= hi or not lo <= hi:
                raise UserError(f"{where}.{form}: expected {'0 < ' if log else ''}lo <= hi, "
                                f"got {value[form]!r}")
            if kind == "int" or value.get("int", False):
                out[name] = D.IntDistribution(math.ceil(lo), math.floor(hi), log=log)
            elif kind == "float":
                out[name] = D.FloatDistribution(float(lo), float(hi), log=log)
            else:
                raise UserError(f"{where}: {name} takes a list of choices, not {form}")
    if "epochs" in out:
        raise UserError("sweep.params.epochs: tune compares trials at one epochs budget; "
                        "set train.epochs (sweep.halving stops the poor ones early)")
    return out


def _trial_run(config: Config, params: dict) -> RunParams:
    """One trial's run: the config's defaults, its single values, the trial's values."""
    fixed, _ = fixed_values(config)
    chosen = {k: widths_of(v) if k == "hidden" else v for k, v in params.items()}
    chosen = {k: check_run_value(k, v, f"sweep.params.{k}") for k, v in chosen.items()}
    return RunParams(**{**fixed, **chosen}).resolved()


def tune(config, trials: int, batch: int, sampler: str = "tpe", metric: str | None = None,
         out: str | Path | None = None, resume: bool = False, backend: str = "auto",
         device: str | None = None, *, data=None, target: str | None = None, progress=None):
    """Runs ``trials`` Optuna trials, ``batch`` at a time, each batch one sweep; returns the
    optuna Study (its ``best_trial``, ``trials_dataframe()``...). ``metric``: what Optuna
    minimizes, final_val_loss (the default with a validation split) or final_train_loss.
    ``out``: a directory for the study (optuna.db) and the trials' results; ``resume``
    continues the study there. ``progress``: called with a line after each round."""
    from ..pipeline import outdir
    from ..spec.config import load_config
    from ..pipeline.sweep import config_data
    optuna = _optuna()
    config = load_config(config, data, target)
    for value, name in ((trials, "--trials"), (batch, "--batch")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name}: expected an integer >= 1, got {value!r}")
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    metric = metric or ("final_val_loss" if config.data.val_fraction > 0 else "final_train_loss")
    if metric not in METRICS:
        raise UserError(f"--metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "final_val_loss" and config.data.val_fraction == 0:
        raise UserError("--metric: final_val_loss needs a validation split (data.val_fraction > 0)")
    space = distributions(config)
    data_set = config_data(config)
    chosen = _sampler(optuna, sampler, config.sweep.seed)
    if out is None:
        study = optuna.create_study(direction="minimize", sampler=chosen)
        _rounds(study, config, space, data_set, trials, batch, metric, backend, device, None,
                progress)
        return study
    out = Path(out)
    outdir.check_out(out, "--out")
    with outdir.locked(out):
        db = out / STORAGE
        if db.exists() and not resume:
            raise UserError(f"--out: {out} already holds a study; pass --resume to continue "
                            f"it or pick another --out")
        if resume and db.exists():
            _check_same(out, config)
        elif outdir.holds_results(out):
            raise UserError(f"--out: {out} already holds results; pick another --out")
        study = optuna.create_study(storage=f"sqlite:///{db}", study_name=config.name,
                                    direction="minimize", sampler=chosen, load_if_exists=True)
        for stale in study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)   # a crashed round
        (out / ROUNDS).mkdir(exist_ok=True)
        _save_config(out, config)
        _rounds(study, config, space, data_set, trials, batch, metric, backend, device, out,
                progress)
        write_results(out, config, study)
    return study


def _sampler(optuna, name: str, seed: int):
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    try:
        import cmaes  # noqa: F401  (CmaEsSampler needs it)
    except ImportError:
        raise UserError("--sampler cmaes: the cmaes package is not installed; pip install "
                        "cmaes") from None
    return optuna.samplers.CmaEsSampler(seed=seed)


def _rounds(study, config, space, data_set, trials, batch, metric, backend, device, out,
            progress) -> None:
    """Asks, trains and tells rounds of at most ``batch`` trials until the study has
    ``trials`` finished ones."""
    import optuna
    from ..pipeline.results import assemble
    from ..spec.runs import Runs
    from ..pipeline.sweep import execute, plan_for
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    while True:
        done = len(study.get_trials(deepcopy=False, states=finished))
        if done >= trials:
            return
        asked = [study.ask(space) for _ in range(min(batch, trials - done))]
        runs = Runs.from_rows([_trial_run(config, t.params) for t in asked])
        plan = plan_for(config, runs, data_set, backend, device, None)
        part = execute(plan, raw=True)
        res = assemble(config.to_dict(), plan.chunk, part)
        values = res.table[metric].to_numpy(dtype=np.float64)
        for t, value, diverged in zip(asked, values, res.table.diverged):
            if diverged or not np.isfinite(value):
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(t, float(value))
        if out is not None:
            _save_round(out, [t.number for t in asked], part)
        if progress is not None:
            best = study.best_value if any(
                t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) else math.nan
            progress(f"{done + len(asked)} of {trials} trials; best {metric} {best:.4g}")


def _save_round(out: Path, numbers: list[int], part) -> None:
    """A finished round's runs, as the chunk store writes chunks: DIR/.rounds/round-FIRST.npz
    (FIRST: its first trial number), its trial numbers beside it."""
    from ..pipeline.results import atomic_write
    from ..pipeline.store import ChunkStore
    ChunkStore(out, ROUNDS).save(numbers[0], part)
    text = json.dumps(numbers).encode()
    atomic_write(out / ROUNDS / f"round-{numbers[0]:09d}.json", lambda f: f.write(text))


def _save_config(out: Path, config: Config) -> None:
    from ..spec.config import dump_yaml
    from ..pipeline.results import atomic_write
    text = dump_yaml(config.to_dict()).encode()
    atomic_write(out / ROUNDS / "config.yaml", lambda f: f.write(text))


def _check_same(out: Path, config: Config) -> None:
    from ..spec.config import read_config_file
    from ..pipeline.store import config_hash
    saved = out / ROUNDS / "config.yaml"
    if saved.is_file() and config_hash(read_config_file(saved)) != config_hash(config.to_dict()):
        raise UserError(f"--resume: {out} holds a study of a different config; pick another "
                        f"--out")


def write_results(out: Path, config: Config, study) -> None:
    """DIR as a results directory of every trial trained so far, in trial order, with a
    ``trial`` column (and the plots and report.md)."""
    from ..backends.backend import Chunk, evaluation_epochs
    from .report import save_with_report
    from ..pipeline.results import assemble, merge_chunks
    from ..spec.runs import Runs
    from ..pipeline.store import ChunkStore
    store = ChunkStore(out, ROUNDS)
    numbers, parts = [], []
    for path in sorted((out / ROUNDS).glob("round-*.json")):
        first = int(path.stem.split("-")[1])
        part = store.load(first)
        if part is not None:
            numbers += json.loads(path.read_text())
            parts.append(part)
    if not parts:
        return
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    runs = Runs.from_rows([_trial_run(config, by_number[n].params) for n in numbers])
    eval_epochs = evaluation_epochs(runs, config.eval_every)
    from ..pipeline.sweep import config_data
    chunk = Chunk(config.model, config_data(config), runs, config.eval_every, eval_epochs)
    res = assemble(config.to_dict(), chunk, merge_chunks(parts))
    res.table.insert(1, "trial", np.array(numbers, dtype=np.int64))
    save_with_report(res, out)
