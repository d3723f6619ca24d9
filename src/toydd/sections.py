"""A report section and the context an experiment draws its sections in.

An experiment module's ``report(ctx, results)`` draws figures with
:mod:`toydd.plots` (and :mod:`toydd.plots_interactive`), writes them through
``ctx.png`` / ``ctx.plotly``, and appends :class:`Section` objects with both
halves of the caption: what the paper reports, and what the data shows
(:mod:`toydd.findings`). :mod:`toydd.report` assembles the page from them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import plots
from .storage import RunResult

# The interactive charts' toolbar: download as PNG stays; nothing that uploads or links out
# (an offline research report offers no "share chart" to a cloud service).
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False, "showSendToCloud": False,
                 "showEditInChartStudio": False, "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio"]}


@dataclass
class Section:
    """One figure of the report: files, caption halves, and its interactive version."""

    id: str
    title: str
    files: list[str]  # PNG / GIF names in the report directory
    paper: str
    finding: str | list[str]  # one sentence group, or several (shown as a list)
    interactive: str = ""  # HTML (plotly div or the slider)

    def finding_html(self) -> str:
        items = [f for f in ([self.finding] if isinstance(self.finding, str) else self.finding) if f]
        if not items:
            return "–"
        if len(items) == 1:
            return html.escape(items[0])
        return "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in items) + "</ul>"


@dataclass
class ReportContext:
    """Where sections go while a report is drawn: the results, the output folder, and the page's notes."""

    results: Any  # toydd.results.Results
    out: Path
    movies: int = 3
    log: Callable[[str], None] = print
    dpi: int = 150
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plotly_charts: int = 0  # the page inlines plotly.js only if a section used it

    def png(self, fig, name: str) -> str:
        plots.save_figure(fig, self.out / name, dpi=self.dpi)
        fig.clf()
        return name

    def plotly(self, fig) -> str:
        self.plotly_charts += 1
        fig.update_layout(modebar_orientation="v")  # beside the chart, never over its title on a narrow screen
        return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plotly-{self.plotly_charts}",
                           config=PLOTLY_CONFIG)

    def add(self, section: Section) -> None:
        self.sections.append(section)

    def attempt(self, what: str, fn: Callable[[], None]) -> None:
        """Draw one figure; a failure is reported in the page instead of losing the whole report."""
        try:
            fn()
        except Exception as e:  # a figure that cannot be drawn must not cost the others
            self.notes.append(f"{what}: not drawn ({type(e).__name__}: {e})")
            self.log(f"warning: {what}: {type(e).__name__}: {e}")

    def representatives(self, table: pd.DataFrame, m: int | None = None) -> list[RunResult]:
        """One loaded run per T: the lowest data seed (and init base) at that T."""
        d = table if m is None else table[table["m"] == m]
        reps = []
        for T in plots.sort_T(d["T"]):
            row = d[d["T"].astype(float) == T].sort_values(["data_seed", "init_seed_base"]).iloc[0]
            reps.append(self.results.run(row["key"]))
        return reps


def recipe_note(table: pd.DataFrame) -> str:
    """Which training recipe the runs of a table used, in words (a caption's first sentence).

    The recipe decides whether a sweep gives the paper's figure (``loss_norm = mean``) or Jermyn's
    replication (``sum`` with Adam eps 1e-8): docs/REPLICATION.md. A table mixing recipes says so.
    """
    if "loss_norm" not in table or table.empty:
        return ""
    eps = table["eps"].astype(float) if "eps" in table else pd.Series(1e-8, index=table.index)
    recipes = sorted({(str(norm), float(e)) for norm, e in zip(table["loss_norm"], eps)})
    words = [f"{'mean over T·n (the paper’s figures)' if norm == 'mean' else 'summed loss (the paper’s text)'}"
             + ("" if e == 1e-8 else f", Adam eps {e:g}") for norm, e in recipes]
    if len(words) == 1:
        return f"Recipe: {words[0]}."
    return f"Recipes mixed in this sweep: {'; '.join(words)}."
