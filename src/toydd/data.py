"""Sparse synthetic datasets, the shared test set, and user-supplied data.

A point has ``n`` features; each is 0 with probability ``S`` and otherwise
drawn from U[0, 1]. The point is then rescaled to unit L2 norm (an all-zero
point stays all-zero). Points are kept in CSR form -- about ``n (1 - S)``
non-zeros each -- and the dense ``T x n`` matrix is never built on the hot path.

Sampling: the number of non-zeros of a point is Binomial(n, 1 - S) and their
positions are uniform without replacement, which is exactly the distribution of
n independent Bernoulli(1 - S) masks, but costs O(nnz) instead of O(n).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import ToyddError
from .npz import read_npz


@dataclass
class SparseData:
    """``T`` points of ``n`` features in CSR form (float32 values, int64 indices)."""

    indptr: np.ndarray  # (T + 1,) int64
    indices: np.ndarray  # (nnz,) int64, sorted within each row
    values: np.ndarray  # (nnz,) float32
    n: int

    @property
    def T(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def to_dense(self) -> np.ndarray:
        """Dense ``T x n`` array -- for tests, references and small plots only."""
        X = np.zeros((self.T, self.n), dtype=np.float32)
        rows = np.repeat(np.arange(self.T), np.diff(self.indptr))
        X[rows, self.indices] = self.values
        return X

    def to_torch_sparse(self):
        import torch

        return torch.sparse_csr_tensor(
            torch.from_numpy(self.indptr), torch.from_numpy(self.indices),
            torch.from_numpy(self.values), size=(self.T, self.n))

    def rows(self, idx: np.ndarray) -> "SparseData":
        """A new dataset made of the given rows (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = np.diff(self.indptr)[idx]
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Flat positions of every selected row's non-zeros, without a Python loop.
        starts = self.indptr[idx]
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(int(indptr[-1]))
        return SparseData(indptr, self.indices[take].copy(), self.values[take].copy(), self.n)

    @staticmethod
    def from_dense(X: np.ndarray) -> "SparseData":
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ToyddError(f"X must be 2-D (T x n), got shape {X.shape}")
        rows, cols = np.nonzero(X)
        indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        np.cumsum(indptr, out=indptr)
        return SparseData(indptr, cols.astype(np.int64), X[rows, cols].astype(np.float32), X.shape[1])


def hidden_vectors(data: SparseData, W: np.ndarray) -> np.ndarray:
    """``h_i = W x_i`` for every point of ``data`` (T x m), straight from CSR.

    ``W`` may also be a stack of snapshots (S x m x n); the result is then S x T x m.
    The dense T x n matrix is never built (T can be 10^5 at n = 10^4).
    """
    Wa = np.asarray(W, dtype=np.float64)
    stacked = Wa.ndim == 3
    Ws = Wa if stacked else Wa[None]
    rows = np.repeat(np.arange(data.T), np.diff(data.indptr))
    vals = data.values.astype(np.float64)
    out = np.empty((Ws.shape[0], data.T, Ws.shape[1]))
    for s, Wk in enumerate(Ws):
        contrib = Wk[:, data.indices] * vals  # (m, nnz)
        for k in range(Wk.shape[0]):
            out[s, :, k] = np.bincount(rows, weights=contrib[k], minlength=data.T)
    return out if stacked else out[0]


def generate(n: int, sparsity: float, T: int, seed: int | np.random.Generator, normalize: bool = True) -> SparseData:
    """Draw ``T`` sparse points (see module docstring); ``seed`` fixes them."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    p = 1.0 - sparsity
    if p > 0.05:
        # Dense-ish data: draw masks directly, a chunk of rows at a time.
        parts = []
        for start in range(0, T, 4096):
            rows = min(4096, T - start)
            mask = rng.random((rows, n)) < p
            vals = rng.random((rows, n), dtype=np.float32)
            parts.append(SparseData.from_dense(np.where(mask, vals, 0).astype(np.float32)))
        data = _concat(parts, n) if parts else SparseData(np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), n)
    else:
        counts = rng.binomial(n, p, size=T).astype(np.int64)
        indptr = np.zeros(T + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        nnz = int(indptr[-1])
        idx = rng.integers(0, n, size=nnz, dtype=np.int64)
        # Positions drawn with replacement; duplicates within a row are redrawn
        # from a pool of fresh uniform positions until the row is distinct (by
        # symmetry the row is then a uniform k-subset). Rare when n(1-S) << n.
        pool_size = 64 + nnz // 8
        while True:
            pool = rng.integers(0, n, size=pool_size, dtype=np.int64)
            out = idx.copy()
            if _distinct_rows(indptr, out, pool) >= 0:
                idx = out
                break
            pool_size *= 4
        vals = rng.random(nnz, dtype=np.float32)
        data = SparseData(indptr, idx, vals, n)
    if normalize:
        normalize_rows(data)
    return data


def normalize_rows(data: SparseData) -> None:
    """Rescale every point to unit L2 norm in place; all-zero points stay zero."""
    _normalize_rows(data.indptr, data.values)


@njit(cache=True)
def _normalize_rows(indptr, values):
    for t in range(len(indptr) - 1):
        sq = 0.0
        for p in range(indptr[t], indptr[t + 1]):
            sq += float(values[p]) ** 2
        if sq > 0.0:
            scale = 1.0 / np.sqrt(sq)
            for p in range(indptr[t], indptr[t + 1]):
                values[p] = values[p] * scale


@njit(cache=True)
def _distinct_rows(indptr, idx, pool):
    """Sort each row's positions, replacing duplicates from ``pool``; -1 if the pool ran out."""
    used = 0
    for t in range(len(indptr) - 1):
        a, b = indptr[t], indptr[t + 1]
        while True:
            for p in range(a + 1, b):  # insertion sort: rows hold ~n(1-S) entries
                v = idx[p]
                q = p - 1
                while q >= a and idx[q] > v:
                    idx[q + 1] = idx[q]
                    q -= 1
                idx[q + 1] = v
            dup = False
            for p in range(a + 1, b):
                if idx[p] == idx[p - 1]:
                    if used >= len(pool):
                        return -1
                    idx[p] = pool[used]
                    used += 1
                    dup = True
            if not dup:
                break
    return used


def _concat(parts: list[SparseData], n: int) -> SparseData:
    offs = np.cumsum([0] + [p.nnz for p in parts])
    indptr = np.concatenate([np.zeros(1, np.int64)] + [p.indptr[1:] + o for p, o in zip(parts, offs)])
    return SparseData(indptr, np.concatenate([p.indices for p in parts]), np.concatenate([p.values for p in parts]), n)


def train_seed_sequence(data_seed: int) -> np.random.SeedSequence:
    # Training sets and the test set come from disjoint seed streams, so a data
    # seed never reproduces the test set.
    return np.random.SeedSequence([data_seed, 0x7D])


NEST_BLOCK = 1024  # points per independently seeded block of a nested training sequence


def training_set(n: int, sparsity: float, T: int, data_seed: int, repeated_points: int = 0, repeats: int = 1,
                 nested: bool = False) -> SparseData:
    """The training set of one data seed.

    ``nested``: the first T points of one sequence per data seed, drawn in blocks of
    ``NEST_BLOCK`` points, block j from its own seed (data_seed, j); so the training
    set of T is a prefix, hence a subset, of that of any larger T (what continuing a
    solution from a smaller T onto a larger one needs). Otherwise (the default, and
    every store written so far) the T points are drawn in one go from the seed.

    With ``repeated_points = k`` and ``repeats = R``, the first ``k R`` rows are
    k distinct points each repeated R times (rows 0..R-1 are copies of one
    point, and so on); the other ``T - k R`` rows are fresh points.
    """
    if nested:
        # Whole blocks, then the first T rows: a block's points must not depend on how many are kept.
        blocks = [generate(n, sparsity, NEST_BLOCK, np.random.default_rng(np.random.SeedSequence([data_seed, 0x4E57, j])))
                  for j in range(-(-T // NEST_BLOCK))]
        return _concat(blocks, n).rows(np.arange(T))
    rng = np.random.default_rng(train_seed_sequence(data_seed))
    if repeated_points == 0 or repeats == 1:
        return generate(n, sparsity, T, rng)
    distinct = T - repeated_points * (repeats - 1)
    base = generate(n, sparsity, distinct, rng)
    idx = np.concatenate([np.repeat(np.arange(repeated_points), repeats), np.arange(repeated_points, distinct)])
    return base.rows(idx)


def test_set(n: int, sparsity: float, size: int, test_seed: int) -> SparseData:
    """The shared test set of one (n, S): the same for every model, so losses compare."""
    return generate(n, sparsity, size, np.random.default_rng(np.random.SeedSequence([test_seed, 0x7E])))


class OnlineStream:
    """Infinite data: a fresh batch of points every step, reproducible from the seed."""

    def __init__(self, n: int, sparsity: float, batch: int, data_seed: int):
        self.n, self.sparsity, self.batch = n, sparsity, batch
        self.rng = np.random.default_rng(train_seed_sequence(data_seed))

    def next(self) -> SparseData:
        return generate(self.n, self.sparsity, self.batch, self.rng)


# --- user-supplied data ------------------------------------------------------

def load_npz(path: str | os.PathLike, n: int | None = None) -> tuple[SparseData, SparseData | None]:
    """Load ``X`` (and optional ``X_test``) from an ``.npz``.

    Each may be dense (``X``: T x n) or CSR (``indptr``, ``indices``, ``values``,
    ``shape``; for the test set the same names prefixed ``test_``). Points are
    used as given (no rescaling). Raises :class:`ToyddError` on anything malformed.
    """
    path = os.fspath(path)
    z = read_npz(path, "data file", hint="save X (T x n) or its CSR arrays with numpy.savez")
    train = _read_matrix(z, "", path)
    if train is None:
        raise ToyddError(f"{path}: no training data: expected 'X' (dense) or 'indptr', 'indices', 'values', 'shape' (CSR)")
    test = _read_matrix(z, "test_", path)
    if test is None and "X_test" in z:
        test = _dense(z["X_test"], path, "X_test")
    if test is not None and test.n != train.n:
        raise ToyddError(f"{path}: X_test has {test.n} features but X has {train.n}")
    if n is not None and train.n != n:
        raise ToyddError(f"{path}: data has {train.n} features but n = {n}")
    if train.T == 0:
        raise ToyddError(f"{path}: X has no rows")
    return train, test


_F32_MAX = float(np.finfo(np.float32).max)


def check_real_values(a: np.ndarray, where: str, name: str, nonnegative: bool = False) -> None:
    """A ToyddError naming ``name`` unless ``a`` holds real, finite numbers within float32 (the training
    precision), and with ``nonnegative`` none below 0. Serves data files and parameter files alike."""
    if a.dtype.kind not in "biuf":
        what = "complex numbers" if a.dtype.kind == "c" else f"dtype {a.dtype}"
        raise ToyddError(f"{where}: {name} must hold real numbers, got {what}")
    if a.size == 0:
        return
    a = a.astype(np.float64, copy=False) if a.dtype.kind == "f" else a
    if not np.all(np.isfinite(a)):
        raise ToyddError(f"{where}: {name} must hold finite numbers, found NaN or inf")
    lo, hi = float(a.min()), float(a.max())
    if nonnegative and lo < 0:
        raise ToyddError(f"{where}: {name} holds negative values (min {lo:.3g}); features must be >= 0 "
                         f"(the model's ReLU output cannot reach them)")
    big = max(-lo, hi)
    if big > _F32_MAX:  # checked before any cast to float32, which would warn and give inf
        raise ToyddError(f"{where}: {name} holds values too large for float32 (max |{name}| = {big:.3g})")


def _dense(a: np.ndarray, path: str, name: str) -> SparseData:
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ToyddError(f"{path}: {name} must be a non-empty 2-D array (T x n), got shape {a.shape}")
    check_real_values(a, path, name, nonnegative=True)
    return SparseData.from_dense(a)


def _read_matrix(z: dict[str, np.ndarray], prefix: str, path: str) -> SparseData | None:
    name = "X" if not prefix else "X_test"
    if not prefix and "X" in z:
        return _dense(z["X"], path, "X")
    keys = [prefix + k for k in ("indptr", "indices", "values", "shape")]
    present = [k for k in keys if k in z]
    if not present:
        return None
    if len(present) != 4:
        missing = sorted(set(keys) - set(present))
        raise ToyddError(f"{path}: CSR data incomplete, missing {', '.join(missing)}")
    indptr, indices, values, shape = (z[k] for k in keys)
    if shape.shape != (2,) or not np.issubdtype(shape.dtype, np.integer):
        raise ToyddError(f"{path}: {prefix}shape must be two integers (T, n)")
    T, n = (int(s) for s in shape)
    if T <= 0 or n <= 0:
        raise ToyddError(f"{path}: {prefix}shape must be positive, got ({T}, {n})")
    ok = (indptr.ndim == 1 and len(indptr) == T + 1 and np.issubdtype(indptr.dtype, np.integer)
          and indices.ndim == 1 and values.ndim == 1 and len(indices) == len(values)
          and np.issubdtype(indices.dtype, np.integer))
    if not ok:
        raise ToyddError(f"{path}: malformed CSR arrays for {name} (indptr must have T+1 entries, indices and values equal length)")
    indptr = indptr.astype(np.int64)
    indices = indices.astype(np.int64)
    if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise ToyddError(f"{path}: {prefix}indptr must start at 0, be non-decreasing and end at nnz")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise ToyddError(f"{path}: {prefix}indices out of range [0, {n})")
    check_real_values(values, path, f"{prefix}values", nonnegative=True)
    # Canonical form: sorted, no duplicate columns within a row (sum them).
    dense_rows = np.repeat(np.arange(T), np.diff(indptr))
    order = np.lexsort((indices, dense_rows))
    r, c, v = dense_rows[order], indices[order], values[order].astype(np.float64)
    key = r * n + c
    uniq, start = np.unique(key, return_index=True)
    v = np.add.reduceat(v, start) if len(v) else v
    if len(v) and v.max() > _F32_MAX:  # duplicates summed past float32
        raise ToyddError(f"{path}: {prefix}values summed over duplicate entries exceed float32 (max {v.max():.3g})")
    r, c = uniq // n, uniq % n
    new_indptr = np.zeros(T + 1, np.int64)
    np.add.at(new_indptr, r + 1, 1)
    np.cumsum(new_indptr, out=new_indptr)
    return SparseData(new_indptr, c.astype(np.int64), v.astype(np.float32), n)
