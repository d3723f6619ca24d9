"""Figures and captions of the ``mnist-dstar`` experiment (see :mod:`toydd.mnist`).

Every figure is a function of loaded MNIST runs (:func:`toydd.mnist.load_runs`);
every caption half "this sweep shows" is computed from those runs by a
``find_*`` function, never hard-coded. :func:`report_sections` is what
``toydd report`` calls (through ``report._Builder.mnist``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .mnist import PAPER_CLAIM, dstar_stats, flip_detection
from .plots import DATA_COLOR, FEATURE_COLOR, new_figure, plain_log_ticks, styled
from .storage import RunResult

HELD_OUT_COLOR = "#7f7f7f"
FLIP_COLOR = "#ff7f0e"


def _n(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def clean_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """Runs without label noise, one per T (the lowest seed), sorted by T."""
    by_T: dict[int, RunResult] = {}
    for r in sorted(runs, key=lambda r: (r.config.T, r.config.seed)):
        if r.config.label_noise == 0 and r.config.T not in by_T:
            by_T[r.config.T] = r
    return [by_T[T] for T in sorted(by_T)]


def noisy_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """Runs with flipped labels, by T then seed."""
    return sorted((r for r in runs if r.config.label_noise > 0), key=lambda r: (r.config.T, r.config.seed))


def _epochs(run: RunResult) -> np.ndarray:
    return np.asarray(run.history["checkpoint_epochs"])


def _logx(ax) -> None:
    ax.set_xscale("log")
    plain_log_ticks(ax)


def _log_bins(values: Sequence[np.ndarray], n: int = 60) -> np.ndarray:
    pos = np.concatenate([v[v > 0] for v in values if len(v)]) if values else np.zeros(0)
    if len(pos) == 0:
        return np.logspace(-4, 0, n)
    lo, hi = pos.min(), pos.max()
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    return np.logspace(math.log10(lo) - 0.05, math.log10(hi) + 0.05, n)


# --- figures ------------------------------------------------------------------------------------

@styled
def fig_histograms(runs: Sequence[RunResult]):
    """D* of every training digit (log x), one row per T, one column per checkpoint; median and 100x median."""
    runs = list(runs)
    ncol = max(len(_epochs(r)) for r in runs)
    fig = new_figure(2.6 * ncol + 0.5, 1.9 * len(runs) + 0.6)
    axes = fig.subplots(len(runs), ncol, squeeze=False)
    for i, r in enumerate(runs):
        D = r.arrays["dstar"]
        bins = _log_bins(list(D))
        for j in range(ncol):
            ax = axes[i][j]
            if j >= len(D):
                ax.set_axis_off()
                continue
            d = D[j]
            ax.hist(d[d > 0], bins=bins, color=DATA_COLOR, alpha=0.85)
            if "dstar_robust" in r.arrays:
                rb = r.arrays["dstar_robust"][j]
                ax.hist(rb[rb > 0], bins=bins, histtype="step", color=FEATURE_COLOR, lw=1)
            med = float(np.median(d))
            ax.axvline(med, color="black", lw=1)
            ax.axvline(100 * med, color="black", lw=1, ls="--")
            ax.axvline(1.0, color=HELD_OUT_COLOR, lw=1, ls=":")
            ax.set_yscale("log")
            _logx(ax)
            st = dstar_stats(d)
            ax.set_title(f"T={r.config.T:,}, epoch {_epochs(r)[j]}: max {st['max_ratio']:.0f}x", fontsize=8)
            if i == len(runs) - 1:
                ax.set_xlabel("D*, maximal data dimensionality")
            if j == 0:
                ax.set_ylabel("training digits")
    fig.suptitle("D* of every training digit (solid: median; dashed: 100x median, the paper's outliers; "
                 "dotted: D* = 1, the ceiling;\nblue outline: robust D*, without the units that fire on only a few "
                 "digits)",
                 fontsize=9)
    return fig


@styled
def fig_top_digits(runs: Sequence[RunResult], k: int = 6):
    """The k highest-D* training digits (left) beside k digits of median D* (right), one row per run."""
    runs = [r for r in runs if "top_images" in r.arrays]
    # Sized for the report's ~1,100-px column: 0.75 in a digit and 10-pt titles stay legible (~15 px) there.
    fig = new_figure(0.75 * (2 * k + 1) + 0.6, 1.6 * len(runs) + 0.7)
    axes = fig.subplots(len(runs), 2 * k + 1, squeeze=False)
    for i, r in enumerate(runs):
        d = r.arrays["dstar"][-1]
        med = float(np.median(d))
        y, pred = r.arrays["y"], r.arrays.get("pred")
        flipped = set(r.arrays["flipped"].tolist())
        for j, (which, col0) in enumerate((("top", 0), ("typical", k + 1))):
            idx, imgs = r.arrays[f"{which}_index"][:k], r.arrays[f"{which}_images"][:k]
            for q in range(k):
                ax = axes[i][col0 + q]
                ax.set_xticks([])
                ax.set_yticks([])
                if q >= len(idx):
                    ax.set_axis_off()
                    continue
                t = int(idx[q])
                ax.imshow(imgs[q], cmap="gray_r", vmin=0, vmax=255)
                lab = f"{int(y[t])}" + (f"→{int(pred[t])}" if pred is not None and pred[t] != y[t] else "")
                ax.set_title(f"{d[t] / med:.0f}x\n{lab}", fontsize=10,
                             color=FLIP_COLOR if t in flipped else "black")
                for sp in ax.spines.values():
                    sp.set_color(FLIP_COLOR if t in flipped else "#cccccc")
                    sp.set_linewidth(2 if t in flipped else 0.5)
        axes[i][k].set_axis_off()
        axes[i][0].set_ylabel(r.config.label(), fontsize=9)
    fig.suptitle(f"Left: the {k} highest-D* training digits; right: {k} of median D*.\nTitles: D* / median, "
                 "label (→ prediction if wrong); orange: a flipped label", fontsize=10)
    return fig


def _panel_row(k: int, height: float):
    """A figure with one row of ``k`` panels (one per training-set size)."""
    fig = new_figure(3.2 * k + 0.4, height)
    return fig, fig.subplots(1, k, squeeze=False)[0]


@styled
def fig_vs_step(runs: Sequence[RunResult]):
    """D* quantiles against training step, one panel per T; held-out median dashed."""
    runs = list(runs)
    fig, axes = _panel_row(len(runs), 3.0)
    stats = (("median", "black", "-"), ("p99", DATA_COLOR, "-"), ("p999", DATA_COLOR, ":"), ("max", "#8b0000", "-"))
    for ax, r in zip(axes, runs):
        steps = np.asarray(r.history["checkpoint_steps"], float)
        x = np.maximum(steps, 0.5)  # init at step 0, drawn at 0.5 on the log axis
        S = [dstar_stats(d) for d in r.arrays["dstar"]]
        for name, color, ls in stats:
            ax.plot(x, [s[name] for s in S], color=color, ls=ls, marker="o", ms=3, label=f"train {name}")
        Hs = [dstar_stats(d) for d in r.arrays["held_out_dstar"]]
        if Hs and Hs[0]:
            ax.plot(x, [s["median"] for s in Hs], color=HELD_OUT_COLOR, ls="--", marker="s", ms=3,
                    label="held-out median")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_xlabel("training step (init at 0.5)")
        ax.set_title(f"T={r.config.T:,}", fontsize=9)
    axes[0].set_ylabel("D* of training digits")
    # Below the panels: inside one, the legend sat on its "train p99" line.
    fig.legend(*axes[-1].get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize=7)
    return fig


@styled
def fig_train_vs_held_out(runs: Sequence[RunResult]):
    """Final-checkpoint D* of training digits vs held-out digits (density, log x), one panel per T."""
    runs = list(runs)
    fig, axes = _panel_row(len(runs), 2.8)
    for ax, r in zip(axes, runs):
        d, h = r.arrays["dstar"][-1], r.arrays["held_out_dstar"][-1]
        bins = _log_bins([d, h])
        ax.hist(d[d > 0], bins=bins, density=True, color=DATA_COLOR, alpha=0.6, label=f"train ({len(d):,})")
        if len(h):
            ax.hist(h[h > 0], bins=bins, density=True, histtype="step", color=FEATURE_COLOR, lw=1.5,
                    label=f"held out ({len(h):,})")
        _logx(ax)
        ax.set_xlabel("D* (held out: against the training digits' G)")
        ax.set_ylabel("density of digits")
        ax.set_title(f"T={r.config.T:,}, epoch {_epochs(r)[-1]}", fontsize=9)
        ax.legend(fontsize=7)
    return fig


@styled
def fig_label_noise(runs: Sequence[RunResult]):
    """Flipped vs clean training digits: D* histograms (final checkpoint) and precision at k over training."""
    runs = list(runs)
    fig = new_figure(7.0, 2.6 * len(runs) + 0.4)
    axes = fig.subplots(len(runs), 2, squeeze=False)
    for (a0, a1), r in zip(axes, runs):
        d = r.arrays["dstar"][-1]
        fl = r.arrays["flipped"]
        mask = np.zeros(len(d), bool)
        mask[fl] = True
        bins = _log_bins([d])
        a0.hist(d[~mask & (d > 0)], bins=bins, density=True, color=DATA_COLOR, alpha=0.6, label="clean labels")
        a0.hist(d[mask & (d > 0)], bins=bins, density=True, histtype="step", color=FLIP_COLOR, lw=2,
                label=f"flipped ({len(fl)})")
        _logx(a0)
        a0.set_xlabel("D*, maximal data dimensionality")
        a0.set_ylabel("density of digits")
        a0.set_title(r.config.label(), fontsize=9)
        a0.legend(fontsize=7)
        steps = np.maximum(np.asarray(r.history["checkpoint_steps"], float), 0.5)
        dets = [flip_detection(dd, fl) for dd in r.arrays["dstar"]]
        a1.plot(steps, [x["precision_at_k"] for x in dets], marker="o", color=FLIP_COLOR, label="precision = recall at k")
        a1.plot(steps, [x["auc"] for x in dets], marker="s", color="black", label="AUC")
        a1.plot(steps, np.asarray(r.history["checkpoint_flipped_fit"]), marker="^", color=HELD_OUT_COLOR,
                label="flipped labels fitted")
        a1.axhline(dets[0]["chance"], color=FLIP_COLOR, ls=":", lw=1,
                   label=f"chance precision ({dets[0]['chance']:.2g}: k digits drawn at random)")
        a1.set_xscale("log")
        plain_log_ticks(a1)
        a1.set_ylim(-0.02, 1.02)
        a1.set_xlabel("training step (init at 0.5)")
        a1.set_ylabel("score: precision, AUC, share fitted")
        a1.legend(fontsize=7)
    return fig


# --- what the data shows ----------------------------------------------------------------------

def find_outliers(runs: Sequence[RunResult]) -> list[str]:
    """Per T (final checkpoint): median D*, the top 1% and the maximum as multiples of it; against ~100x."""
    out = []
    best = None
    for r in runs:
        d = r.arrays["dstar"][-1]
        st = dstar_stats(d)
        rank = int(r.history["checkpoint_rank"][-1])
        out.append(f"At T={r.config.T:,} (epoch {_epochs(r)[-1]}, train accuracy {r.metrics['train_acc']:.3f}): "
                   f"median D* {st['median']:.3g} (rank/T = {rank / len(d):.3g}); the top 1% of digits sit at "
                   f"≥ {st['p99_ratio']:.1f}x the median, the top 0.1% at ≥ {st['p999'] / st['median']:.1f}x, "
                   f"the largest at {st['max_ratio']:.0f}x; {st['over_10x']} digit(s) above 10x. D* ≤ 1 caps the "
                   f"ratio at 1/median ≈ T/rank = {1 / st['median']:.0f}x.")
        if "dstar_robust" in r.arrays:
            rb = dstar_stats(r.arrays["dstar_robust"][-1])
            c = r.config
            out.append(f"   T={c.T:,}: {int(r.history['checkpoint_solo_units'][-1])} hidden unit(s) fire on a single "
                       f"training digit and {int(r.history['checkpoint_rare_units'][-1])} on at most "
                       f"{c.min_unit_support}; each gives its digit D* = 1 however weak it is. Without them (robust "
                       f"D*) the top 1% sit at ≥ {rb['p99_ratio']:.1f}x the median and the largest at "
                       f"{rb['max_ratio']:.1f}x.")
        if best is None or st["max_ratio"] > best[1]:
            best = (r.config.T, st["max_ratio"], st["p99_ratio"])
    if best is not None:
        T, mx, p99 = best
        verdict = ("about the paper's ~100x" if 50 <= mx <= 200 else
                   "above the paper's ~100x" if mx > 200 else "below the paper's ~100x")
        out.append(f"Against the paper: the largest outlier reaches {mx:.0f}x the median D* (at T={T:,}), "
                   f"{verdict}; the bulk is narrow (top 1% at {p99:.1f}x there). Since every D* ≤ 1 and the "
                   f"median is about rank/T, a ratio of ~100x needs T ≳ 100 x rank (~50,000 digits for 512 "
                   f"units): the paper's claim is one of all 60,000 digits.")
    return out


def find_top_digits(runs: Sequence[RunResult], k: int = 32) -> list[str]:
    out = []
    for r in runs:
        if "top_index" not in r.arrays or "pred" not in r.arrays:
            continue
        top = r.arrays["top_index"][:k]
        y, pred = r.arrays["y"], r.arrays["pred"]
        wrong_top = float(np.mean(pred[top] != y[top]))
        wrong_all = float(np.mean(pred != y))
        typ = r.arrays["typical_index"][:k]
        wrong_typ = float(np.mean(pred[typ] != y[typ]))
        out.append(f"{r.config.label()}: {wrong_top:.0%} of the {len(top)} highest-D* digits are misclassified "
                   f"by the trained model, against {wrong_typ:.0%} of {len(typ)} median-D* digits and "
                   f"{wrong_all:.1%} of all training digits.")
    return out


def find_vs_step(runs: Sequence[RunResult]) -> list[str]:
    out = []
    for r in runs:
        S = [dstar_stats(d) for d in r.arrays["dstar"]]
        e = _epochs(r)
        out.append(f"T={r.config.T:,}: max / median D* {S[0]['max_ratio']:.1f}x at epoch {e[0]} → "
                   f"{S[-1]['max_ratio']:.1f}x at epoch {e[-1]}; top 1% {S[0]['p99_ratio']:.1f}x → "
                   f"{S[-1]['p99_ratio']:.1f}x; numerical rank of H {int(r.history['checkpoint_rank'][0])} → "
                   f"{int(r.history['checkpoint_rank'][-1])} ({int(r.history['checkpoint_dead_units'][-1])} dead "
                   f"unit(s)).")
    return out


def find_held_out(runs: Sequence[RunResult]) -> list[str]:
    out = []
    for r in runs:
        d, h = r.arrays["dstar"][-1], r.arrays["held_out_dstar"][-1]
        if not len(h):
            continue
        sd, sh = dstar_stats(d), dstar_stats(h)
        out.append(f"T={r.config.T:,}: held-out median D* is {sh['median'] / sd['median']:.2f}x the training "
                   f"median; held-out top 1% at {sh['p99'] / sd['median']:.1f}x and max at "
                   f"{sh['max'] / sd['median']:.0f}x the training median (training: {sd['p99_ratio']:.1f}x, "
                   f"{sd['max_ratio']:.0f}x); held-out accuracy {r.metrics['held_out_acc']:.3f}.")
    return out


def find_label_noise(runs: Sequence[RunResult]) -> list[str]:
    out = []
    for r in runs:
        m = flip_detection(r.arrays["dstar"][-1], r.arrays["flipped"])
        if not m:
            continue
        out.append(f"{r.config.label()} ({m['chance']:.1%} of the digits): the {m['k']} highest-D* digits hold "
                   f"{round(m['precision_at_k'] * m['k'])} flipped ones (precision = recall = "
                   f"{m['precision_at_k']:.2f}, chance {m['chance']:.2f}); the top 1% ({m['top']}) has precision "
                   f"{m['precision_top']:.2f}, recall {m['recall_top']:.2f}; AUC {m['auc']:.2f}; the model fits "
                   f"{r.metrics['flipped_fit']:.0%} of the flipped labels.")
        fl = r.arrays["flipped"]
        extra = []
        if "dstar_robust" in r.arrays:
            mr = flip_detection(r.arrays["dstar_robust"][-1], fl)
            extra.append(f"robust D*: precision at k {mr['precision_at_k']:.2f}, AUC {mr['auc']:.2f}")
        if "pred" in r.arrays:
            fitted = fl[r.arrays["pred"][fl] == r.arrays["y"][fl]]
            clean = np.setdiff1d(np.arange(len(r.arrays["y"])), fl)
            if len(fitted):
                # AUC of the fitted (memorized) flipped digits against the clean ones, leaving the unfitted out.
                keep = np.concatenate([clean, fitted])
                pos = np.flatnonzero(np.isin(keep, fitted))
                mf = flip_detection(r.arrays["dstar"][-1][keep], pos)
                if mf:
                    extra.append(f"the {len(fitted)} flipped digits the model did fit (memorized) against the clean "
                                 f"ones: AUC {mf['auc']:.2f}, precision at k = {len(fitted)}: "
                                 f"{mf['precision_at_k']:.2f}")
        if extra:
            out.append(f"   {r.config.label()}: " + "; ".join(extra) + ".")
    return out


PAPER = {
    "hist": PAPER_CLAIM,
    "top": ("Olah: the highest-D* training examples tend to be weird outliers, plausibly memorized examples the "
            "model has special-cased."),
    "step": ("Hobbahn: D* can be tricky to get right but looks interpretable even before it has converged; he "
             "tracked it at several points of training."),
    "held": ("A reader asked for the validation-set curve. Here a held-out digit's D* uses the same supremum "
             "with the denominator over the training digits (its out-of-sample leverage), so it is comparable "
             "with the training digits' D*."),
    "noise": ("Not in the paper: if high D* marks memorized examples, digits whose labels were flipped (which can "
              "only be fitted by memorizing them) should rank at the top."),
}
