"""Resumable sweeps: run an experiment's jobs into a results store, and read it back.

The store (a sweep directory ``DIR``, see docs/ARCHITECTURE.md)::

    DIR/experiments/<name>.json   the experiment's manifest, written atomically when the sweep starts
    DIR/runs/<key>/               one complete run per finished job (storage.save_run: atomic)
    DIR/failed/<key>.json         a job that raised, or diverged (NaN/inf loss)
    DIR/locks/<key>.lock          flock-ed while some worker trains that job

Why it survives ``kill -9`` and concurrent sweeps:

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
  (:func:`remove_done_locks`); a lock taken on a file that was deleted
  meanwhile does not count (:meth:`JobLock.acquire` checks that it still is
  the file at the path), so no two processes ever hold one job's lock.
* Jobs that share ``TrainConfig.shape_key()`` train together as one batch of
  instances (one ``train_batch`` call), largest batches first so that the
  longest work starts early and the ETA is honest.

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

import errno
import fcntl
import json
import math
import os
import shutil
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import TrainConfig
from .errors import ToyddError, one_line
from .experiments import Experiment, get_experiment
from .storage import (DISK_ERRNOS, CorruptRun, StoreWriteError, atomic_write_json, os_reason, probe_writable,
                      run_dir_foreign_entries, run_row, save_run, verify_run, write_error)

EXECUTORS = ("local", "process", "ray")

# A batch is capped so that one huge group (e.g. 5 weight decays x 4 seeds x
# best-of-4) still splits into several tasks a pool can spread over workers,
# and so memory (one training set per instance) stays bounded.
MAX_BATCH_INSTANCES = 32

# Cost model for scheduling and the ETA, in units of one point-feature-dimension
# per step: every training point's reconstruction is dense over the n outputs,
# so a step costs ~ T n m per instance (infinite data: the online batch). The
# fixed per-step overhead (optimizer, Python) is worth about this many points.
_STEP_OVERHEAD_POINTS = 64


def effective_T(config: TrainConfig) -> int:
    """Points seen per step: T, or the online batch for infinite data."""
    return config.online_batch if config.infinite else int(config.T)


def job_cost(config: TrainConfig) -> float:
    """Relative cost of one job: steps x instances x (points + overhead) x n x m."""
    return float(config.steps) * config.init_seeds * (effective_T(config) + _STEP_OVERHEAD_POINTS) * config.n * config.m


def make_batches(configs: Sequence[TrainConfig], max_instances: int = MAX_BATCH_INSTANCES) -> list[list[TrainConfig]]:
    """Group jobs by shape key into batches of at most ``max_instances`` instances, costliest first."""
    groups: dict[tuple, list[TrainConfig]] = {}
    for c in configs:
        groups.setdefault(c.shape_key(), []).append(c)
    batches: list[list[TrainConfig]] = []
    for group in groups.values():
        per_job = group[0].init_seeds  # equal within a shape key
        size = max(1, max_instances // per_job)
        # Split into near-equal parts rather than size, size, ..., remainder:
        # equal parts finish together, which is what a worker pool wants.
        parts = math.ceil(len(group) / size)
        q, r = divmod(len(group), parts)
        start = 0
        for k in range(parts):
            end = start + q + (1 if k < r else 0)
            batches.append(group[start:end])
            start = end
    batches.sort(key=lambda b: -sum(job_cost(c) for c in b))
    return batches


# --- the store -------------------------------------------------------------------

class Store:
    """Paths and queries of one sweep directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        return self.root / "runs" / key

    def failed_path(self, key: str) -> Path:
        return self.root / "failed" / f"{key}.json"

    def lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def manifest_path(self, name: str) -> Path:
        return self.root / "experiments" / f"{name}.json"

    SUBDIRS = ("experiments", "runs", "failed", "locks")

    def create(self) -> None:
        self.check_layout()
        for sub in self.SUBDIRS:
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_error(e, self.root / sub, "cannot create") from None

    def check_layout(self) -> None:
        """A ToyddError naming the path if one of the store's folders is something else (a file, a dangling link)."""
        for sub in self.SUBDIRS:
            p = self.root / sub
            if os.path.lexists(p) and not p.is_dir():
                raise ToyddError(f"{p} is not a directory, so {self.root} is not a usable results directory; "
                                 f"move {p} away and run again")

    def is_sweep_dir(self) -> bool:
        return (self.root / "experiments").is_dir() or (self.root / "runs").is_dir()

    def is_done(self, key: str) -> bool:
        try:
            verify_run(self.run_dir(key))
            return True
        except CorruptRun:
            return False

    def is_running(self, key: str) -> bool:
        """True if some process holds the job's lock (i.e. is training it right now)."""
        path = self.lock_path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # missing, or not something anyone can lock
            return False
        try:
            # A shared lock conflicts only with the trainer's exclusive one, so
            # two `status` calls never disturb each other.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        finally:
            os.close(fd)

    def clean_partial(self, key: str) -> None:
        """Remove temp/old directories a killed ``save_run`` of this job left behind.

        Only called while holding the job's lock: every writer of ``runs/<key>``
        holds it, so any such leftover belongs to a writer that is dead. Only
        directories holding nothing but run files are removed (never a
        ``.kept-`` directory, nor anything else someone put there).
        """
        for p in (self.root / "runs").glob(f".{key}.*"):
            if p.is_dir() and not p.is_symlink() and (".tmp-" in p.name or ".old-" in p.name):
                try:
                    if run_dir_foreign_entries(p):
                        continue
                except OSError:
                    continue
                shutil.rmtree(p, ignore_errors=True)

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Every readable experiment manifest, by name (an unreadable one is reported, not used)."""
        out: dict[str, dict[str, Any]] = {}
        for p in sorted((self.root / "experiments").glob("*.json")):
            try:
                m = json.loads(p.read_text())
                if not isinstance(m.get("keys", []), list) or not all(isinstance(k, str) for k in m.get("keys", [])):
                    raise TypeError("keys is not a list of run keys")
                out[str(m["name"])] = m
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                print(f"warning: {p}: unreadable experiment manifest, ignored", file=sys.stderr)
        return out


class JobLock:
    """An exclusive ``flock`` on ``locks/<key>.lock``; released on close or when the process dies."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, blocking: bool) -> bool:
        # The lock of a finished job is removed at the end of a sweep (remove_done_locks), by a process that
        # holds it. Whoever opened that file before it was removed, and then got its flock, holds a lock on a
        # file nobody else can find: so a lock counts only if it is still the file at the path (same inode),
        # otherwise it is dropped and taken again on the file there now.
        while True:
            got = self._acquire_once(blocking)
            if not got:
                return False
            try:
                st = os.stat(self.path, follow_symlinks=False)
                held = os.fstat(self.fd)
                if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None
        # Who holds it, for a human debugging a stuck sweep (not used for locking).
        try:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n".encode())
        except OSError:
            pass
        return True

    def _acquire_once(self, blocking: bool) -> bool:
        # O_NOFOLLOW: the holder line truncates the file, so never through a symlink to someone's file.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except IsADirectoryError:
            # Not a lock anyone can hold (locks are files): an empty directory is
            # repaired, anything else is someone's and reported.
            try:
                os.rmdir(self.path)
                fd = os.open(self.path, flags, 0o644)
            except OSError:
                raise ToyddError(f"{self.path} is a directory, not a lock file: the job cannot be locked; "
                                 "move it away and run again") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ToyddError(f"{self.path} is a symbolic link, not a lock file: the job cannot be locked; "
                                 "move it away and run again") from None
            raise write_error(e, self.path, "cannot create the lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        return True

    def release(self, remove: bool = False) -> None:
        """Drop the lock; with ``remove``, delete the lock file first, while it is still held.

        Removing it while held is what keeps the protocol: anyone blocked on this file, or about to lock
        it, finds it gone once they hold it and locks the new file at the path instead (see acquire).
        """
        if self.fd is not None:
            if remove:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass  # gone already, or a read-only store: a lock file left behind is harmless
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def remove_done_locks(store: Store, keys: Sequence[str]) -> int:
    """Delete the lock files of the finished jobs among ``keys``; returns how many were removed.

    A finished job is never trained again (its run is checked under the lock first), so its lock file is
    clutter once the sweep ends. Each is removed only while this process holds it (JobLock.release(remove=
    True)): a lock some other process holds (its owner is still at work) is left alone, and so is the lock
    of a job that is not done (failed, pending) or a lock path that is not a plain file.
    """
    removed = 0
    for key in keys:
        path = store.lock_path(key)
        if not path.is_file() or path.is_symlink():
            continue
        lock = JobLock(path)
        try:
            if not lock.acquire(blocking=False):
                continue
        except (ToyddError, OSError):
            continue
        done = store.is_done(key)
        lock.release(remove=done)
        removed += done
    return removed


# --- one batch (runs inside whichever worker the executor picked) ------------------

@dataclass
class JobOutcome:
    key: str
    status: str  # trained | diverged | failed | done (finished elsewhere meanwhile) | busy (locked elsewhere)
    error: str | None = None


def _record_failure(store: Store, config: TrainConfig, kind: str, error: str,
                    failed_step: int | None = None, tb: str | None = None) -> None:
    atomic_write_json(store.failed_path(config.key()), {
        "key": config.key(),
        "kind": kind,  # "exception" (no run saved) or "diverged" (run saved, marked failed)
        "error": error,
        "failed_step": failed_step,
        "config": config.to_dict(),
        "traceback": tb,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "time": time.time(),
    })


def _clear_failure(store: Store, key: str) -> None:
    try:
        store.failed_path(key).unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a directory someone put there: not ours to remove
        pass


def _train_and_save(store: Store, configs: list[TrainConfig], progress: Callable[[int], None] | None) -> list[JobOutcome]:
    from . import training  # lazy: compiling kernels is the worker's business, not the importer's

    try:
        results = training.train_batch(configs, progress=progress)
        if len(results) != len(configs):
            raise RuntimeError(f"train_batch returned {len(results)} results for {len(configs)} configs")
    except Exception as e:
        if len(configs) > 1:
            # Isolate the failure: train each job alone so that one bad job does
            # not sink the others of its batch (instances are independent).
            return [o for c in configs for o in _train_and_save(store, [c], None)]
        msg = f"{type(e).__name__}: {one_line(e)}"
        _record_failure(store, configs[0], "exception", msg, tb=traceback.format_exc())
        return [JobOutcome(configs[0].key(), "failed", msg)]

    outcomes = []
    for config, result in zip(configs, results):
        key = config.key()
        try:
            save_run(store.run_dir(key), result)
        except StoreWriteError as e:
            if e.errno in DISK_ERRNOS:
                raise  # the disk is full or read-only: every other job would fail the same way
            msg = f"saving the run failed: {e}"
            _record_failure(store, config, "exception", msg, tb=traceback.format_exc())
            outcomes.append(JobOutcome(key, "failed", msg))
            continue
        except Exception as e:
            msg = f"saving the run failed: {type(e).__name__}: {e}"
            _record_failure(store, config, "exception", msg, tb=traceback.format_exc())
            outcomes.append(JobOutcome(key, "failed", msg))
            continue
        failed_step = result.metrics.get("failed_step")
        if failed_step is not None:
            msg = f"loss became NaN/inf at step {failed_step}"
            _record_failure(store, config, "diverged", msg, failed_step=int(failed_step))
            outcomes.append(JobOutcome(key, "diverged", msg))
        else:
            _clear_failure(store, key)  # an earlier failure of this job is history now
            outcomes.append(JobOutcome(key, "trained"))
    return outcomes


def run_batch(out: str | os.PathLike, configs: Sequence[TrainConfig], wait: bool = False,
              progress: Callable[[int], None] | None = None) -> list[JobOutcome]:
    """Lock, re-check, train and save one batch of jobs sharing a shape key.

    With ``wait=False`` a job whose lock another process holds is skipped
    (``busy``); with ``wait=True`` we block until that process is done with it,
    then train it only if it is still not done. Locks are taken in key order,
    so two sweeps blocking on each other's jobs cannot deadlock.
    """
    store = Store(out)
    held: list[JobLock] = []
    outcomes: list[JobOutcome] = []
    todo: list[TrainConfig] = []
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
            outcomes += _train_and_save(store, todo, progress)
    finally:
        for lock in held:
            lock.release()
    return outcomes


# --- executors --------------------------------------------------------------------

from .progress import ProgressBar  # noqa: E402 (beside its one user)


class _Bar(ProgressBar):
    """The sweep's progress line: work in cost units (``job_cost``), jobs done, elapsed, ETA (toydd.progress)."""

    def __init__(self, enabled: bool, title: str, total_cost: float, total_jobs: int):
        super().__init__(enabled, title, total_cost, total_jobs, unit="work")


class _BatchProgress:
    """Turns ``train_batch``'s step counts into cost units for one batch."""

    def __init__(self, batch: Sequence[TrainConfig]):
        self.cost = sum(job_cost(c) for c in batch)
        self.per_step = self.cost / max(1, batch[0].steps)
        self.reported = 0.0

    def steps(self, k: int) -> float:
        units = min(k * self.per_step, self.cost - self.reported)
        self.reported += units
        return units

    def rest(self) -> float:
        # Jobs skipped (done/busy) or failed early never report their steps:
        # book the remainder when the batch returns so the bar ends at 100%.
        units = self.cost - self.reported
        self.reported = self.cost
        return units


def _run_local(out: Path, batches: list[list[TrainConfig]], wait: bool, bar: _Bar, jobs: int) -> list[JobOutcome]:
    outcomes = []
    for batch in batches:
        bp = _BatchProgress(batch)
        res = run_batch(out, batch, wait, progress=lambda k, bp=bp: bar.advance(bp.steps(k)))
        bar.advance(bp.rest())
        bar.jobs(sum(o.status != "busy" for o in res))
        outcomes += res
    return outcomes


# Worker-process state for the process executor (set by _worker_init in each spawned worker).
_QUEUE = None


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the sweep that started it dies, however it dies (even ``kill -9``).

    Linux: the kernel sends SIGKILL when the parent exits (``PR_SET_PDEATHSIG``).
    Everywhere: a daemon thread polls ``os.getppid()`` and exits once the parent
    is gone (re-parented). A worker killed mid-job leaves no half-written run
    (``save_run`` is atomic) and its lock dies with it, so the next sweep resumes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - the watchdog still covers it
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    import threading

    threading.Thread(target=watchdog, name="toydd-parent-watchdog", daemon=True).start()


def _worker_init(queue, threads: int, parent_pid: int | None = None) -> None:
    global _QUEUE
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _QUEUE = queue
    # Share the cores between the workers instead of each one spawning a
    # thread per core (2 workers x 2 threads on 2 cores is slower than 2 x 1).
    for var in ("TOYDD_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except Exception:
        pass


def _worker_run_batch(out: str, batch: list[TrainConfig], wait: bool, batch_id: int) -> list[JobOutcome]:
    last = [time.monotonic(), 0]

    def progress(k: int) -> None:
        # Throttled: a queue message per optimizer step would cost more than the step.
        last[1] += k
        now = time.monotonic()
        if now - last[0] > 0.25 and _QUEUE is not None:
            _QUEUE.put((batch_id, last[1]))
            last[0], last[1] = now, 0

    outcomes = run_batch(out, batch, wait, progress)
    if last[1] and _QUEUE is not None:
        _QUEUE.put((batch_id, last[1]))
    return outcomes


def _run_process(out: Path, batches: list[list[TrainConfig]], wait: bool, bar: _Bar, jobs: int) -> list[JobOutcome]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from concurrent.futures import wait as wait_futures

    ctx = mp.get_context("spawn")  # fork would copy torch/numba thread pools mid-flight
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress = {i: _BatchProgress(b) for i, b in enumerate(batches)}
    outcomes: list[JobOutcome] = []

    def drain() -> None:
        while True:
            try:
                i, k = q.get_nowait()
            except queue_mod.Empty:
                return
            bar.advance(progress[i].steps(k))

    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(q, threads, os.getpid())) as pool:
        futures = {pool.submit(_worker_run_batch, str(out), b, wait, i): i for i, b in enumerate(batches)}
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
                                         f"job(s) (T={batches[i][0].T}, m={batches[i][0].m}); finished runs are kept, "
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
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for w in workers:
                try:
                    w.terminate()
                except Exception:  # already gone
                    pass
            raise
    return outcomes


def _ray_task(out: str, batch: list[TrainConfig], wait: bool) -> list[dict[str, Any]]:
    import ray

    # Use the CPUs Ray gave this task, not every core of the node: tasks share nodes.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    try:
        from .kernels import set_threads

        set_threads(max(1, int(cpus)))
    except (ImportError, AttributeError):
        pass
    # Plain dicts cross the Ray boundary: no toydd classes in the object store.
    return [vars(o) for o in run_batch(out, batch, wait)]


def _run_ray(out: Path, batches: list[list[TrainConfig]], wait: bool, bar: _Bar, jobs: int) -> list[JobOutcome]:
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
                inflight[task.remote(str(out), b, wait)] = i
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


def check_sweep_target(out: str | os.PathLike, what: str = "--out") -> None:
    """Before any training: ``out`` must be new, empty or a results directory, and writable.

    A directory with other content is refused (a sweep would mix its runs/,
    report/, ... with someone else's files); so is a file, or a damaged store
    (``runs/`` a file, ...). Raises ToyddError naming the path.
    """
    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise ToyddError(f"{what} {out} exists and is not a directory")
    if out.is_dir():
        store = Store(out)
        store.check_layout()
        try:
            empty = not os.listdir(out)
        except OSError as e:
            raise ToyddError(f"{what} {out}: cannot read it: {os_reason(e)}") from None
        if not empty and not store.is_sweep_dir():
            raise ToyddError(f"{what} {out} is not empty and not a toydd results directory (no experiments/ "
                             "or runs/ in it); name a new or empty directory")
    probe_writable(out, what)


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
                verify_run(run_dir)
                summary.already_done += 1
                continue
            except CorruptRun as e:
                print(f"warning: corrupt run, training it again: {e}", file=sys.stderr)
                summary.corrupt.append(key)
        pending.append(config)
    return pending


def run_sweep(name_or_file: str, out: str | os.PathLike, preset: str | None = None, executor: str = "local",
              jobs: int = 1, progress: bool = True, max_batch_instances: int = MAX_BATCH_INSTANCES) -> SweepSummary:
    """Run every unfinished job of an experiment into the store at ``out``; resumable.

    ``name_or_file``: a built-in experiment (see ``toydd.experiments``) or a
    TOML/YAML experiment file. Finished jobs are skipped, corrupted ones are
    reported on stderr and re-run. Returns a :class:`SweepSummary`; jobs that
    raise are recorded in ``failed/<key>.json`` rather than stopping the sweep.
    """
    if str(name_or_file) == "mnist-dstar":  # real digits and a torch MLP: its own job store (toydd.mnist)
        from . import mnist

        return mnist.run_sweep(out, preset=preset, executor=executor, jobs=jobs, progress=progress)
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
    exp = get_experiment(str(name_or_file), preset)
    out = Path(out).resolve()
    check_sweep_target(out)
    t0 = time.monotonic()
    store = Store(out)
    write_manifest(out, exp)

    summary = SweepSummary(name=exp.name, out=out, preset=exp.preset, total=len(exp.configs), already_done=0)
    pending: list[TrainConfig] = pending_jobs(store, exp.configs, summary)
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

    bar = _Bar(progress, f"{exp.name} ({exp.preset or 'custom'})",
               sum(job_cost(c) for c in pending), len(pending))
    try:
        execute = _EXECUTE[executor]
        # Pass 1: everything nobody else is training. Pass 2: wait for the jobs
        # another sweep held, and train those its owner left unfinished.
        outcomes = execute(out, make_batches(pending, max_batch_instances), False, bar, jobs)
        busy_keys = {o.key for o in outcomes if o.status == "busy"}
        if busy_keys:
            busy = [c for c in pending if c.key() in busy_keys]
            outcomes = [o for o in outcomes if o.status != "busy"]
            outcomes += execute(out, make_batches(busy, max_batch_instances), True, bar, jobs)
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


# --- reading a store back -------------------------------------------------------------

def _require_store(out: str | os.PathLike) -> Store:
    store = Store(out)
    if not store.root.is_dir():
        raise ToyddError(f"sweep directory not found: {store.root}")
    store.check_layout()
    if not store.is_sweep_dir():
        raise ToyddError(f"not a sweep directory (no experiments/ or runs/): {store.root}")
    return store


def _job_state(store: Store, key: str) -> str:
    if store.is_done(key):
        return "done"
    if store.is_running(key):
        return "running"
    if store.failed_path(key).is_file():
        return "failed"
    return "pending"


def _failure_kind(store: Store, key: str) -> str | None:
    try:
        return json.loads(store.failed_path(key).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def status(out: str | os.PathLike) -> dict[str, Any]:
    """Counts of done / running / failed / pending jobs in a sweep directory, overall and per experiment.

    ``running`` means some process holds the job's lock right now; ``failed``
    means the last attempt raised (no run saved); ``diverged`` counts done runs
    whose loss went NaN/inf; ``corrupt`` lists run directories that fail their
    checksums (they count as pending: the next sweep re-runs them).
    """
    store = _require_store(out)
    manifests = store.manifests()
    states: dict[str, str] = {}
    diverged: set[str] = set()
    corrupt: list[str] = []
    per_exp: dict[str, dict[str, Any]] = {}

    def state(key: str) -> str:
        if key not in states:
            s = _job_state(store, key)
            states[key] = s
            if s == "done":
                if _failure_kind(store, key) == "diverged":
                    diverged.add(key)
            elif s != "running" and store.run_dir(key).exists():
                corrupt.append(str(store.run_dir(key)))
        return states[key]

    for name, m in manifests.items():
        counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for key in m.get("keys", []):
            counts[state(key)] += 1
        per_exp[name] = {"preset": m.get("preset"), "description": m.get("description", ""),
                         "total": len(m.get("keys", [])), **counts}
    # mnist-dstar keeps its jobs in a store of its own (DIR/mnist, see toydd.mnist): count them too.
    for name, m in manifests.items():
        if m.get("kind") == "mnist":
            from .mnist import job_states

            js, bad = job_states(store.root, m)
            states.update(js)
            corrupt.extend(bad)
            per_exp[name].update(total=len(js), **{s: sum(v == s for v in js.values())
                                                   for s in ("done", "running", "failed", "pending")})
    # Complete runs on disk that no manifest names (e.g. an experiment file edited
    # since) still count; any other directory there is not a job of this store
    # (no sweep would ever train it): listed as ignored, not counted as pending.
    runs_root = store.root / "runs"
    extra = [p.name for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")] if runs_root.is_dir() else []
    ignored: list[str] = []
    for key in sorted(extra):
        if key in states:
            continue
        try:
            verify_run(store.run_dir(key))
        except CorruptRun as e:
            ignored.append(f"{store.run_dir(key)} (in no experiment and not a complete run: {e})")
            continue
        state(key)
    totals = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    for s in states.values():
        totals[s] += 1
    return {"out": str(store.root), "total": len(states), **totals, "diverged": len(diverged),
            "corrupt": sorted(corrupt), "ignored": ignored, "experiments": per_exp}


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
    return "\n".join(lines)


def load_table(out: str | os.PathLike, experiment: str | None = None):
    """One row per complete run: key, experiments, every config field, every scalar metric.

    ``T`` is a float (``inf`` for infinite data). A metric whose name is also a
    config field is suffixed ``_run`` (``steps_run``). Corrupted runs are
    reported on stderr and left out, never read. ``experiment`` keeps only that
    experiment's runs (a ToyddError if no manifest has that name).
    """
    import pandas as pd

    store = _require_store(out)
    manifests = store.manifests()
    if experiment is not None and experiment not in manifests:
        raise ToyddError(f"no experiment {experiment!r} in {store.root}; "
                         f"found: {', '.join(manifests) or 'none'}")
    membership: dict[str, list[str]] = {}
    for name, m in manifests.items():
        for key in m.get("keys", []):
            membership.setdefault(key, []).append(name)
    wanted = set(manifests[experiment]["keys"]) if experiment is not None else None

    runs_root = store.root / "runs"
    keys = sorted(p.name for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if runs_root.is_dir() else []
    rows = []
    for key in keys:
        if wanted is not None and key not in wanted:
            continue
        try:
            fields = run_row(runs_root / key)
        except (CorruptRun, ToyddError, ValueError, TypeError, OSError) as e:
            if key in membership:
                print(f"warning: skipping unreadable run: {e}", file=sys.stderr)
            else:  # the wording of `status`: the same directory, the same verdict
                print(f"warning: ignored: {runs_root / key} (in no experiment and not a complete run: {e})",
                      file=sys.stderr)
            continue
        row = {"key": key, "experiments": ",".join(sorted(membership.get(key, []))), **fields}
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["key", "experiments"] + list(TrainConfig().to_dict()))
    return pd.DataFrame(rows)


def table_csv(out: str | os.PathLike, experiment: str | None = None) -> str:
    """``load_table`` as CSV text (what ``toydd table DIR`` prints)."""
    return load_table(out, experiment).to_csv(index=False)
