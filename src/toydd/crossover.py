"""The large-T crossover: up to which T is memorization the training optimum?

The authors' July 2023 update ("Finite Data Intermediate Regime", Jermyn, Olah,
Henighan) trained over many learning rates and reported, from figures only: the
memorizing solution has the lowest training loss up to about 500k samples (n =
10,000, S = 0.999, m = 2); above that the generalizing solution wins, a
first-order transition with a kink in the minimum training loss; between ~1k
and 500k samples models memorize *clusters* of correlated points rather than
single points.

The ``crossover`` experiment (:mod:`toydd.experiments.crossover`) follows the two
solution branches across T for each data seed and learning rate; this module
turns its table into the answer:

* :func:`branch_table`: per (data seed, T, branch) the minimum training loss over
  the lr grid (and over the starts the branch has there), with the test loss,
  norms, regime and dimensionalities of that best run;
* :func:`winners` and :func:`crossover_points`: which branch is lower at each T,
  and the crossover T* per seed (log-interpolated where the sign of
  ``generalizing - memorizing`` changes), or the measured range and gap if the
  branches never cross;
* :func:`kink`: the slope of log(min training loss) against log T below and
  above T*;
* :func:`direction_clusters`: the hidden vectors of a memorizing solution
  grouped by direction, their count and sizes, and whether members of one
  cluster share features more often than random pairs of points do.

Branches (``BRANCHES``): ``memorizing`` (warm starts that memorize this training
set: the explicit T-gon construction where it is valid, and the trained
memorizing solution of the next smaller T of the same nested sequence, one chain
per lr); ``generalizing`` (warm start from the T = inf solution of the same n, S);
``cold`` (Xavier, as every other experiment). The branch of each job is written
into the manifest's params (``branches``: key -> branch) when the experiment is
built.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

BRANCHES = ("memorizing", "generalizing", "cold")

UPDATE_CLAIM = ("Jermyn, Olah, Henighan (July 2023 update, n = 10,000, S = 0.999, m = 2, many learning rates): the "
                "memorizing solution has the lowest training loss up to ~500k samples, the generalizing one above: a "
                "first-order transition with a kink in the minimum training loss; from ~1k to 500k samples models "
                "memorize clusters of correlated points ('triangles') rather than single points; the intermediate "
                "regime is an optimization failure. The scale should move as 1/(1-S) (Jermyn), so about 10x lower "
                "in T at S = 0.99.")


def _frame(*args, **kwargs) -> pd.DataFrame:
    """``pd.DataFrame``, with pandas imported on first use: the crossover experiment's definition imports this
    module (``UPDATE_CLAIM``), and the registry must import without pandas (CLI start-up)."""
    import pandas as pd

    return pd.DataFrame(*args, **kwargs)


def with_branch(table: pd.DataFrame, branches: dict[str, str]) -> pd.DataFrame:
    """The table with a ``branch`` column (from the manifest's params) and float T; the T = inf reference dropped."""
    t = table.copy()
    t["branch"] = t["key"].map(branches)
    t["T"] = t["T"].astype(float)
    return t[t["branch"].isin(BRANCHES) & np.isfinite(t["T"])]


def branch_table(table: pd.DataFrame, branches: dict[str, str]) -> pd.DataFrame:
    """Per (data_seed, T, branch): the run with the lowest final training loss over the lr grid and starts."""
    t = with_branch(table, branches)
    t = t[np.isfinite(t["train_loss"].astype(float))]
    if t.empty:
        return _frame(columns=["data_seed", "T", "branch", "train_loss"])
    idx = t.groupby(["data_seed", "T", "branch"])["train_loss"].idxmin()
    cols = [c for c in ("data_seed", "T", "branch", "train_loss", "test_loss", "lr", "key", "regime", "weight_norm",
                        "bias_norm", "max_feature_dim", "median_data_dim", "represented_features", "init_method")
            if c in t]
    return t.loc[idx, cols].sort_values(["data_seed", "T", "branch"]).reset_index(drop=True)


def winners(bt: pd.DataFrame) -> pd.DataFrame:
    """Per (data_seed, T): each branch's minimum training loss, the lower of memorizing / generalizing, and the gap.

    ``gap`` = generalizing - memorizing: positive where memorizing is the lower (the training optimum found).
    ``best`` also counts cold starts: the lowest training loss found at that T by any start.
    """
    if bt.empty:
        return _frame(columns=["data_seed", "T", "memorizing", "generalizing", "cold", "gap", "winner"])
    w = bt.pivot_table(index=["data_seed", "T"], columns="branch", values="train_loss").reset_index()
    for b in BRANCHES:
        if b not in w:
            w[b] = np.nan
    w["gap"] = w["generalizing"] - w["memorizing"]
    w["winner"] = np.where(w["gap"].isna(), "", np.where(w["gap"] > 0, "memorizing", "generalizing"))
    w["best"] = w[list(BRANCHES)].min(axis=1)
    return w.sort_values(["data_seed", "T"]).reset_index(drop=True)


def crossover_points(w: pd.DataFrame) -> pd.DataFrame:
    """Per data seed: the crossover T* (memorizing lower below, generalizing lower above), or why there is none.

    T* is interpolated in log T between the last grid T where memorizing wins and the next, where the gap
    changes sign (linear in log T). ``status``: ``crossed`` (one sign change, memorizing below),
    ``never`` (one branch lower over the whole measured range: ``range`` and the smallest ``|gap|`` say how
    close), ``several`` (the sign changes more than once: the first change is reported).
    """
    rows = []
    for seed, d in w.dropna(subset=["gap"]).groupby("data_seed"):
        d = d.sort_values("T")
        Ts, g = d["T"].to_numpy(float), d["gap"].to_numpy(float)
        changes = [i for i in range(len(g) - 1) if g[i] > 0 >= g[i + 1]]
        other = [i for i in range(len(g) - 1) if g[i] <= 0 < g[i + 1]]
        row: dict[str, Any] = {"data_seed": seed, "T_min": Ts.min(), "T_max": Ts.max(),
                               "min_abs_gap": float(np.min(np.abs(g))) if len(g) else math.nan,
                               "memorizing_wins_at": [float(x) for x in Ts[g > 0]]}
        if changes:
            i = changes[0]
            lt0, lt1 = math.log10(Ts[i]), math.log10(Ts[i + 1])
            frac = g[i] / (g[i] - g[i + 1]) if g[i] != g[i + 1] else 0.5
            row.update(T_star=10 ** (lt0 + frac * (lt1 - lt0)), T_below=Ts[i], T_above=Ts[i + 1],
                       status="crossed" if len(changes) + len(other) == 1 else "several")
        else:
            row.update(T_star=math.nan, T_below=math.nan, T_above=math.nan,
                       status="never" if not other else "reversed",
                       lower="memorizing" if (g > 0).all() else "generalizing" if (g <= 0).all() else "mixed")
        rows.append(row)
    return _frame(rows)


def kink(w: pd.DataFrame, T_star: float) -> dict[str, float] | None:
    """Slopes of log10(min training loss over all branches) against log10 T below and above T*.

    A first-order transition shows as a change of slope at T* (the minimum of two smooth branches that cross).
    None without at least two grid points on each side.
    """
    if not math.isfinite(T_star):
        return None
    m = w.groupby("T")["best"].median().reset_index()
    m = m[(m["best"] > 0) & np.isfinite(m["best"])]
    lo, hi = m[m["T"] <= T_star], m[m["T"] > T_star]
    if len(lo) < 2 or len(hi) < 2:
        return None
    s_lo = float(np.polyfit(np.log10(lo["T"].tail(3)), np.log10(lo["best"].tail(3)), 1)[0])
    s_hi = float(np.polyfit(np.log10(hi["T"].head(3)), np.log10(hi["best"].head(3)), 1)[0])
    return {"slope_below": s_lo, "slope_above": s_hi, "change": s_hi - s_lo}


def direction_clusters(H: np.ndarray, X=None, angle_tol: float = 0.05, min_norm_frac: float = 0.05
                       ) -> dict[str, Any]:
    """Group hidden vectors ``H`` (T x m) by direction.

    Vectors shorter than ``min_norm_frac`` of the longest are "unstored" (the model gave them no direction
    of their own) and left out. For m = 2 the directions are angles, sorted around the circle, split where
    neighbours are more than ``angle_tol`` radians apart; for m > 2 a greedy pass joins a vector to the first
    cluster whose first member is within ``angle_tol``. Returns the count, the sizes (descending), the
    stored fraction, and, with the training set ``X`` (CSR), how often two members of one cluster share a
    feature against two random stored points (``shared_in`` vs ``shared_random``): correlated points, if
    the first is much larger.
    """
    H = np.asarray(H, np.float64)
    norms = np.linalg.norm(H, axis=1)
    if len(H) == 0 or norms.max() <= 0:
        return {"clusters": 0, "sizes": [], "stored": 0, "stored_fraction": 0.0, "shared_in": math.nan,
                "shared_random": math.nan, "labels": np.full(len(H), -1)}
    stored = np.flatnonzero(norms >= min_norm_frac * norms.max())
    labels = np.full(len(H), -1)
    if H.shape[1] == 2:
        ang = np.arctan2(H[stored, 1], H[stored, 0])
        order = np.argsort(ang)
        a = ang[order]
        gaps = np.diff(np.concatenate([a, [a[0] + 2 * math.pi]]))
        cuts = np.flatnonzero(gaps > angle_tol)
        if len(cuts) == 0:
            labels[stored] = 0
        else:
            # start just after the largest gap so no cluster wraps around the circle
            start = (cuts[-1] + 1) % len(a)
            c = 0
            for k in range(len(a)):
                i = (start + k) % len(a)
                labels[stored[order[i]]] = c
                if gaps[i] > angle_tol:
                    c += 1
    else:
        U = H[stored] / norms[stored, None]
        heads: list[int] = []
        for i in range(len(stored)):
            for c, h in enumerate(heads):
                if U[i] @ U[h] >= math.cos(angle_tol):
                    labels[stored[i]] = c
                    break
            else:
                heads.append(i)
                labels[stored[i]] = len(heads) - 1
    counts = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, int)
    sizes = sorted((int(x) for x in counts if x > 0), reverse=True)
    out: dict[str, Any] = {"clusters": len(sizes), "sizes": sizes, "stored": int(len(stored)),
                           "stored_fraction": float(len(stored) / len(H)), "labels": labels,
                           "shared_in": math.nan, "shared_random": math.nan}
    if X is not None and len(stored) > 1:
        out.update(_shared_features(X, labels, stored))
    return out


