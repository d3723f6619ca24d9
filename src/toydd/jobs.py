"""Job kinds: the things a sweep can train, behind one small protocol.

A sweep (:mod:`toydd.sweep`) knows nothing about what it trains. Each job is a
frozen config dataclass with a ``key()`` (its run directory's name) and
``to_dict()``, and belongs to a *kind* that says how to train a batch of such
jobs and how to read their run directories back. Two kinds exist:

* ``toy``: the ReLU-output toy model (:class:`toydd.config.TrainConfig`,
  trained by :func:`toydd.training.train_batch`, many jobs as one batch of
  instances);
* ``mnist``: the 784-512-10 MLP on real digits whose D* the ``mnist-dstar``
  experiment measures (:class:`toydd.mnist.MnistConfig`, one job at a time).

Every kind's runs live in the same store layout (``DIR/runs/<key>/``, written
by :func:`toydd.storage.save_run`: temporary directory, checksums, rename), so
locks, failures, corruption checks and executors are shared. A run directory
says its kind through its ``config.json``: :func:`kind_of_config`.

Adding a kind: write a class with the attributes and methods of
:class:`JobKind` (no subclassing needed) and list it in :data:`KINDS`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from . import mnist
from .config import TrainConfig
from .errors import ToyddError
from .storage import CorruptRun, RunResult, load_run as load_toy_run, read_config, run_row as toy_run_row

Progress = Callable[[float], None]  # receives cost units as they are done


class JobKind(Protocol):
    """What the store and the executors need to know about one kind of job."""

    name: str  # "toy", "mnist": written into experiment manifests
    config_type: type  # the config dataclass of its jobs
    config_fields: tuple[str, ...]  # the config dataclass's fields (table columns that are settings, not results)

    def config_from_stored(self, d: dict[str, Any]) -> Any:
        """The config of a stored run / manifest entry (old releases' fields read with their old meaning)."""

    def cost(self, config: Any) -> float:
        """Relative work of one job (for scheduling and progress; any unit, consistent within a kind)."""

    def batches(self, configs: Sequence[Any], max_instances: int, min_parts: int = 1) -> list[list[Any]]:
        """Group jobs into batches that train together, costliest first (a group in at least ``min_parts``
        batches where it has that many jobs, so that every worker of a pool gets work)."""

    def check(self, configs: Sequence[Any], params: dict[str, Any]) -> None:
        """Raise ToyddError before anything is written if these jobs cannot train here (missing data, ...)."""

    def train(self, configs: list[Any], params: dict[str, Any], progress: Progress | None,
              run_dir: Callable[[str], Path], checkpoint: Path | None = None) -> list[RunResult]:
        """Train one batch; one RunResult per config, in order (``run_dir(key)``: where a run of the store is).
        ``checkpoint``: a file for the batch's state while it trains, to resume from after a kill (a kind whose
        jobs are short may ignore it)."""

    def load_run(self, run_dir: Path, arrays: bool = True, history: bool = True) -> RunResult:
        """A verified run directory of this kind (CorruptRun naming the bad file otherwise)."""

    def row(self, run_dir: Path) -> dict[str, Any]:
        """One flat table row: config fields and scalar metrics (verified first)."""

    def label(self, config: Any) -> str:
        """A few words naming the job in logs."""


class ToyModels:
    """The ReLU-output toy model: TrainConfig jobs, batched by shape key."""

    name = "toy"
    config_type = TrainConfig
    config_fields = tuple(f.name for f in dataclasses.fields(TrainConfig))

    # Cost model for scheduling and the ETA, in units of one point-feature-dimension
    # per step: every training point's reconstruction is dense over the n outputs,
    # so a step costs ~ T n m per instance (infinite data: the online batch). The
    # fixed per-step overhead (optimizer, Python) is worth about this many points.
    STEP_OVERHEAD_POINTS = 64

    def config_from_stored(self, d: dict[str, Any]) -> TrainConfig:
        return TrainConfig.from_stored(d)

    def cost(self, config: TrainConfig) -> float:
        return float(config.steps) * config.init_seeds * (effective_T(config) + self.STEP_OVERHEAD_POINTS) * config.n * config.m

    def batches(self, configs: Sequence[TrainConfig], max_instances: int, min_parts: int = 1) -> list[list[TrainConfig]]:
        import math

        groups: dict[tuple, list[TrainConfig]] = {}
        for c in configs:
            groups.setdefault(c.shape_key(), []).append(c)
        batches: list[list[TrainConfig]] = []
        for group in groups.values():
            per_job = group[0].init_seeds  # equal within a shape key
            size = max(1, max_instances // per_job)
            # Split into near-equal parts rather than size, size, ..., remainder:
            # equal parts finish together, which is what a worker pool wants.
            parts = min(len(group), max(math.ceil(len(group) / size), min_parts))
            q, r = divmod(len(group), parts)
            start = 0
            for k in range(parts):
                end = start + q + (1 if k < r else 0)
                batches.append(group[start:end])
                start = end
        batches.sort(key=lambda b: -sum(self.cost(c) for c in b))
        return batches

    def check(self, configs: Sequence[TrainConfig], params: dict[str, Any]) -> None:
        return None  # TrainConfig validates itself; data files are checked when a job loads them

    def train(self, configs: list[TrainConfig], params: dict[str, Any], progress: Progress | None,
              run_dir: Callable[[str], Path], checkpoint: Path | None = None) -> list[RunResult]:
        from . import training  # lazy: compiling kernels is the worker's business, not the importer's
        from .storage import load_params

        inits = None
        if any(c.init_from_run for c in configs):
            # Continuation: start from the final parameters of another run of this store (checked first:
            # a corrupt or swapped predecessor fails this job rather than seeding it with garbage).
            inits = []
            for c in configs:
                if c.init_from_run is None:
                    inits.append(None)
                    continue
                src = run_dir(c.init_from_run)
                verify_job_run(src)
                inits.append(load_params(src / "params.safetensors"))
        per_step = sum(self.cost(c) for c in configs) / max(1, configs[0].steps)
        return training.train_batch(configs, progress=None if progress is None else (lambda k: progress(k * per_step)),
                                    inits=inits, checkpoint=checkpoint)

    def load_run(self, run_dir: Path, arrays: bool = True, history: bool = True) -> RunResult:
        return load_toy_run(run_dir, arrays=arrays, history=history)

    def row(self, run_dir: Path) -> dict[str, Any]:
        return toy_run_row(run_dir)

    def label(self, config: TrainConfig) -> str:
        T = "inf" if config.infinite else f"{int(config.T):,}"
        return f"m={config.m}, T={T}, data seed {config.data_seed}"


def effective_T(config: TrainConfig) -> int:
    """Points seen per step: T, or the online batch for infinite data."""
    return config.online_batch if config.infinite else int(config.T)


TOY = ToyModels()
MNIST = mnist.MnistJobs()
KINDS: dict[str, JobKind] = {TOY.name: TOY, MNIST.name: MNIST}


def get_kind(name: str | None) -> JobKind:
    """The kind called ``name`` (None: the toy model, what manifests without a kind hold)."""
    try:
        return KINDS[name or TOY.name]
    except KeyError:
        raise ToyddError(f"unknown job kind {name!r}; known kinds: {', '.join(KINDS)}") from None


def kind_of(config: Any) -> JobKind:
    """The kind of a config object (a TrainConfig, an MnistConfig, ...)."""
    for kind in KINDS.values():
        if isinstance(config, kind.config_type):
            return kind
    raise ToyddError(f"no job kind trains a {type(config).__name__}")


def kind_of_config(d: dict[str, Any]) -> JobKind:
    """The kind of a stored config.json: MNIST configs have a hidden width and checkpoints, toy configs n and S."""
    if isinstance(d, dict) and "hidden" in d and "checkpoints" in d:
        return MNIST
    return TOY


def kind_of_run(run_dir: str | os.PathLike) -> JobKind:
    """The kind of a run directory, from its config.json.

    An unreadable config.json is read as a toy run: that kind's ``row`` / ``load_run`` verify the run first
    and name what is wrong (missing, truncated, ...), as they always have.
    """
    try:
        return kind_of_config(read_config(run_dir)[0])
    except CorruptRun:
        return TOY


def any_run_row(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The table row of a run of any kind, with a ``kind`` column (verified: checksums and key)."""
    run_dir = Path(run_dir)
    kind = kind_of_run(run_dir)
    row = kind.row(run_dir)  # verifies the checksums
    check_job_key(run_dir)
    return {"kind": kind.name, **row}


def verify_job_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """:func:`~toydd.storage.verify_run` plus: the run's config hashes to its folder's name.

    A store finds a job's run by its key, so a run directory renamed or swapped
    with another would be read as the wrong job: it is corrupt (reported by
    name and trained again), like a file that fails its checksum.
    """
    from .storage import verify_run

    metrics = verify_run(run_dir)
    check_job_key(run_dir)
    return metrics


def check_job_key(run_dir: str | os.PathLike) -> None:
    """CorruptRun unless the run's config.json hashes to its folder's name (the checksums are verify_run's job)."""
    run_dir = Path(run_dir)
    d, _ = read_config(run_dir)
    try:
        key = kind_of_config(d).config_from_stored(d).key()
    except (ToyddError, TypeError, ValueError) as e:
        raise CorruptRun(f"{run_dir}/config.json: not a valid config ({e})") from None
    if key != run_dir.name:
        raise CorruptRun(f"{run_dir}: its config.json is job {key}, not {run_dir.name} (a run folder renamed or "
                         "swapped)")
