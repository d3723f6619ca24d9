"""Resumable sweeps: run an experiment's jobs into a results store, and read the store back.

The store's layout and its locks are :mod:`toydd.store`; what a job is and how
it trains is its kind's business (:mod:`toydd.jobs`: the toy model, the MNIST
MLP). This module schedules jobs, runs them on an executor and reports.

Why a sweep survives ``kill -9`` and concurrent sweeps:

* A job is done iff ``runs/<key>/`` passes :func:`storage.verify_run`. Runs are
  renamed into place only when complete, so a killed sweep leaves either a
  whole run or none; a corrupted or truncated one fails its checksum, is
  reported by name on stderr and trained again.
* Before training a job a worker takes an exclusive, non-blocking ``flock`` on
  its lock file and then checks again whether the job is done. Whoever holds
  the lock is the only one training that job; a second sweep skips it, and
  at the end waits for it (blocking) and trains it only if its owner died
  without finishing. The kernel drops the lock when the owner dies, however
  it dies, so a stale lock never blocks anyone. At the end of a sweep the
  lock files of finished jobs are deleted, each only by a process holding it
  (:func:`toydd.store.remove_done_locks`); a lock taken on a file that was
  deleted meanwhile does not count (:meth:`toydd.store.JobLock.acquire` checks
  that it still is the file at the path), so no two processes ever hold one
  job's lock.
* Jobs are grouped into batches by their kind (toy models sharing
  ``TrainConfig.shape_key()`` train together as one batch of instances),
  largest batches first so that the longest work starts early.

Executors: ``local`` (in this process), ``process`` (``jobs`` spawned worker
processes, each with cores/jobs kernel threads), ``ray`` (one Ray task per
batch, one GPU per task when the cluster has GPUs; each task writes its runs to
the store itself, so ``DIR`` must be on a filesystem every node sees). The
tasks of one sweep never overlap, so on a cluster the locks only matter between
concurrent sweeps, and then only where the shared filesystem honours ``flock``
across nodes (NFSv4, Lustre/BeeGFS mounted with flock); elsewhere, run one
sweep per directory at a time.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import TrainConfig, checkpoint_seconds
from . import workers
from .errors import ToyddError, one_line
from .experiments import Experiment, get_experiment
from .jobs import TOY, JobKind, any_run_row, get_kind, kind_of, verify_job_run
from .storage import (DISK_ERRNOS, CorruptRun, StoreWriteError, atomic_write_json, names_preview,
                      remove_checkpoint, remove_stale_temps, save_run_making_room)
from .store import (JobLock, Store, check_sweep_target, clear_failure, failure_kind, job_state, read_manifest,
                    record_failure, remove_done_locks, require_store)

EXECUTORS = ("local", "process", "ray")

# A batch is capped so that one huge group (e.g. 5 weight decays x 4 seeds x
# best-of-4) still splits into several tasks a pool can spread over workers,
# and so memory (one training set per instance) stays bounded.
MAX_BATCH_INSTANCES = 32

def job_cost(config: Any) -> float:
    """Relative cost of one job, in its kind's units (toy: steps x instances x (points + overhead) x n x m)."""
    return kind_of(config).cost(config)


def make_batches(configs: Sequence[Any], max_instances: int = MAX_BATCH_INSTANCES, kind: JobKind = TOY) -> list[list]:
    """Group jobs into batches of at most ``max_instances`` instances, costliest first (toy: by shape key)."""
    return kind.batches(configs, max_instances)


# --- one batch (runs inside whichever worker the executor picked) ------------------

@dataclass
class JobOutcome:
    key: str
    status: str  # trained | diverged | failed | done (finished elsewhere meanwhile) | busy (locked elsewhere)
    error: str | None = None


