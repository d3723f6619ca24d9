"""``epochs``: test loss against T at m = 4 for several step counts (more steps, bigger bump)."""

from __future__ import annotations

from typing import Any

from .. import plots
from ..config import TrainConfig
from . import lines
from .base import ExperimentDef, Preset, T_list, seeded

PAPER = ("At m = 4 and weight decay 1e-2, training longer (5% warmup, then cosine) makes the test-loss bump "
         "larger.")


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = p.m_appendix
    # warmup stays None: 5% of each run's steps, as in the paper's appendix.
    configs = [c for steps in p.epochs_steps for T in p.epochs_T_grid
               for c in seeded({}, p, m, T, p.seeds_appendix, steps=int(steps), warmup=None)]
    return configs, {"m": m, "T": T_list(p.epochs_T_grid), "steps": list(p.epochs_steps),
                     "data_seeds": p.seeds_appendix}


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: lines", lambda: lines.draw(ctx, exp, "steps", "steps", plots.fig_epochs(exp.table),
                                                          "up", PAPER))


DEF = ExperimentDef("epochs", "Test loss vs T at m=4 for several step counts (5% warmup, cosine decay): more steps, "
                              "bigger bump.", build, report, paper_order=50, reproduce_rank=50, in_reproduce=lambda p: p.name != "quick")
