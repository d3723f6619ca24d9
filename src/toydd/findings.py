"""What the data shows: the "this sweep shows" half of every caption, computed from runs.

Each ``find_*`` function turns a table (or runs) into one or two plain
sentences. They compute; they never hard-code the paper's numbers (the paper's
half of a caption lives with its experiment module).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import plots
from .metrics import REPRESENTED_NORM
from .storage import RunResult


def fmt_num(x: float, digits: int = 3) -> str:
    """Number for prose: 3 significant digits, no scientific notation for ordinary sizes."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def loss_curve(table: pd.DataFrame, by: str | list[str] = "T") -> pd.DataFrame:
    """Mean test loss per group (see :func:`plots.aggregate`) plus ``floor``: the test-set standard error
    of that mean (mean ``test_loss_se`` / sqrt(seeds)), the least noise a difference of means carries."""
    agg = plots.aggregate(table, "test_loss", by=by)
    if "test_loss_se" in table and not agg.empty:
        keys = [by] if isinstance(by, str) else by
        fl = plots.aggregate(table, "test_loss_se", by=keys)[keys + ["mean", "count"]]
        fl = fl.assign(floor=fl["mean"] / np.sqrt(fl["count"]))[keys + ["floor"]]
        agg = agg.merge(fl, on=keys, how="left")
        agg["floor"] = agg["floor"].fillna(0.0)
    return agg


def loss_bump(agg: pd.DataFrame) -> dict[str, Any] | None:
    """The double-descent bump of a mean-loss curve ``agg`` (from :func:`plots.aggregate`, sorted by T).

    The bump is the largest rise of the mean loss above the best loss at any
    smaller T -- "more data made it worse". Returns None with fewer than 3 points;
    ``rise`` <= 0 means the curve never rises.
    """
    if len(agg) < 3:
        return None
    mean = agg["mean"].to_numpy(float)
    # Noise of a mean: the spread over data seeds, but never below the test-set
    # sampling error (``test_loss_se``) -- with one seed the spread is zero.
    se = np.maximum(agg["se"].to_numpy(float), agg.get("floor", pd.Series(0.0, index=agg.index)).to_numpy(float))
    Ts = agg["T"].to_numpy(float)
    best_before = np.minimum.accumulate(mean)[:-1]
    rises = mean[1:] - best_before
    i = int(np.argmax(rises)) + 1
    j = int(np.argmin(mean[:i]))
    nbrs = [mean[i - 1]] + ([mean[i + 1]] if i + 1 < len(mean) else [])
    noise = math.hypot(se[i], se[j])
    return {"T": Ts[i], "loss": mean[i], "std": float(agg["std"].iloc[i]), "rise": float(rises[i - 1]),
            "T_best": Ts[j], "best": mean[j], "over_neighbours": float(mean[i] - max(nbrs)),
            "z": float(rises[i - 1] / noise) if noise > 0 else math.inf, "seeds": int(agg["count"].iloc[i])}


def find_loss(table: pd.DataFrame) -> str:
    """Where the test loss peaks, how far above its neighbours, and whether that beats the seed noise."""
    agg = loss_curve(table)
    if agg.empty:
        return "No test losses recorded."
    b = loss_bump(agg)
    last = agg.iloc[-1]
    tail = f" At the largest T ({plots.fmt_T(last['T'])}) the test loss is {fmt_num(last['mean'], 4)}."
    if b is None:
        return "Fewer than three dataset sizes: no curve to read a bump from." + tail
    if b["rise"] <= 0:
        return ("The mean test loss never rises with T: no double-descent bump in this sweep "
                f"(from {fmt_num(agg['mean'].iloc[0], 4)} at T={plots.fmt_T(agg['T'].iloc[0])})." + tail)
    sig = ("" if b["seeds"] < 2 else
           f" The rise is {fmt_num(b['z'], 2)}× its standard error over {b['seeds']} data seeds"
           + (" (within noise)." if b["z"] < 2 else "."))
    nb = (f"{fmt_num(b['over_neighbours'], 3)} above the higher of its neighbours" if b["over_neighbours"] > 0
          else "not a local maximum")
    zero = " It is worse than the all-zeros model (1.0) there." if b["loss"] > 1.0 else ""
    return (f"Interior bump (local maximum) of the test loss at T={plots.fmt_T(b['T'])} (mean "
            f"{fmt_num(b['loss'], 4)}), a rise of "
            f"{fmt_num(b['rise'], 3)} over the best smaller training set (T={plots.fmt_T(b['T_best'])}), "
            f"{nb}.{zero}{sig}{tail}")