def _train_and_save(store: Store, configs: list, progress: Callable[[float], None] | None,
                    kind: JobKind, params: dict[str, Any]) -> list[JobOutcome]:
    # Its training state, saved now and then while it trains: a batch killed mid-way resumes from there when
    # a later sweep trains the same batch (training.train_batch). Removed once the batch is over either way.
    checkpoint = store.checkpoint_path([c.key() for c in configs])
    try:
        results = kind.train(configs, params, progress, store.run_dir, checkpoint=checkpoint)
        if len(results) != len(configs):
            raise RuntimeError(f"training returned {len(results)} results for {len(configs)} configs")
    except Exception as e:
        remove_checkpoint(checkpoint)  # (never raises: a leftover only resumes this very batch)
        if len(configs) > 1:
            # Isolate the failure: train each job alone so that one bad job does
            # not sink the others of its batch (instances are independent).
            return [o for c in configs for o in _train_and_save(store, [c], None, kind, params)]
        msg = f"{type(e).__name__}: {one_line(e)}"
        record_failure(store, configs[0], "exception", msg, tb=traceback.format_exc())
        return [JobOutcome(configs[0].key(), "failed", msg)]

    outcomes = []
    for config, result in zip(configs, results):
        key = config.key()
        try:
            save_run_making_room(store.run_dir(key), result, checkpoint)
        except StoreWriteError as e:
            if e.errno in DISK_ERRNOS:
                raise  # the disk is full or read-only: every other job would fail the same way
            msg = f"saving the run failed: {e}"
            record_failure(store, config, "exception", msg, tb=traceback.format_exc())
            outcomes.append(JobOutcome(key, "failed", msg))
            continue
        except Exception as e:
            msg = f"saving the run failed: {type(e).__name__}: {e}"
            record_failure(store, config, "exception", msg, tb=traceback.format_exc())
            outcomes.append(JobOutcome(key, "failed", msg))
            continue
        failed_step = result.metrics.get("failed_step")
        if failed_step is not None:
            msg = f"loss became NaN/inf at step {failed_step}"
            record_failure(store, config, "diverged", msg, failed_step=int(failed_step))
            outcomes.append(JobOutcome(key, "diverged", msg))
        else:
            clear_failure(store, key)  # an earlier failure of this job is history now
            outcomes.append(JobOutcome(key, "trained"))
    remove_checkpoint(checkpoint)
    return outcomes


def _saved_batches_first(store: Store, ready: list, batches: Callable[[list], list[list]]) -> list[list]:
    """The batches to train ``ready`` in: first each batch killed mid-training whose saved state is in resume/
    and whose jobs are all ready, as it was (its state resumes only that very batch, whatever --jobs or the
    executor would make of these jobs now), then ``batches`` of the rest."""
    by_key = {c.key(): c for c in ready}
    first: list[list] = []
    for x in store.saved_states():
        if all(k in by_key for k in x["keys"]):
            first.append([by_key.pop(k) for k in x["keys"]])
    rest = [c for c in ready if c.key() in by_key]
    return first + (batches(rest) if rest else [])


def _resumable(store: Store, saved: dict[str, Any], done: Callable[[str], bool]) -> bool:
    """Whether some sweep can still resume a saved state: a live process holds its batch (and saves it again
    soon), or none of its jobs is done (its jobs are never batched together again once one is).

    A state whose jobs no experiment of the store names now (a sweep of another preset or subset rewrote the
    manifest) is still resumable: a sweep that names them again resumes it. It is kept, never silently
    removed (it can hold hours of training), and status and sweeps say so (``_unnamed``)."""
    keys = saved["keys"]
    return any(store.is_running(k) for k in keys) or not any(done(k) for k in keys)


def _unnamed(saved: dict[str, Any], known: set[str] | None) -> bool:
    """A saved state with a job that no experiment of the store names (``known``; None: no experiment yet)."""
    return known is not None and any(k not in known for k in saved["keys"])


