"""``norms``: ||W||_F and ||b||_2 against T (the t-sweep's runs, another figure)."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from .base import ExperimentDef, Preset, t_grid_jobs

PAPER = ("||W||_F and ||b|| rise with T while the model memorizes (a T-gon of more orthonormal points needs "
         "larger W and b), peak, then fall and plateau once it generalizes; the idealised pentagon solution has "
         "||W|| = √5 ≈ 2.2, close to the trained value. A replication saw ||b|| exceed ||W||_F in between.")


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    # Exactly the t-sweep's jobs (same keys, so nothing trains twice when both
    # run into one directory); only the figure differs.
    configs, params = t_grid_jobs(p)
    return configs, {**params, "source_experiment": "t-sweep", "y": ["weight_norm", "bias_norm"]}


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_norms
    from ..plots_interactive import plotly_norms
    from ..sections import Section

    t = exp.table
    f = ctx.png(plots.fig_norms(t), f"{exp.name}-norms.png")
    ctx.add(Section(f"{exp.name}-norms", f"{exp.name}: parameter norms against T", [f], PAPER, find_norms(t),
                    ctx.plotly(plotly_norms(t))))


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: norms", lambda: draw(ctx, exp))


DEF = ExperimentDef("norms", "||W||_F and ||b||_2 vs T at m=2 (the t-sweep's runs): norms rise while memorizing, "
                             "peak, then fall and plateau once the model generalizes.", build, report, paper_order=20, reproduce_rank=11)
