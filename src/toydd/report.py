"""``DIR/report/index.html``: every figure a sweep directory allows, in one offline page.

:func:`build_report` reads the results store of a sweep directory (layout in
docs/ARCHITECTURE.md: ``experiments/<name>.json`` manifests list run keys,
``runs/<key>/`` hold the runs), draws each figure the experiments present allow
with :mod:`toydd.plots`, and writes

* ``DIR/report/<experiment>-<figure>.png`` (and ``.gif`` training movies), and
* ``DIR/report/index.html``: the figures (embedded, so the page alone is
  enough), interactive plotly versions of the main plots with plotly.js inlined
  once, a slider over T for the vector plots, a caption per figure setting what
  the paper reports beside what *this* sweep shows (computed from the data), the
  table of runs, the configuration, and the software versions.

The page makes no network request: plotly.js, images and data are all inline.
The report directory is built in a temporary sibling and renamed into place, so
a crash half-way never replaces a good report with a broken one.

Experiments are recognised by name (``t-sweep``, ``norms``, ``tm-grid``,
``weight-decay``, ``epochs``, ``sparsity``); an experiment with another name
(a user's own sweep file) gets the figures its varying fields allow: T and m ->
heat map, T and one other field -> one line per value, T alone -> the main
figure. An experiment with no complete run yet is listed, not drawn.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import plots
from .config import TrainConfig, parse_T
from .errors import ToyddError
from .metrics import REPRESENTED_NORM
from .storage import CorruptRun, RunResult, load_run, names_preview, os_reason, run_row, write_error

# --- reading the results store ------------------------------------------------------

@dataclass
class Experiment:
    """One experiment of a sweep directory: its manifest and its complete runs as a table."""

    name: str
    manifest: dict[str, Any]
    table: pd.DataFrame  # one row per complete run
    missing: list[str] = field(default_factory=list)  # keys with no complete run yet
    failed: list[dict[str, Any]] = field(default_factory=list)  # failed/<key>.json records
    corrupt: list[str] = field(default_factory=list)  # messages naming the bad file

    @property
    def n_keys(self) -> int:
        return len(self.manifest.get("keys", []))


class Store:
    """A sweep directory's experiments, read through the documented layout.

    Only ``metrics.json`` and ``config.json`` are parsed for the tables (after
    :func:`~toydd.storage.verify_run` has checked every file's checksum, so a
    corrupted run is reported by name, never silently read); arrays and
    histories are loaded on demand by :meth:`run` and cached.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ToyddError(f"no sweep directory at {self.root}")
        exp_dir = self.root / "experiments"
        for sub in (exp_dir, self.root / "runs"):
            if os.path.lexists(sub) and not sub.is_dir():
                raise ToyddError(f"{sub} is not a directory, so {self.root} is not a usable results directory; "
                                 f"move {sub} away and run again")
        manifests = sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []
        if not manifests:
            raise ToyddError(f"{self.root} holds no experiments (expected {exp_dir}/<name>.json)")
        self.problems: list[str] = []
        self._rows: dict[str, dict[str, Any] | None] = {}
        self._runs: dict[str, RunResult] = {}
        self.experiments: dict[str, Experiment] = {}
        for path in manifests:
            try:
                manifest = json.loads(path.read_text())
                keys = list(manifest["keys"])
            except (ValueError, KeyError, TypeError, OSError) as e:
                self.problems.append(f"{path}: unreadable experiment manifest ({type(e).__name__}); skipped")
                continue
            name = str(manifest.get("name") or path.stem)
            self.experiments[name] = self._experiment(name, manifest, keys)

    def _row(self, key: str) -> dict[str, Any] | None:
        """The table row of run ``key``: config fields, then scalar metrics. None if not complete."""
        if key in self._rows:
            return self._rows[key]
        run_dir = self.root / "runs" / key
        row: dict[str, Any] | None = None
        if run_dir.is_dir():
            try:
                row = run_row(run_dir)
                row["feature_dims_top"] = json.loads((run_dir / "metrics.json").read_text()).get("feature_dims_top")
            except CorruptRun as e:
                self.problems.append(str(e))
                row = None
            except (ValueError, ToyddError, OSError, TypeError) as e:
                self.problems.append(f"{run_dir}/config.json: {e}")
                row = None
        self._rows[key] = row
        return row

    def _experiment(self, name: str, manifest: dict[str, Any], keys: list[str]) -> Experiment:
        rows, missing, failed, corrupt = [], [], [], []
        for key in keys:
            n_problems = len(self.problems)
            row = self._row(key)
            if row is not None:
                rows.append(dict(row, experiment=name))
                continue
            missing.append(key)
            corrupt.extend(self.problems[n_problems:])
            fpath = self.root / "failed" / f"{key}.json"
            if fpath.is_file():
                try:
                    record = json.loads(fpath.read_text())
                    failed.append(record if isinstance(record, dict) else {"key": key, "error": f"{fpath} unreadable"})
                except (ValueError, OSError):
                    failed.append({"key": key, "error": f"{fpath} unreadable"})
        table = pd.DataFrame(rows)
        if not table.empty:
            table = table.sort_values(["T", "m", "data_seed"], key=_sort_key).reset_index(drop=True)
        return Experiment(name, manifest, table, missing, failed, corrupt)

    def run(self, key: str, history: bool = True) -> RunResult:
        """Load (and cache) a complete run with its arrays and history."""
        if key not in self._runs:
            self._runs[key] = load_run(self.root / "runs" / key, arrays=True, history=history)
        return self._runs[key]

    def table(self) -> pd.DataFrame:
        """All experiments' rows (a run in two experiments appears twice, once per experiment)."""
        tables = [e.table for e in self.experiments.values() if not e.table.empty]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


PAPER_ORDER = ("t-sweep", "norms", "tm-grid", "weight-decay", "epochs", "sparsity", "repeated", "mnist-dstar")


def ordered_experiments(store: "Store") -> list[Experiment]:
    """The paper's experiments in the paper's order, then any others by name."""
    rank = {n: i for i, n in enumerate(PAPER_ORDER)}
    return sorted(store.experiments.values(), key=lambda e: (rank.get(e.name, len(rank)), e.name))


def load_store(root: str | os.PathLike) -> Store:
    """Read the sweep directory at ``root`` (see :class:`Store`)."""
    return Store(root)


def _sort_key(col: pd.Series) -> pd.Series:
    return col.astype(float) if col.name == "T" else col


# --- what the data shows ---------------------------------------------------------------
# Each ``find_*`` function turns a table (or runs) into one or two plain sentences:
# the "this sweep" half of a caption. They compute; they never hard-code the paper's numbers.