def _remove_stale_states(store: Store) -> None:
    """Remove the saved states no sweep can resume (see _resumable), and killed writes' temp files; warn about
    the kept states whose jobs no experiment of the store names now."""
    known = {k for m in store.manifests().values() for k in m["keys"]}  # (a sweep has written its own by now)
    for x in store.saved_states():
        if not _resumable(store, x, lambda k: job_state(store, k) == "done"):
            remove_checkpoint(x["file"])
        elif _unnamed(x, known):
            print(f"warning: kept {x['file']}: a saved state at step {x['step']:,} of job(s) "
                  f"{names_preview(x['keys'])}, which no experiment of this store names now (another preset or "
                  "subset replaced the manifest); a sweep that names them resumes it, or delete the file",
                  file=sys.stderr)
    remove_stale_temps(store.root / "resume")


def run_batch(out: str | os.PathLike, configs: Sequence[Any], wait: bool = False,
              progress: Callable[[float], None] | None = None, kind: str = "toy",
              params: dict[str, Any] | None = None) -> list[JobOutcome]:
    """Lock, re-check, train and save one batch of jobs of one ``kind`` (toy: sharing a shape key).

    ``progress`` receives cost units as the batch trains; ``params`` are the
    experiment's (the MNIST kind reads its data source there).

    With ``wait=False`` a job whose lock another process holds is skipped
    (``busy``); with ``wait=True`` we block until that process is done with it,
    then train it only if it is still not done. Locks are taken in key order,
    so two sweeps blocking on each other's jobs cannot deadlock.
    """
    store = Store(out)
    held: list[JobLock] = []
    outcomes: list[JobOutcome] = []
    todo: list = []
    job_kind = get_kind(kind)
    try:
        for config in sorted(configs, key=lambda c: c.key()):
            key = config.key()
            lock = JobLock(store.lock_path(key))
            if not lock.acquire(blocking=wait):
                outcomes.append(JobOutcome(key, "busy"))
                continue
            # The re-check under the lock is what makes "never trained twice" hold:
            # between our first look and now another sweep may have finished it.
            if store.is_done(key):
                lock.release()
                outcomes.append(JobOutcome(key, "done"))
                continue
            held.append(lock)
            store.clean_partial(key)
            todo.append(config)
        if todo:
            outcomes += _train_and_save(store, todo, progress, job_kind, params or {})
    finally:
        for lock in held:
            lock.release()
    return outcomes


# --- executors --------------------------------------------------------------------

from .progress import ProgressBar  # noqa: E402 (beside its one user)


class _Bar(ProgressBar):
    """The sweep's progress line: work in cost units (``job_cost``), jobs done, elapsed, ETA (toydd.progress)."""

    def __init__(self, enabled: bool, title: str, total_cost: float, total_jobs: int,
                 estimate_seconds: float | None = None):
        super().__init__(enabled, title, total_cost, total_jobs, unit="work", estimate_seconds=estimate_seconds)


@dataclass(frozen=True)
class _Work:
    """What every batch of one sweep shares: the job kind's name and the experiment's params (picklable)."""

    kind: str = "toy"
    params: dict[str, Any] = field(default_factory=dict)


class _BatchProgress:
    """Books one batch's cost units on the bar, never more than the batch costs."""

    def __init__(self, batch: Sequence[Any], work: _Work):
        kind = get_kind(work.kind)
        self.cost = sum(kind.cost(c) for c in batch)
        self.reported = 0.0

    def steps(self, units: float) -> float:
        units = min(units, self.cost - self.reported)
        self.reported += units
        return units

    def rest(self) -> float:
        # Jobs skipped (done/busy) or failed early never report their steps:
        # book the remainder when the batch returns so the bar ends at 100%.
        units = self.cost - self.reported
        self.reported = self.cost
        return units


def _run_local(out: Path, batches: list[list], wait: bool, bar: _Bar, jobs: int, work: _Work) -> list[JobOutcome]:
    outcomes = []
    for batch in batches:
        bp = _BatchProgress(batch, work)
        res = run_batch(out, batch, wait, progress=lambda k, bp=bp: bar.advance(bp.steps(k)),
                        kind=work.kind, params=work.params)
        bar.advance(bp.rest())
        bar.jobs(sum(o.status != "busy" for o in res))
        outcomes += res
    return outcomes