def majority_regimes(table: pd.DataFrame) -> list[tuple[float, str]]:
    """(T, most common regime label over seeds) in T order."""
    if "regime" not in table or table["regime"].isna().all():
        return []
    out = []
    for T in plots.sort_T(table["T"]):
        labels = table.loc[table["T"].astype(float) == T, "regime"].dropna()
        if len(labels):
            out.append((T, labels.value_counts().index[0]))
    return out


def find_regimes(table: pd.DataFrame) -> str:
    """Consecutive T ranges sharing a majority regime label."""
    reg = majority_regimes(table)
    if not reg:
        return ""
    spans: list[list] = []
    for T, label in reg:
        if spans and spans[-1][0] == label:
            spans[-1][2] = T
        else:
            spans.append([label, T, T])
    parts = [f"{lab} {plots.fmt_T(a)}" + (f"–{plots.fmt_T(b)}" if b != a else "") for lab, a, b in spans]
    return "Regime labels (majority over seeds, rule in toydd.metrics.regime) by T: " + "; ".join(parts) + "."


def find_data_dims(table: pd.DataFrame, tol: float = 0.10) -> str:
    """How far the median D_X sits from the T-gon value m/T, and up to which T it stays close."""
    if "median_data_dim" not in table:
        return ""
    d = table[np.isfinite(table["T"].astype(float))].dropna(subset=["median_data_dim"])
    if d.empty:
        return ""
    ratio = d["median_data_dim"] / (d["m"] / d["T"])
    dev = (ratio - 1.0).abs()
    worst = dev.groupby(d["T"]).max().sort_index()
    mean_ratio = ratio.groupby(d["T"]).mean().sort_index()
    first = mean_ratio.iloc[:6]
    listing = ("Median D_X / (m/T), mean over seeds: " + ", ".join(
        f"{fmt_num(r, 2)} at T={plots.fmt_T(T)}" for T, r in first.items()) + ". ")
    ok = worst <= tol
    if ok.iloc[0]:
        upto = worst.index[(~ok).to_numpy().argmax() - 1] if (~ok).any() else worst.index[-1]
        within = worst[worst.index <= upto].max()
        s = listing + (f"Median D_X is within {within:.1%} of m/T in every run for T ≤ {plots.fmt_T(upto)} "
                       f"(tolerance {tol:.0%}): the training points form T-gons.")
        after = worst.index[worst.index > upto]
        if len(after):
            Tn = after[0]
            r = (d.loc[d["T"] == Tn, "median_data_dim"] / (d.loc[d["T"] == Tn, "m"] / Tn)).mean()
            s += f" At T={plots.fmt_T(Tn)} it is {fmt_num(r, 2)}× m/T."
        return s
    T0 = worst.index[0]
    r = (d.loc[d["T"] == T0, "median_data_dim"] / (d.loc[d["T"] == T0, "m"] / T0)).mean()
    return listing + (f"Not within {tol:.0%} of m/T in every run even at the smallest T={plots.fmt_T(T0)} "
                      f"({fmt_num(r, 2)}× on average).")


def find_features(run: RunResult) -> str:
    """The features of one (large-T) model: max D_f, how many have ||W_i|| > 0.5, ||W||_F."""
    W = np.asarray(run.W, np.float64)
    fd = run.arrays.get("feature_dims")
    if fd is None:
        from .metrics import feature_dimensionality

        fd = feature_dimensionality(W)
    top = np.sort(np.asarray(fd, np.float64))[::-1][:5]
    n_rep = int(np.sum(np.linalg.norm(W, axis=0) > REPRESENTED_NORM))
    m = run.config.m
    return (f"At T={plots.fmt_T(run.config.T)} (data seed {run.config.data_seed}): max D_f = {fmt_num(top[0])}, "
            f"{n_rep} features with ||W_i|| > {REPRESENTED_NORM} (top D_f: {', '.join(fmt_num(x, 2) for x in top)}; "
            f"a regular pentagon in m={m} gives {fmt_num(m / 5, 2)} each), ||W||_F = {fmt_num(float(np.linalg.norm(W)))} "
            f"(√5 ≈ 2.24).")


