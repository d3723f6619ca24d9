"""Every figure of the paper, as functions of runs and tables.

Each ``fig_*`` function takes a results table (a ``pandas.DataFrame`` with one
row per run: config fields such as ``T``, ``m``, ``data_seed`` and scalar
metrics such as ``test_loss``) and/or loaded :class:`~toydd.storage.RunResult`
objects, and returns a :class:`matplotlib.figure.Figure`. Nothing here reads a
sweep directory -- :mod:`toydd.report` does that -- so the same functions serve
a notebook, where a researcher builds the table by hand.

Conventions shared by all figures (the paper's):

* features / columns ``W_i`` of ``W`` are blue, training points / hidden
  vectors ``h_i = W x_i`` are red;
* ``T`` is drawn on a log axis, and ``T = inf`` (infinite data) is placed at a
  separate position to the right of the largest finite ``T``, behind a dotted
  break, labelled "∞";
* the all-zeros model has test loss exactly 1.0 on unit-norm data and is drawn
  as a grey dashed baseline: a model above it is worse than predicting nothing.

Figures are built on :class:`~matplotlib.figure.Figure` objects with an Agg
canvas rather than through ``pyplot``, so building hundreds of them in a report
leaks no global state and needs no display.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib

# No matplotlib.use(): every figure here has its own Agg canvas (new_figure) and pyplot is never imported,
# so toydd needs no backend, and a notebook user's pyplot backend is left as it was.

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, LogFormatter, NullFormatter  # noqa: E402

from .data import hidden_vectors  # noqa: E402,F401  (re-exported: the vector plots use it)
from .metrics import REPRESENTED_NORM, feature_dimensionality  # noqa: E402
from .storage import RunResult  # noqa: E402

# --- style -------------------------------------------------------------------

FEATURE_COLOR = "#1f5fbf"  # blue: columns of W (the paper's convention)
DATA_COLOR = "#d62728"  # red: hidden vectors of training points
BASELINE_COLOR = "#7f7f7f"
CURVE_COLOR = "#222222"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "savefig.dpi": 150,
}

# How many vectors a vector plot draws at most: beyond a few thousand, lines
# only overdraw each other while slowing rendering and bloating files.
MAX_VECTORS = 3000
# How many dimensionality values per run a scatter shows at most.
MAX_SCATTER = 2500


def styled(fn: Callable) -> Callable:
    """Build the figure under the toolkit's rc style without touching global rcParams."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


class _NotebookFigure(Figure):
    """A Figure that a notebook shows inline when it ends a cell.

    Jupyter draws a bare Figure only through the formatter pyplot's inline
    backend registers, and these figures never touch pyplot (and this module
    selects Agg): without ``_repr_png_`` a cell ending in ``fig_main(...)``
    would print ``<Figure size 800x820>``.
    """

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, facecolor="white")
        return buf.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A Figure with its own Agg canvas (no pyplot, no global figure registry)."""
    fig = _NotebookFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, facecolor="white")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --- tick labels on log axes ----------------------------------------------------------

class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.6, 2, 300, 1,000) instead of 6×10⁻¹ or 1.9×10⁰.

    Which ticks carry a label stays matplotlib's choice (decades; on an axis spanning about a decade or
    less, the 2s and 5s or every minor tick too), only the wording changes. Far from 1 a power of ten
    reads better than its digits, so 10⁵ and up and below 10⁻³ keep the exponent.
    """

    def set_locs(self, locs=None):
        super().set_locs(locs)
        # On an axis of one or two decades matplotlib labels the minor ticks 2, 3, 4 and 6 of each decade:
        # as plain numbers ("0.02 0.03 0.04") they run into each other on a narrow panel; 2 and 5 do not.
        if self._sublabels is not None and 1 < len(self._sublabels) < 9:
            self._sublabels = {1, 2, 5}

    def _num_to_string(self, x, vmin, vmax):
        if x >= 1e5 or x < 1e-3:
            e = math.floor(math.log10(x) + 1e-9)
            c = x / 10.0**e
            return f"$10^{{{e}}}$" if abs(c - 1) < 1e-6 else f"${c:.2g}\\times10^{{{e}}}$"
        return f"{x:,.0f}" if x >= 100 or abs(x - round(x)) < 1e-9 else f"{x:.3g}"


def plain_log_ticks(ax) -> None:
    """PlainLogFormatter on every log axis of ``ax`` whose ticks toydd did not place itself (a T axis)."""
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log" and not isinstance(axis.get_major_locator(), FixedLocator):
            axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
            axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


# --- T on a log axis, with inf at the right ----------------------------------------

def fmt_T(T: float) -> str:
    """Compact label for a dataset size: 3, 500, 1k, 1.5k, 20k, 1M, ∞."""
    if math.isinf(T):
        return "∞"
    T = float(T)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if T >= div:
            v = T / div
            return f"{v:g}{suffix}" if v == round(v, 1) else f"{v:.3g}{suffix}"
    return f"{T:g}"


