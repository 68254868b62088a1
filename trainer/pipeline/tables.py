"""A sweep's results table on disk: results.csv, fast, and results.parquet, typed.

The table has one row per run and columns of four kinds: int, float, bool and string
(pandas Categorical, object or str). Everything here is generic over those kinds, not over
the column names.

write_csv writes the bytes of ``table.to_csv(index=False)`` (floats as numpy's str, which
is Python's repr: 0.001, 1e-05, 2.0; bools True/False; NaN as an empty field): each column
turned into to_csv's text with Arrow (or numpy, once per distinct value), each row joined
by Arrow. write_parquet writes ints as int64, floats as float64 (NaN as null), bools as
bool and strings as dictionary-encoded strings, with no pandas index or metadata, for
pandas, polars and DuckDB; read_parquet gives back the frame pd.read_csv gives for
results.csv.

1,000,000 runs on this project's 2-core machine: to_csv 6 to 15 s (the longer for 17-digit
floats), write_csv 0.5 to 0.7 s (a sweep's table, 12 constant columns; 1.1 to 1.6 s for
tests/test_tables.py's, all columns varying), write_parquet 0.25 to 0.7 s. pyarrow.csv's
own write_csv takes 1.7 s, and writes 1.0 as "1", 1e-05 as "0.00001" and True as "true".
The times in the comments below are CPU times for 1e6 values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Rows formatted at a time: about 10 MB of text (a million line runs'), where the whole of
# 10,000,000 runs took 3 GB. Under 32 MB, malloc's largest threshold for mapping a block
# of its own, the chunks' buffers are the heap's, reused: 2**18 rows (37 MB, fresh pages
# each chunk) wrote the million runs in 0.57 to 0.60 s, 2**16 rows in 0.42 to 0.46 s.
_CHUNK_ROWS = 1 << 16

# The buffers the files are formatted in come from the C library's malloc, not from Arrow's
# default pool (mimalloc in pyarrow's Linux wheels), whose fresh pages fault in slowly: the
# million-run line sweep's writing took 3.6 to 3.9 s, 2.6 to 2.7 s with these writers on
# malloc (1.9 to 2.1 s with the whole process on it, as the tinysweep command has it:
# cli.entry), on the 2-core Xeon. Local to these writers: a library leaves its caller's
# default pool as it is.
_POOL = pa.system_memory_pool()


def write_csv(table: pd.DataFrame, f) -> None:
    """Writes ``table`` as CSV to the binary file ``f``: the bytes of ``table.to_csv(index=False)``."""
    cols = [col for _, col in table.items()]
    names = [str(name) for name in table.columns]
    strings = {i: _arrow_column(col) for i, col in enumerate(cols) if _kind(col) == "O"}
    # to_csv quotes a name or string that holds a comma, quote or line break (the rows
    # below are joined unquoted), and in a one-column table writes an empty field as '""'.
    # to_csv writes such tables.
    texts = [pa.array(names, pa.string())] + [s.dictionary for s in strings.values()]
    if len(cols) < 2 or any(pc.any(pc.match_substring_regex(t, r'[,"\r\n]')).as_py()
                            for t in texts):
        f.write(table.to_csv(index=False).encode())
        return
    # A sweep's table is mostly hyperparameters no run varies: the fields of adjacent
    # constant columns are joined once, and each row's text is joined by Arrow from them
    # and the other columns' fields (1e6 runs with 12 constant columns: 0.8 -> 0.4 s,
    # against Arrow's CSV writer, which formats every field of every row).
    constant = {i: _constant_text(col, strings.get(i)) for i, col in enumerate(cols)}
    segments: list[list[int]] = []
    for i in range(len(cols)):
        if segments and constant[i] is not None and constant[segments[-1][-1]] is not None:
            segments[-1].append(i)
        else:
            segments.append([i])
    f.write((",".join(names) + "\n").encode())
    empty = pa.scalar("", pa.string())
    join = pc.JoinOptions(null_handling="replace", null_replacement="")   # NaN: empty field
    for start in range(0, len(table), _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, len(table))
        fields = []
        for seg in segments:
            if constant[seg[0]] is not None:
                fields.append(pa.scalar(",".join(constant[i] for i in seg), pa.string()))
            else:
                i = seg[0]
                column = strings[i][start:stop] if i in strings else \
                    _csv_text(cols[i].iloc[start:stop])
                fields.append(pc.cast(column, pa.string(), memory_pool=_POOL))
        # each row's "\n" joined to its last field first (a missing value's too), not to
        # the rows (a second copy of them: the million runs 0.42-0.46 -> 0.40-0.42 s)
        last = fields[-1]
        fields[-1] = pa.scalar(last.as_py() + "\n", pa.string()) if isinstance(last, pa.Scalar) \
            else pc.binary_join_element_wise(last, empty, "\n", options=join, memory_pool=_POOL)
        if not any(isinstance(x, pa.Array) for x in fields):   # every column constant
            fields[0] = pa.repeat(fields[0], stop - start, memory_pool=_POOL)
        lines = pc.binary_join_element_wise(*fields, ",", options=join, memory_pool=_POOL)
        _, offsets, data = lines.buffers()
        ends = np.frombuffer(offsets, np.int32)[[lines.offset, lines.offset + len(lines)]]
        f.write(memoryview(data)[ends[0]:ends[1]])


def _constant_text(col: pd.Series, strings: pa.DictionaryArray | None) -> str | None:
    """The one field every row of the column holds, as to_csv writes it, or None when the
    rows differ (or are missing, or the table is empty)."""
    if len(col) == 0:
        return None
    if strings is not None:
        if len(strings.dictionary) != 1 or strings.null_count:
            return None
        return strings.dictionary[0].as_py()
    values = col.to_numpy()
    if values.dtype.kind == "f":           # by bits: -0.0 is not 0.0, NaN is not constant
        if np.isnan(values[0]):
            return None
        bits = values.view(f"i{values.itemsize}")
        same = bits == bits[0]
    else:
        same = values == values[0]
    if not same.all():
        return None
    return _text_of_distinct(values[:1]).dictionary[0].as_py()


def _csv_text(col: pd.Series) -> pa.Array:
    """A numeric or bool column's fields as to_csv writes them: a string or dictionary
    array, null for NaN."""
    values = col.to_numpy()
    # A hyperparameter column holds a few grid values: format each once (lr: 13 ms to
    # factorize 1e6 floats, 90 ms to format them all).
    if values.dtype.kind == "b" or _few_distinct(values):
        return _text_of_distinct(values)
    if values.dtype.kind in "iu":
        return pc.cast(pa.array(values), pa.string(), memory_pool=_POOL)   # as str() does
    if values.dtype == np.float64:
        return _float64_text(values)
    return _text_of_distinct(values)   # float32 and the like: numpy's own layout


def _few_distinct(values: np.ndarray) -> bool:
    """Whether a strided sample of about 1000 values holds at most 10% distinct ones. A guess
    that only decides speed: factorizing 1e6 distinct floats costs 110 ms."""
    sample = values[::max(1, len(values) // 1000)]
    return len(pd.unique(sample)) <= len(sample) // 10


def _text_of_distinct(values: np.ndarray) -> pa.DictionaryArray:
    """The values as to_csv writes them (numpy's str of each), formatted once per distinct
    value; null for NaN/None."""
    if values.dtype.kind == "f":   # factorize takes -0.0 for 0.0: tell them apart by their bits
        codes, distinct = pd.factorize(values.view(f"i{values.itemsize}"))
        distinct, missing = distinct.view(values.dtype), np.isnan(values)
    else:
        codes, distinct = pd.factorize(values)
        missing = codes < 0
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=missing),
                                          pa.array(distinct.astype(str), pa.string()))


def _float64_text(x: np.ndarray) -> pa.Array:
    """repr of each float (null for NaN), as to_csv writes it. Arrow formats 1e6 floats in
    90 ms, numpy's str in 770 ms, Python's repr in 520 ms."""
    text = pc.cast(pa.array(x, from_pandas=True), pa.string(), memory_pool=_POOL)
    # Arrow writes repr's shortest round-trip digits, but lays them out differently outside
    # non-integral 1e-4 <= |x| < 1e10: 1.0 as "1", 1e-05 as "0.00001", 1.5e-07 as "1.5e-7",
    # 12345678901.5 as "1.23456789015e+10". Those values are formatted by numpy instead.
    mag = np.abs(x)
    other = ~(((mag >= 1e-4) & (mag < 1e10) & (x != np.trunc(x))) | np.isnan(x))
    if other.any():
        formatted = pc.cast(_text_of_distinct(x[other]), pa.string(), memory_pool=_POOL)
        text = pc.replace_with_mask(text, pa.array(other), formatted, memory_pool=_POOL)
    return text


def write_parquet(table: pd.DataFrame, f) -> None:
    """Writes ``table`` as parquet to the binary file ``f``: ints as int64, floats as float64
    (NaN as null: missing, as in results.csv), bools as bool, strings as dictionary-encoded
    strings; no index, no pandas metadata."""
    arrow = pa.Table.from_arrays([_arrow_column(col) for _, col in table.items()],
                                 names=[str(name) for name in table.columns])
    # Snappy, the default: 33 MB in 0.41 s CPU for 1e6 runs; zstd 23 MB in 0.48 s;
    # uncompressed 48 MB in 0.35 s.
    pq.write_table(arrow, f, memory_pool=_POOL)


def _arrow_column(col: pd.Series) -> pa.Array:
    """The column as a typed Arrow array (see write_parquet)."""
    kind = _kind(col)
    if kind in ("i", "u"):
        return pa.array(col.to_numpy(), pa.int64())
    if kind == "f":
        return pa.array(col.to_numpy(), pa.float64(), from_pandas=True)
    if kind == "b":
        return pa.array(col.to_numpy(), pa.bool_())
    if isinstance(col.dtype, pd.CategoricalDtype):
        text = pa.array(col)   # a dictionary array
    else:
        text = pa.array(col, pa.string(), from_pandas=True)
        if isinstance(text, pa.ChunkedArray):   # pandas' str dtype, concatenated or empty
            text = text.combine_chunks()
        text = text.dictionary_encode()
    return text.cast(pa.dictionary(pa.int32(), pa.string()))


def _kind(col: pd.Series) -> str:
    """numpy's kind of the column's dtype ("i", "u", "f", "b"), or "O" for the others:
    Categorical, object and str."""
    return col.dtype.kind if isinstance(col.dtype, np.dtype) else "O"


# Text columns whose values can all look like numbers: a sweep of one-layer widths writes
# hidden as "16", "32", which pd.read_csv alone would read as int64.
TEXT_COLUMNS = ("hidden",)


def read_csv(path) -> pd.DataFrame:
    """Reads a table's results.csv: pd.read_csv, with TEXT_COLUMNS read as text."""
    return pd.read_csv(path, dtype={c: pd.Series(["x"]).dtype for c in TEXT_COLUMNS})


def read_parquet(path) -> pd.DataFrame:
    """Reads a file written by write_parquet: the frame pd.read_csv gives for the table's
    CSV (strings as read_csv's str dtype, not Categorical; missing values as NaN)."""
    arrow = pq.read_table(path)
    schema = pa.schema([field.with_type(field.type.value_type)
                        if pa.types.is_dictionary(field.type) else field
                        for field in arrow.schema])
    return arrow.cast(schema).to_pandas()
