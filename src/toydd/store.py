"""The results store of a sweep directory: its layout, manifests, locks and failure records.

::

    DIR/experiments/<name>.json   an experiment's manifest, written atomically when its sweep starts
    DIR/runs/<key>/               one complete run per finished job, of any job kind (storage.save_run: atomic)
    DIR/failed/<key>.json         a job that raised, or diverged (NaN/inf loss)
    DIR/locks/<key>.lock          flock-ed while some worker trains that job
    DIR/resume/<hash>.safetensors a batch's training state while it trains (training.train_batch's checkpoint),
                                  removed once its runs are saved; what a killed batch resumes from

A job is done iff ``runs/<key>/`` passes :func:`storage.verify_run`. Why this
survives ``kill -9`` and concurrent sweeps is told in :mod:`toydd.sweep`, which
drives it; this module only knows paths and files. It knows nothing of
experiments or of what a run holds (:mod:`toydd.jobs` does).

Stores written by toydd 0.1.0 kept the mnist-dstar runs in a store of their own
under ``DIR/mnist/`` and listed them in their manifest as ``"jobs"`` beside an
empty ``"keys"``. Both are read here as if written today (:meth:`Store.run_dir`
finds a run there when ``runs/`` has none; :meth:`Store.manifests` reads
``jobs`` as ``keys``), so nothing outside this module knows the old layout.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ToyddError, os_reason
from .jobs import verify_job_run
from .storage import (CorruptRun, atomic_write_json, checkpoint_info, probe_writable,
                      run_dir_foreign_entries, write_error)

LEGACY_SUBSTORES = ("mnist",)  # DIR/<name>/runs of toydd 0.1.0 (mnist-dstar)


class Store:
    """Paths and queries of one sweep directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        """Where run ``key`` is: ``runs/<key>``, or a 0.1.0 store's ``mnist/runs/<key>`` if only that exists."""
        path = self.root / "runs" / key
        if not os.path.lexists(path):
            for sub in LEGACY_SUBSTORES:
                old = self.root / sub / "runs" / key
                if old.is_dir():
                    return old
        return path

    def run_keys(self) -> list[str]:
        """Names of the directories in ``runs/`` (and a 0.1.0 store's ``mnist/runs/``), sorted."""
        keys: set[str] = set()
        for base in [self.root / "runs"] + [self.root / s / "runs" for s in LEGACY_SUBSTORES]:
            if base.is_dir():
                keys.update(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        return sorted(keys)

    def failed_path(self, key: str) -> Path:
        return self.root / "failed" / f"{key}.json"

    def lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def manifest_path(self, name: str) -> Path:
        return self.root / "experiments" / f"{name}.json"

    def checkpoint_path(self, keys: Sequence[str]) -> Path:
        """Where the batch of jobs ``keys`` (in training order) saves its state while it trains."""
        return self.root / "resume" / (hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16] + ".safetensors")

    SUBDIRS = ("experiments", "runs", "failed", "locks", "resume")

    def saved_states(self) -> list[dict[str, Any]]:
        """The training states in resume/ (batches killed mid-training, or training now): for each, its file,
        the step it resumes at and its job keys. Unreadable files are left out (training ignores them too)."""
        infos = ((p, checkpoint_info(p)) for p in sorted((self.root / "resume").glob("*.safetensors")))
        return [{"file": str(p), "step": x["step"], "keys": x["keys"]} for p, x in infos if x is not None]

    def create(self) -> None:
        self.check_layout()
        for sub in self.SUBDIRS:
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_error(e, self.root / sub, "cannot create") from None

    def check_layout(self) -> None:
        """A ToyddError naming the path if one of the store's folders is something else (a file, a dangling link)."""
        legacy = [f"{s}/{d}" for s in LEGACY_SUBSTORES if os.path.lexists(self.root / s) for d in self.SUBDIRS]
        for sub in list(self.SUBDIRS) + list(LEGACY_SUBSTORES if legacy else ()) + legacy:
            p = self.root / sub
            if os.path.lexists(p) and not p.is_dir():
                raise ToyddError(f"{p} is not a directory, so {self.root} is not a usable results directory; "
                                 f"move {p} away and run again")

    def is_sweep_dir(self) -> bool:
        return (self.root / "experiments").is_dir() or (self.root / "runs").is_dir()

    def is_done(self, key: str) -> bool:
        try:
            verify_job_run(self.run_dir(key))
            return True
        except CorruptRun:
            return False

    def is_running(self, key: str) -> bool:
        """True if some process holds the job's lock (i.e. is training it right now)."""
        path = self.lock_path(key)
        if not path.is_file():  # missing, or not a lock file (a FIFO there would block the open for ever)
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:  # gone meanwhile, or not something anyone can lock
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
        for p in self.run_dir(key).parent.glob(f".{key}.*"):
            if p.is_dir() and not p.is_symlink() and (".tmp-" in p.name or ".old-" in p.name):
                try:
                    if run_dir_foreign_entries(p):
                        continue
                except OSError:
                    continue
                shutil.rmtree(p, ignore_errors=True)

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Every readable experiment manifest, by name (an unreadable one is named on stderr, not used).

        Read as written today: ``keys`` lists every job (a 0.1.0 mnist-dstar manifest's ``jobs``), ``kind``
        names the job kind (absent: ``toy``), ``params`` is a table.
        """
        out: dict[str, dict[str, Any]] = {}
        for p in sorted((self.root / "experiments").glob("*.json")):
            try:
                m = read_manifest(p)
            except ToyddError as e:
                print(f"warning: {e}; ignored", file=sys.stderr)
                continue
            out[str(m["name"])] = m
        return out


def read_manifest(path: Path) -> dict[str, Any]:
    """One manifest, checked and normalized (see :meth:`Store.manifests`); ToyddError if unreadable."""
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO or a device: a read would block
        raise ToyddError(f"{path}: unreadable experiment manifest (not a regular file)")
    try:
        m = json.loads(path.read_text())
        if not isinstance(m, dict):
            raise TypeError("not a JSON object")
        if m.get("kind") == "mnist" and "jobs" in m and not m.get("keys"):
            m = {**m, "keys": m["jobs"]}  # toydd 0.1.0: MNIST jobs beside an empty toy-run list
        keys = m.get("keys", [])
        # A key names a folder in runs/: one plain name (a key of "../x" or "/x" would read runs outside the store).
        if not isinstance(keys, list) or not all(isinstance(k, str) and k and k not in (".", "..")
                                                 and "/" not in k and "\\" not in k and "\0" not in k for k in keys):
            raise TypeError("keys is not a list of run keys")
        if not isinstance(m.get("params", {}), dict):
            raise TypeError("params is not a table")
        if not isinstance(m.get("configs", []), list):
            raise TypeError("configs is not a list")
        m.setdefault("name", path.stem)
        m.setdefault("kind", "toy")
        m.setdefault("keys", [])
        m.setdefault("params", {})
        if not isinstance(m["name"], str) or not isinstance(m["kind"], str):
            raise TypeError("name or kind is not a string")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ToyddError(f"{path}: unreadable experiment manifest ({type(e).__name__}: {e})") from None
    return m


class JobLock:
    """An exclusive ``flock`` on ``locks/<key>.lock``; released on close or when the process dies."""

    def __init__(self, path: Path, what: str = "the job"):
        self.path = path
        self.what = what  # what cannot be locked, in error messages
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
                raise ToyddError(f"{self.path} is a directory, not a lock file: {self.what} cannot be locked; "
                                 "move it away and run again") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ToyddError(f"{self.path} is a symbolic link, not a lock file: {self.what} cannot be locked; "
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


def record_failure(store: Store, config: Any, kind: str, error: str,
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


def clear_failure(store: Store, key: str) -> None:
    try:
        store.failed_path(key).unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a directory someone put there: not ours to remove
        pass




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
        try:
            empty = not os.listdir(out)
        except OSError as e:
            raise ToyddError(f"{what} {out}: cannot read it: {os_reason(e)}") from None
        if not empty and not store.is_sweep_dir():  # (before the layout: see require_store)
            raise ToyddError(f"{what} {out} is not empty and not a toydd results directory (no experiments/ "
                             "or runs/ in it); name a new or empty directory")
        store.check_layout()
    probe_writable(out, what)




def require_store(out: str | os.PathLike) -> Store:
    store = Store(out)
    if os.path.lexists(store.root) and not store.root.is_dir():
        raise ToyddError(f"{store.root} is a file, not a results directory")
    if not store.root.is_dir():
        raise ToyddError(f"sweep directory not found: {store.root}")
    # Whether it is a store at all first: a folder of someone's files (one named "locks" or "resume") is
    # not a store with a damaged folder, and "move X away" would be the wrong advice.
    if not store.is_sweep_dir():
        raise ToyddError(f"not a sweep directory (no experiments/ or runs/): {store.root}")
    store.check_layout()
    return store


def job_state(store: Store, key: str) -> str:
    if store.is_done(key):
        return "done"
    if store.is_running(key):
        return "running"
    if store.failed_path(key).is_file():
        return "failed"
    return "pending"


def failure_kind(store: Store, key: str) -> str | None:
    try:
        return json.loads(store.failed_path(key).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