@dataclass(frozen=True)
class TAxis:
    """Maps dataset sizes (possibly inf) to x positions on a log axis.

    ``inf`` sits ``INF_GAP`` times to the right of the largest finite value, so it
    reads as "one step further" without pretending to be a number.
    """

    lo: float
    hi: float
    has_inf: bool
    has_finite: bool = True

    INF_GAP = 5.0

    @classmethod
    def of(cls, values: Iterable[float]) -> "TAxis":
        v = np.asarray([float(x) for x in values], dtype=np.float64)
        fin = v[np.isfinite(v) & (v > 0)]
        lo, hi = (float(fin.min()), float(fin.max())) if len(fin) else (1.0, 1.0)
        return cls(lo, hi, bool(np.isinf(v).any()), bool(len(fin)))

    @property
    def inf_pos(self) -> float:
        return self.hi * self.INF_GAP

    def pos(self, T) -> np.ndarray:
        t = np.asarray(T, dtype=np.float64)
        return np.where(np.isinf(t), self.inf_pos, t)

    def decorate(self, ax, label: str = "training set size T") -> None:
        """Log scale, decade ticks within the finite range, and an '∞' tick behind a labelled break.

        An axis spanning less than two decades shows at most one power of ten, which says little: it
        is labelled at 1, 2 and 5 times the powers of ten, in plain numbers (3, 5, 10, 20, 30).
        """
        ax.set_xscale("log")
        if not self.has_finite:  # infinite data only: one position, one tick
            ax.set_xlim(self.inf_pos / 3, self.inf_pos * 3)
            ax.xaxis.set_major_locator(FixedLocator([self.inf_pos]))
            ax.set_xticklabels(["∞"])
            ax.xaxis.set_minor_locator(FixedLocator([]))
            if label:
                ax.set_xlabel(label)
            return
        right = self.inf_pos if self.has_inf else self.hi
        ax.set_xlim(self.lo / 1.6, right * 1.6)
        d0, d1 = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
        decades = [10.0**d for d in range(d0, d1 + 1) if self.lo / 1.6 <= 10.0**d <= self.hi * 1.6]
        minors = [k * 10.0**d for d in range(d0, d1 + 1) for k in range(2, 10)
                  if self.lo / 1.6 <= k * 10.0**d <= self.hi * 1.6]
        ticks, labels = list(decades), [f"$10^{{{int(round(math.log10(t)))}}}$" for t in decades]
        if len(decades) < 2:
            ticks = sorted(decades + [t for t in minors if round(t / 10.0 ** math.floor(math.log10(t) + 1e-9)) in (2, 5)
                                      or t in (self.lo, self.hi)])
            labels = [fmt_T(t) for t in ticks]
            minors = [t for t in minors if t not in ticks]
        if self.has_inf:
            ticks.append(self.inf_pos)
            labels.append("∞")
            brk = math.sqrt(self.hi * self.inf_pos)
            ax.axvline(brk, color="#bbbbbb", lw=0.8, ls=":", zorder=0)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels(labels)
        ax.xaxis.set_minor_locator(FixedLocator(minors))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if label:
            # The dotted break and the ∞ behind it are no number on the scale: the title says so.
            ax.set_xlabel(label + ("  (∞: infinite data, beyond the dotted break)" if self.has_inf else ""))


# --- tables ---------------------------------------------------------------------

def sort_T(values: Iterable[float]) -> list[float]:
    """Distinct dataset sizes ascending, inf last."""
    return sorted({float(v) for v in values}, key=lambda t: (math.isinf(t), t))


def aggregate(df: pd.DataFrame, value: str, by: str | Sequence[str] = "T") -> pd.DataFrame:
    """Mean, std, standard error, min, max and count of ``value`` per group (e.g. over data seeds).

    Rows with a NaN ``value`` (a metric a run does not have) are dropped first,
    so a partial sweep still aggregates what it has.
    """
    by = [by] if isinstance(by, str) else list(by)
    d = df.dropna(subset=[value]).copy()
    d[value] = d[value].astype(float)  # metrics read from JSON can arrive as object columns
    g = d.groupby(by, sort=True)[value]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["se"] = out["std"] / np.sqrt(out["count"].clip(lower=1))
    if "T" in by:
        out = out.assign(_inf=np.isinf(out["T"].astype(float))).sort_values(["_inf", *by]).drop(columns="_inf")
    return out.reset_index(drop=True)


# --- hidden vectors ----------------------------------------------------------------

DISPLAY_POINTS_INF = 1000  # fresh points shown for a T = inf model


def display_hidden(run: RunResult) -> tuple[np.ndarray, str]:
    """The hidden vectors a vector plot shows for ``run``, and what they are.

    Finite T: the stored ``H`` (the training points), or ``W x_i`` recomputed
    from the regenerated training set. ``T = inf`` has no training set, so we
    show the first points of its data stream -- the same distribution the model
    was trained on (for a generalizing model they trace the feature pentagon).
    """
    if "H" in run.arrays and len(run.arrays["H"]):
        return np.asarray(run.arrays["H"], np.float64), "training points"
    from . import data as data_mod

    c = run.config
    if c.infinite:
        pts = data_mod.training_set(c.n, c.sparsity, DISPLAY_POINTS_INF, c.data_seed)
        return hidden_vectors(pts, run.W), "fresh points (T = ∞: no training set)"
    return hidden_vectors(run.training_data(), run.W), "training points"


def subsample(V: np.ndarray, k: int, keep_longest: int = 300, seed: int = 0) -> np.ndarray:
    """At most ``k`` rows of V: the longest ``keep_longest`` (outliers matter) plus a fixed random rest."""
    if len(V) <= k:
        return V
    norms = np.linalg.norm(V, axis=1)
    order = np.argsort(norms)[::-1]
    top, rest = order[:keep_longest], order[keep_longest:]
    rng = np.random.default_rng(seed)
    pick = rng.choice(rest, size=k - len(top), replace=False)
    return V[np.concatenate([top, pick])]


def data_seeds(runs: Sequence[RunResult]) -> str:
    """The data seeds of the models a figure or caption reads, for its labels ("0", or "0, 1")."""
    return ", ".join(map(str, sorted({r.config.data_seed for r in runs})))


SAMPLE_TOP = 100  # subsample_values keeps this many of the largest (the few features a model represents)


def subsample_values(v: np.ndarray, k: int, keep_top: int = SAMPLE_TOP, seed: int = 0) -> np.ndarray:
    """At most ``k`` values: the largest ``keep_top`` plus a fixed random rest."""
    v = np.asarray(v, np.float64)
    if len(v) <= k:
        return v
    order = np.argsort(v)[::-1]
    rng = np.random.default_rng(seed)
    rest = rng.choice(order[keep_top:], size=k - keep_top, replace=False)
    return v[np.concatenate([order[:keep_top], rest])]


# --- vector plots --------------------------------------------------------------

def vector_extent(V: np.ndarray) -> float:
    """Half-width of a square panel that fits every vector of V (N x 2)."""
    if V.size == 0:
        return 1.0
    r = float(np.max(np.abs(V)))
    return r if r > 0 else 1.0


