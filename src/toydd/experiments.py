"""The paper's experiments as lists of training jobs, and user-written experiment files.

An *experiment* is a named list of :class:`~toydd.config.TrainConfig` jobs plus
the experiment-specific parameters its figures need (which ``T`` values get
vector plots, which axis to use, ...). It says nothing about how the jobs are
run: :mod:`toydd.sweep` does that.

A *preset* fixes the fidelity of every experiment at once:

* ``paper`` -- the paper's setup: n = 10,000, S = 0.999, 50,000 steps, the full
  T grid, 4 data seeds, best-of-4 init seeds where m <= 3. For a GPU or a cluster.
* ``quick`` -- n = 1,000, S = 0.99 (the scale of Hobbahn's published replication,
  which shows the same phenomena), fewer steps and a T grid up to 50k + inf.
  The ``t-sweep`` runs on 2 CPU cores in under 10 minutes.
* ``smoke`` -- tiny models; every experiment in seconds. For CI.

User experiment files (TOML or YAML) have the same power as the built-in
experiments::

    name = "my-wd-sweep"                  # optional, default: the file's stem
    description = "..."                   # optional
    preset = "quick"                      # optional: fill unset fields from a preset
    [base]                                # TrainConfig fields shared by every job
    m = 4
    [grid]                                # cartesian product over these lists
    T = [10, 100, 1000, "inf"]
    data_seed = [0, 1, 2, 3]
    weight_decay = [0.0, 0.01, 1.0]
    [params]                              # free-form, stored in the manifest for plots
    vector_plot_T = [10, 1000]

``grid`` may also be an array of tables (``[[grid]]`` in TOML, a list in YAML):
the experiment is then the union of the products, which expresses grids that
are not rectangular (e.g. a T range that depends on S). Precedence, lowest
first: TrainConfig defaults (the paper), the preset's base, ``[base]``, the grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import INF, TrainConfig
from .errors import ToyddError, one_line

# The paper's T grid (main figure): 21 dataset sizes, log-spaced, then infinite data.
PAPER_T_GRID: tuple[float, ...] = (
    3, 5, 6, 8, 10, 15, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000,
    20_000, 50_000, 100_000, 200_000, 500_000, INF,
)

DEFAULT_PRESET = "paper"

EXPERIMENT_FILE_SUFFIXES = (".toml", ".yaml", ".yml")


# --- presets -------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """The fidelity of every experiment: sizes, step counts, grids and seed counts."""

    name: str
    description: str
    base: dict[str, Any]  # TrainConfig fields shared by every job (n, sparsity, steps, test set, ...)
    T_grid: tuple[float, ...]  # t-sweep, norms, tm-grid, weight-decay
    data_seeds: int  # training sets per grid point (the paper: 4)
    best_of: int  # init seeds per training set where m <= 3 (m > 3 is robust, paper appendix)
    tm_ms: tuple[int, ...]
    weight_decays: tuple[float, ...]
    epochs_steps: tuple[int, ...]
    epochs_T_grid: tuple[float, ...]
    sparsities: tuple[float, ...]
    feature_counts: tuple[float, ...]  # targets for T(1-S), the expected occurrences of a feature
    vector_plot_T: tuple[float, ...]  # T values whose W and h_i get vector plots (filtered to T_grid)
    repeated_setups: tuple[tuple[int, float], ...] = ()  # (n, S) setups of the repeated-points diagram
    repeated_T_over_N: tuple[float, ...] = ()  # dataset sizes as T/N (N = n), all past the generalizing scale
    repeated_R: tuple[int, ...] = ()  # how many times the one repeated point appears
    repeated_seeds: int = 1
    m_appendix: int = 4  # the m of the weight-decay and epochs experiments (paper appendix)
    best_of_max_T: float = INF  # best-of-k only for T up to this
    appendix_T_grid: tuple[float, ...] = ()  # T grid of tm-grid and weight-decay (empty: T_grid)
    appendix_seeds: int = 0  # data seeds of tm-grid, weight-decay, epochs, sparsity (0: data_seeds)
    # replication-gap: which recipe gives the paper's figure, and is the middle regime a failure?
    gap_T_grid: tuple[float, ...] = ()
    gap_lrs: tuple[float, ...] = ()
    gap_steps: tuple[int, ...] = ()
    gap_seeds: int = 2
    gap_warm_max_T: float = 0  # construction warm starts for T up to this (where the T-gon still memorizes)

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
        tm_ms=tuple(range(1, 11)),
        weight_decays=(0.0, 1e-3, 1e-2, 1e-1, 1.0),
        epochs_steps=(5_000, 10_000, 25_000, 50_000, 100_000, 200_000),
        epochs_T_grid=PAPER_T_GRID,
        sparsities=(0.99, 0.995, 0.999, 0.9995),
        feature_counts=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000),
        vector_plot_T=(3, 5, 10, 15, 50, 200, 1_000, 5_000, 50_000, INF),
        # Jermyn's two setups: "+" (N=10,000, S=0.999) and "x" (N=1,000, S=0.99).
        repeated_setups=((10_000, 0.999), (1_000, 0.99)),
        repeated_T_over_N=(1, 2, 3, 5, 10, 20),
        repeated_R=(1, 2, 3, 5, 8, 13, 20, 30, 50),
        repeated_seeds=2,
        gap_T_grid=(10, 30, 100, 300, 1_000, 2_000, 5_000, 10_000),
        gap_lrs=(1e-3, 3e-3, 1e-2),
        gap_steps=(10_000, 50_000),
        gap_seeds=2,
        gap_warm_max_T=2_000,
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
        tm_ms=tuple(range(1, 11)),
        weight_decays=(0.0, 1e-3, 1e-2, 1e-1, 1.0),
        epochs_steps=(1_500, 3_000, 6_000, 12_000),
        epochs_T_grid=(5, 10, 30, 100, 200, 500, 1_000, 3_000, INF),
        sparsities=(0.98, 0.99, 0.995),
        feature_counts=(1, 2, 5, 10, 20, 50, 100),
        vector_plot_T=(3, 5, 10, 15, 50, 200, 1_000, 5_000, 20_000, INF),
        repeated_setups=((1_000, 0.99),),
        repeated_T_over_N=(1, 2, 5, 10),
        repeated_R=(1, 2, 3, 5, 10, 20, 40),
        repeated_seeds=1,
        gap_T_grid=(10, 30, 100, 300, 1_000, 2_000, 5_000),
        gap_lrs=(1e-3, 3e-3, 1e-2),
        gap_steps=(1_500, 6_000),  # 188 jobs in 3.5 min on a busy 2-core machine (BENCHMARKS.md)
        gap_seeds=2,
        gap_warm_max_T=1_000,
    ),
    "smoke": Preset(
        name="smoke",
        description="tiny models (n=100, 200 steps); every experiment in seconds, for CI",
        base=dict(n=100, sparsity=0.9, steps=200, test_size=500, online_batch=256, snapshots=4),
        T_grid=(3, 10, 100, INF),
        data_seeds=2,
        best_of=2,
        tm_ms=(1, 2, 3),
        weight_decays=(0.0, 1e-2, 1.0),
        epochs_steps=(100, 200),
        epochs_T_grid=(3, 30, INF),
        sparsities=(0.8, 0.9),
        feature_counts=(1, 10),
        vector_plot_T=(3, 10, INF),
        repeated_setups=((100, 0.9),),
        repeated_T_over_N=(1, 3),
        repeated_R=(2, 10),
        repeated_seeds=1,
        gap_T_grid=(3, 10, 30),
        gap_lrs=(1e-3, 1e-2),
        gap_steps=(50, 100),
        gap_seeds=2,
        gap_warm_max_T=10,
    ),
}


def get_preset(name: str | None) -> Preset:
    """The preset called ``name`` (None: the default, ``paper``)."""
    name = DEFAULT_PRESET if name is None else name
    try:
        return PRESETS[name]
    except KeyError:
        raise ToyddError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


# --- experiments ---------------------------------------------------------------

@dataclass
class Experiment:
    """A named list of training jobs plus what its figures need to know."""

    name: str
    description: str
    preset: str | None
    configs: list[TrainConfig]
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the experiment file, for user experiments

    def keys(self) -> list[str]:
        return [c.key() for c in self.configs]

    def manifest(self) -> dict[str, Any]:
        """The JSON written to ``DIR/experiments/<name>.json`` (see docs/ARCHITECTURE.md)."""
        m = {
            "name": self.name,
            "preset": self.preset,
            "description": self.description,
            "keys": self.keys(),
            "configs": [c.to_dict() for c in self.configs],
            "params": self.params,
        }
        if self.source is not None:
            m["source"] = self.source
        return m


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    description: str
    build: Callable[[Preset], tuple[list[TrainConfig], dict[str, Any]]]


def _T_list(values) -> list[Any]:
    """T values for JSON params: ints, and the string 'inf'."""
    return ["inf" if math.isinf(t) else int(t) for t in values]


def _seeded(base: dict[str, Any], p: Preset, m: int, T: float, seeds: int | None = None,
            **extra: Any) -> list[TrainConfig]:
    """One job per data seed at (m, T): the paper's 4 training sets per grid point."""
    return [
        TrainConfig(**{**p.base, **base, "m": m, "T": T, "data_seed": d, "init_seeds": p.init_seeds(m, T), **extra})
        for d in range(p.data_seeds if seeds is None else seeds)
    ]


