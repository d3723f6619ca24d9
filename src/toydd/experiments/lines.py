"""Test loss against T, one line per value of a setting: the figure of weight-decay, epochs and custom sweeps."""

from __future__ import annotations


def draw(ctx, exp, setting: str, label: str, fig, expect: str, paper: str, extra: str = "") -> None:
    """One figure: ``fig`` (already drawn), its caption from the data, and the interactive lines."""
    from ..findings import find_setting_bumps  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..plots_interactive import plotly_lines
    from ..sections import Section

    t = exp.table
    f = ctx.png(fig, f"{exp.name}-lines.png")
    finding = find_setting_bumps(t, setting, label, expect) + extra
    ctx.add(Section(f"{exp.name}-lines", f"{exp.name}: test loss against T by {label}", [f], paper, finding,
                    ctx.plotly(plotly_lines(t, "test_loss", setting, f"test loss by {label}", label, baseline=True,
                                            ytitle="test loss"))))


def bump_at_largest(t, setting: str, label: str) -> str:
    """Whether the bump survives at the largest value of ``setting`` (weight decay 1.0 removes it, the paper)."""
    # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..findings import fmt_num, loss_bump, loss_curve

    top = t[setting].max()
    b = loss_bump(loss_curve(t[t[setting] == top]))
    if b is None:
        return ""
    return f" At {label} {top:g} the bump is " + ("gone." if b["rise"] <= 0 or b["z"] < 2 else
                                                 f"still {fmt_num(b['rise'], 2)}.")


__all__ = ["bump_at_largest", "draw"]