class VectorPanel:
    """A square panel of vectors drawn as lines from the origin (the paper's vector plot).

    Artists are created once and updated by :meth:`set`, so a movie re-uses them
    frame after frame instead of rebuilding the axes (several times faster).
    """

    def __init__(self, ax, color: str, linewidth: float = 0.8, dots: bool = True, show_scale: bool = True):
        self.ax = ax
        self.lc = LineCollection([], colors=color, linewidths=linewidth, alpha=0.85, capstyle="round")
        ax.add_collection(self.lc)
        self.dots = ax.scatter([], [], s=4, color=color, linewidths=0, zorder=3) if dots else None
        self.scale = (ax.text(0.03, 0.03, "", transform=ax.transAxes, fontsize=6, color="#888888", va="bottom")
                      if show_scale else None)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(True)
            ax.spines[side].set_color("#cccccc")
        ax.axhline(0, color="#eeeeee", lw=0.5, zorder=0)
        ax.axvline(0, color="#eeeeee", lw=0.5, zorder=0)

    def set(self, V: np.ndarray, lim: float | None = None, max_vectors: int = MAX_VECTORS) -> None:
        """Show the rows of V (N x 2); ``lim`` fixes the panel half-width, None fits V."""
        V = subsample(np.asarray(V, np.float64)[:, :2], max_vectors)
        segs = np.zeros((len(V), 2, 2))
        segs[:, 1] = V
        self.lc.set_segments(segs)
        if self.dots is not None:
            self.dots.set_offsets(V if len(V) else np.zeros((0, 2)))
        half = (lim if lim is not None else vector_extent(V)) * 1.12
        self.ax.set_xlim(-half, half)
        self.ax.set_ylim(-half, half)
        if self.scale is not None:
            self.scale.set_text(f"±{half:.2g}")


def draw_vectors(ax, V: np.ndarray, color: str, lim: float | None = None, max_vectors: int = MAX_VECTORS,
                 linewidth: float = 0.8, dots: bool = True, show_scale: bool = True) -> LineCollection:
    """Draw each row of V (N x 2) as a line from the origin, the paper's vector plot.

    ``lim`` fixes the half-width of the square panel (a consistent scale across
    panels); None fits this panel's own vectors. Returns the LineCollection.
    """
    panel = VectorPanel(ax, color, linewidth, dots, show_scale)
    panel.set(V, lim, max_vectors)
    return panel.lc


def _vector_rows(axes_w, axes_h, runs: Sequence[RunResult], consistent_scale: bool) -> None:
    """Fill a row of W panels and a row of h panels, one column per run."""
    Ws = [np.asarray(r.W, np.float64).T for r in runs]  # n x m: rows are feature vectors W_i
    Hs = [display_hidden(r)[0] for r in runs]
    lim_w = max(vector_extent(W) for W in Ws) if consistent_scale else None
    lim_h = max(vector_extent(H) for H in Hs) if consistent_scale else None
    for ax_w, ax_h, run, W, H in zip(axes_w, axes_h, runs, Ws, Hs):
        draw_vectors(ax_w, W, FEATURE_COLOR, lim_w)
        draw_vectors(ax_h, H, DATA_COLOR, lim_h)
        ax_w.set_title(f"T = {fmt_T(run.config.T)}", fontsize=9, pad=3)
    axes_w[0].set_ylabel("features $W_i$", color=FEATURE_COLOR, fontsize=8)
    axes_h[0].set_ylabel("points $h_i = W x_i$", color=DATA_COLOR, fontsize=8)


def _check_2d(runs: Sequence[RunResult]) -> None:
    bad = sorted({r.config.m for r in runs if r.config.m != 2})
    if bad:
        raise ValueError(f"vector plots need m = 2 hidden dimensions, got m = {bad}")


@styled
def fig_vector_plots(runs: Sequence[RunResult], consistent_scale: bool = False, per_row: int = 8) -> Figure:
    """Vector plots -- W columns (blue) over hidden vectors h_i (red) -- one column per run.

    ``consistent_scale=False`` gives every panel its own scale (the paper's first
    figure: shapes are visible everywhere); ``True`` uses one scale per row kind
    across all panels (the paper's second: lengths vary widely with T). More than
    ``per_row`` runs wrap onto further blocks of two rows.
    """
    if not runs:
        raise ValueError("no runs to draw")
    _check_2d(runs)
    runs = sorted(runs, key=lambda r: (r.config.infinite, float(r.config.T)))
    k = len(runs)
    blocks = math.ceil(k / per_row)
    cols = math.ceil(k / blocks)  # balanced blocks: 10 runs as 5 + 5, not 8 + 2
    fig = new_figure(1.25 * cols + 0.6, 2.7 * blocks + 0.3)
    axes = fig.subplots(2 * blocks, cols, squeeze=False)
    Ws = [np.asarray(r.W, np.float64).T for r in runs]
    Hs = [display_hidden(r)[0] for r in runs]
    lim_w = max(vector_extent(W) for W in Ws) if consistent_scale else None
    lim_h = max(vector_extent(H) for H in Hs) if consistent_scale else None
    for i, (run, W, H) in enumerate(zip(runs, Ws, Hs)):
        b, j = divmod(i, cols)
        ax_w, ax_h = axes[2 * b, j], axes[2 * b + 1, j]
        draw_vectors(ax_w, W, FEATURE_COLOR, lim_w)
        draw_vectors(ax_h, H, DATA_COLOR, lim_h)
        ax_w.set_title(f"T = {fmt_T(run.config.T)}", fontsize=9, pad=3)
    for i in range(k, blocks * cols):  # empty slots of the last block
        b, j = divmod(i, cols)
        axes[2 * b, j].set_visible(False)
        axes[2 * b + 1, j].set_visible(False)
    for b in range(blocks):
        axes[2 * b, 0].set_ylabel("features $W_i$", color=FEATURE_COLOR, fontsize=8)
        axes[2 * b + 1, 0].set_ylabel("points $h_i = W x_i$", color=DATA_COLOR, fontsize=8)
    fig.suptitle("one scale across all panels (per row kind)" if consistent_scale else "each panel on its own scale",
                 fontsize=9, color="#555555")
    return fig


# --- line plots against T --------------------------------------------------------

