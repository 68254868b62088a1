"""report.html: the page's data (aggregation, importance, thinning, axes) without a browser,
bad input, the size bound at 200,000 runs, and the page itself in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tinysweep
from tinysweep.trainer.insight import report_html
from tinysweep.trainer.cli import main
from tinysweep.trainer.insight.report_html import (BEST_LINES, MAX_LINES, aggregate, page_info,
                                           parcoords_info, shown_settings, write_html)
from tinysweep.trainer.pipeline.results import Results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from report_html import synthetic  # noqa: E402  (bench/report_html.py's made tables)

SWEEP = {
    "name": "page",
    "data": {"source": "moons", "params": {"n": 120, "noise": 0.2}, "seed": 0,
             "val_fraction": 0.25},
    "model": {"hidden": [4], "activation": "tanh", "loss": "bce_with_logits"},
    "train": {"epochs": 12, "optimizer": "adam"},
    "sweep": {"strategy": "grid", "params": {
        "lr": {"logspace": [-3, 1, 5]}, "batch_size": [8, 64],
        "optimizer": ["sgd", "adam"], "seed": [0, 1]}},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A real sweep of 40 runs (20 settings x 2 seeds), written by `tinysweep run`."""
    root = tmp_path_factory.mktemp("page")
    config = root / "page.yaml"
    config.write_text(json.dumps(SWEEP))
    assert main(["run", str(config), "--out", str(root / "page"), "--backend", "torch"]) == 0
    return root / "page"


@pytest.fixture(scope="module")
def res(sweep_dir):
    return tinysweep.load(sweep_dir)


def with_table(res: Results, table: pd.DataFrame, rows=None) -> Results:
    """``res`` with another table (and the curves of ``rows`` when given)."""
    curves = dict(res.curves)
    if rows is not None:
        curves = {k: (v if k == "epoch" else v[rows]) for k, v in curves.items()}
    return Results(res.config, table.reset_index(drop=True), curves, res.params)


# ---- the data, without a browser ------------------------------------------------------------
def test_run_writes_the_page(sweep_dir):
    page = (sweep_dir / "report.html").read_text()
    assert (sweep_dir / "report.md").is_file()
    assert "Plotly" in page and "<script src" not in page and "<link" not in page
    assert "default-src 'none'" in page          # the CSP: the page may fetch nothing
    assert "40 runs in 20 settings, means over 2 replicates (seed)" in page


def test_settings_are_means_over_seeds(res):
    s = aggregate(res)
    assert s.params == ["lr", "batch_size", "optimizer"] and s.replicates == ["seed"]
    table = res.table
    expected = table.groupby(["lr", "batch_size", "optimizer"], sort=True)
    # every setting's mean, as pandas computes it (a diverged replicate: NaN, as summary)
    got = pd.DataFrame({p: s.values[p][s.codes[p]] for p in s.params})
    for metric in ("final_train_loss", "final_val_loss", "final_val_accuracy"):
        got[metric] = s.means[metric]
        means = expected[metric].agg(lambda x: x.mean() if x.notna().all() else np.nan)
        merged = got.merge(means.rename("want").reset_index(), on=s.params)
        np.testing.assert_allclose(merged[metric], merged["want"], rtol=1e-12,
                                   err_msg=metric)
    assert s.n.tolist() == [2] * 20
    assert s.metric == "final_val_loss"          # a validation split: best by it


def made(loss_of, n_lr=8, n_bs=6, seeds=4, noise=0.02, seed=0) -> Results:
    """A made grid sweep: lr (log) x batch_size x optimizer x seed, final loss
    loss_of(lr, bs, opt) times log-normal seed noise."""
    rng = np.random.default_rng(seed)
    lr, bs, opt, sd = (a.ravel() for a in np.meshgrid(
        np.logspace(-4, 0, n_lr), np.array([8, 16, 32, 64, 128, 256])[:n_bs],
        np.array(["adam", "sgd"]), np.arange(seeds), indexing="ij"))
    loss = loss_of(lr, bs, opt) * np.exp(noise * rng.standard_normal(len(lr)))
    n = len(lr)
    table = pd.DataFrame({"run_id": np.arange(n), "lr": lr, "batch_size": bs,
                          "optimizer": opt, "seed": sd, "final_train_loss": loss,
                          "diverged": np.zeros(n, bool), "steps": np.ones(n, int)})
    config = {"name": "made", "data": {"source": "line"}, "model": {"hidden": []},
              "sweep": {"params": {"lr": {"logspace": [-4, 0, n_lr]},
                                   "batch_size": [8, 16, 32, 64, 128, 256][:n_bs],
                                   "optimizer": ["adam", "sgd"],
                                   "seed": list(range(seeds))}}}
    curves = {"epoch": np.arange(1, 4), "train_loss": np.repeat(loss[:, None], 3, 1)}
    return Results(config, table, curves, {})


