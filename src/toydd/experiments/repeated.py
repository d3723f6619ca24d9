"""``repeated``: one data point repeated R times inside T (Jermyn); memorized or not over (T/N, R)."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from .base import ExperimentDef, Preset

PAPER = ("Jermyn: a datapoint repeated 2–3 times behaves as in the paper; with more repeats models learn a "
         "mix of datapoints and features. Balancing the loss benefit of a feature (~T(1-S)) against a "
         "repeated point (~RN(1-S)) predicts memorization when R > c T/N, independent of sparsity; his "
         "m = 2 runs follow R = 0.4 T/N at larger T/N and need more repeats at low T/N (a point counts as "
         "memorized when in the top 0.1% by D_X).")


# (n, S) setups (Jermyn's two: "+" n = 10,000, S = 0.999 and "x" n = 1,000, S = 0.99), dataset sizes as T/N
# (all past the generalizing scale), how often the one point repeats, and data seeds.
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(setups=((10_000, 0.999), (1000, 0.99)), T_over_N=(1, 2, 3, 5, 10, 20), R=(1, 2, 3, 5, 8, 13, 20, 30, 50), seeds=2),
    "quick": dict(setups=((1000, 0.99),), T_over_N=(1, 2, 5, 10), R=(1, 2, 3, 5, 10, 20, 40), seeds=1),
    "smoke": dict(setups=((100, 0.9),), T_over_N=(1, 3), R=(2, 10), seeds=1),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    configs = []
    s = SETTINGS[p.name]
    for n, S in s["setups"]:
        for ratio in s["T_over_N"]:
            T = int(round(ratio * n))
            for R in s["R"]:
                # One point repeated R times inside T (R = 1: no repeat, the baseline).
                configs += [TrainConfig(**{**p.base, "n": n, "sparsity": float(S), "m": m, "T": T, "data_seed": d,
                                           "init_seeds": p.init_seeds(m, T), "repeated_points": 1, "repeats": int(R)})
                            for d in range(s["seeds"])]
    return configs, {"m": m, "setups": [{"n": n, "sparsity": S} for n, S in s["setups"]],
                     "T_over_N": list(s["T_over_N"]), "repeats": list(s["R"]), "repeated_points": 1,
                     "criterion": "memorized if the repeated point's D_X is in the top 0.1% of the training set",
                     "jermyn_line": "R = 0.4 T/N", "data_seeds": s["seeds"]}


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_repeated
    from ..plots_interactive import plotly_repeated
    from ..sections import Section

    t = exp.table
    f = ctx.png(plots.fig_repeated(t), f"{exp.name}-phase.png")
    ctx.add(Section(f"{exp.name}-phase", f"{exp.name}: memorization of repeated data points", [f], PAPER,
                    find_repeated(t), ctx.plotly(plotly_repeated(t))))


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: phase diagram", lambda: draw(ctx, exp))


DEF = ExperimentDef("repeated", "Repeated data points (Jermyn): one point repeated R times inside T; memorized or "
                                "not over (T/N, R), against R = 0.4 T/N.", build, report, paper_order=70, reproduce_rank=30, in_reproduce=lambda p: p.name != "quick")
