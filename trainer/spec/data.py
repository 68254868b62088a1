"""Training data: built-in generators, CSV/NPZ loading, checks and the validation split.

``load_data`` turns the ``data`` section of a config into a ``Dataset`` of float32
tensors. Every problem with the user's input raises ``UserError`` with a one-line
message naming the key, value or file; anything else escaping is a bug.

Importing this module imports no numpy, pandas or torch (each function that uses one
imports it): config checking reads ``SOURCES`` and ``check_params`` from here, and so
``tinysweep run`` reports a bad config in 0.1 s, not the 2 s it took to import torch first
(numpy alone: 0.2 s) on the 2-core CPU.
"""

from __future__ import annotations

import math
import numbers
import pathlib
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UserError, _suggest

if TYPE_CHECKING:
    import torch

SOURCES = ("line", "heart_rate", "moons", "circles", "xor", "blobs", "spirals", "csv", "npz")
# The source a resolved config records for data given in memory (tinysweep.run(data=...)).
MEMORY = "memory"
# The arrays of data given in memory, when saved beside the results (save_data=True): a
# config of source memory read from that folder loads them, so --resume works there.
SAVED_DATA = "data.npz"
LOSSES = ("mse", "bce_with_logits", "cross_entropy")


@dataclass(frozen=True)
class Dataset:
    """A train/validation split, all float32.

    x_train [n_train, d], y_train [n_train] (or [n_train, k] for k regression outputs),
    x_val [n_val, d], y_val likewise; n_val may be 0 (then x_val is [0, d]). feature_names
    has d entries. n_outputs: the model's outputs: k targets (mse), K classes
    (cross_entropy: y holds the class, 0..K-1, as a float), else 1.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    feature_names: tuple[str, ...]
    n_outputs: int = 1

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_val(self) -> int:
        return self.x_val.shape[0]

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean [d], std [d]) of the training rows, std unbiased as ``Tensor.std``.

        A constant feature (or a single training row, whose std is NaN) gets std 1
        and its own value as mean, so it is centred to exactly 0 and never divided
        by a rounding-error-sized std.
        """
        import torch

        x = self.x_train
        mean = x.mean(dim=0)
        # One row has no spread: skip torch's std, which would warn and give NaN.
        std = x.std(dim=0) if len(x) > 1 else torch.ones_like(mean)
        # Compare min/max rather than std == 0: float32 std of a constant column can
        # come out as ~1e-8 instead of 0, which would blow the feature up.
        constant = x.amax(dim=0) == x.amin(dim=0)
        mean = torch.where(constant, x[0], mean)
        std = torch.where(constant, torch.ones_like(std), std)
        return mean, std


# ---------------------------------------------------------------- parameter checks


def _number(key, value):
    # bool is an int subclass, but `noise: true` is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"data.params.{key}: expected a number, got {value!r}")
    return float(value)


def _nonneg(key, value):
    value = _number(key, value)
    if value < 0:
        raise UserError(f"data.params.{key}: expected a number >= 0, got {value!r}")
    return value


def _positive(key, value):
    value = _number(key, value)
    if value <= 0:
        raise UserError(f"data.params.{key}: expected a number > 0, got {value!r}")
    return value


MAX_ROWS = 10**8   # 400 MB a float32 feature column: far past "tiny", still in memory