def test_importance_finds_what_moves_the_loss():
    res = made(lambda lr, bs, opt: lr ** 2 + 1e-3)            # only lr matters
    imp = page_info(res)["importance"]
    shares = {r["param"]: r for r in imp["params"]}
    assert imp["params"][0]["param"] == "lr" and shares["lr"]["share"] > 0.95
    for p in ("batch_size", "optimizer"):
        assert shares[p]["share"] < 0.01 and shares[p]["within_noise"], shares[p]
    assert not shares["lr"]["within_noise"]
    assert imp["noise_std"] == pytest.approx(0.02 / np.log(10), rel=0.2)   # log10 units


def test_interaction_pair_and_heatmap():
    # the loss is low where lr matches the batch size: lr x batch_size is an interaction
    res = made(lambda lr, bs, opt: 1e-3 * np.exp(3 * np.abs(np.log10(lr) + 4 - np.log2(bs / 8) * 0.8)))
    info = page_info(res)
    top = info["importance"]["pairs"][0]
    assert set(top["pair"]) == {"lr", "batch_size"} and top["interaction_share"] > 0.2
    heat = info["heatmaps"][0]
    assert heat["z"].shape == (len(heat["ylabels"]), len(heat["xlabels"]))
    assert heat["zlog"] and np.isfinite(heat["z"]).all()


def test_axes_log_and_categorical(res):
    s = aggregate(res)
    dims = {d["name"]: d for d in parcoords_info(s, np.arange(len(s.n)))["dims"]}
    lr = dims["lr"]
    assert lr["log"] and lr["label"] == "lr (log)"
    np.testing.assert_allclose(sorted(set(lr["values"])), np.linspace(-3, 1, 5))
    assert lr["ticktext"] == ["0.001", "0.01", "0.1", "1", "10"]     # a tick at each value
    assert "tickvals" not in dims["final_val_loss"]   # continuous: brushes must not snap
    assert not dims["batch_size"]["log"]
    opt = dims["optimizer"]
    assert opt["ticktext"] == ["adam", "sgd"] and set(opt["values"]) == {0.0, 1.0}
    assert list(dims)[-1] == "final_val_loss"     # the metric that ranks: last, the colour


def test_thinning_keeps_the_best_and_says_so():
    res = synthetic(40_000, grid=False)                  # 40,000 settings, no replicates
    s = aggregate(res)
    shown = shown_settings(s)
    assert len(shown) == MAX_LINES
    best = report_html.best_settings(s, BEST_LINES)
    assert np.isin(best, shown).all()
    assert np.array_equal(shown_settings(s), shown)     # seeded: the same lines each time
    info = page_info(res)
    assert info["shown_label"].startswith(f"{MAX_LINES:,} of 40,000 settings shown")


@pytest.mark.parametrize("case", ["no runs", "all diverged", "NaN metrics", "one run",
                                  "nothing swept"])
def test_bad_input_still_writes_a_page(res, tmp_path, case):
    table = res.table
    metrics = [c for c in table if c.startswith("final_")]
    if case == "no runs":
        bad, rows = table.iloc[:0], np.arange(0)
    elif case == "all diverged":
        bad, rows = table.assign(diverged=True, **{m: np.nan for m in metrics}), None
    elif case == "NaN metrics":
        bad, rows = table.assign(final_val_loss=np.nan), None
    elif case == "one run":
        bad, rows = table.iloc[:1], np.arange(1)
    else:
        bad, rows = table[(table.lr == table.lr.iloc[0]) & (table.batch_size == 8)
                          & (table.optimizer == "adam")], None
        rows = bad.index.to_numpy()
        bad = bad.assign(run_id=np.arange(len(bad)))
    r = with_table(res, bad, rows)
    if case == "nothing swept":
        r.config = {**r.config, "sweep": {"params": {"lr": 0.001, "seed": [0, 1]}}}
    path = write_html(r, tmp_path)
    page = path.read_text()
    notices = re.findall(r'<p class="notice">(.*?)</p>', page)
    expected = {"no runs": "holds no runs", "all diverged": "Every run diverged",
                "NaN metrics": "No setting has a final val loss",
                "one run": "A single run", "nothing swept": "Nothing was swept"}[case]
    assert any(expected in n for n in notices), notices
    json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page,
                         re.S).group(1).replace("<\\/", "</"))


def test_size_at_200k_runs(tmp_path):
    """The issue's bound: within 15 MB at 200,000 runs (the time is printed, not asserted:
    the 2 cores are shared; bench/report_html.py measures it)."""
    for grid in (True, False):
        res = synthetic(200_000, grid=grid)
        start = time.perf_counter()
        path = write_html(res, tmp_path / str(grid))
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        print(f"200,000 runs ({'grid' if grid else 'random'}): {size / 1e6:.2f} MB, "
              f"{seconds:.2f} s")
        assert size < 15e6