def find_norms(table: pd.DataFrame) -> str:
    """Where ||W||_F and ||b|| peak, and where they end."""
    out = []
    for col, name in (("weight_norm", "||W||_F"), ("bias_norm", "||b||")):
        if col not in table:
            continue
        agg = plots.aggregate(table, col)
        if agg.empty:
            continue
        i = int(agg["mean"].to_numpy().argmax())
        first, last = agg.iloc[0], agg.iloc[-1]
        out.append(f"{name} goes from {fmt_num(first['mean'])} at T={plots.fmt_T(first['T'])} to a peak of "
                   f"{fmt_num(agg['mean'].iloc[i])} at T={plots.fmt_T(agg['T'].iloc[i])}, and is "
                   f"{fmt_num(last['mean'])} at T={plots.fmt_T(last['T'])}.")
    if {"weight_norm", "bias_norm"} <= set(table):
        w, b = plots.aggregate(table, "weight_norm"), plots.aggregate(table, "bias_norm")
        above = [plots.fmt_T(t) for t, x, y in zip(w["T"], w["mean"], b["mean"]) if y > x]
        if above:
            out.append(f"||b|| exceeds ||W||_F at T = {', '.join(above)}.")
    return " ".join(out)


def find_vectors(runs: Sequence[RunResult]) -> str:
    """Which T has the longest feature and hidden vectors (the consistent-scale reading)."""
    if not runs:
        return ""
    wmax = [(float(np.linalg.norm(np.asarray(r.W, np.float64), axis=0).max()), r.config.T) for r in runs]
    hmax = [(float(np.linalg.norm(plots.display_hidden(r)[0], axis=1).max()), r.config.T) for r in runs]
    (w, tw), (h, th) = max(wmax), max(hmax)
    small = min(runs, key=lambda r: float(r.config.T))
    s = (f"One model per T (data seed {plots.data_seeds(runs)}): the longest feature vector is at T={plots.fmt_T(tw)} "
         f"(||W_i|| = {fmt_num(w)}), the longest hidden vector at T={plots.fmt_T(th)} (||h_i|| = {fmt_num(h)}).")
    dd = small.arrays.get("data_dims")
    if dd is not None and len(dd):
        s += (f" At T={plots.fmt_T(small.config.T)} the hidden vectors have D_X = {fmt_num(float(np.min(dd)))}–"
              f"{fmt_num(float(np.max(dd)))} (a {int(small.config.T)}-gon gives m/T = {fmt_num(small.config.m / small.config.T)}).")
    return s


def find_tm(table: pd.DataFrame) -> str:
    """The worst (T, m) cell, and where more data or a bigger model hurts beyond the noise."""
    agg = loss_curve(table, by=["m", "T"])
    if agg.empty:
        return ""
    w = agg.loc[agg["mean"].idxmax()]
    more_data = []
    for m, sub in agg.groupby("m"):
        b = loss_bump(sub.reset_index(drop=True))
        if b and b["rise"] > 0 and b["z"] >= 2:
            more_data.append(f"m={int(m)} (peak at T={plots.fmt_T(b['T'])}, +{fmt_num(b['rise'], 2)})")
    bigger = []
    for T, sub in agg.groupby("T"):
        sub = sub.sort_values("m")
        mean = sub["mean"].to_numpy()
        se = np.maximum(sub["se"].to_numpy(), sub["floor"].to_numpy() if "floor" in sub else 0.0)
        for i in range(1, len(mean)):
            j = int(np.argmin(mean[:i]))
            if mean[i] - mean[j] > 2 * max(math.hypot(se[i], se[j]), 1e-12):
                bigger.append(plots.fmt_T(T))
                break
    s = f"Worst cell: T={plots.fmt_T(w['T'])}, m={int(w['m'])} (mean test loss {fmt_num(w['mean'], 4)})."
    s += (" More data hurts (a bump over 2 standard errors) for " + ", ".join(more_data) + "."
          if more_data else " No m shows a bump in T beyond 2 standard errors.")
    s += (f" A bigger model hurts at T = {', '.join(bigger)}." if bigger
          else " A bigger model never hurts beyond 2 standard errors.")
    return s