def plot_vs_T(ax, df: pd.DataFrame, value: str, tax: TAxis, color: str, label: str | None = None,
              seeds: bool = True, marker: str = "o", x: str = "T") -> pd.DataFrame:
    """Mean of ``value`` over runs at each T (line), ±1 std over seeds (error bars), each seed faint.

    Returns the aggregate that was drawn, so callers can annotate it.
    """
    agg = aggregate(df, value, by=x)
    if agg.empty:
        return agg
    if seeds and (agg["count"] > 1).any():
        d = df.dropna(subset=[value])
        ax.scatter(tax.pos(d[x].astype(float)), d[value].to_numpy(float), s=7, color=color, alpha=0.28, linewidths=0, zorder=2)
    xs = tax.pos(agg[x].astype(float))
    ax.errorbar(xs, agg["mean"].to_numpy(float), yerr=agg["std"].to_numpy(float), color=color, marker=marker, ms=3.5, lw=1.5,
                capsize=2, elinewidth=0.8, label=label, zorder=3)
    return agg


def _loss_yscale(ax, values: np.ndarray) -> None:
    """Log y when losses span more than a factor 30 (a replication saw 5,000 against ~1)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > 30:
        ax.set_yscale("log")
        plain_log_ticks(ax)


def _baseline(ax) -> None:
    ax.axhline(1.0, color=BASELINE_COLOR, ls="--", lw=1.0, zorder=1, label="all-zeros model (loss 1)")


def plot_test_loss(ax, table: pd.DataFrame, tax: TAxis, color: str = "#333333", label: str | None = "mean over data seeds (±1 std)") -> pd.DataFrame:
    """Test loss against T: mean over data seeds with its spread, and the all-zeros baseline."""
    agg = plot_vs_T(ax, table, "test_loss", tax, color, label)
    _baseline(ax)
    _loss_yscale(ax, np.concatenate([table["test_loss"].to_numpy(float), [1.0]]))
    ax.set_ylabel("test loss")
    return agg


def plot_dims_vs_T(ax, runs: Sequence[RunResult], tax: TAxis, max_points: int = MAX_SCATTER) -> None:
    """Scatter of feature (D_f, blue) and data (D_X, red) dimensionalities at each T, with the m/T curve.

    A T-gon of training points has D_X = m/T for each point, so red points on
    the black curve are memorized points in superposition. Where a T has more than
    ``max_points`` values the scatter keeps the largest and a random rest, so each T's
    median D_X (of every point) is marked, and the right-hand title says what is drawn.
    """
    labelled_x = False
    sampled = False
    med_x, med_y = [], []
    for i, run in enumerate(runs):
        x = float(tax.pos(run.config.T))
        fd = run.arrays.get("feature_dims")
        if fd is None:
            fd = feature_dimensionality(np.asarray(run.W, np.float64))
        sampled |= len(fd) > max_points
        fd = subsample_values(fd, max_points, seed=i)
        ax.scatter(np.full(len(fd), x), fd, s=6, color=FEATURE_COLOR, alpha=0.45, linewidths=0,
                   rasterized=True, label="features $D_f$" if i == 0 else None, zorder=2, gid="D_f")
        dd = run.arrays.get("data_dims")
        if dd is not None and len(dd):
            med_x.append(x)
            med_y.append(float(np.median(dd)))  # of every point: the sample below favours the largest
            sampled |= len(dd) > max_points
            dd = subsample_values(dd, max_points, seed=i)
            ax.scatter(np.full(len(dd), x), dd, s=6, color=DATA_COLOR, alpha=0.45, linewidths=0, rasterized=True,
                       label=None if labelled_x else "training points $D_X$", zorder=2, gid="D_X")
            labelled_x = True
    if med_x:
        ax.scatter(med_x, med_y, s=22, marker="_", color="black", linewidths=1.4, zorder=5, gid="D_X_median",
                   label="median $D_X$ (all points)")
    note = f"one model per T (data seed {data_seeds(runs)})"
    if sampled:  # say what the cloud is when it is not every value
        note += f"; over {max_points:,} values at a T: the {SAMPLE_TOP} largest and a random rest"
    ax.set_title(note, loc="right", fontsize=7, color="#555555")
    ms = sorted({r.config.m for r in runs}) if tax.has_finite else []  # no T-gon without a finite T
    t = np.geomspace(tax.lo, tax.hi, 200)
    for m in ms:
        ax.plot(t, np.minimum(m / t, 1.0), color=CURVE_COLOR, ls="--", lw=1.1,
                label="$m/T$ (a $T$-gon)" if len(ms) == 1 else f"$m/T$, m={m}", zorder=4, gid="m_over_T")
    ax.set_ylabel("dimensionality")
    ax.set_ylim(-0.02, 1.02)


# --- the main figure ------------------------------------------------------------

def default_vector_T(Ts: Iterable[float], k: int = 8) -> list[float]:
    """Up to k dataset sizes spread evenly in log T, always the smallest and the largest (inf)."""
    Ts = sort_T(Ts)
    if len(Ts) <= k:
        return Ts
    fin = [t for t in Ts if not math.isinf(t)]
    has_inf = len(fin) < len(Ts)
    kf = k - 1 if has_inf else k
    targets = np.geomspace(fin[0], fin[-1], kf)
    pick: list[float] = []
    for tg in targets:
        best = min((t for t in fin if t not in pick), key=lambda t: abs(math.log(t / tg)))
        pick.append(best)
    return sort_T(pick + ([math.inf] if has_inf else []))


@styled
def fig_main(table: pd.DataFrame, runs: Sequence[RunResult], vector_T: Sequence[float] | None = None,
             consistent_scale: bool = False) -> Figure:
    """The paper's main figure.

    Top: test loss against T (mean and spread over data seeds) with the all-zeros
    baseline. Middle: D_f and D_X of one model per T against T, with the m/T
    curve. Bottom: vector plots (W columns blue, h_i red) for the T in ``vector_T``.

    ``table`` has one row per run (columns ``T``, ``test_loss``); ``runs`` holds one
    loaded run per T (with arrays), the model whose geometry is shown.
    """
    runs = sorted(runs, key=lambda r: (r.config.infinite, float(r.config.T)))
    tax = TAxis.of(list(table["T"]) + [r.config.T for r in runs])
    by_T = {float(r.config.T): r for r in runs}
    if vector_T is None:
        vector_T = default_vector_T(by_T)
    strip = [by_T[float(t)] for t in sort_T(vector_T) if float(t) in by_T and by_T[float(t)].config.m == 2]
    k = max(len(strip), 1)
    fig = new_figure(max(8.0, 1.15 * k + 0.6), 8.2 if strip else 5.6)
    heights = [2.2, 2.2] + ([1.0, 1.0] if strip else [])
    gs = fig.add_gridspec(len(heights), k, height_ratios=heights)
    ax_loss = fig.add_subplot(gs[0, :])
    ax_dim = fig.add_subplot(gs[1, :], sharex=ax_loss)
    plot_test_loss(ax_loss, table, tax)
    ax_loss.legend(loc="best")
    ax_loss.set_title("test loss", loc="left")
    tax.decorate(ax_loss, label="")
    ax_loss.tick_params(labelbottom=True)
    plot_dims_vs_T(ax_dim, runs, tax)
    tax.decorate(ax_dim)
    ax_dim.legend(loc="upper right", markerscale=2)
    ax_dim.set_title("dimensionality of features and training points", loc="left")
    if strip:
        axes_w = [fig.add_subplot(gs[2, j]) for j in range(len(strip))]
        axes_h = [fig.add_subplot(gs[3, j]) for j in range(len(strip))]
        _vector_rows(axes_w, axes_h, strip, consistent_scale)
    return fig


# --- norms --------------------------------------------------------------------

PENTAGON_NORM = math.sqrt(5.0)  # ||W||_F of the paper's idealised 5-feature infinite-data solution


@styled
def fig_norms(table: pd.DataFrame) -> Figure:
    """||W||_F and ||b||_2 against T (mean ± std over data seeds), with the pentagon's sqrt(5)."""
    fig = new_figure(6.4, 3.4)
    ax = fig.subplots()
    tax = TAxis.of(table["T"])
    plot_vs_T(ax, table, "weight_norm", tax, FEATURE_COLOR, r"$\|W\|_F$ (mean ± 1 std over data seeds)")
    plot_vs_T(ax, table, "bias_norm", tax, "#e07b00", r"$\|b\|_2$ (mean ± 1 std)", marker="s")
    ax.axhline(PENTAGON_NORM, color=BASELINE_COLOR, ls=":", lw=1.0, label=r"$\sqrt{5}$ (ideal pentagon)")
    tax.decorate(ax)
    ax.set_ylabel("parameter norm")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best")
    ax.set_title("parameter norms against dataset size", loc="left")
    return fig