# ---- the page in a real browser -----------------------------------------------------------
def _browser():
    """(chromium, chromedriver) paths, or the reason there is none."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return None, ("no chromium and chromedriver on PATH (Debian: apt-get install chromium "
                      "chromium-driver; .ci/run installs them)")
    return (chromium, driver), None


@pytest.fixture(scope="module")
def browser():
    found, reason = _browser()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test report.html in Chromium: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    # WebGL (the parcoords) on the CPU: SwiftShader, which headless Chromium no longer
    # picks by itself
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                "--window-size=1280,2200"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> dict:
    """Loads ``path``, waits for the page's figures; returns window.__report."""
    driver.get_log("browser"), driver.get_log("performance")       # earlier pages' logs
    driver.get(path.resolve().as_uri())
    deadline = time.time() + 60
    while time.time() < deadline:
        state = driver.execute_script("return window.__report || null")
        if state and state["ready"]:
            return state
        time.sleep(0.1)
    raise AssertionError(f"{path}: the page never said it was ready")


def problems(driver) -> tuple[list, list]:
    """(console errors, requests for anything but the page itself and data/blob URLs)."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("file://", "data:", "blob:")):
                requests.append(url)
    return errors, requests


def test_page_in_chromium(browser, sweep_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    state = open_page(browser, sweep_dir / "report.html")
    assert state["lines"] == 20 and state["selected"] == 20
    count = lambda css: browser.execute_script(f"return document.querySelectorAll('{css}').length")
    assert count("#pc .parcoords .axis") >= 5             # parameters and metrics
    assert count("#curves .scatterlayer .trace") == 15    # the best 10 and the worst 5
    assert count("#importance .bars .point") == 3
    assert count(".heatmap .hm, .heatmap image") >= 1
    errors, requests = problems(browser)
    assert not errors, errors
    assert not requests, requests

    # brush the first axis (lr) with the mouse: the lower half of its range
    axis = browser.find_elements(By.CSS_SELECTOR, "#pc .axis-brush .background")[0]
    height = axis.size["height"]
    ActionChains(browser).move_to_element_with_offset(axis, 0, int(height * 0.1)) \
        .click_and_hold().move_by_offset(0, int(height * 0.35)).release().perform()
    time.sleep(0.5)
    brushed = browser.execute_script("return window.__report.selected")
    assert 0 < brushed < 20, brushed
    assert "selected" in browser.find_element(By.ID, "selected-label").text
    assert count("#curves .scatterlayer .trace") == min(brushed, 30)

    # the "best k%" control narrows the selection further
    browser.execute_script("var s = document.getElementById('bestk'); s.value = 10;"
                           "s.dispatchEvent(new Event('input'));")
    time.sleep(0.5)
    assert browser.execute_script("return window.__report.selected") < brushed
    errors, requests = problems(browser)
    assert not errors and not requests, (errors, requests)


def test_bad_pages_in_chromium(browser, res, tmp_path):
    """A page for every run diverged, and one for no runs, open without an error."""
    table = res.table
    metrics = [c for c in table if c.startswith("final_")]
    for name, bad in (("diverged", table.assign(diverged=True, **{m: np.nan for m in metrics})),
                      ("empty", table.iloc[:0])):
        rows = None if len(bad) else np.arange(0)
        path = write_html(with_table(res, bad, rows), tmp_path / name)
        open_page(browser, path)
        errors, requests = problems(browser)
        assert not errors and not requests, (name, errors, requests)


def test_schedule_pages_in_chromium(browser, tmp_path):
    """Hyperband's brackets and PBT's lineage draw without an error: a plot per bracket, the
    members, every exploit and the 5 best lineages, a schedule per perturbed parameter."""
    from test_hyperband import hyperband_sweep
    from test_pbt import pbt_sweep
    count = lambda css: browser.execute_script(f"return document.querySelectorAll('{css}').length")
    hb = tinysweep.run(hyperband_sweep(), backend="torch")
    state = open_page(browser, write_html(hb, tmp_path / "hb"))
    assert state["brackets"] == hb.table.bracket.nunique() == count("#brackets .bracket") == 3
    # stopped, survived and best in brackets 2 and 1; bracket 0 stops nothing
    assert count("#brackets .bracket .scatterlayer .trace") == 3 + 3 + 2
    assert state["lineages"] == 0 and count("#pbt-section") == 0
    pbt = tinysweep.run(pbt_sweep(perturb={"lr": [0.5, 2.0], "batch_size": [5, 10]}),
                        backend="torch")
    state = open_page(browser, write_html(pbt, tmp_path / "pbt"))
    history = pbt.history()
    assert state["jumps"] == (history.parent >= 0).sum() == 4
    assert state["lineages"] == 5 and state["schedules"] == 2 and state["brackets"] == 0
    assert count("#lineage .scatterlayer .trace") == 2 + 5
    assert count("#schedules .schedule") == 2
    assert "8 members, 4 exploits." in browser.find_element("id", "pbt-section").text
    errors, requests = problems(browser)
    assert not errors and not requests, (errors, requests)