def _count(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_ROWS:
        raise UserError(f"data.params.{key}: expected an integer in [1, 10**8], got {value!r}")
    return int(value)


def _text(key, value):
    if not isinstance(value, str) or not value:
        raise UserError(f"data.params.{key}: expected a non-empty string, got {value!r}")
    return value


_REQUIRED = object()
MAX_CLASSES = 1000


def _classes(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 2 <= value <= MAX_CLASSES:
        raise UserError(f"data.params.{key}: expected an integer in [2, {MAX_CLASSES}], got {value!r}")
    return int(value)


def _features(key, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= 1000:
        raise UserError(f"data.params.{key}: expected an integer in [1, 1000], got {value!r}")
    return int(value)


def _targets(key, value):
    """A csv's target: one column name, or a list of them (several regression outputs)."""
    if isinstance(value, list):
        if not value or len(set(map(str, value))) != len(value):
            raise UserError(f"data.params.{key}: expected a column name or a list of "
                            f"distinct column names, got {value!r}")
        return [_text(key, v) for v in value]
    return _text(key, value)

# source -> {param: (default, checker)}
_PARAMS = {
    "line": {"slope": (-4.0, _number), "intercept": (0.0, _number), "n": (1000, _count),
             "noise": (0.05, _nonneg), "x0": (0.0, _number), "x1": (1.0, _number)},
    "heart_rate": {"n": (1000, _count), "mean": (92.0, _number), "std": (15.0, _positive),
                   "threshold": (91.0, _number)},
    "moons": {"n": (1000, _count), "noise": (0.1, _nonneg)},
    "circles": {"n": (1000, _count), "noise": (0.1, _nonneg), "factor": (0.5, _number)},
    "xor": {"n": (1000, _count), "noise": (0.1, _nonneg)},
    "blobs": {"n": (1000, _count), "classes": (3, lambda k, v: _classes(k, v)),
              "features": (2, lambda k, v: _features(k, v)), "spread": (1.0, _positive)},
    "spirals": {"n": (1000, _count), "classes": (3, lambda k, v: _classes(k, v)),
                "noise": (0.1, _nonneg)},
    "csv": {"path": (_REQUIRED, _text), "target": (_REQUIRED, lambda k, v: _targets(k, v))},
    "npz": {"path": (_REQUIRED, _text)},
    # data given in memory: what the resolved config records of it (from_memory's params)
    "memory": {"rows": (_REQUIRED, _count), "features": (_REQUIRED, _count),
               "columns": (_REQUIRED, lambda key, value: list(value)),
               "sha256": (_REQUIRED, _text)},
}


def _did_you_mean(word: str, choices) -> str:
    """errors' suggestion of the nearest choice, else the choices."""
    return _suggest(word, choices).removeprefix("; ") or "expected one of " + ", ".join(choices)


def check_params(source: str, params) -> dict:
    """Fill defaults into ``params`` and check every value against _PARAMS[source]."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise UserError(f"data.params: expected a mapping, got {params!r}")
    spec = _PARAMS[source]
    for key in params:
        if key not in spec:
            raise UserError(f"data.params.{key}: unknown key; {_did_you_mean(str(key), spec)}")
    missing = [k for k, (default, _) in spec.items() if default is _REQUIRED and k not in params]
    if missing:
        also = f"; also missing {', '.join(missing[1:])}" if len(missing) > 1 else ""
        raise UserError(f"data.params.{missing[0]}: required for source {source!r}{also}")
    return {k: check(k, params.get(k, default)) for k, (default, check) in spec.items()}


# ---------------------------------------------------------------- generators
# Each returns (x [n, d] float64, y [n] float64, feature names).


def _line(p, rng):
    import numpy as np

    x = np.linspace(p["x0"], p["x1"], p["n"])
    y = p["slope"] * x + p["intercept"] + p["noise"] * rng.standard_normal(p["n"])
    return x[:, None], y, ("x",)


def _heart_rate(p, rng):
    import numpy as np

    rate = p["mean"] + p["std"] * rng.standard_normal(p["n"])
    return rate[:, None], (rate >= p["threshold"]).astype(np.float64), ("heart_rate",)


def _shuffled_with_noise(x, y, noise, rng):
    # Like sklearn: classes are generated in blocks, so shuffle; then add noise.
    x = x + noise * rng.standard_normal(x.shape)
    order = rng.permutation(len(y))
    return x[order], y[order], ("x1", "x2")


def _moons(p, rng):
    import numpy as np

    n_out = p["n"] // 2
    n_in = p["n"] - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    return _shuffled_with_noise(x, y, p["noise"], rng)


def _circles(p, rng):
    import numpy as np

    n_out = p["n"] // 2
    n_in = p["n"] - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        p["factor"] * np.stack([np.cos(t_in), np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    return _shuffled_with_noise(x, y, p["noise"], rng)


def _xor(p, rng):
    import numpy as np

    x = rng.uniform(-1.0, 1.0, size=(p["n"], 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float64)
    return x + p["noise"] * rng.standard_normal(x.shape), y, ("x1", "x2")


def _blobs(p, rng):
    """K Gaussian clusters of ``spread``, centres drawn in [-5, 5]^features; label = cluster."""
    import numpy as np

    k, d = p["classes"], p["features"]
    centres = rng.uniform(-5.0, 5.0, size=(k, d))
    y = np.arange(p["n"]) % k
    x = centres[y] + p["spread"] * rng.standard_normal((p["n"], d))
    order = rng.permutation(p["n"])
    names = ("x1", "x2") if d == 2 else tuple(f"x{j + 1}" for j in range(d))
    return x[order], y[order].astype(np.float64), names


def _spirals(p, rng):
    """K interleaved spiral arms (two features); label = arm."""
    import numpy as np

    k, n = p["classes"], p["n"]
    y = np.arange(n) % k
    t = np.repeat(np.linspace(0.0, 1.0, -(-n // k)), k)[:n]      # position along the arm
    angle = 4.0 * t + 2 * np.pi * y / k
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
    x = x + p["noise"] * rng.standard_normal(x.shape)
    order = rng.permutation(n)
    return x[order], y[order].astype(np.float64), ("x1", "x2")


_GENERATORS = {"line": _line, "heart_rate": _heart_rate, "moons": _moons,
               "circles": _circles, "xor": _xor, "blobs": _blobs, "spirals": _spirals}


# ---------------------------------------------------------------- files


def _resolve(path: str, base_dir: pathlib.Path) -> pathlib.Path:
    resolved = pathlib.Path(base_dir) / pathlib.Path(path).expanduser()  # absolute wins
    if not resolved.is_file():
        raise UserError(f"data.params.path: file not found: {resolved}")
    return resolved


def _load_csv(p, base_dir):
    file, where = _resolve(p["path"], base_dir), f"data.params.path: {p['path']}"
    import numpy as np
    import pandas as pd

    try:
        frame = pd.read_csv(file)
    except pd.errors.EmptyDataError:
        raise UserError(f"{where} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{where}: cannot read as CSV ({str(e).splitlines()[0]})") from None
    if frame.empty:  # checked first: a header-only file has all columns of dtype object
        raise UserError(f"{where} has no data rows")
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    targets = p["target"] if isinstance(p["target"], list) else [p["target"]]
    for target in targets:
        if target not in columns:
            raise UserError(f"data.params.target: column {target!r} not in {p['path']}; "
                            f"available columns: {', '.join(columns)}")
        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise UserError(f"data.params.target: column {target!r} in {p['path']} is not "
                            f"numeric (dtype {frame[target].dtype})")
    names = tuple(c for c in columns if c not in targets and pd.api.types.is_numeric_dtype(frame[c]))
    if not names:
        raise UserError(f"{where} has no numeric feature columns besides target "
                        f"{', '.join(map(repr, targets))}")
    x = frame[list(names)].to_numpy(dtype=np.float64)
    y = frame[targets].to_numpy(dtype=np.float64)
    y = y[:, 0] if not isinstance(p["target"], list) else y
    return x, y, names, where, (*names, *targets)


def _load_npz(p, base_dir):
    import numpy as np

    file, where = _resolve(p["path"], base_dir), f"data.params.path: {p['path']}"
    try:
        archive = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{where}: cannot load as .npz ({str(e).splitlines()[0]})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy gives a bare array
        raise UserError(f"{where} is not an .npz archive (expected arrays X and y)")
    with archive:
        present = list(archive.keys())
        for key in ("X", "y"):
            if key not in present:
                raise UserError(f"{where} has no array {key!r}; "
                                f"arrays present: {', '.join(present) or 'none'}")
        try:
            x, y = archive["X"], archive["y"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            # Object arrays land here: allow_pickle=False refuses to load them.
            raise UserError(f"{where}: cannot load ({str(e).splitlines()[0]})") from None
    for key, a in (("X", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise UserError(f"{where}: array {key!r} has dtype {a.dtype}; expected real numbers")
    x, y, columns = _checked_arrays(x, y, where, "array 'X'", "array 'y'")
    return x, y, columns[:x.shape[1]], where, columns


def _checked_arrays(x, y, where: str, x_name: str, y_name: str):
    """X [n] or [n, d] and y [n], [n, 1] or [n, k] as float64 [n, d] and [n] or [n, k],
    and their column names (x or x0.., then y or y0..); a UserError for other shapes or
    row counts. ``x_name``, ``y_name``: how the messages name the arrays."""
    import numpy as np
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise UserError(f"{where}: {x_name} has shape {tuple(x.shape)}; expected [n] or [n, d] "
                        f"with d >= 1")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.ndim == 2 and y.shape[1] == 0:
        raise UserError(f"{where}: {y_name} has shape {tuple(y.shape)}; expected [n] or [n, k]")
    if len(x) != len(y):
        raise UserError(f"{where}: X has {len(x)} rows but y has {len(y)}")
    d = x.shape[1]
    names = ("x",) if d == 1 else tuple(f"x{i}" for i in range(d))
    targets = ("y",) if y.ndim == 1 else tuple(f"y{i}" for i in range(y.shape[1]))
    return (np.ascontiguousarray(x, np.float64), np.ascontiguousarray(y, np.float64),
            names + targets)


# ---------------------------------------------------------------- data in memory


@dataclass(frozen=True, eq=False)
class MemoryData:
    """Data given in memory (``tinysweep.run(config, data=...)``): x [n, d] and y [n],
    float64 as given, not yet checked for NaN or labels (load_data does, as for files)."""

    x: object                       # numpy [n, d] float64
    y: object                       # numpy [n] float64
    columns: tuple[str, ...]        # the d feature names, then the target's

    def params(self) -> dict:
        """What the resolved config records: shape, column names and a content hash (so
        --resume refuses other data, as it refuses another config)."""
        import hashlib
        digest = hashlib.sha256()
        for a in (self.x, self.y):
            digest.update(repr(a.shape).encode())
            digest.update(a.tobytes())
        digest.update("\0".join(self.columns).encode())
        return {"rows": len(self.y), "features": self.x.shape[1],
                "columns": list(self.columns), "sha256": digest.hexdigest()}

    def save(self, f) -> None:
        """Writes the arrays as an .npz (X, y and the column names) to the binary file f."""
        import numpy as np
        np.savez(f, X=self.x, y=self.y, columns=np.array(self.columns))


def _as_array(value, what: str):
    """A numpy array of real numbers from a numpy array, a torch tensor or a list."""
    import numpy as np
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise UserError(f"data: {what} cannot be read as an array ({str(e).splitlines()[0]})") from None
    if a.dtype.kind not in "biuf":
        raise UserError(f"data: {what} has dtype {a.dtype}; expected real numbers")
    return a


def from_memory(data, target: str | None = None) -> MemoryData:
    """Checks data given in memory: an (X, y) pair of numpy arrays or torch tensors (X [n]
    or [n, d], y [n] or [n, k]), or a pandas DataFrame whose column ``target`` is y and
    whose other numeric columns are the features. Raises UserError naming the problem."""
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        return _from_frame(data, target)
    if target is not None:
        raise UserError("target: only used with data given as a pandas DataFrame")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise UserError(f"data: expected an (X, y) pair of arrays or a pandas DataFrame "
                        f"with target=..., got {type(data).__name__}")
    x, y, columns = _checked_arrays(_as_array(data[0], "X"), _as_array(data[1], "y"),
                                    "data", "X", "y")
    if len(y) == 0:
        raise UserError("data: X and y have no rows")
    return MemoryData(x, y, columns)


def _from_frame(frame, target: str | None) -> MemoryData:
    import numpy as np
    import pandas as pd
    columns = [str(c) for c in frame.columns]
    if target is None:
        raise UserError("target: name the DataFrame's label column, e.g. target='label'")
    if target not in columns:
        raise UserError(f"target: column {target!r} not in the DataFrame; available columns: "
                        f"{', '.join(columns) or 'none'}")
    frame = frame.set_axis(columns, axis=1)
    if not pd.api.types.is_numeric_dtype(frame[target]):
        raise UserError(f"target: column {target!r} is not numeric (dtype {frame[target].dtype})")
    names = tuple(c for c in columns if c != target and pd.api.types.is_numeric_dtype(frame[c]))
    if not names:
        raise UserError(f"data: the DataFrame has no numeric feature columns besides target "
                        f"{target!r}")
    if frame.empty:
        raise UserError("data: the DataFrame has no rows")
    x = frame[list(names)].to_numpy(dtype=np.float64, na_value=np.nan)
    y = frame[target].to_numpy(dtype=np.float64, na_value=np.nan)
    return MemoryData(np.ascontiguousarray(x), np.ascontiguousarray(y), (*names, target))


def saved_memory(params: dict, base_dir: pathlib.Path) -> MemoryData:
    """The data of a config with source memory: SAVED_DATA in ``base_dir`` when it holds the
    same data (by hash), else a UserError saying to pass the data again."""
    import numpy as np
    file = pathlib.Path(base_dir) / SAVED_DATA
    hint = (f"data.source: memory: this sweep's data ({params['rows']} rows, sha256 "
            f"{params['sha256'][:12]}) was given in memory")
    if not file.is_file():
        raise UserError(f"{hint}; pass it again (tinysweep.run(config, data=...)), or keep "
                        f"it with save_data=True")
    try:
        with np.load(file, allow_pickle=False) as f:
            saved = MemoryData(f["X"], f["y"], tuple(str(c) for c in f["columns"]))
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{file}: cannot load the saved data ({str(e).splitlines()[0]})") from None
    if saved.params()["sha256"] != params["sha256"]:
        raise UserError(f"{hint}, and {file} holds other data")
    return saved


# ---------------------------------------------------------------- entry point


def load_data(source: str, params: dict, *, seed: int, val_fraction: float, loss: str,
              base_dir: pathlib.Path, memory: MemoryData | None = None) -> Dataset:
    """Build or load the data named by ``source`` and split off a validation set.

    params: the generator's or file's parameters (missing keys get defaults).
    seed: seeds both the generator and the (separate) choice of validation rows.
    val_fraction: in [0, 1); round(val_fraction * n) random rows become x_val/y_val,
        the rest stay in x_train/y_train in their original order.
    loss: "mse", "bce_with_logits" (0/1 labels) or "cross_entropy" (labels 0..K-1).
    base_dir: folder that relative file paths are resolved against (the config's).
    memory: for source "memory", the data given in memory (else SAVED_DATA in base_dir).
    """
    import numpy as np

    if source not in SOURCES and source != MEMORY:
        raise UserError(f"data.source: unknown source {source!r}; {_did_you_mean(str(source), SOURCES)}")
    if loss not in LOSSES:
        raise UserError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real)
            or not 0 <= val_fraction < 1):
        raise UserError(f"data.val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    p = check_params(source, params)

    if source == "csv":
        x, y, names, where, columns = _load_csv(p, base_dir)
    elif source == "npz":
        x, y, names, where, columns = _load_npz(p, base_dir)
    elif source == MEMORY:
        memory = memory if memory is not None else saved_memory(p, base_dir)
        x, y, columns, where = memory.x, memory.y, memory.columns, "data (in memory)"
        names = columns[:x.shape[1]]
    else:
        x, y, names = _GENERATORS[source](p, np.random.default_rng(seed))
        where, columns = f"data.source: {source}", (*names, "target")

    n = len(y)
    if n == 0:
        raise UserError(f"{where} has no data rows")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        x, y = x.astype(np.float32), y.astype(np.float32)
    # Checked after the float32 cast so values too large for float32 are caught too.
    for j, column in enumerate([*x.T, *(y.T if y.ndim == 2 else [y])]):
        if not np.isfinite(column).all():
            raise UserError(f"{where} has NaN or inf in column {columns[j]!r}")
    n_outputs = 1 if y.ndim == 1 else y.shape[1]
    if n_outputs > 1 and loss != "mse":
        raise UserError(f"{where} has {n_outputs} targets; loss {loss!r} takes one (several "
                        f"targets are mse regression outputs)")
    if loss == "bce_with_logits":
        bad = y[(y != 0) & (y != 1)]
        if len(bad):
            raise UserError(f"{where} has {len(bad)} labels not 0 or 1 (e.g. {float(bad[0]):g}); "
                            f"loss 'bce_with_logits' needs 0/1 labels")
    if loss == "cross_entropy":
        n_outputs = _classes_of(y, where)

    n_val = round(val_fraction * n)
    if n - n_val < 1:
        raise UserError(f"data.val_fraction: {val_fraction!r} of {n} rows leaves no training rows")
    # A stream separate from the generator's, so the split doesn't shift the data.
    val_idx = np.sort(np.random.default_rng([seed, 1]).choice(n, n_val, replace=False))
    train = np.ones(n, dtype=bool)
    train[val_idx] = False
    import torch    # only here: every mistake above is reported without loading torch

    t = torch.from_numpy
    return Dataset(x_train=t(x[train]), y_train=t(y[train]), x_val=t(x[val_idx]),
                   y_val=t(y[val_idx]), feature_names=tuple(names), n_outputs=n_outputs)


def _classes_of(y, where: str) -> int:
    """K, the classes of cross_entropy labels y [n] (whole numbers 0..K-1): max + 1. A class
    with no row is a warning on stderr, not an error (a split may miss a rare class)."""
    import sys

    import numpy as np

    bad = y[(y != np.round(y)) | (y < 0)]
    if len(bad):
        raise UserError(f"{where} has {len(bad)} labels that are not class numbers 0, 1, 2, "
                        f"... (e.g. {float(bad[0]):g}); loss 'cross_entropy' needs whole-number "
                        f"labels")
    k = int(y.max()) + 1
    if k < 2:
        raise UserError(f"{where} has a single class ({k - 1:g}); loss 'cross_entropy' needs "
                        f"at least 2")
    if k > MAX_CLASSES:
        raise UserError(f"{where} has labels up to {k - 1}; at most {MAX_CLASSES} classes")
    empty = np.flatnonzero(np.bincount(y.astype(np.int64), minlength=k) == 0)
    if len(empty):
        print(f"tinysweep: warning: {where}: class {', '.join(map(str, empty[:5]))} has no "
              f"row (labels 0..{k - 1}); the model still has {k} outputs", file=sys.stderr)
    return k