# --- (T, m) heat map ---------------------------------------------------------------

@styled
def fig_tm_grid(table: pd.DataFrame) -> Figure:
    """Mean test loss over (T, m) as a heat map, T across and m up, one cell per pair.

    The colour scale diverges at 1.0, the all-zeros model: blue cells generalize
    better than predicting nothing, red cells are worse. Each row's worst T
    (its double-descent peak) is outlined.
    """
    agg = aggregate(table, "test_loss", by=["m", "T"])
    Ts = sort_T(agg["T"])
    ms = sorted(agg["m"].unique())
    Z = np.full((len(ms), len(Ts)), np.nan)
    for _, r in agg.iterrows():
        Z[ms.index(r["m"]), Ts.index(float(r["T"]))] = r["mean"]
    fig = new_figure(max(5.5, 0.42 * len(Ts) + 2.2), max(2.6, 0.34 * len(ms) + 1.6))
    ax = fig.subplots()
    finite = Z[np.isfinite(Z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo < 1.0 < hi:
        norm: Normalize = TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi)
        cmap = "RdBu_r"
    elif lo > 0 and hi / lo > 30:
        norm, cmap = LogNorm(lo, hi), "viridis"
    else:
        norm, cmap = Normalize(lo, hi if hi > lo else lo + 1e-9), "viridis"
    mesh = ax.pcolormesh(np.arange(len(Ts) + 1), np.arange(len(ms) + 1), np.ma.masked_invalid(Z),
                         cmap=cmap, norm=norm, edgecolors="white", linewidth=0.5)
    cb = fig.colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("mean test loss")
    if lo < 1.0 < hi:
        cb.ax.axhline(1.0, color="black", lw=0.8)
    if len(Ts) * len(ms) <= 260:
        for i in range(len(ms)):
            for j in range(len(Ts)):
                if np.isfinite(Z[i, j]):
                    rgba = mesh.cmap(mesh.norm(Z[i, j]))
                    dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                    ax.text(j + 0.5, i + 0.5, f"{Z[i, j]:.3g}", ha="center", va="center", fontsize=5.5,
                            color="white" if dark else "#222222")
    for i in range(len(ms)):
        row = Z[i]
        if np.isfinite(row).sum() >= 3:
            j = int(np.nanargmax(row))
            ax.add_patch(matplotlib.patches.Rectangle((j, i), 1, 1, fill=False, ec="black", lw=1.2))
    ax.set_xticks(np.arange(len(Ts)) + 0.5, [fmt_T(t) for t in Ts], rotation=45 if len(Ts) > 10 else 0)
    ax.set_yticks(np.arange(len(ms)) + 0.5, [str(int(m)) for m in ms])
    ax.set_xlabel("training set size T")
    ax.set_ylabel("hidden dimensions m")
    ax.grid(False)
    ax.set_title("test loss over (T, m); outlined: each m's worst T", loc="left")
    return fig


# --- one line per setting (weight decay, epochs, ...) ----------------------------------

def setting_colors(values: Sequence[float], cmap: str = "viridis") -> list:
    """Colours ordered by value (log-spaced when values span decades; 0 gets the first colour)."""
    v = np.asarray(values, np.float64)
    pos = v[v > 0]
    if len(pos) > 1 and pos.max() / pos.min() >= 10:
        t = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.log10(pos.min()) - 1)
    else:
        t = v
    span = t.max() - t.min()
    t = (t - t.min()) / span if span > 0 else np.zeros_like(t)
    cm = matplotlib.colormaps[cmap]
    return [cm(0.05 + 0.85 * x) for x in t]


