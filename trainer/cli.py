"""The ``tinysweep`` command.

    tinysweep run CONFIG [--out DIR] [--backend auto|reference|torch|triton|numba]
                         [--device cpu|cuda] [--chunk-runs N] [--executor local|ray]
                         [--resume] [--overwrite]
    tinysweep diagnose CONFIG [--observed FILE] [--out DIR] [--backend ...] [--device ...]
    tinysweep report DIR                          plots and report.md, again
    tinysweep export DIR (--run ID | --best) --out model.pt
    tinysweep export DIR --to optuna|tensorboard [--top N] [--out PATH]   the best settings
    tinysweep tune CONFIG --trials N --batch B [--sampler tpe|random|cmaes] [--metric ...]
                          [--out DIR] [--resume]        an Optuna study, trials in batches
    tinysweep doctor [--out DIR] SCRIPT [ARGS...]   your training script, watched for bugs

Exit 0 when the sweep finished (even if some runs diverged); exit 2 with one line on stderr
for a bad config, bad data or bad arguments, before anything is written.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

from .pipeline import outdir
from .spec.config import BACKENDS, DEVICES
from .spec.errors import UserError, WriteError

# Each command imports what it runs: --help, a missing command or a mistake in the config
# take no numpy, pandas, torch, matplotlib or triton, and answer in 0.1 s where importing
# them took 2-3 s on the 2-core CPU.



class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, not argparse's usage block
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tinysweep", description="Train many tiny MLPs at once.")
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run a sweep described by a config file")
    run.add_argument("config", help="the sweep's YAML or JSON config")
    run.add_argument("--out", help="results directory (default: runs/NAME)")
    run.add_argument("--backend", default="auto", choices=BACKENDS,
                     help="auto (default): triton on CUDA, numba on the CPU, when it can "
                          "train the model; else torch")
    run.add_argument("--device", choices=DEVICES, help="default: cuda when available")
    run.add_argument("--chunk-runs", type=int, metavar="N", help="at most N runs per launch")
    run.add_argument("--executor", default="local", choices=("local", "ray"))
    run.add_argument("--resume", action="store_true",
                     help="finish an interrupted sweep in --out, keeping its finished chunks")
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    diag = sub.add_parser("diagnose", help="explain why one training setup converges or not")
    diag.add_argument("config", help="one setup: a config whose sweep params are single values")
    diag.add_argument("--out", help="results directory (default: runs/NAME-diagnose)")
    diag.add_argument("--backend", default="auto", choices=BACKENDS)
    diag.add_argument("--device", choices=DEVICES, help="default: cuda when available")
    diag.add_argument("--observed", metavar="FILE",
                      help="a CSV of what you saw, one row per run you trained: which code "
                           "(correct, or a known bug) reproduces it")
    report = sub.add_parser("report", help="write the plots and report.md of a results directory")
    report.add_argument("dir", help="a results directory")
    export = sub.add_parser("export", help="save one run's model (a state_dict and its JSON), "
                            "or the settings for optuna or tensorboard")
    export.add_argument("dir", help="a results directory")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, metavar="ID", help="the run_id to export")
    which.add_argument("--best", action="store_true",
                       help="the finished run with the lowest final validation loss (with "
                            "a validation split or folds), else final train loss")
    which.add_argument("--to", metavar="TOOL", help="the best settings for optuna "
                       "(a SQLite study) or tensorboard (an HParams log directory)")
    export.add_argument("--out", help="the state_dict file (e.g. model.pt); the architecture "
                        "goes beside it as .json. With --to: the study file or log directory "
                        "(default: in DIR)")
    export.add_argument("--top", type=int, metavar="N", help="with --to: the N best settings "
                        "(default: 1000 for optuna, 250 for tensorboard)")
    tune = sub.add_parser("tune", help="an Optuna study whose trials train in batches, one "
                          "sweep each")
    tune.add_argument("config", help="a config whose sweep params are a random search space")
    tune.add_argument("--trials", type=int, required=True, metavar="N", help="trials in all")
    tune.add_argument("--batch", type=int, required=True, metavar="B",
                      help="trials asked of the sampler and trained at once")
    tune.add_argument("--sampler", default="tpe", choices=("tpe", "random", "cmaes"))
    tune.add_argument("--metric", choices=("final_val_loss", "final_train_loss"),
                      help="what the study minimizes (default: final_val_loss with a "
                           "validation split, else final_train_loss)")
    tune.add_argument("--out", help="the study's directory (default: runs/NAME-tune)")
    tune.add_argument("--resume", action="store_true", help="continue the study in --out")
    tune.add_argument("--backend", default="auto", choices=BACKENDS)
    tune.add_argument("--device", choices=DEVICES, help="default: cuda when available")
    doctor = sub.add_parser("doctor", help="run your own training script and report the bugs "
                            "seen in it (file:line and the fix)")
    doctor.add_argument("--out", metavar="DIR", help="directory for doctor.md (default: the "
                        "current directory); give it before SCRIPT")
    doctor.add_argument("script", metavar="SCRIPT",
                        help="your training script (plain PyTorch or Lightning)")
    # Everything after SCRIPT is the script's, --options included, as with `python SCRIPT`.
    doctor.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the script's own arguments")
    return ap


# A parameter with more distinct values than this is summed up in quantile ranges.
MAX_LISTED_VALUES = 8


def _by_param(table, param: str, metric: str = "final_train_loss", bins: int = 5) -> str:
    """One line per value of ``param`` (or per range, for many numeric values): the median
    and range of ``metric`` over the runs that have it.

    Columns at a time, one radix sort of small group codes: 0.02-0.05 s a parameter on a
    million-run table, where groupby's median took 0.06-0.2 s and counting a million
    distinct floats 0.16 s.
    """
    import numpy as np
    import pandas as pd

    values = table[param]
    numeric = values.dtype.kind in "iuf"
    many = numeric and _sample_has_more_than(values.to_numpy(), MAX_LISTED_VALUES)
    if not many:
        codes, uniques = pd.factorize(values, sort=True)   # NaN: code -1, left out
        many = numeric and len(uniques) > MAX_LISTED_VALUES
    if many:
        x = values.to_numpy()
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        # As pd.cut(x, edges, include_lowest=True): bin i is (edges[i], edges[i + 1]],
        # the first one closed. Comparisons: 1 ms, np.searchsorted 10-25 ms.
        codes = np.zeros(len(x), dtype=np.int16)
        for edge in edges[1:-1]:
            codes += x > edge
        n_groups = len(edges) - 1
    else:
        n_groups = len(uniques)
    if n_groups < 2**15:
        codes = codes.astype(np.int16, copy=False)    # argsort's radix sort: 0.01 s, not 0.06
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    sorted_metric = table[metric].to_numpy(dtype=np.float64)[order]
    sorted_values = values.to_numpy()[order] if many else None
    rows = []
    for g in range(n_groups):
        lo_row, hi_row = bounds[g], bounds[g + 1]
        if lo_row == hi_row:
            continue
        if not many:
            label = _short(uniques[g])
        else:
            group = sorted_values[lo_row:hi_row]
            lo, hi = group.min(), group.max()
            label = _short(lo) if lo == hi else f"{lo:.4g}..{hi:.4g}"
        m = sorted_metric[lo_row:hi_row]
        m = m[~np.isnan(m)]
        med, m_lo, m_hi = (_median(m), m.min(), m.max()) if len(m) else (np.nan,) * 3
        rows.append((label, med, m_lo, m_hi, hi_row - lo_row))
    width = max(len(r[0]) for r in rows)
    lines = [f"{metric} by {param} (median, min..max over runs):"]
    lines += [f"  {k:>{width}}  {med:.4g}  ({lo:.4g}..{hi:.4g}, {n} runs)"
              for k, med, lo, hi, n in rows]
    return "\n".join(lines)


# A million-row column's order statistics without sorting or partitioning all of it
# (np.argsort: 0.19 s, np.partition: 0.015 s): a sample of about this many rows narrows the
# search to a few hundred or thousand rows, in 2-3 passes over the column (1-3 ms).
SAMPLE_ROWS = 4096


def _sample_has_more_than(x, k: int) -> bool:
    """Whether x's first rows and a strided sample already hold more than k distinct values.
    A grid's fast axes show in the first, its slow axes in the second, a random sweep's
    values in both; so a column of many values needs no full count (0.16 s for a million
    distinct floats)."""
    import numpy as np
    half = SAMPLE_ROWS // 2
    sample = np.concatenate([x[:half], x[::max(1, len(x) // half)]])
    return len(np.unique(sample)) > k


def _median(x):
    """np.median(x) of a NaN-free float array, exactly: only the rows between two of a
    sample's values that bracket the median are partitioned. A bracket that misses (a
    sample unlike the whole, rarely) falls back to np.median."""
    import numpy as np

    n = len(x)
    step = n // SAMPLE_ROWS
    if step < 8:
        return np.median(x)
    sample = np.sort(x[::step])
    middle = len(sample) // 2
    lo, hi = sample[max(0, middle - 128)], sample[min(len(sample) - 1, middle + 128)]
    below = np.count_nonzero(x < lo)
    inside = x[(x >= lo) & (x <= hi)]
    # sorted(x) is: the rows < lo, then `inside` sorted, then the rows > hi
    ks = np.unique([(n - 1) // 2, n // 2]) - below     # the middle one or two
    if ks[0] < 0 or ks[-1] >= len(inside):
        return np.median(x)
    return np.partition(inside, ks)[ks].mean()


def _extreme(x, m: int, lowest: bool):
    """Row indices of the m lowest (or highest) non-NaN values of x, in stable ascending
    order. The m-th lowest of a sample has at least m rows of x at or below it, so the m
    lowest are among those."""
    import numpy as np

    if m <= 0:
        return np.zeros(0, dtype=np.intp)
    sample = x[::max(1, len(x) // SAMPLE_ROWS)]
    sample = sample[~np.isnan(sample)]
    if len(sample) >= m:
        kth = m - 1 if lowest else len(sample) - m
        cut = np.partition(sample, kth)[kth]
        rows = np.flatnonzero(x <= cut if lowest else x >= cut)   # NaN compares False
    else:
        rows = np.flatnonzero(~np.isnan(x))
    ranked = rows[np.argsort(x[rows], kind="stable")]          # ties: the stable order
    return ranked[:m] if lowest else ranked[max(0, len(ranked) - m):]


def _ends(x, k: int):
    """Row indices of the first k and the last k rows of x sorted ascending (stable, NaN
    last), as np.argsort(x, kind="stable")[:k] and [-k:] give them."""
    import numpy as np

    nans = np.flatnonzero(np.isnan(x))
    n_finite = len(x) - len(nans)
    first = np.concatenate([_extreme(x, min(k, n_finite), True), nans[:max(0, k - n_finite)]])
    last = np.concatenate([_extreme(x, min(k - len(nans), n_finite), False),
                           nans[max(0, len(nans) - k):]])
    return first, last


def _short(value) -> str:
    """A group's value as the headline prints it: floats to 4 significant digits
    (0.0003162, not 0.00031622776601683794), anything else as str."""
    import numpy as np
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s >= 1 else f"{s:.2f} s"


def _headline(res, plan, setup: float, training: float, writing: float) -> str:
    """What happened: counts, and where the time went (set-up: config, data, checks, plan
    and store; training; writing: the results directory and the report); how the final
    loss (the validation loss with a validation split or folds, else the training loss)
    moves with each swept parameter, the best settings over their replicates (seeds,
    folds, repeats: Results.summary) when there are any, the best and worst runs."""
    from .pipeline.results import REPLICATE_COLUMNS
    table = res.table
    metric = res.default_metric()
    swept = [k for k in plan.config.sweep.params if (table[k] != table[k].iloc[0]).any()]
    replicates = [c for c in REPLICATE_COLUMNS if c in table and (c in swept or c != "seed")
                  and (table[c] != table[c].iloc[0]).any()]
    params = [k for k in swept if k not in replicates]
    metrics = [c for c in table.columns if c.startswith("final_")]
    lines = [f"{len(table):,} runs, {res.steps_trained:,} optimizer steps in "
             f"{_seconds(setup + training + writing)}: set-up {_seconds(setup)}, "
             f"training {_seconds(training)}, writing {_seconds(writing)} "
             f"({plan.backend} backend, {plan.device}); {int(table.diverged.sum()):,} diverged"]
    if "stopped_epoch" in table:     # halving: what the stopped runs would have taken
        from .insight.report import halving_steps
        full = halving_steps(table)
        how = "hyperband" if "bracket" in table else "halving"
        lines[0] += (f"; {how} trained {res.steps_trained:,} steps where the whole grid "
                     f"takes {full:,} ({1 - res.steps_trained / max(full, 1):.0%} saved)")
    lines += [_by_param(table, k, metric) for k in params]
    columns = ["run_id", *swept, *(c for c in replicates if c not in swept), *metrics]
    k = 5
    if replicates:
        summary = res.summary(metric)
        shown = summary[[*params, "n", "diverged", f"{metric}_mean", f"{metric}_ci_low",
                         f"{metric}_ci_high", "rank"]]
        lines.append(f"best settings over their replicates ({', '.join(replicates)}; "
                     f"{len(summary):,} settings; mean and 95% interval of {metric}; "
                     f"rank 1: within noise of the best):")
        lines.append(shown.head(k).to_string(index=False, float_format="%.4g"))
    if len(table) <= 2 * k:
        shown = table[columns].sort_values(metric, kind="stable")
        lines.append(shown.to_string(index=False, float_format="%.4g"))
    else:
        best, worst = _ends(table[metric].to_numpy(dtype=float), k)
        lines.append(f"best {k} runs:")
        lines.append(table.iloc[best][columns].to_string(index=False, float_format="%.4g"))
        lines.append(f"worst {k} runs:")
        lines.append(table.iloc[worst][columns].to_string(index=False, float_format="%.4g"))
    return "\n".join(lines)


def cmd_run(args) -> int:
    start = time.perf_counter()
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite: pass one or the other")
    from .spec.config import load_config
    # The config alone first: its mistakes are reported before sweep loads numpy and
    # pandas, and the plan torch.
    config = load_config(args.config)
    from .pipeline.sweep import prepare
    plan = prepare(config, args.backend, args.device, args.chunk_runs)
    # The imports' objects (about 200,000: torch, pandas, numpy) are never garbage, yet
    # each full collection walked them: 0.15 to 0.35 s a pass, on the 2-core CPU. Frozen
    # for this command only: a process that calls main() keeps its own collector.
    gc.freeze()
    try:
        out = Path(args.out) if args.out else Path("runs") / plan.config.name
        outdir.check_out(out)
        with outdir.locked(out):
            return _run_plan(args, plan, out, start)
    finally:
        gc.unfreeze()


def _run_plan(args, plan, out: Path, start: float) -> int:
    from .insight.report import save_with_report
    from .pipeline.sweep import ChunkFailures, execute
    store = outdir.prepare_out(out, plan, args.resume, args.overwrite)
    if store is None:
        print(f"nothing to resume: {out}/ already holds the finished sweep")
        return 0
    set_up = time.perf_counter()
    try:
        res = execute(plan, progress=sys.stderr.isatty(), store=store, executor=args.executor)
    except ChunkFailures as e:
        for lo, hi, err in e.failed:
            print(f"tinysweep: chunk of runs {lo}..{hi - 1} failed: {err}", file=sys.stderr)
        print(f"tinysweep: the other chunks are kept in {out}/.chunks; rerun with --resume",
              file=sys.stderr)
        return 1
    trained = time.perf_counter()
    with res.summaries_kept():      # the report's summary is the headline's (a million runs: 0.2 s)
        report = save_with_report(res, out)
        store.clear()
        written = time.perf_counter()
        print(_headline(res, plan, set_up - start, trained - set_up, written - trained))
    html = ", report.html" if (out / "report.html").is_file() else ""
    print(f"results: {out}/ (results.csv, results.parquet, summary.csv, curves.npz, "
          f"params.npz, config.yaml{html}); report: {report}")
    return 0


def cmd_diagnose(args) -> int:
    from .spec.config import load_config
    config = load_config(args.config)       # before diagnose imports torch
    from .insight.diagnose import diagnose, write_diagnosis
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-diagnose"
    outdir.check_out(out)
    with outdir.locked(out):
        if outdir.holds_results(out) and not (out / "diagnose.md").is_file():
            raise UserError(f"--out: {out} holds a sweep's results; give the diagnosis its "
                            f"own directory")
        if args.observed:
            from .insight.observed import write_observed
            d = diagnose(config, backend=args.backend, device=args.device,
                         observed=args.observed)
            report = write_observed(d, out)
        else:
            d = diagnose(config, backend=args.backend, device=args.device)
            report = write_diagnosis(d, out)     # written before anything is printed
    print(d)
    print(f"report: {report}")
    return 0


def cmd_report(args) -> int:
    from .insight.report import write_report
    from .pipeline.results import load
    out = Path(args.dir)
    res = load(out)
    with outdir.locked(out, "DIR"):
        report = write_report(res, out)
    print(f"report: {report}")
    return 0


def cmd_export(args) -> int:
    if args.to is not None:
        from .insight.export_tools import export_to
        print(export_to(args.dir, args.to, args.out, args.top))
        return 0
    if args.out is None or args.top is not None:
        raise UserError("export: --run ID or --best takes --out FILE.pt (and no --top)")
    from .insight.export import export_run
    weights, spec = export_run(args.dir, args.out, run_id=args.run, best=args.best)
    print(f"exported: {weights} (state_dict) and {spec} (architecture); load it with "
          f"tinysweep.trainer.insight.export.load_exported({str(weights)!r})")
    return 0


def cmd_tune(args) -> int:
    from .spec.config import load_config
    config = load_config(args.config)
    from .insight.tune import tune
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-tune"
    progress = lambda line: print(f"tinysweep tune: {line}", file=sys.stderr, flush=True)
    study = tune(config, args.trials, args.batch, args.sampler, args.metric, out,
                 args.resume, args.backend, args.device, progress=progress)
    complete = [t for t in study.trials if t.value is not None]
    if complete:
        best = min(complete, key=lambda t: t.value)
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in best.params.items())
        print(f"{len(study.trials)} trials; best: trial {best.number}, {best.value:.4g}, {shown}")
    else:
        print(f"{len(study.trials)} trials; none finished: every one diverged")
    print(f"study: {out / 'optuna.db'} (optuna-dashboard sqlite:///{out / 'optuna.db'}); "
          f"results: {out}/")
    return 0


def cmd_doctor(args) -> int:
    if not Path(args.script).is_file():
        raise UserError(f"{args.script}: file not found")
    from .insight.doctor import run_script  # imports torch
    return run_script(args.script, args.args, args.out)


def entry() -> int:
    """The ``tinysweep`` command's process (its console script, ``python -m tinysweep``):
    main(), with the settings that are the process's to make, and in a library would be
    its caller's. Set before numpy and pyarrow are imported; a user's own values are kept.

    - NUMPY_MADVISE_HUGEPAGE=0: numpy asks transparent huge pages for arrays of 4 MB and
      more, and where the kernel compacts memory to find them at their first touch (THP
      defrag "madvise", as on this project's 2-core VMs) a fresh process's first 256 MB
      took 1.5 to 1.9 s, against 0.09 s in small pages; the million-run line sweep's
      training 9.3 to 9.5 s, against 7.1 to 7.3 s.
    - ARROW_DEFAULT_MEMORY_POOL=system: Arrow's buffers (the table's text columns, the
      summaries) from the C library's malloc, as tables.py's writers take theirs; with
      pyarrow's mimalloc the million-run sweep's writing took 2.6 to 2.7 s, 1.9 to 2.1 s
      with malloc.

    At the end the objects left are frozen: the interpreter's last full collection, which
    walked them for 0.4 s after a million runs, passes them by."""
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    code = main()
    gc.freeze()
    return code


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise UserError("missing command; try 'tinysweep run CONFIG' (see tinysweep --help)")
        commands = {"run": cmd_run, "diagnose": cmd_diagnose, "report": cmd_report,
                    "export": cmd_export, "tune": cmd_tune, "doctor": cmd_doctor}
        return commands[args.command](args)
    except UserError as e:
        print(f"tinysweep: error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"tinysweep: error: {e}; finished chunks are kept, rerun with --resume once "
              f"there is room", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        print("tinysweep: interrupted; finished chunks are kept, rerun with --resume",
              file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of stdout left (``tinysweep run ... | head``): end quietly, as git and grep
    do, with the status of a process that SIGPIPE ended. Everything is written before the
    headline is printed. stdout goes to /dev/null so that the interpreter's flush at exit
    does not fail once more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13
