"""The ``tinysweep`` command.

    tinysweep run CONFIG [--out DIR] [--backend auto|reference|torch|triton]
                         [--device cpu|cuda] [--chunk-runs N] [--executor local|ray]
                         [--resume] [--overwrite]
    tinysweep diagnose CONFIG [--out DIR] [--backend ...] [--device ...]
    tinysweep report DIR                          plots and report.md, again
    tinysweep export DIR (--run ID | --best) --out model.pt

Exit 0 when the sweep finished (even if some runs diverged); exit 2 with one line on stderr
for a bad config, bad data or bad arguments, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .sweep import BACKENDS, DEVICES, ChunkFailures, Plan, execute, prepare
from .report import write_report
from .results import RESULT_FILES, Results, load
from .store import ChunkStore


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
                     help="auto (default): triton on CUDA when it can train the model, "
                          "else torch")
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
    report = sub.add_parser("report", help="write the plots and report.md of a results directory")
    report.add_argument("dir", help="a results directory")
    export = sub.add_parser("export", help="save one run's model: a state_dict and its JSON")
    export.add_argument("dir", help="a results directory")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, metavar="ID", help="the run_id to export")
    which.add_argument("--best", action="store_true",
                       help="the finished run with the lowest final train loss")
    export.add_argument("--out", required=True, help="the state_dict file (e.g. model.pt); "
                        "the architecture goes beside it as .json")
    return ap


def _check_out(out: Path) -> None:
    """Refuses an --out that cannot become a results directory."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out: cannot create {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out: cannot write in {parent}")


def _holds_results(out: Path) -> bool:
    return any((out / name).exists() for name in RESULT_FILES) or ChunkStore(out).exists()


def _by_param(table, param: str, metric: str = "final_train_loss", bins: int = 5) -> str:
    """One line per value of ``param`` (or per range, for many numeric values): the median
    and range of ``metric`` over the runs that have it."""
    values = table[param]
    if values.nunique() > 8 and values.dtype.kind in "if":
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
        keys = pd.cut(values, edges, include_lowest=True)
    else:
        keys = values
    rows = []
    for _, group in table.groupby(keys, observed=True, sort=True):
        lo, hi = group[param].min(), group[param].max()
        label = str(lo) if lo == hi else f"{lo:.4g}..{hi:.4g}"
        m = group[metric]
        rows.append((label, m.median(), m.min(), m.max(), len(group)))
    width = max(len(r[0]) for r in rows)
    lines = [f"{metric} by {param} (median, min..max over runs):"]
    lines += [f"  {k:>{width}}  {med:.4g}  ({lo:.4g}..{hi:.4g}, {n} runs)"
              for k, med, lo, hi, n in rows]
    return "\n".join(lines)


def _headline(res: Results, seconds: float, plan: Plan) -> str:
    """What happened: counts and time, how the final loss moves with each swept parameter,
    the best and worst runs."""
    table = res.table
    swept = [k for k in plan.config.sweep.params if table[k].nunique() > 1]
    metrics = [c for c in table.columns if c.startswith("final_")]
    lines = [f"{len(table)} runs, {int(table.steps.sum()):,} optimizer steps in {seconds:.2f} s "
             f"({plan.backend} backend, {plan.device}); {int(table.diverged.sum())} diverged"]
    lines += [_by_param(table, k) for k in swept]
    shown = table[["run_id", *swept, *metrics]].sort_values("final_train_loss")
    k = 5
    if len(shown) <= 2 * k:
        lines.append(shown.to_string(index=False, float_format="%.4g"))
    else:
        lines.append(f"best {k} runs:")
        lines.append(shown.head(k).to_string(index=False, float_format="%.4g"))
        lines.append(f"worst {k} runs:")
        lines.append(shown.tail(k).to_string(index=False, float_format="%.4g"))
    return "\n".join(lines)


def cmd_run(args) -> int:
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite: pass one or the other")
    plan = prepare(args.config, args.backend, args.device, args.chunk_runs)
    out = Path(args.out) if args.out else Path("runs") / plan.config.name
    _check_out(out)
    store = ChunkStore(out)
    if args.resume:
        store.check_matches(plan)
        if (out / "results.csv").is_file() and not store.exists():
            print(f"nothing to resume: {out}/ already holds the finished sweep")
            return 0
    else:
        if _holds_results(out) and not args.overwrite:
            raise UserError(f"--out: {out} already holds results; pass --resume to finish "
                            f"them or --overwrite to replace them")
        for name in RESULT_FILES:          # --overwrite: what the new sweep will replace
            (out / name).unlink(missing_ok=True)
        (out / "report.md").unlink(missing_ok=True)
        shutil.rmtree(out / "plots", ignore_errors=True)
        store.clear()                      # and chunks, or a manifest of a failed start
    start = time.perf_counter()
    try:
        res = execute(plan, progress=sys.stderr.isatty(), store=store, executor=args.executor)
    except ChunkFailures as e:
        for lo, hi, err in e.failed:
            print(f"tinysweep: chunk of runs {lo}..{hi - 1} failed: {err}", file=sys.stderr)
        print(f"tinysweep: the other chunks are kept in {out}/.chunks; rerun with --resume",
              file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    res.save(out)
    store.clear()
    print(_headline(res, seconds, plan))
    report = write_report(res, out)
    print(f"results: {out}/ (results.csv, curves.npz, params.npz, config.yaml); "
          f"report: {report}")
    return 0


def cmd_diagnose(args) -> int:
    from .diagnose import diagnose, format_findings, write_diagnosis
    from .config import load_config
    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-diagnose"
    _check_out(out)
    if _holds_results(out) and not (out / "diagnose.md").is_file():
        raise UserError(f"--out: {out} holds a sweep's results; give the diagnosis its own "
                        f"directory")
    d = diagnose(config, backend=args.backend, device=args.device)
    print(format_findings(d))
    print(f"report: {write_diagnosis(d, out)}")
    return 0


def cmd_report(args) -> int:
    out = Path(args.dir)
    print(f"report: {write_report(load(out), out)}")
    return 0


def cmd_export(args) -> int:
    from .export import export_run
    weights, spec = export_run(args.dir, args.out, run_id=args.run, best=args.best)
    print(f"exported: {weights} (state_dict) and {spec} (architecture); load it with "
          f"tinysweep.trainer.export.load_exported({str(weights)!r})")
    return 0


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise UserError("missing command; try 'tinysweep run CONFIG' (see tinysweep --help)")
        commands = {"run": cmd_run, "diagnose": cmd_diagnose, "report": cmd_report,
                    "export": cmd_export}
        return commands[args.command](args)
    except UserError as e:
        print(f"tinysweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinysweep: interrupted; finished chunks are kept, rerun with --resume",
              file=sys.stderr)
        return 130
