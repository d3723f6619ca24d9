"""The report of an experiment toydd does not know by name (a user's experiment file).

It gets the figure its varying fields allow: T alone -> the main figure; T and
m -> the heat map; T and sparsity -> the generalization scale; T and one other
field -> one line per value; a repeated point -> the phase diagram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import lines, repeated, sparsity, t_sweep, tm_grid

if TYPE_CHECKING:
    import pandas as pd

GENERIC_PAPER = "A sweep outside the paper's list: no published result to compare with."

_SETTINGS = ("m", "weight_decay", "steps", "sparsity", "lr", "n", "importance_decay", "init_seeds", "tied",
             "repeats", "repeated_points", "loss_norm", "eps")


def varying(t: pd.DataFrame) -> list[str]:
    """Config fields that take more than one value across the runs (besides seeds)."""
    return [c for c in ("T",) + _SETTINGS if c in t and t[c].nunique(dropna=False) > 1]


def infer_figure(t: pd.DataFrame) -> str:
    """Which figure fits: t-sweep, tm-grid, sparsity, repeated, lines:<field>, or none."""
    v = varying(t)
    if "repeated_memorized_fraction" in t and t["repeated_memorized_fraction"].notna().any():
        return "repeated"
    if "T" not in v:
        return "none"
    others = [c for c in v if c != "T"]
    if not others:
        return "t-sweep"
    if others == ["m"]:
        return "tm-grid"
    if others == ["sparsity"]:
        return "sparsity"
    if len(others) == 1:
        return f"lines:{others[0]}"
    return "none"


def report(ctx, exp) -> None:
    from .. import plots  # lazy: drawing stays out of CLI start-up (experiments/__init__)

    t = exp.table
    figure = infer_figure(t)
    ctx.log(f"report: {exp.name} ({len(t)} runs) as {figure}")
    if figure == "t-sweep":
        t_sweep.report(ctx, exp)
    elif figure == "tm-grid":
        tm_grid.report(ctx, exp)
    elif figure == "sparsity":
        sparsity.report(ctx, exp)
    elif figure == "repeated":
        repeated.report(ctx, exp)
    elif figure.startswith("lines:"):
        setting = figure.split(":", 1)[1]
        ctx.attempt(f"{exp.name}: lines", lambda: lines.draw(ctx, exp, setting, setting,
                                                              plots.fig_setting_lines(t, setting, setting), "up",
                                                              GENERIC_PAPER))
    else:
        ctx.notes.append(f"{exp.name}: no figure for an experiment whose runs vary in "
                         f"{', '.join(varying(t)) or 'nothing'}; its runs are in the table below.")