def _worker_run_batch(out: str, batch: list, wait: bool, batch_id: int, work: _Work) -> list[JobOutcome]:
    last = [time.monotonic(), 0]

    def progress(k: float) -> None:
        # Throttled: a queue message per optimizer step would cost more than the step.
        last[1] += k
        now = time.monotonic()
        if now - last[0] > 0.25 and workers.QUEUE is not None:
            workers.QUEUE.put((batch_id, last[1]))
            last[0], last[1] = now, 0

    outcomes = run_batch(out, batch, wait, progress, kind=work.kind, params=work.params)
    if last[1] and workers.QUEUE is not None:
        workers.QUEUE.put((batch_id, last[1]))
    return outcomes


def _run_process(out: Path, batches: list[list], wait: bool, bar: _Bar, jobs: int, work: _Work) -> list[JobOutcome]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from concurrent.futures import wait as wait_futures

    ctx = mp.get_context("spawn")  # fork would copy torch/numba thread pools mid-flight
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress = {i: _BatchProgress(b, work) for i, b in enumerate(batches)}
    outcomes: list[JobOutcome] = []

    def drain() -> None:
        while True:
            try:
                i, k = q.get_nowait()
            except queue_mod.Empty:
                return
            bar.advance(progress[i].steps(k))

    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=workers.init,
                             initargs=(q, threads, os.getpid())) as pool:
        futures = {pool.submit(_worker_run_batch, str(out), b, wait, i, work): i for i, b in enumerate(batches)}
        remaining = set(futures)
        try:
            while remaining:
                finished, remaining = wait_futures(remaining, timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                for f in finished:
                    i = futures[f]
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        # A worker died (OOM kill, segfault, a script without a
                        # __main__ guard): the pool is unusable and every queued
                        # batch with it. Its locks died with it and nothing it
                        # left is half-written, so re-running the sweep resumes.
                        raise ToyddError(f"a sweep worker process died while training a batch of {len(batches[i])} "
                                         f"job(s) ({get_kind(work.kind).label(batches[i][0])}); finished runs are kept, "
                                         "run the sweep again to resume (the local executor shows the error)") from None
                    except ToyddError:
                        raise  # a store problem (disk full, a damaged lock): the same for every job
                    except Exception as e:
                        msg = f"worker process failed: {type(e).__name__}: {e}"
                        res = [JobOutcome(c.key(), "failed", msg) for c in batches[i]]
                    bar.advance(progress[i].rest())
                    bar.jobs(sum(o.status != "busy" for o in res))
                    outcomes += res
        except BaseException:
            # Ctrl-C (or SIGINT to this process alone), a store error, a dead worker: stop now. Cancelling the
            # queued futures is not enough, since leaving the `with` waits for the running batches and the
            # pool may already have handed queued ones to the workers: they are terminated. A worker killed
            # mid-batch leaves no half-written run (save_run is atomic) and its locks die with it.
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for w in procs:
                try:
                    w.terminate()
                except Exception:  # already gone
                    pass
            raise
    return outcomes


def _ray_task(out: str, batch: list, wait: bool, work: _Work) -> list[dict[str, Any]]:
    import ray

    # Use the CPUs Ray gave this task, not every core of the node: tasks share nodes.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    try:
        from .threads import set_threads

        set_threads(max(1, int(cpus)))
    except (ImportError, AttributeError):
        pass
    # Plain dicts cross the Ray boundary: no toydd classes in the object store.
    return [vars(o) for o in run_batch(out, batch, wait, kind=work.kind, params=work.params)]


def _run_ray(out: Path, batches: list[list], wait: bool, bar: _Bar, jobs: int, work: _Work) -> list[JobOutcome]:
    try:
        import ray
    except ImportError:
        raise ToyddError("the ray executor needs Ray: pip install 'toydd[ray]'") from None

    started_here = False
    if not ray.is_initialized():
        # RAY_ADDRESS names a running cluster; without it Ray starts a local instance.
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        started_here = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(_ray_task)
        # jobs > 1 caps the tasks in flight; otherwise the cluster's resources decide.
        limit = jobs if jobs > 1 else len(batches)
        todo = list(enumerate(batches))
        inflight: dict[Any, int] = {}
        outcomes: list[JobOutcome] = []
        while todo or inflight:
            while todo and len(inflight) < limit:
                i, b = todo.pop(0)
                inflight[task.remote(str(out), b, wait, work)] = i
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                i = inflight.pop(ref)
                try:
                    res = [JobOutcome(**d) for d in ray.get(ref)]
                except Exception as e:
                    cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError wraps the task's exception
                    if isinstance(cause, ToyddError):
                        raise ToyddError(str(cause)) from None  # a store problem (disk full): the same for every job
                    msg = f"ray task failed: {type(e).__name__}: {one_line(e)[:500]}"
                    res = [JobOutcome(c.key(), "failed", msg) for c in batches[i]]
                bar.advance(sum(job_cost(c) for c in batches[i]))
                bar.jobs(sum(o.status != "busy" for o in res))
                outcomes += res
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


_EXECUTE = {"local": _run_local, "process": _run_process, "ray": _run_ray}


# --- the sweep ----------------------------------------------------------------------

@dataclass
class SweepSummary:
    """What one ``run_sweep`` call did."""

    name: str
    out: Path
    preset: str | None
    total: int  # jobs in the experiment
    already_done: int  # complete before this sweep started
    trained: list[str] = field(default_factory=list)  # keys this sweep trained and saved (diverged included)
    diverged: list[str] = field(default_factory=list)  # saved, but the loss went NaN/inf
    failed: list[str] = field(default_factory=list)  # raised: no run saved (see failed/<key>.json)
    corrupt: list[str] = field(default_factory=list)  # found corrupted/truncated and queued again
    elsewhere: list[str] = field(default_factory=list)  # finished by a concurrent sweep
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def done(self) -> int:
        return self.already_done + len(self.trained) + len(self.elsewhere)

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        parts = [f"{self.name}: {self.done}/{self.total} jobs done",
                 f"{len(self.trained)} trained", f"{self.already_done} already done"]
        if self.elsewhere:
            parts.append(f"{len(self.elsewhere)} by another sweep")
        if self.corrupt:
            parts.append(f"{len(self.corrupt)} corrupt re-run")
        if self.diverged:
            parts.append(f"{len(self.diverged)} diverged")
        if self.failed:
            parts.append(f"{len(self.failed)} FAILED (see {self.out / 'failed'})")
        return ", ".join(parts) + f" in {self.seconds:.1f}s"


def write_manifest(out: str | os.PathLike, experiment: Experiment) -> Path:
    store = Store(out)
    store.create()
    path = store.manifest_path(experiment.name)
    atomic_write_json(path, experiment.manifest())
    return path


def pending_jobs(store, configs: Sequence[Any], summary: "SweepSummary") -> list:
    """The jobs of ``configs`` still to train in ``store`` (anything with ``run_dir(key)``).

    Finished runs are counted in ``summary.already_done``; a corrupt one is named on stderr,
    recorded in ``summary.corrupt`` and trained again.
    """
    pending = []
    for config in configs:
        key = config.key()
        run_dir = store.run_dir(key)
        if run_dir.exists():
            try:
                verify_job_run(run_dir)
                summary.already_done += 1
                continue
            except CorruptRun as e:
                print(f"warning: corrupt run, training it again: {e}", file=sys.stderr)
                summary.corrupt.append(key)
        pending.append(config)
    return pending


def run_sweep(name_or_file: "str | Experiment", out: str | os.PathLike, preset: str | None = None,
              executor: str = "local", jobs: int = 1, progress: bool = True,
              max_batch_instances: int = MAX_BATCH_INSTANCES) -> SweepSummary:
    """Run every unfinished job of an experiment into the store at ``out``; resumable.

    ``name_or_file``: a registered experiment's name (:mod:`toydd.experiments`),
    a TOML/YAML experiment file, or an :class:`~toydd.experiments.Experiment`.
    Finished jobs are skipped, corrupted ones are reported on stderr and re-run.
    Returns a :class:`SweepSummary`; jobs that raise are recorded in
    ``failed/<key>.json`` rather than stopping the sweep. Nothing is written to
    ``out`` before every input has been checked.
    """
    check_executor(executor, jobs)
    checkpoint_seconds()  # a bad TOYDD_CHECKPOINT_SECONDS: one error now, not a failure in every job
    exp = name_or_file if isinstance(name_or_file, Experiment) else get_experiment(str(name_or_file), preset)
    kind = get_kind(exp.kind)
    out = Path(out).resolve()
    check_sweep_target(out)
    t0 = time.monotonic()
    store = Store(out)

    summary = SweepSummary(name=exp.name, out=out, preset=exp.preset, total=len(exp.configs), already_done=0)
    pending: list = pending_jobs(store, exp.configs, summary)
    kind.check(pending, exp.params)  # e.g. the MNIST digits: readable, and enough of them
    for config in pending:  # a lock that cannot be taken stops the sweep now, not after hours
        lock = store.lock_path(config.key())
        if os.path.lexists(lock) and (lock.is_symlink() or not lock.is_file()):
            if lock.is_dir() and not lock.is_symlink():
                try:
                    os.rmdir(lock)  # an empty directory holds nothing: repaired
                    continue
                except OSError:
                    pass
            raise ToyddError(f"{lock} is not a lock file (a directory or something else), so job "
                             f"{config.key()} cannot be locked; move it away and run again")
    write_manifest(out, exp)
    _remove_stale_states(store)

    work = _Work(kind.name, exp.params)
    bar = _Bar(progress, f"{exp.name} ({exp.preset or 'custom'})",
               sum(kind.cost(c) for c in pending), len(pending),
               estimate_seconds=_estimate(exp, pending, executor, jobs) if progress and sys.stderr.isatty() else None)
    outcomes: list[JobOutcome] = []
    try:
        execute = _EXECUTE[executor]
        # Waves: a job that continues from another run (``init_from_run``) waits until that run is done.
        # Most experiments have one wave; a chain over T (the crossover's memorizing branch) has one per link.
        waiting = list(pending)
        while waiting:
            ready, blocked = _ready_jobs(store, waiting)
            if not ready:
                for c in blocked:  # its predecessor failed, or belongs to no experiment in this store
                    msg = f"its initial run {c.init_from_run} is not done (failed, or not a job of this store)"
                    record_failure(store, c, "exception", msg)
                    outcomes.append(JobOutcome(c.key(), "failed", msg))
                break
            # Pass 1: everything nobody else is training. Pass 2: wait for the jobs
            # another sweep held, and train those its owner left unfinished.
            # With several workers a big group is split so that each gets a part (instances are independent:
            # the results do not depend on how jobs are batched).
            parts = jobs if executor != "local" else 1

            def batches(configs: list) -> list[list]:  # (a killed batch's saved state resumes it as it was)
                return _saved_batches_first(store, configs, lambda r: kind.batches(r, max_batch_instances, parts))

            wave = execute(out, batches(ready), False, bar, jobs, work)
            busy_keys = {o.key for o in wave if o.status == "busy"}
            if busy_keys:
                busy = [c for c in ready if c.key() in busy_keys]
                wave = [o for o in wave if o.status != "busy"]
                wave += execute(out, batches(busy), True, bar, jobs, work)
            outcomes += wave
            waiting = blocked
    finally:
        bar.close()
    # The sweep is over: the lock files of its finished jobs are clutter (issue 17). Jobs another sweep
    # still trains keep theirs; that sweep removes them when it ends.
    remove_done_locks(store, [c.key() for c in exp.configs])

    for o in outcomes:
        if o.status in ("trained", "diverged"):
            summary.trained.append(o.key)
        if o.status == "diverged":
            summary.diverged.append(o.key)
        elif o.status == "failed":
            summary.failed.append(o.key)
            print(f"warning: job {o.key} failed: {o.error}", file=sys.stderr)
        elif o.status == "done":
            summary.elsewhere.append(o.key)
    summary.seconds = time.monotonic() - t0
    return summary


def _estimate(exp: Experiment, pending: list, executor: str, jobs: int) -> float | None:
    """The cost model's seconds for ``pending`` (the progress line's ETA before anything is measured)."""
    from . import costmodel

    try:
        model = costmodel.load(log=lambda m: print(m, file=sys.stderr))
    except Exception:  # an estimate is a courtesy: never a reason for a sweep to fail
        return None
    return sum(model.job_seconds(exp.kind, c) for c in pending) / costmodel.parallel_workers(executor, jobs)


def check_executor(executor: str, jobs: int) -> None:
    """A ToyddError if ``executor`` and ``jobs`` cannot run here (before anything is written)."""
    if executor not in EXECUTORS:
        raise ToyddError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ToyddError(f"jobs must be a positive integer, got {jobs!r}")
    if executor == "local" and jobs > 1:
        # Refuse rather than silently ignore: someone asking for 4 jobs expects 4 workers.
        raise ToyddError(f"the local executor trains one batch at a time; use --executor process "
                         f"(or ray) for --jobs {jobs}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ToyddError("the ray executor needs Ray: pip install 'toydd[ray]'") from None


def _ready_jobs(store: Store, jobs: list) -> tuple[list, list]:
    """(jobs that can train now, jobs whose ``init_from_run`` is not done yet)."""
    ready, blocked = [], []
    for c in jobs:
        pred = getattr(c, "init_from_run", None)
        (blocked if pred is not None and not store.is_done(pred) else ready).append(c)
    return ready, blocked


# --- reading a store back -------------------------------------------------------------

def status(out: str | os.PathLike) -> dict[str, Any]:
    """Counts of done / running / failed / pending jobs in a sweep directory, overall and per experiment.

    ``running`` means some process holds the job's lock right now; ``failed``
    means the last attempt raised (no run saved); ``diverged`` counts done runs
    whose loss went NaN/inf; ``corrupt`` lists run directories that fail their
    checksums (they count as pending: the next sweep re-runs them).
    """
    store = require_store(out)
    manifests = store.manifests()
    states: dict[str, str] = {}
    diverged: set[str] = set()
    corrupt: list[str] = []
    per_exp: dict[str, dict[str, Any]] = {}

    def state(key: str) -> str:
        if key not in states:
            s = job_state(store, key)
            states[key] = s
            if s == "done":
                if failure_kind(store, key) == "diverged":
                    diverged.add(key)
            elif s != "running" and store.run_dir(key).exists():
                corrupt.append(str(store.run_dir(key)))
        return states[key]

    for name, m in manifests.items():
        counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for key in m["keys"]:
            counts[state(key)] += 1
        per_exp[name] = {"preset": m.get("preset"), "description": m.get("description", ""), "kind": m["kind"],
                         "total": len(m["keys"]), **counts}
    # Complete runs on disk that no manifest names (e.g. an experiment file edited
    # since) still count; any other directory there is not a job of this store
    # (no sweep would ever train it): listed as ignored, not counted as pending.
    ignored: list[str] = []
    for key in store.run_keys():
        if key in states:
            continue
        try:
            verify_job_run(store.run_dir(key))
        except CorruptRun as e:
            ignored.append(f"{store.run_dir(key)} (in no experiment and not a complete run: {e})")
            continue
        state(key)
    totals = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for s in states.values():
        totals[s] += 1
    known = {k for m in manifests.values() for k in m["keys"]} if manifests else None
    saved = [(x, _resumable(store, x, lambda k: states.get(k) == "done")) for x in store.saved_states()]
    return {"out": str(store.root), "total": len(states), **totals, "diverged": len(diverged),
            "corrupt": sorted(corrupt), "ignored": ignored, "experiments": per_exp,
            "saved_states": [{**x, "unnamed": _unnamed(x, known)} for x, ok in saved if ok],
            "stale_states": [x for x, ok in saved if not ok]}


def format_status(st: dict[str, Any]) -> str:
    """``status()`` as a small human-readable table."""
    lines = [f"{st['out']}: {st['done']}/{st['total']} done, {st['running']} running, "
             f"{st['failed']} failed, {st['pending']} pending"
             + (f", {st['diverged']} diverged" if st["diverged"] else "")]
    width = max([len(n) for n in st["experiments"]] + [10])
    lines.append(f"  {'experiment':<{width}}  {'preset':<7} {'done':>6} {'running':>7} {'failed':>6} {'pending':>7}")
    for name, e in st["experiments"].items():
        lines.append(f"  {name:<{width}}  {str(e['preset'] or '-'):<7} {e['done']:>4}/{e['total']:<1} "
                     f"{e['running']:>7} {e['failed']:>6} {e['pending']:>7}")
    for c in st["corrupt"]:
        lines.append(f"  corrupt: {c}")
    for c in st.get("ignored", []):
        lines.append(f"  ignored: {c}")
    for x in st.get("saved_states", []):
        n = len(x["keys"])
        lines.append(f"  saved: {n} job{'s' if n > 1 else ''} ({names_preview(x['keys'])}) resume at step {x['step']:,} "
                     f"({x['file']})" + ("; no experiment here names them now: kept for a sweep that names them "
                                         "again (or delete the file)" if x.get("unnamed") else ""))
    for x in st.get("stale_states", []):
        lines.append(f"  stale: {x['file']} (a saved state no sweep of this store will resume: one of its jobs is "
                     "done; the next sweep removes it)")
    return "\n".join(lines)


def load_table(out: str | os.PathLike, experiment: str | None = None):
    """One row per complete run, of any job kind: key, kind, experiments, config fields, scalar metrics.

    ``T`` is a float for toy runs (``inf`` for infinite data). A metric whose
    name is also a config field is suffixed ``_run`` (``steps_run``). Corrupted
    runs are reported on stderr and left out, never read. ``experiment`` keeps
    only that experiment's runs (a ToyddError naming the experiments there if
    none has that name). Toy and MNIST runs have different columns: filter by
    ``kind`` or ``experiment``.
    """
    import pandas as pd

    store = require_store(out)
    own = None if experiment is None or "/" in experiment else store.root / "experiments" / f"{experiment}.json"
    if own is not None and own.is_file():
        read_manifest(own)  # unreadable: that is the error, in one line (not a warning, then "no experiment")
    manifests = store.manifests()
    if experiment is not None and experiment not in manifests:
        raise ToyddError(f"no experiment {experiment!r} in {store.root}; "
                         f"found: {', '.join(manifests) or 'none'}")
    membership: dict[str, list[str]] = {}
    for name, m in manifests.items():
        for key in m["keys"]:
            membership.setdefault(key, []).append(name)
    wanted = set(manifests[experiment]["keys"]) if experiment is not None else None

    rows = []
    for key in store.run_keys():
        if wanted is not None and key not in wanted:
            continue
        run_dir = store.run_dir(key)
        try:
            fields = any_run_row(run_dir)
        except (CorruptRun, ToyddError, ValueError, TypeError, OSError) as e:
            if key in membership:
                print(f"warning: skipping unreadable run: {e}", file=sys.stderr)
            else:  # the wording of `status`: the same directory, the same verdict
                print(f"warning: ignored: {run_dir} (in no experiment and not a complete run: {e})",
                      file=sys.stderr)
            continue
        kind = fields.pop("kind")
        rows.append({"key": key, "kind": kind, "experiments": ",".join(sorted(membership.get(key, []))), **fields})
    if not rows:
        return pd.DataFrame(columns=["key", "kind", "experiments"] + list(TrainConfig().to_dict()))
    return pd.DataFrame(rows)


def table_csv(out: str | os.PathLike, experiment: str | None = None) -> str:
    """``load_table`` as CSV text (what ``toydd table DIR`` prints)."""
    return load_table(out, experiment).to_csv(index=False)
