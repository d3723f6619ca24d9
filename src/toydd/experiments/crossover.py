"""``crossover``: the authors' July 2023 follow-up. Up to which T is memorization the training optimum?

For each data seed and learning rate, three branches are trained at every T of a
nested sequence of training sets (``nested_data``: the set of T is a prefix of
that of every larger T):

* memorizing: the explicit T-gon construction where it is valid (T up to
  ``construction_max_T``), and a chain that continues from the trained
  memorizing solution of the next smaller T (``init_from_run``; the sweep trains
  the chain link by link);
* generalizing: a warm start from the T = inf solution of the same n, S (one per
  data seed, trained at lr 1e-3);
* cold: Xavier, as every other experiment.

A branch's value at T is its minimum final training loss over the lr grid (and
its starts there). :mod:`toydd.crossover` computes the crossover T*, the kink
and the clusters. Every job trains the recipe of the paper's figures
(``loss_norm = "mean"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import crossover as X
from ..config import INF, TrainConfig
from .base import ExperimentDef, Preset, T_list

if TYPE_CHECKING:
    import pandas as pd

# Per preset: the T grid (log-spaced, nested), the lr grid (>= 4 values over two decades where it matters),
# data seeds, where the construction still memorizes (its loss < 1: docs/REPLICATION.md), and the steps of
# every job (warm starts included: each is an lr restart with the preset's warm-up and cosine).
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(Ts=(10, 30, 100), lrs=(1e-3, 1e-2), seeds=2, construction_max_T=30, steps=None),
    "quick": dict(Ts=(100, 300, 1_000, 3_000, 10_000, 30_000, 100_000), lrs=(1e-4, 1e-3, 3e-3, 1e-2), seeds=2,
                  construction_max_T=1_000, steps=None),
    # Paper scale: 10,000 steps per job (the replication-gap study's shorter schedule; warm starts need
    # fewer steps than cold ones), T up to 10^6: for a GPU or the tree-pruned CPU step.
    "paper": dict(Ts=(1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000), lrs=(1e-4, 1e-3, 3e-3, 1e-2),
                  seeds=2, construction_max_T=2_000, steps=10_000),
}
M = 2


def settings(preset: str) -> dict[str, Any]:
    return SETTINGS[preset]


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    s = SETTINGS[p.name]
    base = {**p.base, "m": M, "init_seeds": 1, "nested_data": True}
    if s["steps"] is not None:
        base["steps"] = s["steps"]
    Ts = sorted(s["Ts"])
    jobs: list[TrainConfig] = []
    branches: dict[str, str] = {}

    def add(c: TrainConfig, branch: str) -> TrainConfig:
        jobs.append(c)
        branches[c.key()] = branch
        return c

    for d in range(s["seeds"]):
        # The T = inf reference trains the preset's full schedule (the pentagon needs it at n = 10,000: 10,000
        # steps left one feature); the branch jobs, warm-started, use the shorter one.
        ref = add(TrainConfig(**{**base, "T": INF, "data_seed": d, "lr": 1e-3, "nested_data": False,
                                 "steps": p.base.get("steps", base.get("steps", 50_000))}), "reference")
        for lr in s["lrs"]:
            prev = None
            for T in Ts:
                c = TrainConfig(**{**base, "T": T, "data_seed": d, "lr": float(lr)})
                add(c, "cold")
                add(c.replace(init_from_run=ref.key()), "generalizing")
                if T <= s["construction_max_T"]:
                    add(c.replace(init_method="construction"), "memorizing")
                # the chain: from the construction at the smallest T, then from the previous link
                link = c.replace(init_method="construction") if prev is None else c.replace(init_from_run=prev.key())
                prev = add(link, "memorizing")
    params = {"m": M, "T": T_list(Ts), "lrs": list(s["lrs"]), "data_seeds": s["seeds"],
              "construction_max_T": s["construction_max_T"], "branches": branches,
              "claim": X.UPDATE_CLAIM}
    return jobs, params


# --- the report --------------------------------------------------------------------------

def cluster_table(ctx, exp, bt: pd.DataFrame) -> pd.DataFrame:
    """Direction clusters of the memorizing branch's best run at each T (data seed 0, or the lowest).

    Only where that run is a memorizing solution at all (training loss below the all-zeros model's 1.0): a
    branch that blew up has hidden vectors, but they store nothing.
    """
    import pandas as pd  # lazy: drawing stays out of CLI start-up (experiments/__init__)

    mem = bt[(bt["branch"] == "memorizing") & (bt["train_loss"] < 1.0)]
    if mem.empty:
        return pd.DataFrame()
    seed = mem["data_seed"].min()
    rows = []
    for _, r in mem[mem["data_seed"] == seed].iterrows():
        run = ctx.results.run(r["key"], history=False)
        H = run.arrays.get("H")
        if H is None or not len(H):
            continue
        c = X.direction_clusters(H, run.training_data() if len(H) <= 30_000 else None)
        rows.append({"T": r["T"], "data_seed": seed, "clusters": c["clusters"], "stored": c["stored"],
                     "largest": c["sizes"][0] if c["sizes"] else 0,
                     "mean_size": float(np.mean(c["sizes"])) if c["sizes"] else 0.0,
                     "shared_in": c["shared_in"], "shared_random": c["shared_random"], "key": r["key"]})
    return pd.DataFrame(rows)


def fig_crossover(w: pd.DataFrame, cp: pd.DataFrame, bt: pd.DataFrame, ct: pd.DataFrame):
    """(a) minimum training loss per branch vs T, T* marked; (b) test loss of the winning branch;
    (c) direction clusters of the memorizing solutions; (d) the gap generalizing - memorizing per seed."""
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)

    return plots.styled(_fig_crossover)(w, cp, bt, ct)


def _fig_crossover(w: pd.DataFrame, cp: pd.DataFrame, bt: pd.DataFrame, ct: pd.DataFrame):
    """:func:`fig_crossover`'s drawing, under the toolkit's style (``plots.styled``)."""
    import pandas as pd  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from matplotlib.ticker import FixedLocator, FuncFormatter

    from .. import plots

    fig = plots.new_figure(11.0, 7.6)
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2)
    colors = {"memorizing": plots.DATA_COLOR, "generalizing": plots.FEATURE_COLOR, "cold": "#777777"}
    for b in X.BRANCHES:
        g = w.groupby("T")[b]
        med, lo, hi = g.median(), g.min(), g.max()
        ok = med.notna()
        if ok.any():
            ax_a.errorbar(med.index[ok], med[ok], yerr=[(med - lo)[ok], (hi - med)[ok]], marker="o", ms=3.5,
                          capsize=2, color=colors[b], label=f"{b} (median over seeds, min–max)")
    for T in cp.get("T_star", pd.Series(dtype=float)).dropna():
        ax_a.axvline(T, color="#2ca02c", ls=":", lw=1.2)
        ax_d.axvline(T, color="#2ca02c", ls=":", lw=1.2)
    ax_a.set_xscale("log")
    _log_if_wide(ax_a, w[list(X.BRANCHES)].to_numpy(float).ravel())
    ax_a.set_xlabel("training set size T")
    ax_a.set_ylabel("minimum training loss over the lr grid")
    ax_a.set_title("(a) the two branches; dotted: crossover T* per seed", loc="left")
    ax_a.legend(fontsize=7, loc="upper left")

    win = bt.merge(w[["data_seed", "T", "winner"]], on=["data_seed", "T"])
    win = win[win["branch"] == win["winner"]]
    for seed, d in win.groupby("data_seed"):
        d = d.sort_values("T")
        ax_b.plot(d["T"], d["test_loss"], "o-", ms=3.5, label=f"data seed {int(seed)}")
        for _, r in d.iterrows():
            ax_b.plot(r["T"], r["test_loss"], "s", ms=6, mfc="none", color=colors[r["branch"]])
    ax_b.axhline(1.0, color=plots.BASELINE_COLOR, ls="--", lw=1.0, label="all-zeros model")
    ax_b.set_xscale("log")
    _log_if_wide(ax_b, np.concatenate([win["test_loss"].to_numpy(float), [1.0]]))
    ax_b.set_xlabel("training set size T")
    ax_b.set_ylabel("test loss of the winning branch")
    ax_b.set_title("(b) test loss of the winning branch\n(square: red memorizing, blue generalizing)",
                   loc="left", fontsize=9)
    ax_b.legend(fontsize=7)

    if len(ct):
        ax_c.plot(ct["T"], ct["clusters"], "o-", color="#333333", label="clusters (directions)")
        ax_c.plot(ct["T"], ct["stored"], "^--", color=plots.DATA_COLOR, ms=3.5, label="points with a direction")
        ax_c.plot(ct["T"], ct["largest"], "s:", color="#9467bd", ms=3.5, label="largest cluster")
        ax_c.plot(ct["T"], ct["T"], color="#bbbbbb", lw=0.8, label="T (one cluster per point)")
        ax_c.set_xscale("log")
        ax_c.set_yscale("log")
        ax_c.legend(fontsize=7)
    ax_c.set_xlabel("training set size T")
    ax_c.set_ylabel("count")
    ax_c.set_title("(c) memorizing solutions: hidden vectors grouped by direction", loc="left", fontsize=9)

    for seed, d in w.dropna(subset=["gap"]).groupby("data_seed"):
        d = d.sort_values("T")
        rel = (d["gap"] / d[["memorizing", "generalizing"]].min(axis=1)).clip(-CLIP, CLIP)
        ax_d.plot(d["T"], rel, "o-", ms=3.5, label=f"data seed {int(seed)}")
    ax_d.axhline(0.0, color="#333333", lw=0.8)
    ax_d.set_xscale("log")
    ax_d.set_yscale("symlog", linthresh=1e-2)
    ax_d.yaxis.set_major_locator(FixedLocator([-CLIP, -1, -1e-1, -1e-2, 0, 1e-2, 1e-1, 1, CLIP]))
    ax_d.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_d.set_xlabel("training set size T")
    ax_d.set_ylabel(f"(generalizing − memorizing) / lower, clipped at ±{CLIP:g}")
    ax_d.set_title("(d) relative gap: > 0 where memorizing is lower", loc="left")
    ax_d.legend(fontsize=7)
    return fig


CLIP = 100.0  # the relative gap's axis: beyond 100x the curves only say "far apart"


def _log_if_wide(ax, values: np.ndarray) -> None:
    """Log y where the values span more than a decade, else linear with plain tick labels."""
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) and v.max() / v.min() > 10:
        ax.set_yscale("log")


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..sections import Section

    branches = exp.params.get("branches", {})
    bt = X.branch_table(exp.table, branches)
    w = X.winners(bt)
    if w.empty:
        ctx.notes.append(f"{exp.name}: no T with both branches complete yet; nothing to compare.")
        return
    cp = X.crossover_points(w)
    ct = cluster_table(ctx, exp, bt)
    f = ctx.png(fig_crossover(w, cp, bt, ct), f"{exp.name}-branches.png")
    ctx.add(Section(f"{exp.name}-branches", f"{exp.name}: memorizing vs generalizing branch across T", [f],
                    X.UPDATE_CLAIM, X.verdict(exp.table, branches, ct)))
    if len(ct):
        picks = _vector_picks(ct)
        runs = [ctx.results.run(k, history=False) for k in picks]
        f2 = ctx.png(plots.fig_vector_plots(runs), f"{exp.name}-vectors.png")
        ctx.add(Section(f"{exp.name}-vectors", f"{exp.name}: memorizing solutions, features (blue) and points (red)",
                        [f2], "The update: from ~1k to 500k samples models memorize clusters of correlated points "
                        "('triangles') rather than single points.",
                        [f"T = {X.fmt_count(r['T'])}: {int(r['clusters'])} directions for {r['stored']} stored points"
                         for _, r in ct[ct["key"].isin(picks)].iterrows()]))


def _vector_picks(ct: pd.DataFrame, k: int = 4) -> list[str]:
    c = ct.sort_values("T")
    idx = sorted(set(np.linspace(0, len(c) - 1, min(k, len(c))).round().astype(int)))
    return list(c.iloc[idx]["key"])


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: branches", lambda: draw(ctx, exp))


DEF = ExperimentDef("crossover", "The authors' July 2023 follow-up: minimum training loss of the memorizing and "
                                 "generalizing branches vs T (warm starts, lr restarts), the crossover T*, the "
                                 "kink, cluster memorization.", build, report, paper_order=85,
                    in_reproduce=lambda p: False)