def _f(x: float, digits: int = 3) -> str:
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
    tail = f" At the largest T ({plots.fmt_T(last['T'])}) the test loss is {_f(last['mean'], 4)}."
    if b is None:
        return "Fewer than three dataset sizes: no curve to read a bump from." + tail
    if b["rise"] <= 0:
        return ("The mean test loss never rises with T: no double-descent bump in this sweep "
                f"(from {_f(agg['mean'].iloc[0], 4)} at T={plots.fmt_T(agg['T'].iloc[0])})." + tail)
    sig = ("" if b["seeds"] < 2 else
           f" The rise is {_f(b['z'], 2)}× its standard error over {b['seeds']} data seeds"
           + (" (within noise)." if b["z"] < 2 else "."))
    nb = (f"{_f(b['over_neighbours'], 3)} above its neighbours" if b["over_neighbours"] > 0
          else "not a local maximum")
    zero = " It is worse than the all-zeros model (1.0) there." if b["loss"] > 1.0 else ""
    return (f"Test loss peaks at T={plots.fmt_T(b['T'])} (mean {_f(b['loss'], 4)}): a bump of "
            f"{_f(b['rise'], 3)} over the best smaller training set (T={plots.fmt_T(b['T_best'])}), "
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
        f"{_f(r, 2)} at T={plots.fmt_T(T)}" for T, r in first.items()) + ". ")
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
            s += f" At T={plots.fmt_T(Tn)} it is {_f(r, 2)}× m/T."
        return s
    T0 = worst.index[0]
    r = (d.loc[d["T"] == T0, "median_data_dim"] / (d.loc[d["T"] == T0, "m"] / T0)).mean()
    return listing + (f"Not within {tol:.0%} of m/T in every run even at the smallest T={plots.fmt_T(T0)} "
                      f"({_f(r, 2)}× on average).")


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
    return (f"At T={plots.fmt_T(run.config.T)} (data seed {run.config.data_seed}): max D_f = {_f(top[0])}, "
            f"{n_rep} features with ||W_i|| > {REPRESENTED_NORM} (top D_f: {', '.join(_f(x, 2) for x in top)}; "
            f"a regular pentagon in m={m} gives {_f(m / 5, 2)} each), ||W||_F = {_f(float(np.linalg.norm(W)))} "
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
        out.append(f"{name} goes from {_f(first['mean'])} at T={plots.fmt_T(first['T'])} to a peak of "
                   f"{_f(agg['mean'].iloc[i])} at T={plots.fmt_T(agg['T'].iloc[i])}, and is "
                   f"{_f(last['mean'])} at T={plots.fmt_T(last['T'])}.")
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
    s = (f"The longest feature vector is at T={plots.fmt_T(tw)} (||W_i|| = {_f(w)}), the longest hidden vector "
         f"at T={plots.fmt_T(th)} (||h_i|| = {_f(h)}).")
    dd = small.arrays.get("data_dims")
    if dd is not None and len(dd):
        s += (f" At T={plots.fmt_T(small.config.T)} the hidden vectors have D_X = {_f(float(np.min(dd)))}–"
              f"{_f(float(np.max(dd)))} (a {int(small.config.T)}-gon gives m/T = {_f(small.config.m / small.config.T)}).")
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
            more_data.append(f"m={int(m)} (peak at T={plots.fmt_T(b['T'])}, +{_f(b['rise'], 2)})")
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
    s = f"Worst cell: T={plots.fmt_T(w['T'])}, m={int(w['m'])} (mean test loss {_f(w['mean'], 4)})."
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
    parts = [f"{label} {v:g}: " + (f"{_f(h, 2)} at T={plots.fmt_T(T)}" + (" (within noise)" if z < 2 else "")
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
        verdict += f" (largest {_f(max(hs), 2)}, smallest {_f(min(hs), 2)})."
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
    parts = [f"S={S:g}: T={plots.fmt_T(T)} (T(1-S) = {_f(x, 3)})" + (", the smallest T swept: the scale may lie "
                                                                     "below the grid" if first else "")
             for S, T, x, first in rows]
    s = "Generalization scale (first T where mean max D_f reaches half its largest value) — " + "; ".join(parts) + "."
    if len(rows) >= 2:
        Ts, xs = [r[1] for r in rows], [r[2] for r in rows]  # (S, T, T(1-S), first)
        s += (f" Across sparsities it spans a factor {_f(max(Ts) / min(Ts), 2)} in T but "
              f"{_f(max(xs) / min(xs), 2)} in T(1-S).")
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
            lows.append(f"T/N={_f(x, 2)}: R ≥ {int(hit['repeats'].min())}")
    if lows:
        s += " Smallest R memorized: " + "; ".join(lows) + "."
    return s


def find_movie(geo: dict[str, np.ndarray], run: RunResult) -> str:
    """The top feature dimensionality over training: a peak well above the final value is a near miss."""
    f, x, steps = geo["top_feature_dim"], geo["top_data_dim"], geo["steps"]
    i = int(np.argmax(f))
    s = (f"T={plots.fmt_T(run.config.T)}: top-m D_f goes {_f(f[0], 2)} → {_f(f[-1], 2)} "
         f"(peak {_f(f[i], 2)} at step {int(steps[i]):,}); top-m D_X {_f(x[0], 2)} → {_f(x[-1], 2)}.")
    if f[i] >= 0.1 and f[-1] < 0.5 * f[i]:
        s += " Features were learned and then forgotten: a near miss, as in the paper's T = 10,000 movie."
    return s


# --- interactive (plotly) versions ------------------------------------------------------

def _plotly_T_axis(tax: plots.TAxis) -> dict[str, Any]:
    """A log x axis whose ticks read like the static figures', '∞' included."""
    if not tax.has_finite:
        return {"type": "log", "tickvals": [tax.inf_pos], "ticktext": ["∞"],
                "range": [math.log10(tax.inf_pos / 3), math.log10(tax.inf_pos * 3)]}
    d0, d1 = math.floor(math.log10(tax.lo)), math.ceil(math.log10(tax.hi))
    vals = [10.0**d for d in range(d0, d1 + 1) if tax.lo / 1.6 <= 10.0**d <= tax.hi * 1.6]
    text = [plots.fmt_T(v) for v in vals]
    if tax.has_inf:
        vals.append(tax.inf_pos)
        text.append("∞")
    right = tax.inf_pos if tax.has_inf else tax.hi
    return {"type": "log", "tickvals": vals, "ticktext": text,
            "range": [math.log10(tax.lo / 1.6), math.log10(right * 1.6)]}


def _round(a: np.ndarray, sig: int = 4) -> list:
    """Short JSON for plot data: ``sig`` significant digits."""
    return [float(f"{v:.{sig}g}") for v in np.asarray(a, np.float64).ravel()]


def _mean_trace(go, agg: pd.DataFrame, tax: plots.TAxis, name: str, color: str, **kw) -> Any:
    return go.Scatter(x=_round(tax.pos(agg["T"].astype(float))), y=_round(agg["mean"]),
                      error_y={"type": "data", "array": _round(agg["std"]), "visible": True, "thickness": 1},
                      mode="lines+markers", name=name, line={"color": color},
                      text=[plots.fmt_T(t) for t in agg["T"]],
                      hovertemplate="T=%{text}<br>%{y:.4g} ± %{error_y.array:.2g}<extra>" + name + "</extra>", **kw)


def plotly_main(table: pd.DataFrame, runs: Sequence[RunResult]):
    """Test loss (mean ± std over seeds, each seed) and D_f / D_X against T with the m/T curve."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tax = plots.TAxis.of(list(table["T"]) + [r.config.T for r in runs])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("test loss", "dimensionality of features (blue) and training points (red)"))
    fig.add_trace(go.Scatter(x=_round(tax.pos(table["T"].astype(float))), y=_round(table["test_loss"]),
                             mode="markers", name="each data seed", marker={"color": "#999", "size": 5},
                             text=[f"T={plots.fmt_T(t)}, seed {s}" for t, s in zip(table["T"], table["data_seed"])],
                             hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"), 1, 1)
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "test_loss"), tax, "mean test loss", "#333"), 1, 1)
    fig.add_hline(y=1.0, line={"dash": "dash", "color": plots.BASELINE_COLOR}, row=1, col=1,
                  annotation_text="all-zeros model", annotation_position="top left")
    for kind, key, color in (("D_f", "feature_dims", plots.FEATURE_COLOR), ("D_X", "data_dims", plots.DATA_COLOR)):
        xs, ys, txt = [], [], []
        for r in runs:
            v = r.arrays.get(key)
            if v is None or not len(v):
                continue
            v = plots._subsample_values(v, 250)
            xs += [float(tax.pos(r.config.T))] * len(v)
            ys += list(v)
            txt += [plots.fmt_T(r.config.T)] * len(v)
        fig.add_trace(go.Scatter(x=_round(xs), y=_round(ys), mode="markers", name=kind, text=txt,
                                   marker={"color": color, "size": 4, "opacity": 0.5},
                                   hovertemplate="T=%{text}<br>" + kind + "=%{y:.3g}<extra></extra>"), 2, 1)
    t = np.geomspace(tax.lo, tax.hi, 100)
    for m in sorted({r.config.m for r in runs}) if tax.has_finite else []:
        fig.add_trace(go.Scatter(x=_round(t), y=_round(np.minimum(m / t, 1)), mode="lines", name=f"m/T (m={m})",
                                 line={"color": "black", "dash": "dash", "width": 1.5}), 2, 1)
    axis = _plotly_T_axis(tax)
    fig.update_xaxes(**axis)
    fig.update_xaxes(title_text="training set size T", row=2, col=1)
    fig.update_yaxes(title_text="test loss", row=1, col=1)
    fig.update_yaxes(title_text="dimensionality", range=[-0.02, 1.02], row=2, col=1)
    fig.update_layout(height=640, **_LAYOUT)
    return fig


_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
           "legend": {"orientation": "h", "y": -0.12}, "font": {"size": 12}}


def plotly_lines(table: pd.DataFrame, value: str, by: str | None, title: str, label: str = "",
                 x: str = "T", baseline: bool = False, ytitle: str | None = None):
    """``value`` against T (mean ± std over seeds), one line per value of ``by`` (or one line)."""
    import plotly.graph_objects as go

    d = table.copy()
    tax = plots.TAxis.of(d[x])
    fig = go.Figure()
    groups = [(None, d)] if by is None else list(d.groupby(by))
    colors = plots._setting_colors([g for g, _ in groups]) if by else ["#333"]
    for (g, sub), c in zip(groups, colors):
        if x != "T":  # aggregate() groups on "T": put the x column there
            sub = sub.drop(columns="T").rename(columns={x: "T"})
        agg = plots.aggregate(sub, value)
        col = matplotlib_to_css(c)
        fig.add_trace(_mean_trace(go, agg, tax, f"{label} = {g:g}" if by else value, col))
    if baseline:
        fig.add_hline(y=1.0, line={"dash": "dash", "color": plots.BASELINE_COLOR},
                      annotation_text="all-zeros model", annotation_position="top left")
    fig.update_xaxes(title_text="training set size T" if x == "T" else x, **_plotly_T_axis(tax))
    fig.update_yaxes(title_text=ytitle or value)
    fig.update_layout(title=title, height=420, **_LAYOUT)
    return fig


def plotly_norms(table: pd.DataFrame):
    """||W||_F and ||b|| against T (mean ± std over seeds) with the pentagon's sqrt(5)."""
    import plotly.graph_objects as go

    tax = plots.TAxis.of(table["T"])
    fig = go.Figure()
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "weight_norm"), tax, "||W||_F", plots.FEATURE_COLOR))
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "bias_norm"), tax, "||b||", "#e07b00"))
    fig.add_hline(y=plots.PENTAGON_NORM, line={"dash": "dot", "color": plots.BASELINE_COLOR},
                  annotation_text="√5 (ideal pentagon)", annotation_position="top left")
    fig.update_xaxes(title_text="training set size T", **_plotly_T_axis(tax))
    fig.update_yaxes(title_text="norm", rangemode="tozero")
    fig.update_layout(title="parameter norms against T", height=420, **_LAYOUT)
    return fig


