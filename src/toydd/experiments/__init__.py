"""The experiments: one module each, listed in :data:`REGISTRY`.

Each module declares its experiment in one :class:`~toydd.experiments.base.ExperimentDef`
(its presets' jobs, the kind of job, its report section with captions), and
nothing outside this package names an experiment: ``toydd sweep NAME``,
``status``, ``table``, ``report`` and ``reproduce`` look them up here. Adding
an experiment is one new module and one line in :data:`REGISTRY`
(docs/ARCHITECTURE.md, "How to add an experiment").

User experiment files (TOML/YAML, :mod:`.files`) are experiments too: their
report is the figure their varying fields allow (:mod:`.custom`).

Every ``toydd`` command imports this registry (even ``--help`` and
``status``), so its modules import no drawing code at top level: a module's
definition (presets, jobs, ``PAPER`` texts, ``DEF``) needs neither matplotlib
nor pandas, and its report/draw functions import :mod:`toydd.plots`,
:mod:`toydd.findings`, :mod:`toydd.sections` ... where they draw
(``tests/test_imports.py`` checks; docs/ARCHITECTURE.md, "Import cost").
"""

from __future__ import annotations

from ..errors import ToyddError
from . import (crossover, custom, epochs, mnist_dstar, norms, replication_gap, repeated, sparsity, t_sweep, tm_grid,
               weight_decay)
from .base import (DEFAULT_PRESET, PAPER_T_GRID, PRESETS, Experiment, ExperimentDef, Preset, get_preset,
                   preset_names)
from . import files
from .files import EXPERIMENT_FILE_SUFFIXES, MAX_JOBS, is_experiment_file, max_jobs
from .replication_gap import gap_recipes
from .sparsity import sparsity_T_values

REGISTRY: dict[str, ExperimentDef] = {d.name: d for d in [
    t_sweep.DEF, norms.DEF, tm_grid.DEF, weight_decay.DEF, epochs.DEF, sparsity.DEF, repeated.DEF,
    replication_gap.DEF, crossover.DEF, mnist_dstar.DEF,
]}
EXPERIMENTS = REGISTRY  # the name used before experiments became modules


def load_experiment_file(path, preset: str | None = None) -> Experiment:
    """A user experiment file (TOML/YAML; :mod:`.files`), which may build on a registered experiment."""
    return files.load_experiment_file(path, preset, definitions=REGISTRY)


def experiment_names() -> list[str]:
    """Every registered experiment, in the paper's order."""
    return [d.name for d in sorted(REGISTRY.values(), key=lambda d: d.paper_order)]


def get_definition(name: str) -> ExperimentDef | None:
    """The registered experiment called ``name``, or None (a user's experiment file, say)."""
    return REGISTRY.get(name)


def named_experiment(name: str, preset: str | None = None) -> Experiment:
    """A registered experiment's jobs at a preset's fidelity."""
    d = REGISTRY.get(name)
    if d is None:
        raise ToyddError(f"unknown experiment {name!r}; valid experiments: {', '.join(experiment_names())} "
                         f"(or a {'/'.join(EXPERIMENT_FILE_SUFFIXES)} experiment file)")
    return d.experiment(preset)


def get_experiment(name_or_file: str, preset: str | None = None) -> Experiment:
    """A registered experiment by name, or a user experiment from a TOML/YAML file."""
    if name_or_file in REGISTRY:
        return named_experiment(name_or_file, preset)
    if is_experiment_file(name_or_file):
        return load_experiment_file(name_or_file, preset)
    return named_experiment(name_or_file, preset)  # raises, listing the valid names


def reproduce_plan(preset: str | None = None) -> list[str]:
    """The experiments ``toydd reproduce`` runs at a preset, cheapest first.

    ``quick`` is the README's main job, budgeted at ~10 minutes on 2 CPU cores:
    the t-sweep (and its norms, which share its jobs) only; run the others with
    ``toydd sweep NAME --preset quick``. Each experiment says where it belongs
    (``ExperimentDef.in_reproduce``).
    """
    p = get_preset(preset)  # validate
    chosen = [d for d in REGISTRY.values() if d.in_reproduce(p)]
    return [d.name for d in sorted(chosen, key=lambda d: d.reproduce_rank)]


def report_function(name: str, kind: str, based_on: str | None = None):
    """How an experiment in a results directory is drawn: its module's (or that of the registered experiment a
    file is based on), or the generic one for other files."""
    d = REGISTRY.get(name) or REGISTRY.get(based_on or "")
    if d is not None and d.report is not None:
        return d.report
    return custom.report if kind == "toy" else None


def paper_order(name: str) -> int:
    d = REGISTRY.get(name)
    return d.paper_order if d is not None else 1_000


__all__ = ["DEFAULT_PRESET", "EXPERIMENTS", "EXPERIMENT_FILE_SUFFIXES", "MAX_JOBS", "PAPER_T_GRID", "PRESETS",
           "REGISTRY", "Experiment", "ExperimentDef", "Preset", "gap_recipes", "get_definition", "get_experiment",
           "get_preset", "experiment_names", "is_experiment_file", "load_experiment_file", "max_jobs",
           "named_experiment", "paper_order", "preset_names", "report_function", "reproduce_plan",
           "sparsity_T_values"]
