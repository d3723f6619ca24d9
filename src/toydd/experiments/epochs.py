"""``epochs``: test loss against T at m = 4 for several step counts (more steps, bigger bump)."""

from __future__ import annotations

from typing import Any

from ..config import INF, TrainConfig
from . import lines
from .base import ExperimentDef, Preset, T_list, seeded

PAPER = ("At m = 4 and weight decay 1e-2, training longer (5% warmup, then cosine) makes the test-loss bump "
         "larger.")


# Step counts and the T grid per preset (the paper's appendix: 5k ... 200k steps at m = 4).
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(steps=(5000, 10_000, 25_000, 50_000, 100_000, 200_000), T_grid=(3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, INF)),
    "quick": dict(steps=(1500, 3000, 6000, 12_000), T_grid=(5, 10, 30, 100, 200, 500, 1000, 3000, INF)),
    "smoke": dict(steps=(100, 200), T_grid=(3, 30, INF)),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = p.m_appendix
    # warmup stays None: 5% of each run's steps, as in the paper's appendix.
    s = SETTINGS[p.name]
    configs = [c for steps in s["steps"] for T in s["T_grid"]
               for c in seeded({}, p, m, T, p.seeds_appendix, steps=int(steps), warmup=None)]
    return configs, {"m": m, "T": T_list(s["T_grid"]), "steps": list(s["steps"]),
                     "data_seeds": p.seeds_appendix}


def report(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)

    ctx.attempt(f"{exp.name}: lines", lambda: lines.draw(ctx, exp, "steps", "steps", plots.fig_epochs(exp.table),
                                                          "up", PAPER))


DEF = ExperimentDef("epochs", "Test loss vs T at m=4 for several step counts (5% warmup, cosine decay): more steps, "
                              "bigger bump.", build, report, paper_order=50, reproduce_rank=50, in_reproduce=lambda p: p.name != "quick")
