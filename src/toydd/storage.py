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
``metrics.json`` is written last and carries checksums, so a truncated or
corrupted file is detected by :func:`load_run` and reported by name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from .config import TrainConfig
from .errors import ToyddError

RUN_FILES = ("config.json", "params.safetensors", "arrays.safetensors", "history.safetensors", "metrics.json")


class CorruptRun(ToyddError):
    """A run directory whose files are missing, truncated or fail their checksum."""


@dataclass
class RunResult:
    """One trained model (the kept init seed) with its metrics, arrays and history."""

    config: TrainConfig
    metrics: dict[str, Any]
    params: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

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
        return data_mod.training_set(c.n, c.sparsity, int(c.T), c.data_seed, c.repeated_points, c.repeats)


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
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

def save_run(run_dir: str | os.PathLike, result: RunResult) -> Path:
    """Write ``result`` as a complete run directory at ``run_dir``, atomically.

    An existing directory at ``run_dir`` (an older or corrupted run) is replaced.
    """
    from . import __version__

    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".{run_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        cfg = dict(result.config.to_dict(), toydd_version=__version__)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(_arrays(result.params), str(tmp / "params.safetensors"))
        save_file(_arrays(result.arrays), str(tmp / "arrays.safetensors"))
        save_file(_arrays(result.history), str(tmp / "history.safetensors"))
        metrics = dict(result.metrics)
        metrics["checksums"] = {f: _sha256(tmp / f) for f in RUN_FILES if f != "metrics.json"}
        (tmp / "metrics.json").write_text(json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n")
        for f in RUN_FILES:
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if run_dir.exists():
            # Move the old one aside first: rename onto a non-empty directory fails.
            trash = run_dir.parent / f".{run_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(run_dir, trash)
            os.rename(tmp, run_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, run_dir)
        _fsync_dir(run_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
    """Check every file of a run directory; returns its metrics or raises CorruptRun naming the bad file."""
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not run_dir.is_dir():
        raise CorruptRun(f"run directory not found: {run_dir}")
    try:
        metrics = json.loads(mpath.read_text())
        sums = metrics["checksums"]
    except FileNotFoundError:
        raise CorruptRun(f"{mpath}: missing") from None
    except (ValueError, KeyError, TypeError):
        raise CorruptRun(f"{mpath}: truncated or corrupted") from None
    for f in RUN_FILES[:-1]:
        p = run_dir / f
        if not p.is_file():
            raise CorruptRun(f"{p}: missing")
        if _sha256(p) != sums.get(f):
            raise CorruptRun(f"{p}: truncated or corrupted (checksum mismatch)")
    return metrics


def load_run(run_dir: str | os.PathLike, arrays: bool = True, history: bool = True) -> RunResult:
    """Read a run directory, verifying checksums (raises CorruptRun naming the bad file)."""
    run_dir = Path(run_dir)
    metrics = verify_run(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg.pop("toydd_version", None)
    config = TrainConfig.from_dict(cfg)
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
    cfg = json.loads((run_dir / "config.json").read_text())
    version = cfg.pop("toydd_version", None)
    config = TrainConfig.from_dict(cfg)
    row: dict[str, Any] = {"key": run_dir.name, **config.to_dict(), "T": float(config.T), "toydd_version": version}
    for name, v in metrics.items():
        if name == "checksums" or isinstance(v, (dict, list)):
            continue
        if isinstance(v, str) and v in ("inf", "-inf", "nan"):
            v = float(v)  # non-finite floats are stored as strings
        row[f"{name}_run" if name in row else name] = v
    return row


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parameters from a ``.safetensors`` or ``.npz`` file with ``W``, ``b`` [, ``W_up``]."""
    path = Path(path)
    if not path.is_file():
        raise ToyddError(f"init file not found: {path}")
    is_npz = path.suffix.lower() == ".npz"
    try:
        if is_npz:
            with np.load(path, allow_pickle=False) as z:
                params = {k: z[k] for k in z.files}
        else:
            params = load_file(str(path))
    except ValueError as e:
        if is_npz and "pickle" in str(e).lower():
            raise ToyddError(f"cannot read init file {path}: it holds object arrays (pickled Python objects); "
                             f"save W and b as numeric arrays") from None
        raise ToyddError(f"cannot read init file {path}: not a valid {'.npz' if is_npz else '.safetensors'} file "
                         f"({type(e).__name__})") from None
    except Exception as e:  # safetensors' SafetensorError, BadZipFile, OSError, ...: truncated or another format
        raise ToyddError(f"cannot read init file {path}: not a valid {'.npz' if is_npz else '.safetensors'} file, "
                         f"or truncated ({type(e).__name__})") from None
    if not isinstance(params, dict):  # np.load of a .npy gives one array
        raise ToyddError(f"init file {path} must hold arrays 'W' and 'b'")
    if "W" not in params or "b" not in params:
        raise ToyddError(f"init file {path} must hold arrays 'W' and 'b'")
    return params
