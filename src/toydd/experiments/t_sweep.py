"""``t-sweep``: the paper's main figure.

Test loss (mean and spread over data seeds), feature and data dimensionality
against T with the m/T curve, and vector plots of W's columns (blue) and the
training points' hidden vectors (red) at chosen T; training curves and movies.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import TrainConfig, parse_T
from . import norms
from .base import ExperimentDef, Preset, t_grid_jobs

NAME = "t-sweep"

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
    "training": ("Full-batch AdamW with warmup and cosine decay; the paper stresses many full-batch steps and the "
                 "annealed schedule."),
    "movie": ("Movies of training: in the middle regime some models briefly learn generalizing features and then "
              "forget them by the end of training (the paper's T = 10,000 movie); near misses also occur with "
              "repeated data points."),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    return t_grid_jobs(p)


def report(ctx, exp) -> None:
    """Main figure, vector plots, training curves and movies (+ norms when no ``norms`` experiment is there)."""
    draw(ctx, exp)
    if "norms" not in ctx.results.experiments:
        ctx.attempt(f"{exp.name}: norms", lambda: norms.draw(ctx, exp))


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_data_dims, find_features, find_loss, find_regimes, find_vectors
    from ..plots_interactive import plotly_main, vector_slider_html
    from ..sections import Section

    t = exp.table
    ms = sorted(t["m"].unique())
    m = 2 if 2 in ms else ms[0]
    tm = t[t["m"] == m]
    reps = ctx.representatives(tm)
    vt = [parse_T(x) for x in exp.params.get("vector_plot_T", [])] or None
    name = exp.name
    m_note = f" (m = {m}; the sweep also has m = {', '.join(map(str, [x for x in ms if x != m]))})" if len(ms) > 1 else ""

    def main() -> None:
        f = ctx.png(plots.fig_main(tm, reps, vector_T=vt), f"{name}-main.png")
        finding = [find_loss(tm), find_data_dims(tm), find_regimes(tm), find_features(reps[-1])]
        ctx.add(Section(f"{name}-main", f"{name}: test loss, dimensionality and geometry against T" + m_note,
                        [f], PAPER["main"], finding, ctx.plotly(plotly_main(tm, reps))))

    ctx.attempt(f"{name}: main figure", main)
    if m == 2:
        def vectors() -> None:
            f1 = ctx.png(plots.fig_vector_plots(reps, consistent_scale=False), f"{name}-vectors.png")
            f2 = ctx.png(plots.fig_vector_plots(reps, consistent_scale=True), f"{name}-vectors-consistent.png")
            ctx.add(Section(f"{name}-vectors", f"{name}: vector plots at every T", [f1], PAPER["vectors"],
                            [find_vectors(reps), find_features(reps[-1])], vector_slider_html(reps)))
            ctx.add(Section(f"{name}-vectors-consistent", f"{name}: vector plots on one scale", [f2],
                            PAPER["vectors_consistent"], find_vectors(reps)))

        ctx.attempt(f"{name}: vector plots", vectors)
    ctx.attempt(f"{name}: training curves", lambda: training(ctx, exp, reps))
    if m == 2 and ctx.movies > 0:
        ctx.attempt(f"{name}: movies", lambda: movies(ctx, exp, tm, reps))


def training(ctx, exp, reps) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..sections import Section

    f = ctx.png(plots.fig_training_curves(reps), f"{exp.name}-training.png")
    ctx.add(Section(f"{exp.name}-training", f"{exp.name}: training curves", [f], PAPER["training"],
                    training_finding(reps)))


def training_finding(reps) -> str:
    """The training curves' caption: the final losses at the smallest and largest T drawn, each with its own
    number of inits (presets train best-of-k only up to some T, so one count for both would be wrong)."""
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import fmt_num

    def final(r) -> str:
        inits = f"best of {r.config.init_seeds} inits" if r.config.init_seeds > 1 else "1 init"
        return (f"{fmt_num(r.metrics.get('train_loss'), 3)} / {fmt_num(r.metrics.get('test_loss'), 4)} at "
                f"T={plots.fmt_T(r.config.T)} ({inits})")

    c = reps[0].config
    return (f"Final training / test loss: {final(reps[0])}, {final(reps[-1])} (data seed {c.data_seed}; "
            f"{c.steps:,} steps; loss_norm {c.loss_norm}).")


def movies(ctx, exp, table, reps) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_movie, loss_bump, loss_curve
    from ..sections import Section

    by_T = {float(r.config.T): r for r in reps if len(r.history.get("snapshot_steps", []))}
    if not by_T:
        ctx.notes.append(f"{exp.name}: runs kept no parameter snapshots; no training movies.")
        return
    Ts = plots.sort_T(by_T)
    fin = [T for T in Ts if math.isfinite(T)] or Ts
    b = loss_bump(loss_curve(table))
    # The three most telling models: memorizing (smallest T), the loss peak, generalizing (largest finite T).
    picks = [fin[0]] + ([b["T"]] if b and b["rise"] > 0 and b["T"] in by_T else []) + [fin[-1]]
    picks = list(dict.fromkeys(picks))[: ctx.movies]
    files, findings = [], []
    for T in picks:
        run = by_T[T]
        fname = f"{exp.name}-movie-T{plots.fmt_T(T)}.gif".replace("∞", "inf")
        plots.save_movie(run, ctx.out / fname, dpi=max(40, ctx.dpi * 2 // 3))
        files.append(fname)
        geo = plots.snapshot_geometry(run)
        if geo is not None:
            findings.append(find_movie(geo, run))
    ctx.add(Section(f"{exp.name}-movies", f"{exp.name}: training movies", files, PAPER["movie"], findings))


DEF = ExperimentDef(
    NAME, "Main figure: test loss, feature and data dimensionality vs T at m=2, with the m/T curve and vector "
          "plots of W (features) and h_i (training points).",
    build, report, paper_order=10, reproduce_rank=10)