def _shared_features(X, labels: np.ndarray, stored: np.ndarray, max_pairs: int = 20_000, seed: int = 0
                     ) -> dict[str, float]:
    """P(two points share a nonzero feature) within clusters vs between random stored points."""
    rng = np.random.default_rng(seed)
    feats = [set(X.indices[X.indptr[t]:X.indptr[t + 1]].tolist()) for t in range(X.T)]

    def share(pairs) -> float:
        pairs = list(pairs)
        return float(np.mean([bool(feats[i] & feats[j]) for i, j in pairs])) if pairs else math.nan

    within = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        k = min(len(members) * (len(members) - 1) // 2, max(1, max_pairs // max(1, len(np.unique(labels)))))
        for _ in range(k):
            i, j = rng.choice(members, 2, replace=False)
            within.append((i, j))
    rand = [tuple(rng.choice(stored, 2, replace=False)) for _ in range(min(max_pairs, 5_000))]
    return {"shared_in": share(within[:max_pairs]), "shared_random": share(rand)}


def fmt_count(T: float) -> str:
    if not math.isfinite(T):
        return "inf"
    return f"{T:,.0f}" if T >= 100 else f"{T:.3g}"


def verdict(table: pd.DataFrame, branches: dict[str, str], clusters: pd.DataFrame | None = None) -> list[str]:
    """The caption: where memorizing is the lowest training loss found, the crossover and the kink, the clusters."""
    bt = branch_table(table, branches)
    w = winners(bt)
    if w.empty:
        return ["No complete branch pair yet: nothing to compare."]
    cp = crossover_points(w)
    out = []
    seeds = sorted(w["data_seed"].unique())
    Tlo, Thi = w["T"].min(), w["T"].max()
    crossed = cp[cp["status"].isin(["crossed", "several"])] if len(cp) else cp
    if len(crossed):
        Ts = crossed["T_star"].to_numpy(float)
        out.append(f"Crossover: memorizing has the lowest training loss found below T* and generalizing above it; "
                   f"T* = {', '.join(fmt_count(x) for x in Ts)} for data seed(s) "
                   f"{', '.join(str(int(s)) for s in crossed['data_seed'])} "
                   + (f"(spread {fmt_count(Ts.min())}–{fmt_count(Ts.max())}; " if len(Ts) > 1 else "(")
                   + f"between grid points T = {', '.join(f'{fmt_count(a)}–{fmt_count(b)}' for a, b in zip(crossed['T_below'], crossed['T_above']))}).")
        if (crossed["status"] == "several").any():
            out.append("For some seeds the sign of the gap changes more than once: the first change is reported.")
        k = kink(w, float(np.median(Ts)))
        if k is not None:
            out.append(f"Kink in the minimum training loss: log-log slope {k['slope_below']:.2f} below T*, "
                       f"{k['slope_above']:.2f} above (change {k['change']:+.2f}).")
    for _, r in cp[~cp["status"].isin(["crossed", "several"])].iterrows() if len(cp) else []:
        out.append(f"Data seed {int(r['data_seed'])}: the branches never cross over T = {fmt_count(r['T_min'])}–"
                   f"{fmt_count(r['T_max'])}; {r.get('lower', 'one branch')} stays lower (smallest gap "
                   f"{r['min_abs_gap']:.3g}).")
    lost = w[w["memorizing"] >= 1.0]
    if len(lost):
        Ts = sorted(lost["T"].unique())
        out.append(f"The memorizing branch found nothing better than the all-zeros model (training loss ≥ 1) at T = "
                   f"{', '.join(fmt_count(x) for x in Ts)} (largest {lost['memorizing'].max():.3g}): continuing the "
                   "memorizing solution of a smaller T onto new points blows up, and the T-gon construction no "
                   "longer memorizes there. So the memorizing optimum is not measured at those T: the crossover "
                   "above says where memorization stops being *found*, an upper bound on T* only if better "
                   "memorizing solutions do not exist there.")
    cold = w.dropna(subset=["cold"])
    if len(cold):
        beat = cold[cold["cold"] < cold[["memorizing", "generalizing"]].min(axis=1) - 1e-6]
        out.append(f"Cold starts (Xavier, best lr) end above the best warm start at {len(cold) - len(beat)} of "
                   f"{len(cold)} (seed, T) points" + (f"; they are lowest at T = {', '.join(fmt_count(x) for x in sorted(beat['T'].unique()))}"
                                                       if len(beat) else "") + ".")
    if clusters is not None and len(clusters):
        c = clusters.sort_values("T")
        parts = [f"T = {fmt_count(r['T'])}: {int(r['clusters'])} clusters of {r['stored']} stored points "
                 f"(largest {int(r['largest'])})" for _, r in c.iterrows()]
        out.append("Memorizing-branch solutions (where they memorize: training loss < 1), hidden vectors grouped by "
                   "direction: " + "; ".join(parts) + ".")
        sh = c.dropna(subset=["shared_in"])
        if len(sh):
            r = sh.iloc[-1]
            out.append(f"At T = {fmt_count(r['T'])} two points of one cluster share a feature with probability "
                       f"{r['shared_in']:.2f}, two random stored points {r['shared_random']:.2f}"
                       + (" — clusters of correlated points." if r["shared_in"] > 2 * max(r["shared_random"], 1e-9)
                          else " — no more correlated than chance."))
    out.append(f"Measured: T = {fmt_count(Tlo)}–{fmt_count(Thi)}, {len(seeds)} data seed(s).")
    return out
