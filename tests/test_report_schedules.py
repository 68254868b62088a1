"""The report's view of Hyperband's brackets and PBT's lineage (report_schedules.py): the
values without a browser, checked against the table and the history one run at a time;
report.md's sections and plots. The page in Chromium: test_report_html.py."""

from __future__ import annotations

import numpy as np
import pytest

import tinysweep
from tinysweep.trainer.insight import report_schedules
from tinysweep.trainer.insight.report import save_with_report
from tinysweep.trainer.insight.report_schedules import (hyperband_info, hyperband_page, pbt_info,
                                                pbt_page)

from test_hyperband import hyperband_sweep
from test_pbt import pbt_sweep


@pytest.fixture(scope="module")
def pbt_res():
    """12 members, 8 epochs, rounds at 2, 4 and 6, three copies a round; lr and batch_size."""
    config = pbt_sweep(perturb={"lr": [0.5, 2.0], "batch_size": [5, 10]})
    config["sweep"]["samples"] = 12
    config["train"]["epochs"] = 8
    config["sweep"]["pbt"]["quantile"] = 0.2
    return tinysweep.run(config, backend="reference")


@pytest.fixture(scope="module")
def hb_res():
    return tinysweep.run(hyperband_sweep(), backend="reference")


def test_pbt_info_follows_the_history(pbt_res):
    info = pbt_info(pbt_res)
    history = pbt_res.history()
    assert info["rounds"].tolist() == [2, 4, 6]
    epoch = list(pbt_res.curves["epoch"])
    val = pbt_res.curves["val_loss"]
    for ex in info["exploits"]:
        at = history[history.epoch == ex["epoch"]]
        copied = at[at.parent >= 0]
        assert ex["children"].tolist() == copied.run_id.tolist()
        assert ex["parents"].tolist() == copied.parent.tolist()
        np.testing.assert_array_equal(ex["parent_value"],
                                      val[ex["parents"], epoch.index(ex["epoch"])])
    final = pbt_res.table.final_val_loss.to_numpy()
    assert info["top"].tolist() == np.argsort(final, kind="stable")[:5].tolist()
    # each top member's weights, traced back one round at a time, one member at a time
    bounds = [0, 2, 4, 6, 8]
    for i, run in enumerate(info["top"].tolist()):
        owner, owners = run, [run]
        for r in (6, 4, 2):
            parent = int(history[(history.epoch == r) & (history.run_id == owner)].parent.iloc[0])
            owner = parent if parent >= 0 else owner
            owners.insert(0, owner)
        assert info["owner"][:, i].tolist() == owners
        for j, owner in enumerate(owners):
            row = history[(history.epoch == bounds[j]) & (history.run_id == owner)]
            assert info["schedule"]["lr"][j, i] == row.lr.iloc[0]
            assert info["schedule"]["batch_size"][j, i] == row.batch_size.iloc[0]
            for e in range(bounds[j] + 1, bounds[j + 1] + 1):      # that segment's curve
                assert info["lineage"][i, epoch.index(e)] == val[owner, epoch.index(e)]
    assert (info["owner"][0] != info["owner"][-1]).any()      # some lineage went through a copy
    assert pbt_info(tinysweep.run(hyperband_sweep(), backend="torch")) is None


def test_hyperband_info_counts_each_brackets_stages(hb_res):
    info = hyperband_info(hb_res)
    table = hb_res.table
    assert [b["bracket"] for b in info["brackets"]] == [2, 1, 0]
    stopped = table.stopped_epoch.to_numpy()
    for b in info["brackets"]:
        mine = (table.bracket == b["bracket"]).to_numpy()
        assert b["runs"] == mine.sum() == b["stages"][0][1]
        for e, k in b["stages"]:
            assert k == (mine & (np.isnan(stopped) | (stopped >= e))).sum()
        assert b["stages"][-1][0] == 9
        assert b["survivors"] == (mine & np.isnan(stopped)).sum() == b["stages"][-1][1]
        best = table[mine].final_val_loss.idxmin()
        assert b["best_run"] == table.run_id[best]
        assert b["best_value"] == table.final_val_loss[best]
    assert [e for e, _ in info["brackets"][0]["stages"]] == [1, 3, 9]
    assert hyperband_info(tinysweep.run(pbt_sweep(), backend="torch")) is None


def test_report_md_shows_brackets_and_lineage(pbt_res, hb_res, tmp_path):
    save_with_report(hb_res, tmp_path / "hb")
    text = (tmp_path / "hb" / "report.md").read_text()
    assert "| bracket | runs | stages: epoch (runs) | survivors |" in text
    assert "| 2 | 11 | 1 (11) → 3 (3) → 9 (1) | 1 | 0 |" in text
    assert (tmp_path / "hb" / "plots" / "hyperband_brackets.png").stat().st_size > 0
    save_with_report(pbt_res, tmp_path / "pbt")
    text = (tmp_path / "pbt" / "report.md").read_text()
    assert "## Population based training" in text
    history = pbt_res.history()
    first = history[(history.epoch == 2) & (history.parent >= 0)].iloc[0]
    assert f"| 2 | {int(first.run_id)} ← {int(first.parent)}, " in text
    info = pbt_info(pbt_res)
    top = info["top"][0]
    chain = " → ".join(map(str, info["owner"][:, 0].tolist()))
    assert f"| {top} | {pbt_res.table.final_val_loss[top]:.4g} | {chain} | " in text
    assert (tmp_path / "pbt" / "plots" / "pbt_lineage.png").stat().st_size > 0
    assert "![PBT lineage and schedules](plots/pbt_lineage.png)" in text


def test_the_page_thins_and_says_so(pbt_res, hb_res, monkeypatch):
    """At most MAX_LINES curves a panel (the best and a sample) and PAGE_JUMPS exploits."""
    monkeypatch.setattr(report_schedules, "MAX_LINES", 4)
    monkeypatch.setattr(report_schedules, "PAGE_JUMPS", 3)
    page = pbt_page(pbt_info(pbt_res))
    assert page["shown"] == 4 and page["n"] == 12
    assert np.isnan(page["members"]["x"]).sum() == 4            # 4 polylines
    assert page["jumps_shown"] == 3 < page["n_jumps"] == 9         # 3 rounds of 3 copies
    assert len(page["jumps"]["x"]) == 9
    assert all(len(line["text"]) == len(page["epoch"]) for line in page["lineages"])
    page = hyperband_page(hyperband_info(hb_res))
    first = page["brackets"][0]
    assert first["runs"] == 11 and first["shown"] == 4
    lines = sum(np.isnan(first[k]["x"]).sum() for k in ("stopped", "survived"))  # breaks
    assert lines == 4