@styled
def fig_setting_lines(table: pd.DataFrame, setting: str, label: str,
                      fmt: Callable[[float], str] = lambda v: f"{v:g}", title: str | None = None) -> Figure:
    """Test loss against T, one line per value of ``setting`` (mean ± std over data seeds)."""
    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    tax = TAxis.of(table["T"])
    values = sorted(table[setting].dropna().unique())
    for v, color in zip(values, setting_colors(values)):
        plot_vs_T(ax, table[table[setting] == v], "test_loss", tax, color, f"{label} = {fmt(v)}", seeds=False)
    _baseline(ax)
    _loss_yscale(ax, np.concatenate([table["test_loss"].to_numpy(float), [1.0]]))
    tax.decorate(ax)
    ax.set_ylabel("test loss")
    ax.legend(loc="best", ncol=1 if len(values) < 6 else 2)
    ax.set_title(title or f"test loss against T for several {label}", loc="left")
    return fig


def fig_weight_decay(table: pd.DataFrame) -> Figure:
    """Test loss against T, one line per weight decay (the paper's appendix: 1.0 removes the bump)."""
    ms = sorted(table["m"].unique())
    return fig_setting_lines(table, "weight_decay", "weight decay",
                             title=f"weight decay and double descent (m = {', '.join(map(str, ms))})")


def fig_epochs(table: pd.DataFrame) -> Figure:
    """Test loss against T, one line per number of training steps (more steps, bigger bump)."""
    ms = sorted(table["m"].unique())
    return fig_setting_lines(table, "steps", "steps", fmt=lambda v: f"{int(v):,}",
                             title=f"training length and double descent (m = {', '.join(map(str, ms))})")


# --- generalization scale across sparsities ------------------------------------------

@styled
def fig_sparsity(table: pd.DataFrame) -> Figure:
    """Max feature dimensionality against T (left) and against T(1-S) (right), one line per S.

    Jermyn's extension: if features are learned once each is seen ~10 times, the
    jump lines up at T(1-S) ~ 10 on the right whatever S is.
    """
    d = table.copy()
    d["feature_freq"] = 1.0 - d["sparsity"].astype(float)
    d["T_seen"] = d["T"].astype(float) * d["feature_freq"]
    fig = new_figure(9.0, 3.5)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    Ss = sorted(d["sparsity"].unique())
    colors = setting_colors([1 - s for s in Ss], cmap="plasma")
    tax1, tax2 = TAxis.of(d["T"]), TAxis.of(d["T_seen"])
    for S, color in zip(Ss, colors):
        sub = d[d["sparsity"] == S]
        lab = f"S = {S:g}  (1-S = {1 - S:.2g})"
        plot_vs_T(ax1, sub, "max_feature_dim", tax1, color, lab)
        plot_vs_T(ax2, sub, "max_feature_dim", tax2, color, lab, x="T_seen")
    tax1.decorate(ax1)
    tax2.decorate(ax2, label="expected occurrences of each feature T(1-S)")
    ax2.axvline(10, color=BASELINE_COLOR, ls="--", lw=1.0, label="seen 10 times")
    ax1.set_ylabel("max feature dimensionality $\\max_i D_{f_i}$")
    ax1.set_title("against T", loc="left")
    ax2.set_title("against T(1-S)", loc="left")
    ax2.legend(loc="best")
    return fig


# --- repeated data points ---------------------------------------------------------------

JERMYN_SLOPE = 0.4  # Jermyn's boundary: a point repeated R times is memorized when R > 0.4 T/N