def plotly_tm(table: pd.DataFrame):
    """Heat map of mean test loss over (T, m), diverging at the all-zeros loss 1.0."""
    import plotly.graph_objects as go

    agg = plots.aggregate(table, "test_loss", by=["m", "T"])
    Ts, ms = plots.sort_T(agg["T"]), sorted(agg["m"].unique())
    Z = [[None] * len(Ts) for _ in ms]
    for _, r in agg.iterrows():
        Z[ms.index(r["m"])][Ts.index(float(r["T"]))] = float(f"{r['mean']:.5g}")
    vals = agg["mean"].to_numpy(float)
    lo, hi = float(vals.min()), float(vals.max())
    kw: dict[str, Any] = {"colorscale": "RdBu_r", "zmid": 1.0} if lo < 1.0 < hi else {"colorscale": "Viridis"}
    fig = go.Figure(go.Heatmap(z=Z, x=[plots.fmt_T(t) for t in Ts], y=[str(int(m)) for m in ms],
                               colorbar={"title": {"text": "test loss"}},
                               hovertemplate="T=%{x}, m=%{y}<br>loss %{z:.4g}<extra></extra>", **kw))
    fig.update_xaxes(title_text="training set size T", type="category")
    fig.update_yaxes(title_text="hidden dimensions m", type="category")
    fig.update_layout(title="mean test loss over (T, m)", height=max(320, 40 * len(ms) + 160), **_LAYOUT)
    return fig


