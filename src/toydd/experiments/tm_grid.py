"""``tm-grid``: test loss over (T, m) as a heat map."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from .base import ExperimentDef, Preset, T_list, seeded

PAPER = ("Test loss over (T, m), 4 models per cell: there are regions where more data or a bigger model "
         "hurts. Optimization is more consistent for m > 3.")


# The hidden dimensions of the heat map, per preset (T grid and seeds: the preset's appendix grid).
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(tm_ms=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)),
    "quick": dict(tm_ms=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)),
    "smoke": dict(tm_ms=(1, 2, 3)),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    Ts = p.grid_appendix
    ms = SETTINGS[p.name]["tm_ms"]
    configs = [c for m in ms for T in Ts for c in seeded({}, p, m, T, p.seeds_appendix)]
    return configs, {"m": list(ms), "T": T_list(Ts), "data_seeds": p.seeds_appendix}


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_tm
    from ..plots_interactive import plotly_tm
    from ..sections import Section

    t = exp.table
    f = ctx.png(plots.fig_tm_grid(t), f"{exp.name}-heatmap.png")
    ctx.add(Section(f"{exp.name}-heatmap", f"{exp.name}: test loss over (T, m)", [f], PAPER, find_tm(t),
                    ctx.plotly(plotly_tm(t))))


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: heat map", lambda: draw(ctx, exp))


DEF = ExperimentDef("tm-grid", "Test loss over (T, m) as a heat map: where the double-descent bump sits as the "
                               "hidden dimension grows.", build, report, paper_order=30, reproduce_rank=60, in_reproduce=lambda p: p.name != "quick")
