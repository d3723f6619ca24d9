"""``weight-decay``: test loss against T at m = 4 for several weight decays (1.0 removes the bump)."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from . import lines
from .base import ExperimentDef, Preset, T_list, seeded

PAPER = ("At m = 4, decreasing weight decay increases the test-loss bump; weight decay 1.0 removes it "
         "entirely.")


# The weight decays per preset (the paper's appendix: 0 ... 1.0 at m = 4).
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(weight_decays=(0.0, 0.001, 0.01, 0.1, 1.0)),
    "quick": dict(weight_decays=(0.0, 0.001, 0.01, 0.1, 1.0)),
    "smoke": dict(weight_decays=(0.0, 0.01, 1.0)),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = p.m_appendix
    # Weight decay varies per instance, so all decays of one T train as one batch.
    Ts = p.grid_appendix
    wds = SETTINGS[p.name]["weight_decays"]
    configs = [c for T in Ts for wd in wds
               for c in seeded({}, p, m, T, p.seeds_appendix, weight_decay=float(wd))]
    return configs, {"m": m, "T": T_list(Ts), "weight_decays": list(wds), "data_seeds": p.seeds_appendix}


def report(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)

    t = exp.table
    extra = lines.bump_at_largest(t, "weight_decay", "weight decay") if (t["weight_decay"] >= 1.0).any() else ""
    ctx.attempt(f"{exp.name}: lines", lambda: lines.draw(ctx, exp, "weight_decay", "weight decay",
                                                          plots.fig_weight_decay(t), "down", PAPER, extra))


DEF = ExperimentDef("weight-decay", "Test loss vs T at m=4 for several weight decays: less decay, bigger bump; "
                                    "1.0 removes it.", build, report, paper_order=40, reproduce_rank=40, in_reproduce=lambda p: p.name != "quick")