def plotly_repeated(table: pd.DataFrame):
    """The repeated-point phase diagram: R against T/N coloured by the memorized fraction, with R = 0.4 T/N."""
    import plotly.graph_objects as go

    g = plots.repeated_table(table)
    fig = go.Figure()
    symbols = ["cross", "x", "circle", "square", "triangle-up", "diamond"]
    for (setup, sub), sym in zip(g.groupby(["n", "sparsity"]), symbols):
        n, S = setup
        fig.add_trace(go.Scatter(x=_round(sub["T_over_N"]), y=_round(sub["repeats"]), mode="markers",
                                 name=f"N = {int(n):,}, S = {S:g}",
                                 marker={"symbol": sym, "size": 12, "color": _round(sub["memorized"]),
                                         "colorscale": "RdBu", "reversescale": True, "cmin": 0, "cmax": 1,
                                         "line": {"width": 1, "color": "#333"},
                                         "colorbar": {"title": {"text": "memorized"}}},
                                 text=[f"{v:.2f} memorized over {k} seed(s)" for v, k in zip(sub["memorized"], sub["seeds"])],
                                 hovertemplate="T/N=%{x}, R=%{y}<br>%{text}<extra></extra>"))
    x = np.geomspace(g["T_over_N"].min() / 1.5, g["T_over_N"].max() * 1.5, 50)
    fig.add_trace(go.Scatter(x=_round(x), y=_round(plots.JERMYN_SLOPE * x), mode="lines",
                             name=f"R = {plots.JERMYN_SLOPE:g} T/N", line={"color": "black"}))
    fig.update_xaxes(type="log", title_text="T/N")
    fig.update_yaxes(type="log", title_text="repeats R")
    fig.update_layout(title="repeated points: memorized or not", height=440, **_LAYOUT)
    return fig


def matplotlib_to_css(c: Any) -> str:
    """A matplotlib colour (name, hex, or RGBA tuple) as a CSS colour string."""
    from matplotlib.colors import to_hex

    return to_hex(c)


# --- the vector-plot slider -------------------------------------------------------------------

SLIDER_VECTORS = 600  # vectors per panel per T in the page: enough to see the shape, small enough to ship


