"""The crossover experiment: its jobs, the numbers computed from them, and a smoke sweep to the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from toydd import crossover as X
from toydd.experiments import crossover as XE
from toydd.experiments import named_experiment


@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_the_branches_are_wired_as_documented(preset):
    e = named_experiment("crossover", preset)
    s = XE.settings(preset)
    by_key = {c.key(): c for c in e.configs}
    br = e.params["branches"]
    assert set(br) == set(by_key) and set(br.values()) == {"reference", "memorizing", "generalizing", "cold"}
    refs = {k for k, b in br.items() if b == "reference"}
    assert len(refs) == s["seeds"] and all(math.isinf(by_key[k].T) for k in refs)
    for k, c in by_key.items():
        if br[k] == "reference":
            continue
        assert c.nested_data and c.m == 2 and c.loss_norm == "mean" and c.init_seeds == 1
        if br[k] == "generalizing":
            assert c.init_from_run in refs and by_key[c.init_from_run].data_seed == c.data_seed
        elif br[k] == "cold":
            assert c.init_from_run is None and c.init_method == "xavier"
        else:  # memorizing: the construction, or the same seed and lr's memorizing run at the next smaller T
            if c.init_method == "construction":
                assert c.T <= s["construction_max_T"] or c.T == min(s["Ts"])
            else:
                prev = by_key[c.init_from_run]
                assert br[c.init_from_run] == "memorizing"
                assert (prev.data_seed, prev.lr) == (c.data_seed, c.lr)
                assert prev.T == max(t for t in s["Ts"] if t < c.T)
    if preset != "smoke":
        lrs = sorted(s["lrs"])
        assert len(lrs) >= 4 and lrs[-1] / lrs[0] >= 100  # at least 4 values over two decades


def _w(rows):
    return pd.DataFrame(rows, columns=["data_seed", "T", "memorizing", "generalizing", "cold"]).assign(
        gap=lambda d: d["generalizing"] - d["memorizing"],
        best=lambda d: d[["memorizing", "generalizing", "cold"]].min(axis=1))


def test_crossover_point_is_log_interpolated_and_never_is_said():
    w = _w([(0, 100, 0.1, 0.5, 0.6), (0, 1000, 0.3, 0.4, 0.5), (0, 10000, 0.6, 0.4, 0.7),
            (1, 100, 0.5, 0.4, 0.6), (1, 1000, 0.6, 0.45, 0.6)])
    cp = X.crossover_points(w).set_index("data_seed")
    # seed 0: gap +0.1 at 1,000 and -0.2 at 10,000: T* = 10^(3 + 1/3)
    assert cp.loc[0, "status"] == "crossed"
    assert cp.loc[0, "T_star"] == pytest.approx(10 ** (3 + 1 / 3))
    assert (cp.loc[0, "T_below"], cp.loc[0, "T_above"]) == (1000, 10000)
    assert cp.loc[1, "status"] == "never" and cp.loc[1, "lower"] == "generalizing"
    assert cp.loc[1, "min_abs_gap"] == pytest.approx(0.1)


def test_kink_is_the_change_of_log_log_slope_at_T_star():
    Ts = [1e2, 1e3, 1e4, 1e5, 1e6]
    best = [1e-4 * T for T in Ts[:3]] + [1.0, 1.0]  # slope 1 below, 0 above
    w = pd.DataFrame({"data_seed": 0, "T": Ts, "best": best})
    k = X.kink(w, 3e4)
    assert k["slope_below"] == pytest.approx(1.0) and k["slope_above"] == pytest.approx(0.0)
    assert X.kink(w, math.nan) is None


def test_direction_clusters_and_shared_features():
    from toydd.data import SparseData

    ang = np.array([0.0, 0.01, 0.02, 2.0, 2.01, 4.0])
    H = np.stack([np.cos(ang), np.sin(ang)], 1)
    H = np.vstack([H, [[1e-4, 0.0]]])  # too short to have a direction: not stored
    # points 0-2 share feature 0, 3-4 share feature 5; 5 and 6 have their own
    rows = [[0, 1], [0, 2], [0, 3], [5, 6], [5, 7], [8], [9]]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    X_ = SparseData(indptr.astype(np.int64), np.concatenate(rows).astype(np.int64),
                    np.ones(indptr[-1], np.float32), 10)
    c = X.direction_clusters(H, X_)
    assert c["clusters"] == 3 and c["sizes"] == [3, 2, 1] and c["stored"] == 6
    assert c["labels"][6] == -1 and len(set(c["labels"][:3])) == 1 and c["labels"][0] != c["labels"][3]
    assert c["shared_in"] == 1.0 and c["shared_random"] < 0.6
    # the wrap-around: angles just either side of pi are one cluster
    Hw = np.stack([np.cos([math.pi - 0.01, -math.pi + 0.01, 0.0]), np.sin([math.pi - 0.01, -math.pi + 0.01, 0.0])], 1)
    assert X.direction_clusters(Hw)["sizes"] == [2, 1]
    # m = 3: the greedy pass
    H3 = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0, 0, 1.0]])
    assert X.direction_clusters(H3)["sizes"] == [2, 1, 1]


def test_smoke_sweep_to_the_report(tmp_path):
    from toydd import report, sweep

    s = sweep.run_sweep("crossover", tmp_path / "x", preset="smoke", progress=False)
    assert s.ok and s.done == s.total
    index = report.build_report(tmp_path / "x", movies=0, log=lambda m: None, dpi=50)
    page = index.read_text(encoding="utf-8")
    assert 'id="crossover-branches"' in page and 'id="crossover-vectors"' in page
    assert "Measured: T = 10–100, 2 data seed(s)." in page and "not drawn" not in page
    t = sweep.load_table(tmp_path / "x", experiment="crossover")
    bt = X.branch_table(t, named_experiment("crossover", "smoke").params["branches"])
    assert set(bt["branch"]) == {"memorizing", "generalizing", "cold"}
    assert len(bt) == 2 * 3 * 3  # seeds x T x branches


def test_verdict_says_where_the_memorizing_branch_found_nothing():
    rows = []
    for T, mem, gen in ((100, 0.5, 0.8), (1000, 0.97, 0.96), (10000, 3e6, 0.98)):
        for b, v in (("memorizing", mem), ("generalizing", gen), ("cold", gen + 0.001)):
            rows.append({"key": f"{T}{b}", "T": T, "data_seed": 0, "train_loss": v, "test_loss": 1.0, "lr": 1e-3})
    t = pd.DataFrame(rows)
    v = " ".join(X.verdict(t, {r["key"]: r["key"].lstrip("0123456789") for r in rows}))
    assert "T* = " in v and "nothing better than the all-zeros model (training loss ≥ 1) at T = 10,000" in v


def test_an_experiment_file_builds_on_the_crossover_with_the_summed_loss(tmp_path):
    from pathlib import Path

    from toydd import report, sweep
    from toydd.errors import ToyddError
    from toydd.experiments import load_experiment_file

    ex = Path(__file__).resolve().parents[1] / "examples" / "crossover-sum.toml"
    e = load_experiment_file(ex, "smoke")
    base = named_experiment("crossover", "smoke")
    assert e.name == "crossover-sum" and e.params["based_on"] == "crossover" and len(e.configs) == len(base.configs)
    assert all(c.loss_norm == "sum" for c in e.configs)
    keys = set(e.keys())
    assert not keys & set(base.keys())  # other jobs...
    assert all(c.init_from_run in keys for c in e.configs if c.init_from_run)  # ...whose chains are their own
    s = sweep.run_sweep(str(ex), tmp_path / "s", preset="smoke", progress=False)
    assert s.ok and s.done == s.total
    page = report.build_report(tmp_path / "s", movies=0, log=lambda m: None, dpi=40).read_text(encoding="utf-8")
    assert 'id="crossover-sum-branches"' in page and "summed loss (the paper’s text)" in page
    bad = tmp_path / "bad.toml"
    bad.write_text('experiment = "crossover"\n[grid]\nT = [10]\n')
    with pytest.raises(ToyddError, match="grid cannot be combined"):
        load_experiment_file(bad)
    bad.write_text('experiment = "nope"\n')
    with pytest.raises(ToyddError, match="registered experiment"):
        load_experiment_file(bad)