def repeated_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean memorized fraction per setup (n, S), T and R, with x = T/N (N = n features)."""
    d = table[(table.get("repeated_points", 0) > 0)].dropna(subset=["repeated_memorized_fraction"]).copy()
    d["T_over_N"] = d["T"].astype(float) / d["n"].astype(float)
    g = d.groupby(["n", "sparsity", "T", "repeats"], as_index=False).agg(
        memorized=("repeated_memorized_fraction", "mean"), T_over_N=("T_over_N", "first"),
        seeds=("repeated_memorized_fraction", "size"))
    return g


@styled
def fig_repeated(table: pd.DataFrame) -> Figure:
    """Phase diagram of repeated data points: R against T/N, coloured by the fraction memorized.

    A repeated point counts as memorized when its D_X is in the top 0.1% of the
    training set (Jermyn's proxy). One marker per setup (n, S); the black line is
    Jermyn's R = 0.4 T/N.
    """
    g = repeated_table(table)
    if g.empty:
        raise ValueError("no runs with repeated points and a memorization metric")
    fig = new_figure(5.6, 4.0)
    ax = fig.subplots()
    markers = ["P", "X", "o", "s", "^", "D"]
    sc = None
    for (setup, sub), mk in zip(g.groupby(["n", "sparsity"]), markers):
        n, S = setup
        sc = ax.scatter(sub["T_over_N"], sub["repeats"], c=sub["memorized"], cmap="coolwarm", vmin=0, vmax=1,
                        marker=mk, s=60, edgecolors="#333333", linewidths=0.5, label=f"N = {int(n):,}, S = {S:g}",
                        zorder=3)
    x = np.geomspace(g["T_over_N"].min() / 1.5, g["T_over_N"].max() * 1.5, 50)
    ax.plot(x, JERMYN_SLOPE * x, color="black", lw=1.2, label=f"R = {JERMYN_SLOPE:g} T/N", gid="jermyn")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training set size over features T/N")
    ax.set_ylabel("repeats R of the repeated point")
    plain_log_ticks(ax)
    cb = fig.colorbar(sc, ax=ax, pad=0.01)
    cb.set_label("fraction memorized (top 0.1% by $D_X$)")
    # Below the axes, not in them: inside, "best" still covers a marker of a sparse phase diagram.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4)
    ax.set_title("when is a repeated point memorized?", loc="left")
    return fig


# --- training curves -------------------------------------------------------------------

@styled
def fig_training_curves(runs: Sequence[RunResult]) -> Figure:
    """Training loss against step for each run (kept init seed), coloured by log T."""
    fig = new_figure(6.4, 3.6)
    ax = fig.subplots()
    runs = sorted(runs, key=lambda r: (r.config.infinite, float(r.config.T)))
    colors = setting_colors([r.config.T if not r.config.infinite else 10 * max(
        [x.config.T for x in runs if not x.config.infinite] or [1]) for r in runs])
    for run, color in zip(runs, colors):
        steps, loss = training_curve(run)
        if len(steps):
            ax.plot(np.maximum(steps, 1), loss, color=color, lw=1.1, label=f"T = {fmt_T(run.config.T)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    plain_log_ticks(ax)
    ax.legend(loc="best", ncol=2 if len(runs) > 6 else 1, fontsize=7)
    ax.set_title("training loss of the kept init seed", loc="left")
    return fig


def training_curve(run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """(steps, training loss) of the kept init seed, from the run's history."""
    h = run.history
    if "loss_steps" not in h or "train_loss" not in h:
        return np.zeros(0), np.zeros(0)
    loss = np.asarray(h["train_loss"], np.float64)
    if loss.ndim == 2:
        # Rows are init seeds: named by history["init_seeds"] where training stored it, else by metrics.
        seeds = ([int(x) for x in h["init_seeds"]] if "init_seeds" in h
                 else [int(i.get("init_seed", -1)) for i in run.metrics.get("instances", [])])
        best = run.metrics.get("best_init_seed")
        row = seeds.index(best) if best in seeds and len(seeds) == loss.shape[0] else 0
        loss = loss[row]
    return np.asarray(h["loss_steps"], np.float64), loss


# --- training movies ---------------------------------------------------------------------

def snapshot_geometry(run: RunResult) -> dict[str, np.ndarray] | None:
    """Per-snapshot W (S x m x n), hidden vectors (S x P x m), and feature/data dimensionality summaries.

    None when the run kept no snapshots. Hidden vectors are recomputed as
    ``W_s x_i`` from the regenerated training set (or fresh points for T = inf).
    """
    from .metrics import data_dimensionality

    h = run.history
    if "snapshot_W" not in h or len(h.get("snapshot_steps", [])) == 0:
        return None
    Ws = np.asarray(h["snapshot_W"], np.float64)
    c = run.config
    from . import data as data_mod

    pts = (data_mod.training_set(c.n, c.sparsity, DISPLAY_POINTS_INF, c.data_seed) if c.infinite
           else run.training_data())
    Hs = hidden_vectors(pts, Ws)
    top_f = np.array([np.sort(feature_dimensionality(W))[::-1][: c.m].mean() for W in Ws])
    top_x = np.array([np.sort(data_dimensionality(H))[::-1][: c.m].mean() for H in Hs])
    return {"steps": np.asarray(h["snapshot_steps"]), "W": Ws, "H": Hs, "top_feature_dim": top_f,
            "top_data_dim": top_x}


@styled
def movie(run: RunResult, max_frames: int = 40, interval_ms: int = 250) -> animation.FuncAnimation:
    """An animation of a run's embeddings over training, one frame per stored snapshot.

    Left: W columns (blue); middle: hidden vectors h_i = W_s x_i (red); right: the
    training loss with the current step marked and the top dimensionalities over
    time (a "near miss" -- features learned then forgotten -- shows as a peak).
    Each frame is on its own scale (noted in the corner): weights grow by orders of
    magnitude from Xavier init, and a fixed scale would hide the early frames.
    """
    _check_2d([run])
    geo = snapshot_geometry(run)
    if geo is None:
        raise ValueError(f"run T={fmt_T(run.config.T)} kept no parameter snapshots")
    idx = np.unique(np.linspace(0, len(geo["steps"]) - 1, min(max_frames, len(geo["steps"]))).astype(int))
    fig = new_figure(9.0, 3.0)
    ax_w, ax_h, ax_l = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.5]})
    steps, loss = training_curve(run)
    if len(steps):
        ax_l.plot(np.maximum(steps, 1), loss, color="#333333", lw=1.0)
        pos = loss[np.isfinite(loss) & (loss > 0)]
        if len(pos) and pos.max() / pos.min() > 10:  # log only when the loss spans decades
            ax_l.set_yscale("log")
    ax_l.set_xscale("log")
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("training loss")
    plain_log_ticks(ax_l)
    ax_d = ax_l.twinx()
    ax_d.plot(np.maximum(geo["steps"], 1), geo["top_feature_dim"], color=FEATURE_COLOR, lw=1.0, ls="--",
              label="top $D_f$")
    ax_d.plot(np.maximum(geo["steps"], 1), geo["top_data_dim"], color=DATA_COLOR, lw=1.0, ls="--",
              label="top $D_X$")
    ax_d.set_ylim(0, 1.02)
    ax_d.set_ylabel("top-m dimensionality", fontsize=7)
    ax_d.grid(False)
    ax_d.spines["right"].set_visible(True)
    ax_d.legend(loc="upper right", fontsize=6)
    marker = ax_l.axvline(1, color="#888888", lw=0.8)
    title = fig.suptitle("", fontsize=9)
    pw, ph = VectorPanel(ax_w, FEATURE_COLOR), VectorPanel(ax_h, DATA_COLOR)
    ax_w.set_title("features $W_i$", fontsize=8)
    ax_h.set_title("points $h_i$", fontsize=8)

    def draw(frame: int):
        s = idx[frame]
        pw.set(geo["W"][s].T, max_vectors=1500)
        ph.set(geo["H"][s], max_vectors=1500)
        step = max(int(geo["steps"][s]), 1)
        marker.set_xdata([step, step])
        title.set_text(f"T = {fmt_T(run.config.T)}, m = {run.config.m}: step {int(geo['steps'][s]):,} "
                       f"of {run.config.steps:,}")
        return []

    draw(len(idx) - 1)  # lay out once with the final frame, then freeze the layout for speed
    fig.canvas.draw()
    fig.set_layout_engine("none")
    # On an Agg canvas draw_idle renders at once, so FuncAnimation would draw every
    # frame twice (once after updating it, once when the writer grabs it). Only the
    # writer's draw is needed: this canvas belongs to this animation alone.
    fig.canvas.draw_idle = lambda *args, **kwargs: None
    draw(0)
    anim = animation.FuncAnimation(fig, draw, frames=len(idx), interval=interval_ms, blit=False, repeat=True)
    anim._toydd_frames = len(idx)  # read by tests and the report
    return anim