def vector_slider_data(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per T: subsampled W columns and hidden vectors, their extents, and a one-line summary."""
    out = []
    for r in sorted(runs, key=lambda r: (r.config.infinite, float(r.config.T))):
        W = plots._subsample(np.asarray(r.W, np.float64).T, SLIDER_VECTORS, keep_longest=200)
        H_full, what = plots.display_hidden(r)
        H = plots._subsample(H_full, SLIDER_VECTORS, keep_longest=200)
        n_rep = int(np.sum(np.linalg.norm(np.asarray(r.W, np.float64), axis=0) > REPRESENTED_NORM))
        dd = r.arrays.get("data_dims")
        info = (f"T = {plots.fmt_T(r.config.T)}, data seed {r.config.data_seed}: test loss "
                f"{_f(r.metrics.get('test_loss'), 4)}, ||W||_F = {_f(r.metrics.get('weight_norm'))}, "
                f"{n_rep} features with ||W_i|| > 0.5, max D_f = {_f(r.metrics.get('max_feature_dim'))}"
                + (f", median D_X = {_f(float(np.median(dd)))} (m/T = {_f(r.config.m / r.config.T)})"
                   if dd is not None and len(dd) else "") + f"; red: {what}.")
        out.append({"label": plots.fmt_T(r.config.T), "W": [_round(W[:, 0]), _round(W[:, 1])],
                    "H": [_round(H[:, 0]), _round(H[:, 1])], "extW": plots.vector_extent(W),
                    "extH": plots.vector_extent(H_full), "info": info})
    return out


_SLIDER_JS = r"""
(function () {
  const frames = JSON.parse(document.getElementById('vector-slider-data').textContent);
  const div = document.getElementById('vector-slider-plot');
  const slider = document.getElementById('vector-slider');
  const label = document.getElementById('vector-slider-label');
  const info = document.getElementById('vector-slider-info');
  const consistent = document.getElementById('vector-slider-consistent');
  const maxW = Math.max(...frames.map(f => f.extW)), maxH = Math.max(...frames.map(f => f.extH));
  // Lines from the origin, one trace per panel: 0 -> v, then a gap (null).
  function spokes(v) {
    const x = [], y = [];
    for (let i = 0; i < v[0].length; i++) { x.push(0, v[0][i], null); y.push(0, v[1][i], null); }
    return {x: x, y: y};
  }
  function axis(half, domain, anchor) {
    return {range: [-half, half], domain: domain, anchor: anchor, zeroline: true, zerolinecolor: '#eee',
            showgrid: false, showticklabels: true, ticks: '', mirror: true, showline: true, linecolor: '#ccc'};
  }
  function draw() {
    const f = frames[+slider.value];
    const w = spokes(f.W), h = spokes(f.H);
    const hw = 1.12 * (consistent.checked ? maxW : f.extW), hh = 1.12 * (consistent.checked ? maxH : f.extH);
    const traces = [
      {x: w.x, y: w.y, xaxis: 'x', yaxis: 'y', mode: 'lines+markers', name: 'features W_i',
       line: {color: '%FEATURE%', width: 1}, marker: {size: 3}, hoverinfo: 'x+y'},
      {x: h.x, y: h.y, xaxis: 'x2', yaxis: 'y2', mode: 'lines+markers', name: 'hidden vectors h_i',
       line: {color: '%DATA%', width: 1}, marker: {size: 3}, hoverinfo: 'x+y'}];
    const layout = {template: 'plotly_white', height: 430, margin: {l: 40, r: 20, t: 40, b: 30}, showlegend: false,
      xaxis: axis(hw, [0, 0.47], 'y'), yaxis: Object.assign(axis(hw, [0, 1], 'x'), {scaleanchor: 'x'}),
      xaxis2: axis(hh, [0.53, 1], 'y2'), yaxis2: Object.assign(axis(hh, [0, 1], 'x2'), {scaleanchor: 'x2'}),
      annotations: [
        {text: 'features W<sub>i</sub> (blue), T = ' + f.label, x: 0.235, y: 1.07, xref: 'paper', yref: 'paper', showarrow: false},
        {text: 'points h<sub>i</sub> = W x<sub>i</sub> (red), T = ' + f.label, x: 0.765, y: 1.07, xref: 'paper', yref: 'paper', showarrow: false}]};
    Plotly.react(div, traces, layout, {responsive: true, displaylogo: false});
    label.textContent = 'T = ' + f.label;
    info.textContent = f.info;
    div.setAttribute('data-t', f.label);
  }
  slider.addEventListener('input', draw);
  consistent.addEventListener('change', draw);
  draw();
})();
"""


def vector_slider_html(runs: Sequence[RunResult]) -> str:
    """A range input over T driving a plotly figure of W columns (blue) and h_i (red), with a scale toggle."""
    frames = vector_slider_data(runs)
    data = json.dumps(frames, separators=(",", ":")).replace("</", "<\\/")
    js = _SLIDER_JS.replace("%FEATURE%", plots.FEATURE_COLOR).replace("%DATA%", plots.DATA_COLOR)
    return f"""
<div class="slider-row">
  <label for="vector-slider">dataset size</label>
  <input type="range" id="vector-slider" min="0" max="{len(frames) - 1}" step="1" value="0">
  <span id="vector-slider-label" class="tlabel"></span>
  <label class="check"><input type="checkbox" id="vector-slider-consistent"> one scale for all T</label>
</div>
<div id="vector-slider-info" class="slider-info"></div>
<div id="vector-slider-plot" class="plotly-box"></div>
<script type="application/json" id="vector-slider-data">{data}</script>
<script>{js}</script>
"""


# --- figures of each experiment ------------------------------------------------------------

PAPER = {
    "main": ("Small T: the training points' hidden vectors form T-gons in m = 2, D_X ≈ m/T, while features are messy. "
             "Large T: about 5 features form a pentagon with D_f notably below 2/5; the hidden vectors trace it too. "
             "In between both dimensionalities are low and the mean test loss (4 data seeds) bumps above its "
             "neighbours: double descent without label noise. The paper puts the middle regime at T ≈ 700–5,000 "
             "(n = 10,000, S = 0.999); a replication saw ≈ 100–20,000. The scale moves as 1/(1-S) "
             "(Jermyn), so a sweep at S = 0.99 should transition about 10× earlier."),
    "vectors": ("Blue: columns W_i; red: h_i = W x_i of the training points. Each panel on its own scale, the shapes: "
                "T-gons of points at small T, the feature pentagon at large T, messy in between."),
    "vectors_consistent": ("On one scale, the lengths of both hidden and feature vectors vary widely with T: they "
                           "peak around T = 30, fall rapidly in the middle regime, and plateau at large T."),
    "norms": ("||W||_F and ||b|| rise with T while the model memorizes (a T-gon of more orthonormal points needs "
              "larger W and b), peak, then fall and plateau once it generalizes; the idealised pentagon solution has "
              "||W|| = √5 ≈ 2.2, close to the trained value. A replication saw ||b|| exceed ||W||_F in between."),
    "tm-grid": ("Test loss over (T, m), 4 models per cell: there are regions where more data or a bigger model "
                "hurts. Optimization is more consistent for m > 3."),
    "weight-decay": ("At m = 4, decreasing weight decay increases the test-loss bump; weight decay 1.0 removes it "
                     "entirely."),
    "epochs": ("At m = 4 and weight decay 1e-2, training longer (5% warmup, then cosine) makes the test-loss bump "
               "larger."),
    "sparsity": ("Jermyn: the generalizing scale does not move with weight decay but lines up across sparsities on "
                 "T(1-S): features are learned once each is seen about 10 times."),
    "training": ("Full-batch AdamW with warmup and cosine decay; the paper stresses many full-batch steps and the "
                 "annealed schedule."),
    "movie": ("Movies of training: in the middle regime some models briefly learn generalizing features and then "
              "forget them by the end of training (the paper's T = 10,000 movie); near misses also occur with "
              "repeated data points."),
    "repeated": ("Jermyn: a datapoint repeated 2–3 times behaves as in the paper; with more repeats models learn a "
                 "mix of datapoints and features. Balancing the loss benefit of a feature (~T(1-S)) against a "
                 "repeated point (~RN(1-S)) predicts memorization when R > c T/N, independent of sparsity; his "
                 "m = 2 runs follow R = 0.4 T/N at larger T/N and need more repeats at low T/N (a point counts as "
                 "memorized when in the top 0.1% by D_X)."),
    "replication-gap": ("The paper (n = 10,000, S = 0.999, m = 2, AdamW lr 1e-3, wd 1e-2, 50,000 steps): the middle "
                        "regime from T ~ 700 with test loss ~1.01, generalization from T ~ 5,000, norms peaking near "
                        "T = 30 and plateauing near ||W|| = sqrt(5). Jermyn's replication at the stated settings: "
                        "middle regime from T ~ 100 with test losses up to 5,000, generalization from T = 20,000, "
                        "weight norms rising over T = 100-1,000; the authors: 'there must be some hyperparameter "
                        "difference'. Their later update: the intermediate regime is largely an optimization failure, "
                        "and with tuned learning rates the memorizing solution has the lowest training loss up to "
                        "~500k samples."),
    "generic": "A sweep outside the paper's list: no published result to compare with.",
}


@dataclass
class Section:
    """One figure of the report: files, caption halves, and its interactive version."""

    id: str
    title: str
    files: list[str]  # PNG / GIF names in the report directory
    paper: str
    finding: str | list[str]  # one sentence group, or several (shown as a list)
    interactive: str = ""  # HTML (plotly div or the slider)

    def finding_html(self) -> str:
        items = [f for f in ([self.finding] if isinstance(self.finding, str) else self.finding) if f]
        if not items:
            return "–"
        if len(items) == 1:
            return html.escape(items[0])
        return "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in items) + "</ul>"


class _Builder:
    """Draws the figures of one sweep directory into ``out`` and collects the sections."""

    def __init__(self, store: Store, out: Path, movies: int, log: Callable[[str], None], dpi: int = 150):
        self.store, self.out, self.movies, self.log, self.dpi = store, out, movies, log, dpi
        self.sections: list[Section] = []
        self.notes: list[str] = []
        self._plotly_n = 0

    # -- helpers -------------------------------------------------------------------------
    def png(self, fig, name: str) -> str:
        plots.save_figure(fig, self.out / name, dpi=self.dpi)
        fig.clf()
        return name

    def plotly(self, fig) -> str:
        self._plotly_n += 1
        return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plotly-{self._plotly_n}",
                           config={"displaylogo": False, "responsive": True})

    def attempt(self, what: str, fn: Callable[[], None]) -> None:
        """Draw one figure; a failure is reported in the page instead of losing the whole report."""
        try:
            fn()
        except Exception as e:  # a figure that cannot be drawn must not cost the others
            self.notes.append(f"{what}: not drawn ({type(e).__name__}: {e})")
            self.log(f"warning: {what}: {type(e).__name__}: {e}")

    def representatives(self, table: pd.DataFrame, m: int | None = None) -> list[RunResult]:
        """One loaded run per T: the lowest data seed (and init base) at that T."""
        d = table if m is None else table[table["m"] == m]
        reps = []
        for T in plots.sort_T(d["T"]):
            row = d[d["T"].astype(float) == T].sort_values(["data_seed", "init_seed_base"]).iloc[0]
            reps.append(self.store.run(row["key"]))
        return reps

    # -- experiments ---------------------------------------------------------------------
    def experiment(self, exp: Experiment) -> None:
        if exp.manifest.get("kind") == "mnist":  # real-digit MLP runs in their own store (toydd.mnist)
            self.attempt(f"{exp.name}: D* of MNIST digits", lambda: self.mnist(exp))
            return
        t = exp.table
        if t.empty:
            self.notes.append(f"{exp.name}: no complete run yet ({exp.n_keys} planned); nothing to draw.")
            return
        kind = exp.name if exp.name in ("t-sweep", "norms", "tm-grid", "weight-decay", "epochs", "sparsity",
                                        "repeated", "replication-gap") else _infer_kind(t)
        self.log(f"report: {exp.name} ({len(t)} runs) as {kind}")
        if kind == "t-sweep":
            self.t_sweep(exp)
            if "norms" not in self.store.experiments:
                self.attempt(f"{exp.name}: norms", lambda: self.norms(exp))
        elif kind == "norms":
            self.attempt(f"{exp.name}: norms", lambda: self.norms(exp))
        elif kind == "tm-grid":
            self.attempt(f"{exp.name}: heat map", lambda: self.tm_grid(exp))
        elif kind in ("weight-decay", "epochs"):
            self.attempt(f"{exp.name}: lines", lambda: self.setting_lines(exp, kind))
        elif kind == "sparsity":
            self.attempt(f"{exp.name}: sparsity", lambda: self.sparsity(exp))
        elif kind == "repeated":
            self.attempt(f"{exp.name}: phase diagram", lambda: self.repeated(exp))
        elif kind == "replication-gap":
            self.attempt(f"{exp.name}: recipes", lambda: self.replication_gap(exp))
        elif kind.startswith("lines:"):
            self.attempt(f"{exp.name}: lines", lambda: self.setting_lines(exp, kind))
        else:
            self.notes.append(f"{exp.name}: no figure for an experiment whose runs vary in "
                              f"{', '.join(_varying(t)) or 'nothing'}; its runs are in the table below.")

    def mnist(self, exp: Experiment) -> None:
        """The mnist-dstar section: figures and captions from toydd.plots_mnist."""
        from . import plots_mnist

        for sec in plots_mnist.report_sections(self.store.root, exp.manifest, self.png, self.notes, self.log):
            self.sections.append(Section(**sec))

    def t_sweep(self, exp: Experiment) -> None:
        t = exp.table
        ms = sorted(t["m"].unique())
        m = 2 if 2 in ms else ms[0]
        tm = t[t["m"] == m]
        reps = self.representatives(tm)
        vt = [parse_T(x) for x in exp.manifest.get("params", {}).get("vector_plot_T", [])] or None
        name = exp.name
        m_note = f" (m = {m}; the sweep also has m = {', '.join(map(str, [x for x in ms if x != m]))})" if len(ms) > 1 else ""

        def main() -> None:
            f = self.png(plots.fig_main(tm, reps, vector_T=vt), f"{name}-main.png")
            finding = [find_loss(tm), find_data_dims(tm), find_regimes(tm), find_features(reps[-1])]
            self.sections.append(Section(f"{name}-main", f"{name}: test loss, dimensionality and geometry against T"
                                         + m_note, [f], PAPER["main"], finding,
                                         self.plotly(plotly_main(tm, reps))))

        self.attempt(f"{name}: main figure", main)
        if m == 2:
            def vectors() -> None:
                f1 = self.png(plots.fig_vector_plots(reps, consistent_scale=False), f"{name}-vectors.png")
                f2 = self.png(plots.fig_vector_plots(reps, consistent_scale=True), f"{name}-vectors-consistent.png")
                self.sections.append(Section(f"{name}-vectors", f"{name}: vector plots at every T",
                                             [f1], PAPER["vectors"], [find_vectors(reps), find_features(reps[-1])],
                                             vector_slider_html(reps)))
                self.sections.append(Section(f"{name}-vectors-consistent", f"{name}: vector plots on one scale",
                                             [f2], PAPER["vectors_consistent"], find_vectors(reps)))

            self.attempt(f"{name}: vector plots", vectors)
        self.attempt(f"{name}: training curves", lambda: self.training(exp, reps))
        if m == 2 and self.movies > 0:
            self.attempt(f"{name}: movies", lambda: self.movie_section(exp, tm, reps))

    def training(self, exp: Experiment, reps: Sequence[RunResult]) -> None:
        f = self.png(plots.fig_training_curves(reps), f"{exp.name}-training.png")
        fin = [(r.config.T, r.metrics.get("train_loss"), r.metrics.get("test_loss")) for r in reps]
        T0, tr0, te0 = fin[0]
        T1, tr1, te1 = fin[-1]
        finding = (f"Final training / test loss: {_f(tr0, 3)} / {_f(te0, 4)} at T={plots.fmt_T(T0)}, "
                   f"{_f(tr1, 3)} / {_f(te1, 4)} at T={plots.fmt_T(T1)} (data seed {reps[0].config.data_seed}; "
                   f"{reps[0].config.steps:,} steps, best of {reps[0].config.init_seeds} init seed(s)).")
        self.sections.append(Section(f"{exp.name}-training", f"{exp.name}: training curves", [f],
                                     PAPER["training"], finding))

    def movie_section(self, exp: Experiment, table: pd.DataFrame, reps: Sequence[RunResult]) -> None:
        by_T = {float(r.config.T): r for r in reps if len(r.history.get("snapshot_steps", []))}
        if not by_T:
            self.notes.append(f"{exp.name}: runs kept no parameter snapshots; no training movies.")
            return
        Ts = plots.sort_T(by_T)
        fin = [T for T in Ts if math.isfinite(T)] or Ts
        b = loss_bump(loss_curve(table))
        # The three most telling models: memorizing (smallest T), the loss peak, generalizing (largest finite T).
        picks = [fin[0]] + ([b["T"]] if b and b["rise"] > 0 and b["T"] in by_T else []) + [fin[-1]]
        picks = list(dict.fromkeys(picks))[: self.movies]
        files, findings = [], []
        for T in picks:
            run = by_T[T]
            fname = f"{exp.name}-movie-T{plots.fmt_T(T)}.gif".replace("∞", "inf")
            plots.save_movie(run, self.out / fname, dpi=max(40, self.dpi * 2 // 3))
            files.append(fname)
            geo = plots.snapshot_geometry(run)
            if geo is not None:
                findings.append(find_movie(geo, run))
        self.sections.append(Section(f"{exp.name}-movies", f"{exp.name}: training movies", files, PAPER["movie"],
                                     findings))

    def norms(self, exp: Experiment) -> None:
        t = exp.table
        f = self.png(plots.fig_norms(t), f"{exp.name}-norms.png")
        html_ = self.plotly(plotly_norms(t))
        self.sections.append(Section(f"{exp.name}-norms", f"{exp.name}: parameter norms against T", [f],
                                     PAPER["norms"], find_norms(t), html_))

    def tm_grid(self, exp: Experiment) -> None:
        t = exp.table
        f = self.png(plots.fig_tm_grid(t), f"{exp.name}-heatmap.png")
        self.sections.append(Section(f"{exp.name}-heatmap", f"{exp.name}: test loss over (T, m)", [f],
                                     PAPER["tm-grid"], find_tm(t), self.plotly(plotly_tm(t))))

    def setting_lines(self, exp: Experiment, kind: str) -> None:
        t = exp.table
        if kind == "weight-decay":
            setting, label, fig, expect = "weight_decay", "weight decay", plots.fig_weight_decay(t), "down"
            paper = PAPER["weight-decay"]
        elif kind == "epochs":
            setting, label, fig, expect = "steps", "steps", plots.fig_epochs(t), "up"
            paper = PAPER["epochs"]
        else:
            setting = kind.split(":", 1)[1]
            label, expect, paper = setting, "up", PAPER["generic"]
            fig = plots.fig_setting_lines(t, setting, setting)
        f = self.png(fig, f"{exp.name}-lines.png")
        finding = find_setting_bumps(t, setting, label, expect)
        if kind == "weight-decay" and (t["weight_decay"] >= 1.0).any():
            b = loss_bump(loss_curve(t[t["weight_decay"] == t["weight_decay"].max()]))
            if b is not None:
                finding += (f" At weight decay {t['weight_decay'].max():g} the bump is "
                            + ("gone." if b["rise"] <= 0 or b["z"] < 2 else f"still {_f(b['rise'], 2)}."))
        self.sections.append(Section(f"{exp.name}-lines", f"{exp.name}: test loss against T by {label}", [f], paper,
                                     finding, self.plotly(plotly_lines(t, "test_loss", setting,
                                                                       f"test loss by {label}", label, baseline=True,
                                                                       ytitle="test loss"))))

    def repeated(self, exp: Experiment) -> None:
        t = exp.table
        f = self.png(plots.fig_repeated(t), f"{exp.name}-phase.png")
        self.sections.append(Section(f"{exp.name}-phase", f"{exp.name}: memorization of repeated data points", [f],
                                     PAPER["repeated"], find_repeated(t), self.plotly(plotly_repeated(t))))

    def replication_gap(self, exp: Experiment) -> None:
        from . import replication

        t = exp.table
        f = self.png(plots.fig_replication_gap(t), f"{exp.name}-recipes.png")
        rt = replication.with_recipe(t)
        # by the eps AdamW sees on the summed loss: 1e-8 is the paper's text, 1e-8 * n torch's MSELoss
        html_ = self.plotly(plotly_lines(replication.paper_recipe_runs(rt), "test_loss", "adam_eps",
                                         "test loss by recipe (paper's lr and schedule)", "Adam eps on the summed loss",
                                         baseline=True, ytitle="test loss"))
        self.sections.append(Section(f"{exp.name}-recipes", f"{exp.name}: which recipe gives the paper's figure",
                                     [f], PAPER["replication-gap"], replication.verdict(t), html_))

    def sparsity(self, exp: Experiment) -> None:
        t = exp.table.copy()
        f = self.png(plots.fig_sparsity(t), f"{exp.name}-sparsity.png")
        t["T_seen"] = t["T"].astype(float) * (1 - t["sparsity"].astype(float))
        html_ = self.plotly(plotly_lines(t, "max_feature_dim", "sparsity", "max D_f against T(1-S)", "S",
                                         x="T_seen", ytitle="max D_f"))
        self.sections.append(Section(f"{exp.name}-sparsity", f"{exp.name}: generalization scale across sparsities",
                                     [f], PAPER["sparsity"], find_generalization_scale(t), html_))


_SETTINGS = ("m", "weight_decay", "steps", "sparsity", "lr", "n", "importance_decay", "init_seeds", "tied",
             "repeats", "repeated_points")


def _varying(t: pd.DataFrame) -> list[str]:
    """Config fields that take more than one value across the runs (besides seeds)."""
    return [c for c in ("T",) + _SETTINGS if c in t and t[c].nunique(dropna=False) > 1]


def _infer_kind(t: pd.DataFrame) -> str:
    """Which figure fits an experiment the report does not know by name."""
    v = _varying(t)
    if "repeated_memorized_fraction" in t and t["repeated_memorized_fraction"].notna().any():
        return "repeated"
    if "T" not in v:
        return "none"
    others = [c for c in v if c != "T"]
    if not others:
        return "t-sweep"
    if others == ["m"]:
        return "tm-grid"
    if others == ["sparsity"]:
        return "sparsity"
    if len(others) == 1:
        return f"lines:{others[0]}"
    return "none"


# --- the page ------------------------------------------------------------------------------

def software_versions() -> dict[str, str]:
    """Versions that matter for reproducing the numbers (read from metadata: importing torch is slow)."""
    from . import __version__

    out = {"toydd": __version__}
    for pkg in ("torch", "numpy", "numba", "matplotlib", "plotly", "pandas", "safetensors"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    try:
        src = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode == 0 and rev.stdout.strip():
            out["toydd git commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


_CSS = """
:root { --blue: %FEATURE%; --red: %DATA%; --ink: #1d1d1f; --muted: #6b6b6b; --line: #e3e3e3; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 60px; background: white; min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 42px 0 8px; padding-top: 8px;
       border-top: 1px solid var(--line); } h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 18px; }
