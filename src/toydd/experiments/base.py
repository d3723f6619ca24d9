"""What every experiment module shares: presets, the job list, and the declaration an experiment makes.

An *experiment* is one module of this package that declares, in one
:class:`ExperimentDef`: its name and description, the kind of job it runs
(:mod:`toydd.jobs`), the jobs a preset gives it (``build``), and its report
section (``report``: figures, captions computed from its runs, the paper's
claims beside them). The package's ``__init__`` lists the modules in a
registry; the sweep, status, table, report and reproduce commands go through
it and name no experiment themselves.

A *preset* fixes the fidelity of every experiment at once:

* ``paper`` -- the paper's setup: n = 10,000, S = 0.999, 50,000 steps, the full
  T grid, 4 data seeds, best-of-4 init seeds where m <= 3. For a GPU or a cluster.
* ``quick`` -- n = 1,000, S = 0.99 (the scale of Hobbahn's published replication,
  which shows the same phenomena), fewer steps and a T grid up to 20k + inf.
  The ``t-sweep`` runs on 2 CPU cores in under 10 minutes.
* ``smoke`` -- tiny models; every experiment in seconds. For CI.

Every job trains the recipe that gives the paper's figures (``loss_norm =
"mean"``, the TrainConfig default) unless its experiment says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import INF, TrainConfig
from ..errors import ToyddError

# The paper's T grid (main figure): 21 dataset sizes, log-spaced, then infinite data.
PAPER_T_GRID: tuple[float, ...] = (
    3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
    20_000, 50_000, 100_000, 200_000, 500_000, INF,
)

DEFAULT_PRESET = "paper"


# --- presets -------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """The fidelity shared by every experiment: sizes, step counts, the T grid and seed counts.

    What only one experiment varies (tm-grid's m, weight-decay's decays, ...) is that experiment's
    ``SETTINGS`` per preset name, in its own module.
    """

    name: str
    description: str
    base: dict[str, Any]  # TrainConfig fields shared by every job (n, sparsity, steps, test set, ...)
    T_grid: tuple[float, ...]  # t-sweep, norms, tm-grid, weight-decay
    data_seeds: int  # training sets per grid point (the paper: 4)
    best_of: int  # init seeds per training set where m <= 3 (m > 3 is robust, paper appendix)
    vector_plot_T: tuple[float, ...]  # T values whose W and h_i get vector plots (filtered to T_grid)
    m_appendix: int = 4  # the m of the weight-decay and epochs experiments (paper appendix)
    best_of_max_T: float = INF  # best-of-k only for T up to this
    appendix_T_grid: tuple[float, ...] = ()  # T grid of tm-grid and weight-decay (empty: T_grid)
    appendix_seeds: int = 0  # data seeds of tm-grid, weight-decay, epochs, sparsity (0: data_seeds)

    @property
    def grid_appendix(self) -> tuple[float, ...]:
        return self.appendix_T_grid or self.T_grid

    @property
    def seeds_appendix(self) -> int:
        return self.appendix_seeds or self.data_seeds

    def init_seeds(self, m: int, T: float = INF) -> int:
        # Best-of-k matters at small m only: the paper finds m > 3 much less
        # prone to local minima, and k multiplies the cost. A preset may also
        # keep it to T <= best_of_max_T: local minima are a memorization-regime
        # problem (m = 2 points on two circles that never merge), while the
        # large-T pentagon is found from every init, and large T is where the
        # cost is.
        return self.best_of if m <= 3 and T <= self.best_of_max_T else 1


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="full fidelity (n=10,000, S=0.999, 50,000 steps, full T grid, 4 data seeds); for a GPU or a cluster",
        base=dict(n=10_000, sparsity=0.999, steps=50_000, test_size=10_000, online_batch=8_192),
        T_grid=PAPER_T_GRID,
        data_seeds=4,
        best_of=4,
        vector_plot_T=(3, 5, 10, 15, 50, 200, 1_000, 5_000, 50_000, INF),
    ),
    "quick": Preset(
        name="quick",
        description=("n=1,000, S=0.99 (Hobbahn's scaled replication), 3,000 steps, T up to 20k + inf; "
                     "the t-sweep in ~6 min on 2 CPU cores"),
        # Measured (`toydd sweep t-sweep --preset quick`, local executor, 2-core EPYC,
        # quiet machine): 358 s. T-gons (median D_X ~ m/T) up to T ~ 50, the test-loss
        # bump at T = 200 (1.052 +- 0.024 against 1.008 and 0.998 beside it), norms
        # rising to ||W|| ~ 12.6 then falling, and a pentagon (5 features, D_f ~ 0.32,
        # ||W|| ~ 2.46) from T ~ 2,000 on. Generalization starts at T(1-S) ~ 10 here,
        # so 20k is 20x past it: the plateau. Longer training or best-of-k at every T
        # would not fit the 10-minute budget.
        base=dict(n=1_000, sparsity=0.99, steps=3_000, test_size=5_000, online_batch=2_048),
        T_grid=(3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, INF),
        data_seeds=4,
        best_of=2,
        best_of_max_T=1_000,
        appendix_T_grid=(3, 10, 30, 100, 200, 500, 1_000, 2_000, 5_000, INF),
        appendix_seeds=2,
        vector_plot_T=(3, 5, 10, 15, 50, 200, 1_000, 5_000, 20_000, INF),
    ),
    "smoke": Preset(
        name="smoke",
        description="tiny models (n=100, 200 steps); every experiment in seconds, for CI",
        base=dict(n=100, sparsity=0.9, steps=200, test_size=500, online_batch=256, snapshots=4),
        T_grid=(3, 10, 100, INF),
        data_seeds=2,
        best_of=2,
        vector_plot_T=(3, 10, INF),
    ),
}


def get_preset(name: str | None) -> Preset:
    """The preset called ``name`` (None: the default, ``paper``)."""
    name = DEFAULT_PRESET if name is None else name
    try:
        return PRESETS[name]
    except KeyError:
        raise ToyddError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def preset_names() -> list[str]:
    return list(PRESETS)


# --- the job list ----------------------------------------------------------------------

@dataclass
class Experiment:
    """A named list of training jobs plus what its figures need to know."""

    name: str
    description: str
    preset: str | None
    configs: list[TrainConfig]
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the experiment file, for user experiments
    kind: str = "toy"  # the job kind (toydd.jobs): "toy" (TrainConfig) or "mnist" (MnistConfig)

    def keys(self) -> list[str]:
        return [c.key() for c in self.configs]

    def manifest(self) -> dict[str, Any]:
        """The JSON written to ``DIR/experiments/<name>.json`` (see docs/ARCHITECTURE.md)."""
        m = {
            "name": self.name,
            "preset": self.preset,
            "description": self.description,
            "kind": self.kind,
            "keys": self.keys(),
            "configs": [c.to_dict() for c in self.configs],
            "params": self.params,
        }
        if self.source is not None:
            m["source"] = self.source
        return m


# --- the declaration --------------------------------------------------------------------

@dataclass(frozen=True)
class ExperimentDef:
    """Everything toydd knows about one experiment, declared in its module.

    ``build(preset)`` gives the preset's jobs and the params its figures need;
    ``report(ctx, results)`` draws its section (``ctx``: toydd.sections.ReportContext;
    ``results``: toydd.results.ExperimentResults of this experiment's runs);
    ``in_reproduce(preset)`` says whether ``toydd reproduce`` runs it at that preset.
    """

    name: str
    description: str
    build: Callable[[Preset], tuple[list[Any], dict[str, Any]]]
    report: Callable[[Any, Any], None] | None = None
    kind: str = "toy"
    paper_order: int = 100  # position in the report (the paper's order)
    in_reproduce: Callable[[Preset], bool] = field(default=lambda p: True)
    reproduce_rank: int = 50  # order within ``toydd reproduce``: cheapest first, so early results come early

    def experiment(self, preset: str | None = None) -> Experiment:
        """This experiment's jobs at a preset's fidelity."""
        p = get_preset(preset)
        configs, params = self.build(p)
        return Experiment(name=self.name, description=self.description, preset=p.name,
                          configs=unique_jobs(configs), params=params, kind=self.kind)


# --- helpers of the experiment modules ---------------------------------------------------

def t_grid_jobs(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    """The main figure's jobs: m = 2, the preset's T grid, its data seeds (t-sweep and norms share them)."""
    m = 2
    configs = [c for T in p.T_grid for c in seeded({}, p, m, T)]
    params = {
        "m": m,
        "T": T_list(p.T_grid),
        "vector_plot_T": T_list(t for t in p.vector_plot_T if t in p.T_grid),
        "data_seeds": p.data_seeds,
        "best_of": p.best_of,
        "best_of_max_T": "inf" if math.isinf(p.best_of_max_T) else p.best_of_max_T,
    }
    return configs, params


def T_list(values) -> list[Any]:
    """T values for JSON params: ints, and the string 'inf'."""
    return ["inf" if math.isinf(t) else int(t) for t in values]


def seeded(base: dict[str, Any], p: Preset, m: int, T: float, seeds: int | None = None,
           **extra: Any) -> list[TrainConfig]:
    """One job per data seed at (m, T): the paper's 4 training sets per grid point."""
    return [
        TrainConfig(**{**p.base, **base, "m": m, "T": T, "data_seed": d, "init_seeds": p.init_seeds(m, T), **extra})
        for d in range(p.data_seeds if seeds is None else seeds)
    ]


def unique_jobs(configs: list[Any]) -> list[Any]:
    """Drop repeated jobs (same key), keeping the first: a grid may name one job twice."""
    seen: set[str] = set()
    out = []
    for c in configs:
        k = c.key()
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


