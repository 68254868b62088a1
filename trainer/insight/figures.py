"""The frame every report figure shares: a matplotlib Figure without pyplot's global state,
log axes labelled in plain text, one layout and one draw into a PNG written atomically.
report.py, report_schedules.py, diagnose.py and observed.py draw through these."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from ..pipeline.results import atomic_write

BLOCK_ROWS = 1 << 16        # curves scanned this many runs at a time: no [runs, epochs] copy
DPI = 110                   # the figures' resolution, for the layout and the PNG alike


def _figure(n_panels: int, width: float = 4.6, height: float = 3.6, sharey: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure   # the object API: no global pyplot state
    fig = Figure(figsize=(width * n_panels, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)   # one renderer for the layout and the drawing (see _save)
    axes = fig.subplots(1, n_panels, squeeze=False, sharey=sharey)[0]
    return fig, axes


def _save(fig, path: Path) -> Path:
    """Lays ``fig`` out once and draws it once into a PNG at ``path``: savefig with a layout
    engine draws every artist once more to lay it out (the same pixels; 0.3 s of the 1.5 s
    that drawing the million-run line sweep's plots takes on the 2-core CPU)."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _finite_range(values: np.ndarray, rows: np.ndarray | None = None):
    """(min, max) of the finite numbers in ``values`` (or in its ``rows``), as floats, or
    None; BLOCK_ROWS rows at a time, so a million runs' curves are never copied whole."""
    lo, hi = np.inf, -np.inf
    n = len(values) if rows is None else len(rows)
    for start in range(0, n, BLOCK_ROWS):
        part = slice(start, start + BLOCK_ROWS)
        block = np.asarray(values[part] if rows is None else values[rows[part]])
        block = block[np.isfinite(block)]
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return (lo, hi) if lo <= hi else None


def _log_y(ax, values, rows: np.ndarray | None = None) -> None:
    """A log y scale when the finite ``values`` (its ``rows``) are positive and span 10x."""
    span = _finite_range(np.asarray(values), rows)
    if span and span[0] > 0 and span[1] / span[0] >= 10:
        _log_scale(ax, "y", *span)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
MINOR_DECADES = 2           # a log axis over more decades than this: no minor ticks


def _log_scale(ax, which: str, lo: float, hi: float) -> None:
    """A log scale on ``ax``'s ``which`` ("x" or "y") axis for data from ``lo`` to ``hi``.
    Labels as 10⁻³ in plain text, not matplotlib's mathtext (whose parser took 0.2 to 0.4 s
    of the million-run report); minor ticks only over a few decades, where one can read a
    value between two labels: a tick is 5 artists, and the minor ones over wide spans took
    0.5 s of that report's 1.9 s (2-core CPU)."""
    from matplotlib import ticker
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(_unicode_log_formatter()())
    if np.log10(hi / lo) > MINOR_DECADES:
        axis.set_minor_locator(ticker.NullLocator())
    else:
        axis.set_minor_formatter(_unicode_log_formatter()(labelOnlyBase=False))


@functools.cache
def _unicode_log_formatter():
    """LogFormatterSciNotation writing plain text: 10⁻³, 2×10⁻³."""
    from matplotlib import ticker

    class UnicodeLogFormatter(ticker.LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            text = super().__call__(x, pos)            # "$\\mathdefault{2\\times10^{-3}}$"
            if not text.startswith("$"):
                return text
            body = text.strip("$").removeprefix(r"\mathdefault{").removesuffix("}")
            coeff, _, power = body.rpartition(r"\times")
            base, _, exp = power.partition("^")
            return f"{coeff}×" * bool(coeff) + base + exp.strip("{}").translate(SUPERSCRIPT)

    return UnicodeLogFormatter