nav { background: #f4f6f8; border-radius: 6px; padding: 10px 16px; margin: 16px 0; font-size: 14px;
      display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: #185abc; text-decoration: none; white-space: nowrap; }
figure { margin: 10px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.captions { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin: 10px 0 12px; }
.captions div { background: #f7f7f9; border-left: 3px solid #999; padding: 8px 12px; font-size: 14px; }
.captions div.ours { border-left-color: var(--blue); background: #f3f7fd; }
.captions ul { margin: 2px 0 0; padding-left: 18px; } .captions li { margin: 2px 0; }
.captions b { display: block; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.plotly-box { width: 100%; min-height: 430px; }
.slider-row { display: flex; align-items: center; gap: 14px; margin: 12px 0 4px; }
.slider-row input[type=range] { flex: 1; max-width: 520px; }
.tlabel { font-weight: 600; min-width: 80px; } .check { color: var(--muted); font-size: 14px; }
.slider-info { color: var(--muted); font-size: 13px; min-height: 20px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; } td.l, th.l { text-align: left; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line); }
.notes li { color: #8a4b00; } code { background: #f1f1f1; padding: 0 4px; border-radius: 3px; }
details { margin: 8px 0; } summary { cursor: pointer; color: #185abc; }
.movies { display: flex; flex-direction: column; gap: 8px; }
@media (max-width: 800px) { .captions { grid-template-columns: 1fr; } }
"""

_RUN_COLUMNS = [("key", "key"), ("T", "T"), ("m", "m"), ("n", "n"), ("sparsity", "S"), ("weight_decay", "wd"),
                ("steps", "steps"), ("data_seed", "data seed"), ("init_seeds", "inits"), ("train_loss", "train loss"),
                ("test_loss", "test loss"), ("test_loss_se", "± se"), ("weight_norm", "||W||_F"),
                ("bias_norm", "||b||"), ("max_feature_dim", "max D_f"), ("represented_features", "#||W_i||>0.5"),
                ("median_data_dim", "median D_X"), ("regime", "regime"), ("repeated_points", "k repeated"),
                ("repeats", "R"), ("repeated_memorized_fraction", "memorized"), ("seconds", "seconds")]
_REPEAT_COLUMNS = {"repeated_points", "repeats", "repeated_memorized_fraction"}


def _cell(v: Any, col: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col == "T":
        return plots.fmt_T(float(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return html.escape(str(v))


def runs_table_html(t: pd.DataFrame) -> str:
    has_repeats = "repeated_points" in t and (t["repeated_points"].fillna(0) > 0).any()
    cols = [(c, h) for c, h in _RUN_COLUMNS if c in t and (has_repeats or c not in _REPEAT_COLUMNS)]
    head = "".join(f'<th class="{"l" if c in ("key", "regime") else ""}">{html.escape(h)}</th>' for c, h in cols)
    body = "\n".join("<tr>" + "".join(f'<td class="{"l" if c in ("key", "regime") else ""}">{_cell(r[c], c)}</td>'
                                      for c, _ in cols) + "</tr>" for _, r in t.iterrows())
    return f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td class="l"><code>{html.escape(str(k))}</code></td><td class="l">'
                   f"{html.escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def config_html(exp: Experiment) -> str:
    """Manifest facts, the config fields shared by every run, and those that vary."""
    t, man = exp.table, exp.manifest
    facts = {"preset": man.get("preset", "–"), "description": man.get("description", "–"),
             "runs complete": f"{len(t)} of {exp.n_keys}"}
    if exp.failed:
        facts["failed"] = "; ".join(f"{f.get('key', '?')}: {f.get('error', '?')}" for f in exp.failed[:10])
    if exp.corrupt:
        facts["corrupt"] = "; ".join(exp.corrupt[:10])
    if man.get("params"):
        facts["params"] = man["params"]
    fields = [f for f in TrainConfig().to_dict() if f in t]
    shared = {f: (plots.fmt_T(float(t[f].iloc[0])) if f == "T" else _py(t[f].iloc[0]))
              for f in fields if t[f].astype(str).nunique() == 1}
    varying = {f: ", ".join(plots.fmt_T(x) for x in plots.sort_T(t[f])) if f == "T" else
               ", ".join(str(_py(x)) for x in sorted(t[f].dropna().unique(), key=str))
               for f in fields if t[f].astype(str).nunique() > 1}
    return (f"<h3>{html.escape(exp.name)}</h3>{_kv_table(facts)}"
            f"<details><summary>config shared by every run ({len(shared)} fields)</summary>{_kv_table(shared)}</details>"
            + (f"<details open><summary>config that varies</summary>{_kv_table(varying)}</details>" if varying else ""))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _embed(out: Path, name: str) -> str:
    mime = "image/gif" if name.endswith(".gif") else "image/png"
    b64 = base64.b64encode((out / name).read_bytes()).decode()
    return f'<img src="data:{mime};base64,{b64}" alt="{html.escape(name)}" data-file="{html.escape(name)}">'


def render_html(store: Store, b: _Builder, versions: dict[str, str]) -> str:
    import plotly.offline

    exps = ordered_experiments(store)
    total = sum(len(e.table) for e in exps)
    planned = sum(e.n_keys for e in exps)
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title.split(": ", 1)[-1])}</a>'
                  for s in b.sections)
    nav += '<a href="#runs">runs</a><a href="#config">configuration</a><a href="#software">software</a>'
    parts = []
    for s in b.sections:
        imgs = "".join(f"<figure>{_embed(b.out, f)}</figure>" for f in s.files)
        if len(s.files) > 1:
            imgs = f'<div class="movies">{imgs}</div>'
        caps = (f'<div class="captions"><div><b>The paper reports</b>{html.escape(s.paper)}</div>'
                f'<div class="ours"><b>This sweep shows</b>{s.finding_html()}</div></div>')
        inter = f"<h3>Interactive</h3>{s.interactive}" if s.interactive else ""
        parts.append(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>{caps}{imgs}{inter}</section>')
    notes = b.notes + store.problems
    notes_html = ("<h2>Notes</h2><ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                  + "</ul>") if notes else ""
    runs = "".join(f"<details {'open' if len(e.table) <= 40 else ''}><summary>{html.escape(e.name)}: "
                   f"{len(e.table)} complete runs of {e.n_keys}</summary>{runs_table_html(e.table)}</details>"
                   for e in exps if not e.table.empty)
    config = "".join(config_html(e) for e in exps)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    css = _CSS.replace("%FEATURE%", plots.FEATURE_COLOR).replace("%DATA%", plots.DATA_COLOR)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>toydd report: {html.escape(store.root.name)}</title>
<style>{css}</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head><body><main>
<h1>Superposition, memorization and double descent</h1>
<p class="sub">toydd report of <code>{html.escape(str(store.root))}</code>: {len(exps)} experiment(s),
{total} of {planned} runs complete; generated {now}. Figures follow Henighan et al. (2023):
features / columns of W in blue, training points / hidden vectors in red.</p>
<nav>{nav}</nav>
{"".join(parts)}
{notes_html}
<h2 id="runs">Runs</h2>{runs or "<p>No complete run.</p>"}
<h2 id="config">Configuration</h2>{config}
<h2 id="software">Software</h2>{_kv_table(versions)}
</main></body></html>
"""


# --- entry point ---------------------------------------------------------------------------

def build_report(root: str | os.PathLike, movies: int = 3, log: Callable[[str], None] | None = None,
                 dpi: int = 150) -> Path:
    """Write ``root/report/index.html`` and one PNG (or GIF) per figure; returns the index path.

    Every figure the experiments in ``root`` allow is drawn; missing experiments
    are skipped, an experiment with no complete run is listed, and a figure that
    fails is reported in the page rather than aborting the report. ``movies``
    caps the training movies per t-sweep (0 for none: they are the slowest part);
    ``dpi`` sets the PNG resolution (movies get two thirds of it). ``log``
    receives progress lines (default: stderr).

    Raises :class:`~toydd.errors.ToyddError` if ``root`` is not a sweep directory.
    The report directory is replaced atomically: built in a temporary sibling,
    then renamed into place.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    store = load_store(root)
    root = store.root
    check_report_dir(root)  # before drawing anything
    for problem in store.problems:  # corrupt runs, unreadable manifests: each named, and left out
        log(f"warning: {problem}")
    tmp = root / f".report.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
    except OSError as e:
        raise write_error(e, root / "report") from None
    try:
        b = _Builder(store, tmp, movies, log, dpi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # matplotlib layout chatter, not the user's problem
            for exp in ordered_experiments(store):
                b.experiment(exp)
        page = render_html(store, b, software_versions())
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        _swap_into_place(tmp, root / "report")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # disk full while writing index.html, ...
            raise write_error(e, root / "report") from None
        raise
    return root / "report" / "index.html"


REPORT_SUFFIXES = (".html", ".png", ".gif")


def check_report_dir(root: str | os.PathLike) -> None:
    """A ToyddError if ``root/report`` exists and is not a report toydd wrote (it would be replaced).

    A toydd report holds only regular ``.html``/``.png``/``.gif`` files; anything
    else there (a subdirectory, notes, a file instead of the folder) is someone's
    and is never deleted.
    """
    final = Path(root) / "report"
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        raise ToyddError(f"{final} exists and is not a directory toydd wrote; move it away to write the report")
    try:
        with os.scandir(final) as it:
            foreign = sorted(e.name for e in it
                             if not (e.is_file(follow_symlinks=False) and e.name.endswith(REPORT_SUFFIXES)))
    except OSError as e:
        raise ToyddError(f"{final}: cannot read it: {os_reason(e)}") from None
    if foreign:
        shown = names_preview(foreign)
        raise ToyddError(f"{final} holds files toydd did not write ({shown}); the report replaces that "
                         "directory: move them away (or the directory) and run again")


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing report is moved aside first and removed after."""
    os.chmod(tmp, 0o755)
    check_report_dir(final.parent)  # again: someone may have put files there while we drew
    if final.exists():
        old = final.with_name(f".report.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


__all__ = ["Experiment", "Store", "build_report", "load_store", "loss_bump", "software_versions"]