def _t_sweep(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    configs = [c for T in p.T_grid for c in _seeded({}, p, m, T)]
    params = {
        "m": m,
        "T": _T_list(p.T_grid),
        "vector_plot_T": _T_list(t for t in p.vector_plot_T if t in p.T_grid),
        "data_seeds": p.data_seeds,
        "best_of": p.best_of,
        "best_of_max_T": "inf" if math.isinf(p.best_of_max_T) else p.best_of_max_T,
    }
    return configs, params


def _norms(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    # Exactly the t-sweep's jobs (same keys, so nothing trains twice when both
    # run into one directory); only the figure differs.
    configs, params = _t_sweep(p)
    return configs, {**params, "source_experiment": "t-sweep", "y": ["weight_norm", "bias_norm"]}


def _tm_grid(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    Ts = p.grid_appendix
    configs = [c for m in p.tm_ms for T in Ts for c in _seeded({}, p, m, T, p.seeds_appendix)]
    return configs, {"m": list(p.tm_ms), "T": _T_list(Ts), "data_seeds": p.seeds_appendix}


def _weight_decay(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = p.m_appendix
    # Weight decay varies per instance, so all decays of one T train as one batch.
    Ts = p.grid_appendix
    configs = [c for T in Ts for wd in p.weight_decays
               for c in _seeded({}, p, m, T, p.seeds_appendix, weight_decay=float(wd))]
    return configs, {"m": m, "T": _T_list(Ts), "weight_decays": list(p.weight_decays),
                     "data_seeds": p.seeds_appendix}


def _epochs(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = p.m_appendix
    # warmup stays None: 5% of each run's steps, as in the paper's appendix.
    configs = [c for steps in p.epochs_steps for T in p.epochs_T_grid
               for c in _seeded({}, p, m, T, p.seeds_appendix, steps=int(steps), warmup=None)]
    return configs, {"m": m, "T": _T_list(p.epochs_T_grid), "steps": list(p.epochs_steps),
                     "data_seeds": p.seeds_appendix}


def sparsity_T_values(sparsity: float, feature_counts) -> list[int]:
    """Dataset sizes at which a feature is expected to occur ``c`` times: T = c / (1 - S)."""
    out: list[int] = []
    for c in feature_counts:
        T = max(2, int(round(c / (1.0 - sparsity))))
        if T not in out:
            out.append(T)
    return out


def _sparsity(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    configs = []
    grid: dict[str, list[int]] = {}
    for S in p.sparsities:
        Ts = sparsity_T_values(S, p.feature_counts)
        grid[repr(float(S))] = Ts
        configs += [c for T in Ts for c in _seeded({"sparsity": float(S)}, p, m, T, p.seeds_appendix)]
    return configs, {"m": m, "sparsities": list(p.sparsities), "feature_counts": list(p.feature_counts),
                     "T_by_sparsity": grid, "x": ["T", "T*(1-S)"], "y": "max_feature_dim",
                     "data_seeds": p.seeds_appendix}


def _repeated(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    configs = []
    for n, S in p.repeated_setups:
        for ratio in p.repeated_T_over_N:
            T = int(round(ratio * n))
            for R in p.repeated_R:
                # One point repeated R times inside T (R = 1: no repeat, the baseline).
                configs += [TrainConfig(**{**p.base, "n": n, "sparsity": float(S), "m": m, "T": T, "data_seed": d,
                                           "init_seeds": p.init_seeds(m, T), "repeated_points": 1, "repeats": int(R)})
                            for d in range(p.repeated_seeds)]
    return configs, {"m": m, "setups": [{"n": n, "sparsity": S} for n, S in p.repeated_setups],
                     "T_over_N": list(p.repeated_T_over_N), "repeats": list(p.repeated_R), "repeated_points": 1,
                     "criterion": "memorized if the repeated point's D_X is in the top 0.1% of the training set",
                     "jermyn_line": "R = 0.4 T/N", "data_seeds": p.repeated_seeds}


# The two loss normalizations, as the eps AdamW effectively uses on the summed loss.
# AdamW is invariant to a constant loss scale except through eps, so the mean over
# all T*n elements (torch's MSELoss) with eps e trains exactly like the paper's sum
# with eps e*n (TrainConfig.adam_eps; tested in tests/test_replication.py). The
# experiment names the recipes by that effective eps so both spellings share runs:
# every job states loss_norm = "sum" explicitly (the default is "mean") and its eps.
def gap_recipes(n: int, eps: float = 1e-8) -> dict[str, float]:
    """Recipe label -> Adam eps on the summed loss."""
    return {"sum": eps, "mean": float(f"{eps * n:.12g}")}  # 1e-8 * 10,000 is 1.0000000000000002e-4


def _replication_gap(p: Preset) -> tuple[list[TrainConfig], dict[str, Any]]:
    m = 2
    n = p.base["n"]
    recipes = gap_recipes(n)
    configs = []
    for steps in p.gap_steps:
        for lr in p.gap_lrs:
            for eps in recipes.values():
                for T in p.gap_T_grid:
                    configs += [TrainConfig(**{**p.base, "m": m, "T": T, "data_seed": d, "init_seeds": 1,
                                               "lr": float(lr), "eps": float(eps), "steps": int(steps),
                                               "loss_norm": "sum"})
                                for d in range(p.gap_seeds)]
    # Warm starts from the explicit memorizing construction, trained with the
    # paper's lr and longest schedule: if they stay memorizing at a lower loss
    # than training from Xavier finds, the middle regime is an optimization failure.
    steps = max(p.gap_steps)
    for eps in recipes.values():
        for T in p.gap_T_grid:
            if T <= p.gap_warm_max_T:
                configs += [TrainConfig(**{**p.base, "m": m, "T": T, "data_seed": d, "init_seeds": 1, "lr": 1e-3,
                                           "eps": float(eps), "steps": int(steps), "init_method": "construction",
                                           "loss_norm": "sum"})
                            for d in range(p.gap_seeds)]
    params = {"m": m, "T": _T_list(p.gap_T_grid), "lrs": list(p.gap_lrs), "steps": list(p.gap_steps),
              "recipes": recipes, "data_seeds": p.gap_seeds, "warm_max_T": p.gap_warm_max_T,
              "paper_recipe": {"eps": recipes["sum"], "lr": 1e-3, "steps": max(p.gap_steps)}}
    return configs, params


EXPERIMENTS: dict[str, ExperimentSpec] = {
    s.name: s for s in [
        ExperimentSpec("t-sweep", "Main figure: test loss, feature and data dimensionality vs T at m=2, "
                       "with the m/T curve and vector plots of W (features) and h_i (training points).", _t_sweep),
        ExperimentSpec("norms", "||W||_F and ||b||_2 vs T at m=2 (the t-sweep's runs): norms rise while "
                       "memorizing, peak, then fall and plateau once the model generalizes.", _norms),
        ExperimentSpec("tm-grid", "Test loss over (T, m) as a heat map: where the double-descent bump "
                       "sits as the hidden dimension grows.", _tm_grid),
        ExperimentSpec("weight-decay", "Test loss vs T at m=4 for several weight decays: less decay, "
                       "bigger bump; 1.0 removes it.", _weight_decay),
        ExperimentSpec("epochs", "Test loss vs T at m=4 for several step counts (5% warmup, cosine "
                       "decay): more steps, bigger bump.", _epochs),
        ExperimentSpec("sparsity", "Generalization scale (Jermyn): max feature dimensionality vs T and "
                       "vs T(1-S) for several sparsities; features generalize once seen ~10 times.", _sparsity),
        ExperimentSpec("repeated", "Repeated data points (Jermyn): one point repeated R times inside T; "
                       "memorized or not over (T/N, R), against R = 0.4 T/N.", _repeated),
        ExperimentSpec("replication-gap", "Which recipe gives the paper's figure? Test loss, optimization gap "
                       "and norms vs T for loss normalization (sum vs torch's mean, as Adam eps) x lr x steps, "
                       "plus warm starts from the explicit memorizing construction.", _replication_gap),
    ]
}


def experiment_names() -> list[str]:
    return list(EXPERIMENTS)


def preset_names() -> list[str]:
    return list(PRESETS)


def reproduce_plan(preset: str | None = None) -> list[str]:
    """The experiments ``toydd reproduce`` runs for a preset, cheapest first.

    ``norms`` shares the t-sweep's jobs, so listing both costs nothing extra.
    ``quick`` is the README's main job, budgeted at ~10 minutes on 2 CPU
    cores: the t-sweep (and its norms) only; run the other experiments with
    ``toydd sweep NAME --preset quick``.
    """
    p = get_preset(preset)  # validate
    if p.name == "quick":
        return ["t-sweep", "norms"]
    from .mnist import PRESETS as MNIST_PRESETS, data_available  # real digits: only where they are installed

    mnist = ["mnist-dstar"] if data_available(MNIST_PRESETS[p.name].source) else []
    return ["t-sweep", "norms", "sparsity", "repeated", "weight-decay", "epochs", "tm-grid"] + mnist


def named_experiment(name: str, preset: str | None = None) -> Experiment:
    """A built-in experiment at a preset's fidelity."""
    spec = EXPERIMENTS.get(name)
    if spec is None:
        raise ToyddError(f"unknown experiment {name!r}; valid experiments: {', '.join(EXPERIMENTS)} "
                         f"(or a {'/'.join(EXPERIMENT_FILE_SUFFIXES)} experiment file)")
    p = get_preset(preset)
    configs, params = spec.build(p)
    return Experiment(name=name, description=spec.description, preset=p.name,
                      configs=_unique(configs), params=params)


def is_experiment_file(name_or_file: str) -> bool:
    return Path(name_or_file).suffix.lower() in EXPERIMENT_FILE_SUFFIXES or Path(name_or_file).is_file()


def get_experiment(name_or_file: str, preset: str | None = None) -> Experiment:
    """A built-in experiment by name, or a user experiment from a TOML/YAML file."""
    if name_or_file in EXPERIMENTS:
        return named_experiment(name_or_file, preset)
    if is_experiment_file(name_or_file):
        return load_experiment_file(name_or_file, preset)
    return named_experiment(name_or_file, preset)  # raises, listing the valid names


def _unique(configs: list[TrainConfig]) -> list[TrainConfig]:
    """Drop repeated jobs (same key), keeping the first: a grid may name one job twice."""
    seen: set[str] = set()
    out = []
    for c in configs:
        k = c.key()
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


# --- experiment files ----------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOP_KEYS = ("name", "description", "preset", "base", "grid", "params")
_FIELD_TYPES = typing.get_type_hints(TrainConfig)
_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def _read_mapping(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML file into a dict; any failure is a one-line ToyddError."""
    if not path.is_file():
        raise ToyddError(f"experiment file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ToyddError(f"cannot read experiment file {path}: {type(e).__name__}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ToyddError(f"{path}: invalid TOML: {one_line(e)}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_strict_yaml_loader())  # safe_load, but a repeated key is an error
        except yaml.YAMLError as e:
            raise ToyddError(f"{path}: invalid YAML: {one_line(e)}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ToyddError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        return data
    raise ToyddError(f"{path}: unknown experiment file type {path.suffix!r}; use .toml, .yaml or .yml")


def _strict_yaml_loader():
    """yaml.SafeLoader that rejects a key repeated in one mapping (as TOML does) instead of keeping the last."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' merges may be overridden by explicit keys
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # unhashable: SafeLoader reports it
                continue
            if dup:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"found duplicate key {key!r}", key_node.start_mark)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def _coerce(name: str, value: Any, where: str) -> Any:
    """Forgive the usual file-format quirks before TrainConfig validates the value.

    YAML 1.1 reads ``1e-3`` as a string and users write ``steps = 5e4``; both
    are unambiguous, so accept them rather than fail on a technicality.
    """
    if isinstance(value, (dict, list)):
        raise ToyddError(f"{where}: {name} must be a single value, got a {type(value).__name__}")
    hint = str(_FIELD_TYPES.get(name, ""))
    if "float" in hint and name != "T":
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ToyddError(f"{where}: {name} must be a number, got {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            # 0 and 0.0 are one job, but hash to different keys: store floats as floats.
            return float(value)
    if "int" in hint and "float" not in hint and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_fields(table: dict[str, Any], where: str) -> None:
    unknown = [k for k in table if k not in _FIELDS]
    if unknown:
        raise ToyddError(f"{where}: unknown config field(s) {', '.join(map(repr, unknown))}; "
                         f"valid fields: {', '.join(_FIELDS)}")


MAX_JOBS = 100_000  # per experiment file; the paper's largest experiment has under 1,000 jobs


def max_jobs() -> int:
    """The job limit of one experiment file: ``MAX_JOBS``, or the ``TOYDD_MAX_JOBS`` environment variable."""
    import os

    v = os.environ.get("TOYDD_MAX_JOBS")
    if v is None:
        return MAX_JOBS
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n <= 0:
        raise ToyddError(f"TOYDD_MAX_JOBS must be a positive integer, got {v!r}")
    return n


def _count_jobs(tables: list) -> int:
    """Grid points of every table (before removing repeated jobs)."""
    return sum(math.prod(len(v) if isinstance(v, list) else 1 for v in t.values()) for t in tables if isinstance(t, dict))


def _grid_points(grid: Any, path: Path) -> list[dict[str, Any]]:
    """Expand ``grid`` (a table of lists, or a list of such tables) into field assignments."""
    if grid is None:
        return [{}]
    tables = grid if isinstance(grid, list) else [grid]
    if not tables:
        raise ToyddError(f"{path}: grid is an empty list")
    points: list[dict[str, Any]] = []
    limit = max_jobs()
    total = 0
    for i, table in enumerate(tables):
        where = f"{path}: grid" + (f"[{i}]" if isinstance(grid, list) else "")
        if not isinstance(table, dict):
            raise ToyddError(f"{where} must be a table of lists, got {type(table).__name__}")
        _check_fields(table, where)
        axes = []
        for name, values in table.items():
            if not isinstance(values, list):
                values = [values]  # a scalar is a one-point axis
            if not values:
                raise ToyddError(f"{where}: {name} is an empty list")
            axes.append([(name, _coerce(name, v, where)) for v in values])
        total += math.prod(len(a) for a in axes)
        if total > limit:  # count before expanding: a 10^7-point product would take minutes and gigabytes
            raise ToyddError(f"{path}: the grid expands to {_count_jobs(tables):,} jobs, more than the limit of "
                             f"{limit:,} per experiment; split it into several experiment files "
                             f"(or raise the limit with TOYDD_MAX_JOBS)")
        points += [dict(combo) for combo in itertools.product(*axes)]
    return points


def load_experiment_file(path: str | Path, preset: str | None = None) -> Experiment:
    """Read a user experiment (TOML or YAML; see the module docstring).

    ``preset`` (or the file's own ``preset`` key, which it overrides) fills the
    fields the file leaves unset; without either, unset fields take the paper's
    defaults. Any problem raises a one-line :class:`ToyddError` naming the file
    and what is wrong.
    """
    path = Path(path)
    data = _read_mapping(path)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise ToyddError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid top-level keys: {', '.join(_TOP_KEYS)}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToyddError(f"{path}: name must be letters, digits, '.', '_' or '-' (it names a file), got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ToyddError(f"{path}: description must be a string")
    file_preset = data.get("preset")
    if file_preset is not None and not isinstance(file_preset, str):
        raise ToyddError(f"{path}: preset must be a string naming a preset ({', '.join(PRESETS)})")
    preset_name = preset if preset is not None else file_preset
    p_base = get_preset(preset_name).base if preset_name is not None else {}
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ToyddError(f"{path}: base must be a table of config fields")
    _check_fields(base, f"{path}: base")
    base = {k: _coerce(k, v, f"{path}: base") for k, v in base.items()}
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ToyddError(f"{path}: params must be a table")
    try:  # params go into the JSON manifest: a YAML date or set would fail there, mid-sweep
        json.dumps(params)
    except (TypeError, ValueError) as e:
        raise ToyddError(f"{path}: params must hold only strings, numbers, booleans, lists and tables "
                         f"({one_line(e)})") from None
    configs = []
    for point in _grid_points(data.get("grid"), path):
        fields = {**p_base, **base, **point}
        try:
            configs.append(TrainConfig.from_dict(fields))
        except ToyddError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ToyddError(f"{path}: {e}" + (f" (at grid point {shown})" if shown else "")) from None
        except TypeError as e:  # a value of a type TrainConfig.validate cannot compare
            raise ToyddError(f"{path}: bad value in config: {one_line(e)}") from None
    return Experiment(name=name, description=description, preset=preset_name, configs=_unique(configs),
                      params=params, source=str(path))
