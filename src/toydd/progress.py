"""The progress line of ``toydd train`` and ``toydd sweep``: one measure, labelled, at most 80 columns.

One line on stderr, redrawn in place::

    t-sweep (quick) ━━━━━━━━━╺━━━━━━━━ 51% of work, 4/16 jobs, 13s elapsed, ETA 12s

The bar and the percentage count *work units* (``sweep.job_cost``: steps x
points x features x dimensions, or plain steps for ``train``), which advance
while a batch trains; the job count advances only when a whole batch is saved,
so it is labelled apart rather than mixed into the percentage. The ETA is the
remaining work at the average rate measured since the start (work units done,
partly trained batches included, per second elapsed): it reads "ETA measuring"
until the first units are done, never a placeholder clock. Rich's own
estimate uses the last 30 s only and swings with every batch size.

Nothing is drawn when stderr is not a terminal: a log file gets the summary
lines the commands print, not a stray frozen bar before an error message.
"""

from __future__ import annotations

from typing import Any

MAX_COLUMNS = 80  # the line never wraps in a classic terminal


def _clock(seconds: float) -> str:
    """Compact durations (13s, 2m05s, 1h02m, 3d04h) so the line keeps room for its bar."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def eta_seconds(completed: float, total: float, elapsed: float, estimate: float | None = None) -> float | None:
    """Seconds left: from the cost model's ``estimate`` of the whole run at first, then more and more from the
    average rate measured so far (weighted by the fraction of work done); None with neither."""
    if total > 0 and completed >= total:
        return 0.0
    left = 1.0 - completed / total if total > 0 else 1.0
    modelled = None if estimate is None else max(estimate * left, 0.0)
    if completed <= 0 or elapsed <= 0:
        return modelled
    measured = (total - completed) * elapsed / completed
    if modelled is None:
        return measured
    w = min(1.0, 2.0 * completed / total)  # half the work done: the measurement alone
    return (1.0 - w) * modelled + w * measured


class ProgressBar:
    """A rich progress line: description, bar, labelled work / jobs / elapsed / ETA; a no-op when disabled.

    ``unit``: ``"work"`` shows the percentage of work units; ``"steps"`` shows
    ``done/total steps``. ``total_jobs`` (optional) adds a ``done/total jobs``
    count, advanced by :meth:`jobs`. ``console`` is for tests (default: stderr,
    drawn only if it is a terminal).
    """

    def __init__(self, enabled: bool, title: str, total: float, total_jobs: int | None = None,
                 unit: str = "work", console: Any = None, estimate_seconds: float | None = None):
        self.jobs_done = 0
        self.estimate = estimate_seconds  # the cost model's (toydd.costmodel): an ETA from the first second
        self.total_jobs = total_jobs
        self.unit = unit
        self.enabled = bool(enabled) and (total_jobs is None or total_jobs > 0)
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.table import Column
        from rich.text import Text

        if console is None:
            console = Console(stderr=True)
        if not console.is_terminal:
            self.enabled = False
            return
        console.width = min(console.width, MAX_COLUMNS)
        bar = self

        class _Status(ProgressColumn):
            def render(self, task) -> Text:
                return Text(bar.status_text(task.completed, task.total or 0.0, task.elapsed or 0.0), no_wrap=True)

        # The status never wraps and the bar takes what is left; the title is cut first when 80 columns are
        # short (the numbers matter more).
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
            _Status(table_column=Column(no_wrap=True)),
            # transient: the line goes when the work is done; the command's own summary line (the sweep's
            # "N/N jobs done ... in 41.0s", train's table with its time) follows, so no time is printed twice.
            console=console, transient=True, refresh_per_second=4, expand=True)
        self.task = self.progress.add_task(title, total=max(float(total), 1.0))
        self.progress.start()

    def status_text(self, completed: float, total: float, elapsed: float) -> str:
        if self.unit == "steps":
            parts = [f"{int(completed):,}/{int(total):,} steps"]
        else:
            parts = [f"{100 * completed / total if total else 100:.0f}% of work"]
        if self.total_jobs is not None:
            parts.append(f"{self.jobs_done}/{self.total_jobs} jobs")
        parts.append(f"{_clock(elapsed)} elapsed")
        eta = eta_seconds(completed, total, elapsed, self.estimate)
        parts.append("ETA measuring" if eta is None else f"ETA {_clock(eta)}")
        return ", ".join(parts)

    def advance(self, units: float) -> None:
        if self.enabled:
            self.progress.advance(self.task, units)

    def jobs(self, n: int) -> None:
        self.jobs_done += n
        if self.enabled:
            self.progress.refresh()

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
            self.enabled = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
