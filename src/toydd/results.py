"""A sweep directory's results, read for figures and reports: experiments, their runs as tables, runs on demand.

Only ``metrics.json`` and ``config.json`` are parsed for the tables (after the
checksums and the key of every run have been checked, so a corrupted or swapped
run is reported by name, never silently read); arrays and histories are loaded
on demand by :meth:`Results.run` and cached. Runs of every job kind
(:mod:`toydd.jobs`) are read the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ToyddError
from .jobs import check_job_key, kind_of_run
from .storage import CorruptRun, RunResult
from .store import Store, read_manifest


@dataclass
class ExperimentResults:
    """One experiment of a sweep directory: its manifest and its complete runs as a table."""

    name: str
    manifest: dict[str, Any]
    table: pd.DataFrame  # one row per complete run
    missing: list[str] = field(default_factory=list)  # keys with no complete run yet
    failed: list[dict[str, Any]] = field(default_factory=list)  # failed/<key>.json records
    corrupt: list[str] = field(default_factory=list)  # messages naming the bad file

    @property
    def n_keys(self) -> int:
        return len(self.manifest.get("keys", []))

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "toy")

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.get("params", {})


class Results:
    """The experiments of the sweep directory ``root`` (see :mod:`toydd.store` for the layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ToyddError(f"no sweep directory at {self.root}")
        self.store = Store(self.root)
        exp_dir = self.root / "experiments"
        for sub in (exp_dir, self.root / "runs"):
            if os.path.lexists(sub) and not sub.is_dir():
                raise ToyddError(f"{sub} is not a directory, so {self.root} is not a usable results directory; "
                                 f"move {sub} away and run again")
        manifests = sorted(exp_dir.glob("*.json")) if exp_dir.is_dir() else []
        if not manifests:
            raise ToyddError(f"{self.root} holds no experiments (expected {exp_dir}/<name>.json)")
        self.problems: list[str] = []
        self._rows: dict[str, dict[str, Any] | None] = {}
        self._runs: dict[str, RunResult] = {}
        self.experiments: dict[str, ExperimentResults] = {}
        for path in manifests:
            try:
                manifest = read_manifest(path)
            except ToyddError as e:
                self.problems.append(f"{e}; skipped")
                continue
            self.experiments[manifest["name"]] = self._experiment(manifest)

    def _row(self, key: str) -> dict[str, Any] | None:
        """The table row of run ``key``: config fields, then scalar metrics. None if not complete."""
        if key in self._rows:
            return self._rows[key]
        run_dir = self.store.run_dir(key)
        row: dict[str, Any] | None = None
        if run_dir.is_dir():
            try:
                kind = kind_of_run(run_dir)
                row = kind.row(run_dir)  # verifies the checksums
                check_job_key(run_dir)
                if kind.name == "toy":
                    row["feature_dims_top"] = json.loads((run_dir / "metrics.json").read_text()).get("feature_dims_top")
            except CorruptRun as e:
                self.problems.append(str(e))
                row = None
            except (ValueError, ToyddError, OSError, TypeError) as e:
                self.problems.append(f"{run_dir}/config.json: {e}")
                row = None
        self._rows[key] = row
        return row

    def _experiment(self, manifest: dict[str, Any]) -> ExperimentResults:
        name = manifest["name"]
        rows, missing, failed, corrupt = [], [], [], []
        for key in manifest["keys"]:
            n_problems = len(self.problems)
            row = self._row(key)
            if row is not None:
                rows.append(dict(row, experiment=name))
                continue
            missing.append(key)
            corrupt.extend(self.problems[n_problems:])
            fpath = self.store.failed_path(key)
            if fpath.is_file():
                try:
                    record = json.loads(fpath.read_text())
                    failed.append(record if isinstance(record, dict) else {"key": key, "error": f"{fpath} unreadable"})
                except (ValueError, OSError):
                    failed.append({"key": key, "error": f"{fpath} unreadable"})
        table = pd.DataFrame(rows)
        if not table.empty:
            order = [c for c in ("T", "m", "data_seed", "seed", "label_noise") if c in table]
            table = table.sort_values(order, key=_sort_key).reset_index(drop=True)
        return ExperimentResults(name, manifest, table, missing, failed, corrupt)

    def run(self, key: str, history: bool = True) -> RunResult:
        """Load (and cache) a complete run of any kind, with its arrays and history."""
        if key not in self._runs:
            run_dir = self.store.run_dir(key)
            self._runs[key] = kind_of_run(run_dir).load_run(run_dir, arrays=True, history=history)
        return self._runs[key]

    def runs(self, name: str) -> list[RunResult]:
        """The complete runs of experiment ``name``, in its table's order."""
        exp = self.experiments[name]
        return [] if exp.table.empty else [self.run(k) for k in exp.table["key"]]

    def table(self) -> pd.DataFrame:
        """All experiments' rows (a run in two experiments appears twice, once per experiment)."""
        tables = [e.table for e in self.experiments.values() if not e.table.empty]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def load_results(root: str | os.PathLike) -> Results:
    """Read the sweep directory at ``root`` (see :class:`Results`)."""
    return Results(root)


def _sort_key(col: pd.Series) -> pd.Series:
    return col.astype(float) if col.name == "T" else col


__all__ = ["ExperimentResults", "Results", "load_results"]