def find_setting_bumps(table: pd.DataFrame, setting: str, label: str, expect: str) -> str:
    """Bump height per value of ``setting`` and whether it moves the way the paper says (``expect``: up/down)."""
    heights = []
    for v, sub in table.groupby(setting):
        b = loss_bump(loss_curve(sub))
        if b is not None:
            heights.append((float(v), max(b["rise"], 0.0), b["T"], b["z"]))
    if not heights:
        return ""
    parts = [f"{label} {v:g}: " + (f"{fmt_num(h, 2)} at T={plots.fmt_T(T)}" + (" (within noise)" if z < 2 else "")
                                   if h > 0 else "none")
             for v, h, T, z in heights]
    hs = [h for _, h, _, _ in heights]
    if max(hs) <= 0:
        return f"No bump at any {label}: the mean test loss never rises with T ({len(hs)} settings)."
    if len(hs) >= 2:
        trend = np.diff(hs)
        mono = (trend >= 0).all() if expect == "up" else (trend <= 0).all()
        verdict = (f" The bump {'grows' if expect == 'up' else 'shrinks'} monotonically with {label}"
                   if mono else f" The bump does not change monotonically with {label}")
        verdict += f" (largest {fmt_num(max(hs), 2)}, smallest {fmt_num(min(hs), 2)})."
    else:
        verdict = ""
    return "Bump above the best smaller T — " + "; ".join(parts) + "." + verdict


def find_generalization_scale(table: pd.DataFrame) -> str:
    """Per sparsity, the first T where max D_f reaches half its largest value, in T and in T(1-S)."""
    rows = []
    for S, sub in table.groupby("sparsity"):
        agg = plots.aggregate(sub, "max_feature_dim")
        fin = agg[np.isfinite(agg["T"].astype(float))]
        if fin.empty:
            continue
        half = 0.5 * agg["mean"].max()
        hit = fin[fin["mean"] >= half]
        if len(hit):
            T = float(hit["T"].iloc[0])
            rows.append((float(S), T, T * (1 - float(S)), T == float(fin["T"].iloc[0])))
    if not rows:
        return ""
    parts = [f"S={S:g}: T={plots.fmt_T(T)} (T(1-S) = {fmt_num(x, 3)})" + (", the smallest T swept: the scale may lie "
                                                                     "below the grid" if first else "")
             for S, T, x, first in rows]
    s = "Generalization scale (first T where mean max D_f reaches half its largest value) — " + "; ".join(parts) + "."
    if len(rows) >= 2:
        Ts, xs = [r[1] for r in rows], [r[2] for r in rows]  # (S, T, T(1-S), first)
        s += (f" Across sparsities it spans a factor {fmt_num(max(Ts) / min(Ts), 2)} in T but "
              f"{fmt_num(max(xs) / min(xs), 2)} in T(1-S).")
    return s


def find_repeated(table: pd.DataFrame) -> str:
    """How many (T/N, R) settings memorize, and how many fall on the side of R = 0.4 T/N Jermyn predicts."""
    g = plots.repeated_table(table)
    if g.empty:
        return ""
    mem = g["memorized"] >= 0.5
    predicted = g["repeats"] > plots.JERMYN_SLOPE * g["T_over_N"]
    agree = int((mem == predicted).sum())
    s = (f"{int(mem.sum())} of {len(g)} settings memorize their repeated point(s) (fraction ≥ 0.5 over seeds); "
         f"{agree} of {len(g)} fall on the side of R = {plots.JERMYN_SLOPE:g} T/N that the argument predicts.")
    lows = []
    for x, sub in g.groupby("T_over_N"):
        hit = sub[sub["memorized"] >= 0.5]
        if len(hit):
            lows.append(f"T/N={fmt_num(x, 2)}: R ≥ {int(hit['repeats'].min())}")
    if lows:
        s += " Smallest R memorized: " + "; ".join(lows) + "."
    return s


def find_movie(geo: dict[str, np.ndarray], run: RunResult) -> str:
    """The top feature dimensionality over training: a peak well above the final value is a near miss."""
    f, x, steps = geo["top_feature_dim"], geo["top_data_dim"], geo["steps"]
    i = int(np.argmax(f))
    s = (f"T={plots.fmt_T(run.config.T)}: top-m D_f goes {fmt_num(f[0], 2)} → {fmt_num(f[-1], 2)} "
         f"(peak {fmt_num(f[i], 2)} at step {int(steps[i]):,}); top-m D_X {fmt_num(x[0], 2)} → {fmt_num(x[-1], 2)}.")
    if f[i] >= 0.1 and f[-1] < 0.5 * f[i]:
        s += " Features were learned and then forgotten: a near miss, as in the paper's T = 10,000 movie."
    return s