def save_movie(run: RunResult, path: str | os.PathLike, fps: int = 4, dpi: int = 100, max_frames: int = 40) -> Path:
    """Write the training movie of ``run`` as a GIF (PillowWriter), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim = movie(run, max_frames=max_frames)
    # PIL infers the format from the suffix, so the temp name must end in the real one.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".gif", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
    try:
        with matplotlib.rc_context(STYLE):
            anim.save(tmp, writer=animation.PillowWriter(fps=fps), dpi=dpi,
                      savefig_kwargs={"facecolor": "white"})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


__all__ = [
    "TAxis", "aggregate", "default_vector_T", "display_hidden", "draw_vectors", "fig_epochs", "fig_main",
    "fig_norms", "fig_repeated", "fig_setting_lines", "fig_sparsity", "fig_tm_grid", "fig_training_curves",
    "fig_vector_plots", "fig_weight_decay", "fmt_T", "hidden_vectors", "movie", "save_figure", "save_movie",
    "snapshot_geometry", "sort_T", "training_curve", "REPRESENTED_NORM",
]


# --- the replication gap -------------------------------------------------------------

REGIME_COLORS = {"memorizing": "#d62728", "transition": "#9467bd", "generalizing": "#1f77b4"}


@styled
def fig_replication_gap(table: pd.DataFrame) -> Figure:
    """Which recipe gives the paper's figure, and is the middle regime an optimization failure?

    (a) test loss and (b) ||W||_F against T per recipe at the paper's lr and schedule; (c) the
    optimization gap: best cold-start training loss over the lr x steps grid minus the explicit
    memorizing construction's, and the same for training started from the construction; (d) the
    regime of the best-lr cold start at each (recipe, T), with that lr written in.
    """
    from . import replication as R

    t = R.with_recipe(table)
    t = t[np.isfinite(t["T"])]
    fig = new_figure(11.0, 7.4)
    (ax_loss, ax_norm), (ax_gap, ax_map) = fig.subplots(2, 2)
    tax = TAxis.of(t["T"])
    recipes = sorted(t["recipe"].unique())
    colors = dict(zip(recipes, ["#333333", "#e6550d", "#3182bd", "#31a354", "#756bb1"]))
    paper = R.paper_recipe_runs(t)
    for r in recipes:
        d = paper[paper["recipe"] == r]
        plot_vs_T(ax_loss, d, "test_loss", tax, colors[r], r)
        plot_vs_T(ax_norm, d, "weight_norm", tax, colors[r], r)
    _baseline(ax_loss)
    ax_loss.axhline(R.PAPER_SHAPE["peak_test_loss"], color="#2ca02c", ls=":", lw=1.0, label="paper's bump (~1.01)")
    _loss_yscale(ax_loss, np.concatenate([paper["test_loss"].to_numpy(float), [1.0]]))
    ax_loss.set_ylabel("test loss")
    ax_loss.set_title("(a) test loss, paper's lr and schedule", loc="left")
    ax_loss.legend(loc="best", fontsize=7)
    ax_norm.axhline(R.PAPER_SHAPE["plateau_weight_norm"], color="#2ca02c", ls=":", lw=1.0, label="sqrt(5) (paper's plateau)")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("weight norm ||W||_F")
    ax_norm.set_title("(b) weight norm, paper's lr and schedule", loc="left")
    ax_norm.legend(loc="best", fontsize=7)

    opt = R.optimum_table(t)
    for r in recipes:
        o = opt[opt["recipe"] == r].sort_values("T") if len(opt) else opt
        o = o[o["construction_valid"]] if len(o) else o  # a construction at loss >= 1 measures nothing
        if o.empty:
            continue
        ax_gap.plot(tax.pos(o["T"]), o["best_cold_train_loss"] - o["construction_train_loss"], "o-",
                    color=colors[r], ms=3.5, label=f"{r}: best cold start")
        if "warm_train_loss" in o and o["warm_train_loss"].notna().any():
            w = o.dropna(subset=["warm_train_loss"])
            ax_gap.plot(tax.pos(w["T"]), w["warm_train_loss"] - w["construction_train_loss"], "s--",
                        color=colors[r], ms=3.5, mfc="white", label=f"{r}: from the construction")
    ax_gap.axhline(0.0, color=BASELINE_COLOR, lw=1.0)
    ax_gap.set_ylabel("train loss − construction's")
    ax_gap.set_title("(c) optimization gap (> 0: the T-gon memorizes better; where it beats loss 1)", loc="left")
    ax_gap.legend(loc="best", fontsize=6.5)

    for k, r in enumerate(recipes):
        o = opt[opt["recipe"] == r] if len(opt) else opt
        for _, row in o.iterrows():
            ax_map.scatter(tax.pos(row["T"]), k, s=160, marker="s",
                           color=REGIME_COLORS.get(row["best_cold_regime"], "#999999"), zorder=3)
            ax_map.annotate(f"{row['best_cold_lr']:.0e}".replace("e-0", "e-"), (float(tax.pos(row["T"])), k),
                            textcoords="offset points", xytext=(0, 9), ha="center", fontsize=6.5)
    ax_map.set_yticks(range(len(recipes)))
    ax_map.set_yticklabels([r.split(" = ")[0] for r in recipes], fontsize=7)
    ax_map.set_ylim(-0.6, len(recipes) - 0.4)
    for name, c in REGIME_COLORS.items():
        ax_map.scatter([], [], s=40, marker="s", color=c, label=name)
    ax_map.legend(loc="lower right", fontsize=7, ncol=3)
    ax_map.set_title("(d) regime of the best cold start (its lr above)", loc="left")
    ax_map.set_ylabel("recipe (loss normalization)")
    for ax in (ax_loss, ax_norm, ax_gap, ax_map):
        tax.decorate(ax)
        plain_log_ticks(ax)
    return fig
