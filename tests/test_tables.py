"""results.csv and results.parquet: to_csv's bytes, and both files read back to the table."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinysweep.trainer.pipeline import tables

# Floats whose text is easy to get wrong: exponents, the shortest repr, integral values,
# signed zero, subnormals, the ends of the range where Arrow's layout differs from repr's.
TRICKY = [1e-05, 0.1 + 0.2, 1e300, 5e-324, -0.0, 0.0, 2.0, -3.0, 1e-4, 9.999999999999999e-05,
          1.5e-07, 1e-09, 1e15, 1e16, 9007199254740993.0, 12345678901.5, 1e10 - 0.5,
          123456789012345.6, 2.0**63, -1e-300, 0.001, 9.246e-05, np.inf, -np.inf, np.nan]


def random_table(n: int, seed: int = 0, wide: bool = True) -> pd.DataFrame:
    """A sweep's results table of n runs: grid hyperparameters, metrics with NaN for diverged
    runs, seeds up to 2**63 - 1, strings as Categorical, str and object. ``wide``: val_loss
    spans 1e-12 to 1e18, where half the floats need the slow path."""
    rng = np.random.default_rng(seed)

    def pick(values):
        return np.asarray(values)[rng.integers(0, len(values), n)]

    table = pd.DataFrame({
        "run_id": np.arange(n, dtype=np.int64),
        "lr": pick([1e-05, 0.0001, 0.001, 0.003, 0.1 + 0.2, 1.0]),
        "momentum": pick([0.0, 0.9, -0.0]),
        "beta1": pick([0.9]), "beta2": pick([0.999]), "eps": pick([1e-08, 1e-300]),
        "weight_decay": pick([0.0, 5e-324]), "gamma": pick([0.1, 2.0]),
        "batch_size": pick([32, 64, 127]), "seed": pick([0, 1, 2**63 - 1, 2**62 + 12345]),
        "step_size": pick([10]), "epochs": pick([3, 20]),
        "shuffle": pick([True, False]), "nesterov": pick([False]),
        "input_norm": pd.Categorical(pick(["none", "standardize", "batchnorm"])),
        "optimizer": pd.Series(pick(["sgd", "adam", "adamw"]), dtype="str"),
        "lr_schedule": pd.Series(pick(["constant", "step"]), dtype=object),
    })
    for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        value = rng.random(n).astype(np.float32).astype(np.float64)   # as the backends give
        value[rng.random(n) < 0.2] = np.nan
        table[f"final_{name}"] = value
    table.loc[::7, "final_train_accuracy"] = 1.0          # integral floats among distinct ones
    if wide:
        table["final_val_loss"] = table["final_val_loss"] * 10.0 ** rng.uniform(-12, 18, n)
    table["diverged"] = table["final_train_loss"].isna()
    table["steps"] = rng.integers(0, 10**6, n)
    if n >= 3:                                           # a missing string, not a whole column
        table.loc[1, "input_norm"] = np.nan
        table.loc[2, "lr_schedule"] = np.nan
    return table


def expected(table: pd.DataFrame) -> pd.DataFrame:
    """The table as pd.read_csv gives it back: strings as pandas 3's str dtype."""
    return table.astype({name: "str" for name, col in table.items()
                         if col.dtype.kind not in "iufb"})


def csv_bytes(table: pd.DataFrame) -> bytes:
    f = io.BytesIO()
    tables.write_csv(table, f)
    return f.getvalue()


def parquet_read_back(table: pd.DataFrame) -> pd.DataFrame:
    f = io.BytesIO()
    tables.write_parquet(table, f)
    return tables.read_parquet(io.BytesIO(f.getvalue()))


@pytest.mark.parametrize("n", [0, 1, 2, 17, 997, 10_007])
def test_csv_and_parquet_read_back_to_the_table(n):
    table = random_table(n, seed=n)
    from_csv = pd.read_csv(io.BytesIO(csv_bytes(table)))
    from_parquet = parquet_read_back(table)
    pd.testing.assert_frame_equal(from_parquet, expected(table), check_exact=True)
    # read_csv cannot tell an empty table's column types: it gives them all as object.
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_exact=True, check_dtype=n > 0,
                                  check_index_type=n > 0)


@pytest.mark.parametrize("n", [0, 1, 2, 17, 997, 10_007])
def test_csv_is_to_csv_bytes(n):
    table = random_table(n, seed=n)
    assert csv_bytes(table) == table.to_csv(index=False).encode()


@pytest.mark.parametrize("n", [0, 1, 300, 997])
def test_csv_in_chunks_is_to_csv_bytes(n, monkeypatch):
    monkeypatch.setattr(tables, "_CHUNK_ROWS", 100)
    table = random_table(n, seed=n)
    assert csv_bytes(table) == table.to_csv(index=False).encode()


@pytest.mark.parametrize("repeat", [1, 40])
def test_tricky_floats_are_to_csv_bytes(repeat):
    """Each tricky float in a column of few distinct values (formatted once each) and among
    many distinct values (formatted by Arrow, fixed up where its layout is not repr's)."""
    rng = np.random.default_rng(repeat)
    tricky = np.array(TRICKY * repeat)
    with np.errstate(over="ignore"):
        spread = np.sign(rng.standard_normal(tricky.size)) * 10.0 ** rng.uniform(-330, 310, tricky.size)
        rounded = np.round(spread, 3)
    table = pd.DataFrame({"few": tricky, "many": np.where(np.arange(tricky.size) % 2, tricky, spread),
                          "spread": spread, "rounded": rounded})
    text = csv_bytes(table)
    assert text == table.to_csv(index=False).encode()
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(text)), table, check_exact=True)


