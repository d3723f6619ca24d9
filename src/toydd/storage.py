"""Run directories: how one trained model is written to disk and read back.

A run directory holds

    config.json          the full TrainConfig (plus the toydd version)
    metrics.json         scalar metrics, per-init-seed results, and a sha256 of every other file
    params.safetensors   W (m x n), b (n)[, W_up (n x m)] of the kept (best-of-k) model
    arrays.safetensors   data_dims (T), feature_dims (n), H (T x m) hidden vectors of the training points
    history.safetensors  loss_steps, train_loss (k x steps/stride), snapshot_steps, snapshot_W, snapshot_b[, snapshot_W_up]

Writes are atomic at the level of the whole directory: everything is written
to a temporary sibling directory, fsynced, then renamed into place, so a reader
(or a sweep killed with SIGKILL) sees either the complete run or none of it.
``metrics.json`` is written last and carries checksums (of every other file,
and of its own canonical JSON under ``checksums["metrics.json"]``), so a
truncated, corrupted or edited file is detected by :func:`load_run` and
reported by name. Nothing toydd did not write is ever deleted: see
:func:`save_run` and :func:`check_run_target`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save as save_tensors

from .config import TrainConfig
from .errors import ToyddError, os_reason
from .npz import read_npz

RUN_FILES = ("config.json", "params.safetensors", "arrays.safetensors", "history.safetensors", "metrics.json")


class CorruptRun(ToyddError):
    """A run directory whose files are missing, truncated or fail their checksum."""


class StoreWriteError(ToyddError):
    """A file toydd had to write could not be written (disk full, read-only, permissions): names the path."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


# Errors that no retry in the same place can fix: the whole filesystem is affected.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _mount_point(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def write_error(e: OSError, path: str | os.PathLike, what: str = "cannot write") -> StoreWriteError:
    """An OSError while writing ``path`` as one readable line naming the file (and the disk, if full)."""
    reason = os_reason(e)
    msg = f"{what} {path}: {reason}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        msg += f" (the disk mounted at {_mount_point(Path(path))} is full; free space and run the command again)"
    elif e.errno == errno.EROFS:
        msg += f" (the filesystem mounted at {_mount_point(Path(path))} is read-only)"
    return StoreWriteError(msg, e.errno)


@dataclass
class RunResult:
    """One trained model (the kept init seed) with its metrics, arrays and history."""

    config: TrainConfig
    metrics: dict[str, Any]
    params: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    def __repr__(self) -> str:
        # The dataclass repr printed every array in full (60,000 characters for a small run): a notebook
        # cell showing `run` wants the config's key fields, the headline metrics and the shapes.
        c, mt = self.config, self.metrics
        if isinstance(c, TrainConfig):
            T = "inf" if c.infinite else str(int(c.T))
            cfg = (f"n={c.n}, m={c.m}, T={T}, sparsity={c.sparsity:g}, steps={c.steps}, lr={c.lr:g}, "
                   f"weight_decay={c.weight_decay:g}, data_seed={c.data_seed}, init_seeds={c.init_seeds}"
                   + ("" if c.tied else ", untied"))
        else:  # another experiment's config (toydd.mnist.MnistConfig): its scalar fields
            fields = getattr(c, "__dataclass_fields__", {})
            cfg = ", ".join(f"{k}={getattr(c, k)!r}" for k in fields
                            if isinstance(getattr(c, k), (int, float, str, bool)))[:240]
        shown = []
        for k in ("regime", "train_loss", "test_loss", "seconds", "failed_step"):
            v = mt.get(k)
            if k in mt and (v is not None or k != "failed_step"):
                shown.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}")

        def shapes(d: dict[str, np.ndarray]) -> str:
            return "{" + ", ".join(f"{k}: {tuple(np.shape(v))}" for k, v in d.items()) + "}"

        parts = [f"config=({cfg})", f"metrics=({', '.join(shown)}, ... {len(mt)} in all)",
                 f"params={shapes(self.params)}", f"arrays={shapes(self.arrays)}"]
        if self.history:
            parts.append(f"history={shapes(self.history)}")
        if self.path is not None:
            parts.append(f"path={str(self.path)!r}")
        return "RunResult(" + ", ".join(parts) + ")"

    @property
    def W(self) -> np.ndarray:
        return self.params["W"]

    @property
    def b(self) -> np.ndarray:
        return self.params["b"]

    @property
    def H(self) -> np.ndarray:
        """Hidden vectors h_i = W x_i of the training points (T x m)."""
        return self.arrays["H"]

    def training_data(self):
        """Regenerate this run's training set (synthetic data is reproducible from its seed)."""
        from . import data as data_mod

        c = self.config
        if c.data_path:
            return data_mod.load_npz(c.data_path, c.n)[0]
        if c.infinite:
            raise ValueError("an infinite-data run has no fixed training set")
        return data_mod.training_set(c.n, c.sparsity, int(c.T), c.data_seed, c.repeated_points, c.repeats,
                                     nested=c.nested_data)


