"""``sparsity``: the generalization scale (Jermyn): max D_f against T and T(1-S) for several sparsities."""

from __future__ import annotations

from typing import Any

from ..config import TrainConfig
from .base import ExperimentDef, Preset, seeded

PAPER = ("Jermyn: the generalizing scale does not move with weight decay but lines up across sparsities on "
         "T(1-S): features are learned once each is seen about 10 times.")


def sparsity_T_values(sparsity: float, feature_counts) -> list[int]:
    """Dataset sizes at which a feature is expected to occur ``c`` times: T = c / (1 - S)."""
    out: list[int] = []
    for c in feature_counts:
        T = max(2, int(round(c / (1.0 - sparsity))))
        if T not in out:
            out.append(T)
    return out


# Sparsities, and the expected occurrences of a feature T(1-S) that set each sparsity's T values.
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(sparsities=(0.99, 0.995, 0.999, 0.9995), feature_counts=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)),
    "quick": dict(sparsities=(0.98, 0.99, 0.995), feature_counts=(1, 2, 5, 10, 20, 50, 100)),
    "smoke": dict(sparsities=(0.8, 0.9), feature_counts=(1, 10)),
}


def build(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    configs = []
    grid: dict[str, list[int]] = {}
    s = SETTINGS[p.name]
    for S in s["sparsities"]:
        Ts = sparsity_T_values(S, s["feature_counts"])
        grid[repr(float(S))] = Ts
        configs += [c for T in Ts for c in seeded({"sparsity": float(S)}, p, m, T, p.seeds_appendix)]
    return configs, {"m": m, "sparsities": list(s["sparsities"]), "feature_counts": list(s["feature_counts"]),
                     "T_by_sparsity": grid, "x": ["T", "T*(1-S)"], "y": "max_feature_dim",
                     "data_seeds": p.seeds_appendix}


def draw(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import find_generalization_scale
    from ..plots_interactive import plotly_lines
    from ..sections import Section

    t = exp.table.copy()
    f = ctx.png(plots.fig_sparsity(t), f"{exp.name}-sparsity.png")
    t["T_seen"] = t["T"].astype(float) * (1 - t["sparsity"].astype(float))
    html_ = ctx.plotly(plotly_lines(t, "max_feature_dim", "sparsity", "max D_f against T(1-S)", "S", x="T_seen",
                                    ytitle="max D_f", xtitle="T(1-S): expected occurrences of each feature"))
    ctx.add(Section(f"{exp.name}-sparsity", f"{exp.name}: generalization scale across sparsities", [f], PAPER,
                    find_generalization_scale(t), html_))


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: sparsity", lambda: draw(ctx, exp))


DEF = ExperimentDef("sparsity", "Generalization scale (Jermyn): max feature dimensionality vs T and vs T(1-S) for "
                                "several sparsities; features generalize once seen ~10 times.", build, report,
                    paper_order=60, reproduce_rank=20, in_reproduce=lambda p: p.name != "quick")