def test_every_magnitude_is_to_csv_bytes():
    rng = np.random.default_rng(7)
    with np.errstate(over="ignore"):
        x = np.sign(rng.standard_normal(200_000)) * 10.0 ** rng.uniform(-325, 310, 200_000)
    x = np.concatenate([x, np.round(x[:20_000]), 10.0 ** np.arange(-323, 309),
                        2.0 ** np.arange(-1074, 1024), np.nextafter(10.0 ** np.arange(-20, 20), 0)])
    table = pd.DataFrame({"x": x, "i": np.arange(x.size)})
    assert csv_bytes(table) == table.to_csv(index=False).encode()


@pytest.mark.parametrize("table", [
    pd.DataFrame({"name": ["a,b", 'say "hi"', "line\nbreak", "ok"], "x": [1.0, 2.0, np.nan, 0.5]}),
    pd.DataFrame({"a,b": [1, 2], "c": [0.5, np.nan]}),
    pd.DataFrame({"chunked": pd.concat([pd.Series(["a", "b"]), pd.Series(["c,d"])], ignore_index=True),
                  "x": [1, 2, 3]}),
    pd.DataFrame({"only": [1.0, np.nan, 0.25]}),
    pd.DataFrame({"f32": np.float32([0.1, 1e-7, 3e6, np.nan]), "i32": np.int32([1, -2, 3, 4])}),
    pd.DataFrame({"text": ["x"] * 3 + [f"run{i}" for i in range(2000)], "n": np.arange(2003)}),
], ids=["quoted-values", "quoted-name", "quoted-chunked", "one-column", "float32", "many-strings"])
def test_what_arrow_cannot_write_alone_is_to_csv_bytes(table):
    assert csv_bytes(table) == table.to_csv(index=False).encode()


def test_parquet_is_typed():
    table = random_table(50)
    f = io.BytesIO()
    tables.write_parquet(table, f)
    schema = pq.read_schema(io.BytesIO(f.getvalue()))
    types = {name: schema.field(name).type for name in schema.names}
    assert schema.names == list(table.columns)
    assert schema.metadata is None or b"pandas" not in schema.metadata
    for name, col in table.items():
        want = {"i": pa.int64(), "f": pa.float64(), "b": pa.bool_()}.get(
            getattr(col.dtype, "kind", None), pa.dictionary(pa.int32(), pa.string()))
        assert types[name] == want, name
    meta = pq.read_metadata(io.BytesIO(f.getvalue()))
    assert "RLE_DICTIONARY" in meta.row_group(0).column(schema.names.index("optimizer")).encodings


def test_parquet_reads_in_polars_and_duckdb(tmp_path):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    table = random_table(100)
    path = tmp_path / "results.parquet"
    with open(path, "wb") as f:
        tables.write_parquet(table, f)
    pl = polars.read_parquet(path)
    assert pl["seed"].to_list() == table["seed"].tolist()
    assert pl["optimizer"].to_list() == table["optimizer"].tolist()
    assert pl["final_val_loss"].null_count() == table["final_val_loss"].isna().sum()
    rows = duckdb.sql(f"select count(*), sum(shuffle::int), max(seed) from '{path}'").fetchall()
    assert rows == [(100, table["shuffle"].sum(), table["seed"].max())]


def test_write_times_1e6_rows(capsys):
    """Prints each writer's wall and CPU time for a million runs; asserts only the bytes."""
    table = random_table(1_000_000, wide=False)
    lines, out = [], {}
    for name, write in [("to_csv", lambda f: f.write(table.to_csv(index=False).encode())),
                        ("write_csv", lambda f: tables.write_csv(table, f)),
                        ("write_parquet", lambda f: tables.write_parquet(table, f))]:
        f = io.BytesIO()
        wall, cpu = time.perf_counter(), time.process_time()
        write(f)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[name] = f.getvalue()
        lines.append(f"{name:14s} {wall:5.2f} s ({cpu:5.2f} s CPU), {len(out[name]) / 1e6:4.0f} MB")
    assert out["write_csv"] == out["to_csv"]
    with capsys.disabled():
        print(f"\n1,000,000 runs x {table.shape[1]} columns:\n  " + "\n  ".join(lines))


@pytest.mark.parametrize("last", [
    np.where(np.arange(40) % 3 == 0, np.nan, np.arange(40) / 7),    # distinct, some missing
    np.where(np.arange(40) % 5 == 0, np.nan, 1.0),                  # a dictionary's, missing
    ["adam"] * 40,                                                  # constant
    [np.nan] * 40,                                                  # all missing
], ids=["distinct", "few", "constant", "missing"])
def test_each_row_ends_in_a_line_break_whatever_its_last_field(last):
    table = pd.DataFrame({"run_id": np.arange(40), "lr": np.arange(40) % 4 / 10, "last": last})
    assert csv_bytes(table) == table.to_csv(index=False).encode()