# --- atomic primitives -----------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(f, data: bytes) -> None:
    """Write ``data`` to the open binary file ``f`` and flush it to disk. Every byte toydd stores goes through here."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename.

    An OSError (disk full, read-only filesystem, a directory in the way) becomes
    a :class:`StoreWriteError` naming ``path``; the temp file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid and machine in the name: a temp file a killed writer left can be told from a live
        # one's (remove_stale_temps).
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-{_host_tag()}-", suffix=".tmp",
                                   dir=path.parent)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
        os.replace(tmp, path)  # onto a directory: EISDIR, never a replaced directory
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, path) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n").encode())


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays to Python; non-finite floats to the strings 'inf', '-inf', 'nan'."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _arrays(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v) for k, v in d.items()}


# --- run directories -----------------------------------------------------------

def run_dir_foreign_entries(path: str | os.PathLike) -> list[str]:
    """Entries of directory ``path`` that a run directory never holds (anything but regular run files).

    Empty for a run directory written by :func:`save_run` (complete, truncated or
    corrupted) and for an empty directory: those are toydd's to replace. Anything
    else in it is someone else's and is never deleted.
    """
    out = []
    with os.scandir(path) as it:
        for e in it:
            if e.name not in RUN_FILES or not e.is_file(follow_symlinks=False):
                out.append(e.name)
    return sorted(out)


def probe_writable(path: str | os.PathLike, what: str = "--out", start: str | os.PathLike | None = None) -> None:
    """Fail early (a ToyddError naming the path) if nothing can be created at ``path``.

    Creates and removes an empty temp directory in the nearest existing ancestor
    of ``path`` (or of ``start``), so that /proc, a read-only mount or a missing
    permission is reported before hours of training rather than after.
    """
    path = Path(os.path.abspath(path))
    anc = Path(os.path.abspath(start)) if start is not None else path
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ToyddError(f"{what} {path}: {anc} is not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".toydd-probe-", dir=anc)
    except OSError as e:
        reason = os_reason(e)
        raise ToyddError(f"{what} {path} is not writable: cannot create anything in {anc}: {reason}") from None
    os.rmdir(probe)


def names_preview(names: list[str], k: int = 3) -> str:
    """The first ``k`` names, comma-separated, with "..." when there are more: for one-line messages."""
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


MAX_RUN_NAME = 190  # bytes: room for `.NAME.toydd-resume.safetensors.<pid>-<host>-<random>.tmp` in 255


def check_run_target(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check that ``train --out`` may write a run directory at ``out``; returns it as an absolute path.

    Accepted: a new path, an empty directory, or (with ``overwrite``) an
    existing toydd run directory. Refused with a ToyddError: a file, a directory
    holding anything else, the current directory or one of its ancestors, a
    mount point, and a place where nothing can be created. Nothing is created.
    """
    out = Path(os.path.abspath(out))
    if len(out.name.encode()) > MAX_RUN_NAME:
        raise ToyddError(f"--out {out}: its name is {len(out.name.encode())} bytes long, more than {MAX_RUN_NAME}: "
                         "toydd writes files named after it beside it (a temp copy, the training's state), and a "
                         "file name ends at 255 bytes; name a shorter directory")
    if os.path.lexists(out):
        if out.is_symlink():
            raise ToyddError(f"--out {out} is a symbolic link; name the directory itself ({os.path.realpath(out)})")
        if not out.is_dir():
            raise ToyddError(f"--out {out} exists and is not a directory")
        cwd = Path(os.getcwd())
        if out == cwd or out in cwd.parents:
            raise ToyddError(f"--out {out} is the current directory or contains it; name a new directory for the run")
        if os.path.ismount(out):
            raise ToyddError(f"--out {out} is a mount point; name a new directory inside it for the run")
        try:
            foreign = run_dir_foreign_entries(out)
            empty = not os.listdir(out)
        except OSError as e:
            raise ToyddError(f"--out {out}: cannot read it: {os_reason(e)}") from None
        if foreign:
            shown = names_preview(foreign)
            raise ToyddError(f"--out {out} is not empty and not a toydd run directory (it holds {shown}); "
                             "refusing to replace it: name a new or empty directory")
        if not empty and not overwrite:
            raise ToyddError(f"--out {out} already holds a toydd run; pass --overwrite to replace it")
    probe_writable(out, start=out.parent)  # save_run writes a temp sibling, then renames it
    return out


def _metrics_digest(metrics: dict[str, Any]) -> str:
    """sha256 of metrics.json's content (canonical JSON) without its own checksum."""
    m = dict(metrics)
    sums = dict(m.get("checksums") or {})
    sums.pop("metrics.json", None)
    m["checksums"] = sums
    blob = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def save_run(run_dir: str | os.PathLike, result: RunResult) -> Path:
    """Write ``result`` as a complete run directory at ``run_dir``, atomically.

    An existing run directory at ``run_dir`` (an older or corrupted run, see
    :func:`run_dir_foreign_entries`) is replaced. Anything else there (files
    toydd never writes) is not deleted: it is moved aside to
    ``.<name>.kept-<id>`` beside it, with a warning naming it. An OSError (disk
    full, ...) becomes a :class:`StoreWriteError` naming ``run_dir``; nothing
    half-written is left behind.
    """
    from . import __version__

    run_dir = Path(run_dir)
    tmp = run_dir.parent / f".{run_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise write_error(e, run_dir) from None
    try:
        cfg = dict(result.config.to_dict(), toydd_version=__version__)
        blobs = {"config.json": (json.dumps(cfg, indent=2) + "\n").encode(),
                 "params.safetensors": save_tensors(_arrays(result.params)),
                 "arrays.safetensors": save_tensors(_arrays(result.arrays)),
                 "history.safetensors": save_tensors(_arrays(result.history))}
        for f, data in blobs.items():
            with open(tmp / f, "xb") as fh:
                _write_all(fh, data)
        metrics = dict(result.metrics)
        metrics["checksums"] = {f: _sha256(tmp / f) for f in RUN_FILES if f != "metrics.json"}
        metrics = json.loads(json.dumps(to_jsonable(metrics), allow_nan=False))
        # metrics.json covers itself too: a sha256 of its canonical JSON without this field.
        metrics["checksums"]["metrics.json"] = _metrics_digest(metrics)
        with open(tmp / "metrics.json", "xb") as fh:
            _write_all(fh, (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode())
        _fsync_dir(tmp)
        if os.path.lexists(run_dir):
            # Move the old one aside first: rename onto a non-empty directory fails.
            ours = run_dir.is_dir() and not run_dir.is_symlink() and not run_dir_foreign_entries(run_dir)
            aside = run_dir.parent / f".{run_dir.name}.{'old' if ours else 'kept'}-{uuid.uuid4().hex[:8]}"
            os.rename(run_dir, aside)
            os.rename(tmp, run_dir)
            if ours:
                shutil.rmtree(aside, ignore_errors=True)
            else:
                print(f"warning: {run_dir} held files toydd does not write; they are kept in {aside}",
                      file=sys.stderr)
        else:
            os.rename(tmp, run_dir)
        _fsync_dir(run_dir.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_error(e, run_dir) from None
        raise
    result.path = run_dir
    return run_dir


def is_complete(run_dir: str | os.PathLike) -> bool:
    """True if ``run_dir`` holds a complete run that passes its checksums."""
    try:
        verify_run(run_dir)
        return True
    except CorruptRun:
        return False


def verify_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Check every file of a run directory; returns its metrics or raises CorruptRun naming the bad file.

    ``metrics.json`` holds the sha256 of every other file and (runs written by
    toydd >= this check) of its own canonical JSON under ``checksums["metrics.json"]``;
    older runs without it still verify. Whatever is on disk (a directory where a
    file belongs, unreadable files, JSON of the wrong shape) is a CorruptRun, never
    another exception.
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not run_dir.is_dir():
        if os.path.lexists(run_dir):
            raise CorruptRun(f"{run_dir}: not a run directory (a file or a broken link)")
        raise CorruptRun(f"run directory not found: {run_dir}")
    try:
        metrics = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise CorruptRun(f"{mpath}: missing") from None
    except OSError as e:
        raise CorruptRun(f"{mpath}: unreadable ({os_reason(e)})") from None
    except ValueError:
        raise CorruptRun(f"{mpath}: truncated or corrupted") from None
    sums = metrics.get("checksums") if isinstance(metrics, dict) else None
    if not isinstance(sums, dict):
        raise CorruptRun(f"{mpath}: truncated or corrupted (no checksums)")
    if "metrics.json" in sums and sums["metrics.json"] != _metrics_digest(metrics):
        raise CorruptRun(f"{mpath}: edited or corrupted (checksum mismatch)")
    for f in RUN_FILES[:-1]:
        p = run_dir / f
        if not p.is_file():
            if os.path.lexists(p):  # say what is there instead: a folder, a broken link, a device...
                what = "a directory" if p.is_dir() else "a broken link" if p.is_symlink() else "not a regular file"
                raise CorruptRun(f"{p}: {what}, not the run's file")
            raise CorruptRun(f"{p}: missing")
        try:
            digest = _sha256(p)
        except OSError as e:
            raise CorruptRun(f"{p}: unreadable ({os_reason(e)})") from None
        if digest != sums.get(f):
            raise CorruptRun(f"{p}: truncated or corrupted (checksum mismatch)")
    return metrics


def read_config(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """A run's config.json as a dict, without its toydd_version (returned beside it); CorruptRun if unreadable."""
    path = Path(run_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptRun(f"{path}: unreadable ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise CorruptRun(f"{path}: not a JSON object")
    return cfg, cfg.pop("toydd_version", None)


def load_run(run_dir: str | os.PathLike, arrays: bool = True, history: bool = True) -> RunResult:
    """Read a run directory, verifying checksums (raises CorruptRun naming the bad file)."""
    run_dir = Path(run_dir)
    metrics = verify_run(run_dir)
    cfg, _ = read_config(run_dir)
    config = TrainConfig.from_stored(cfg)
    params = load_file(str(run_dir / "params.safetensors"))
    arr = load_file(str(run_dir / "arrays.safetensors")) if arrays else {}
    hist = load_file(str(run_dir / "history.safetensors")) if history else {}
    return RunResult(config=config, metrics=metrics, params=params, arrays=arr, history=hist, path=run_dir)


def run_row(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run as one flat table row: ``key``, every config field, every scalar metric.

    ``T`` is a float (``inf`` for infinite data). A metric whose name is also a
    config field is suffixed ``_run`` (``steps_run``: steps actually run).
    Checksums are verified first (raises :class:`CorruptRun` naming the file),
    so a corrupted run is never silently read.
    """
    run_dir = Path(run_dir)
    metrics = verify_run(run_dir)
    cfg, version = read_config(run_dir)
    config = TrainConfig.from_stored(cfg)
    row: dict[str, Any] = {"key": run_dir.name, **config.to_dict(), "T": float(config.T), "toydd_version": version}
    return add_metric_columns(row, metrics)


def add_metric_columns(row: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every scalar metric of a run's metrics.json (of any job kind) added.

    A metric whose name is already a column (a config field) is suffixed ``_run``; non-finite floats, stored
    as strings, are floats again.
    """
    for name, v in metrics.items():
        if name == "checksums" or isinstance(v, (dict, list)):
            continue
        if isinstance(v, str) and v in ("inf", "-inf", "nan"):
            v = float(v)  # non-finite floats are stored as strings
        row[f"{name}_run" if name in row else name] = v
    return row


def read_arrays(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` (by its suffix: npz.read_npz) or ``.safetensors`` file, or a ToyddError naming
    the file (``what``: "init file", "states file", ...)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return read_npz(path, what)
    if path.is_dir():
        raise ToyddError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise ToyddError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors' SafetensorError, OSError, ...: truncated or another format
        raise ToyddError(f"cannot read {what} {path}: not a valid .safetensors file, "
                         f"or truncated ({type(e).__name__})") from None


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parameters from a ``.safetensors`` or ``.npz`` file with ``W``, ``b`` [, ``W_up``]."""
    params = read_arrays(path, "init file")
    if "W" not in params or "b" not in params:
        raise ToyddError(f"init file {path} must hold arrays 'W' and 'b'")
    return params


# --- a training's saved state (training.train_batch's checkpoint) ---------------------------------------------

CHECKPOINT_FORMAT = "toydd-checkpoint-2"  # -1 (before 2026-12-03): no inputs, engine or payload digest


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """What a saved training state says of itself, or None if ``path`` is missing, unreadable or not such a
    state (of this format). Reads no arrays. Its metadata:

    ``keys``: the jobs it belongs to, in training order; ``step``: where it resumes; ``elapsed``: seconds
    trained; ``streams``: the online streams' generator states; ``inputs``: a sha256 of what the training
    started from (initial parameters, training points, importance), so that a state is never resumed on other
    data or another init under the same config (a changed ``--data`` file); ``engine``: the engine and kernel
    that trained it (another one would not give the uninterrupted run's bits); ``sha256``: of its arrays
    (:func:`arrays_digest`), checked before a resume."""
    meta = _safetensors_metadata(path)
    if meta is None or meta.get("format") != CHECKPOINT_FORMAT:
        return None
    try:
        return {"keys": list(json.loads(meta["keys"])), "step": int(meta["step"]),
                "elapsed": float(meta["elapsed"]), "streams": json.loads(meta["streams"]),
                "inputs": str(meta["inputs"]), "engine": str(meta["engine"]), "sha256": str(meta["sha256"])}
    except (ValueError, KeyError, TypeError):
        return None


def _safetensors_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """A safetensors file's metadata (no arrays read), or None if it is missing or not such a file."""
    import safetensors

    try:
        with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
            return f.metadata() or {}
    except (OSError, ValueError, TypeError, safetensors.SafetensorError):
        return None


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data if a.size else b"")
    return h.hexdigest()


def _is_toydd_state(path: Path) -> bool:
    """A training state written by any toydd release (any checkpoint format)."""
    return str((_safetensors_metadata(path) or {}).get("format", "")).startswith("toydd-checkpoint-")


def _host_tag() -> str:
    """8 hex digits naming this machine in temp files' names (a pid means something on its own machine only)."""
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


FOREIGN_TEMP_SECONDS = 86_400  # a temp file of another machine's writer is removed only once this old


def remove_stale_temps(directory: str | os.PathLike, name: str | None = None) -> None:
    """Remove the temp files that writers killed mid-write left in ``directory`` (of the file ``name`` only, or
    of any file). atomic_write_bytes names them ``.<name>.<pid>-<host>-<random>.tmp``: one of this machine is
    removed if its pid is dead, one of another machine (a store shared by several nodes) once it is a day
    old. Never raises."""
    import time

    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    here = _host_tag()
    for tmp in names:
        if not (tmp.startswith(f".{name}." if name is not None else ".") and tmp.endswith(".tmp")):
            continue
        parts = tmp[:-len(".tmp")].rsplit(".", 1)[-1].split("-")  # (mkstemp's random part has no "." or "-")
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        try:
            if parts[1] == here:
                stale = not pid_alive(int(parts[0]))
            else:
                stale = time.time() - os.stat(directory / tmp).st_mtime > FOREIGN_TEMP_SECONDS
            if stale:
                os.unlink(directory / tmp)
        except OSError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (another user's counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, someone else's
    return True


def beside_run(out: str | os.PathLike, what: str) -> Path:
    """A hidden file that ``toydd train --out OUT`` keeps beside OUT while it trains: ``.OUT.toydd-<what>``
    (check_run_target keeps OUT's name short enough for it and its temp files)."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.toydd-{what}"


def save_run_making_room(run_dir: str | os.PathLike, result: RunResult, state: str | os.PathLike) -> Path:
    """save_run, and if the disk is full while ``state`` (the training's own saved state, of no more use now that
    the results are in memory) takes room: remove it and try once more. Else the same command would fail the
    same way at every rerun."""
    try:
        return save_run(run_dir, result)
    except StoreWriteError as e:
        if e.errno not in DISK_ERRNOS or checkpoint_info(state) is None:
            raise
        remove_checkpoint(state)
        return save_run(run_dir, result)


def remove_checkpoint(path: str | os.PathLike) -> None:
    """Remove a training state toydd wrote at ``path`` (a file of any other kind there is kept: toydd only
    removes what it wrote), and the temp files of killed writes of it. Never raises: a state left behind is
    harmless (it only resumes that very training)."""
    path = Path(path)
    try:
        if path.is_file() and not path.is_symlink() and _is_toydd_state(path):
            path.unlink()
    except OSError:
        pass
    remove_stale_temps(path.parent, path.name)
