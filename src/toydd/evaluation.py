"""The loss of one trained model on a data set, point by point (test losses, the construction's loss).

The fast kernel in float32, and a float64 fallback for the points where float32
overflowed (a model stopped at huge but finite weights). Beside training and
analysis rather than in either, so both can use it.
"""

from __future__ import annotations

import numpy as np

from . import data as data_mod
from .kernels import BatchData, loss_and_grads_cpu


def evaluate(params: dict[str, np.ndarray], data: data_mod.SparseData, importance: np.ndarray | None = None) -> np.ndarray:
    """Per-point loss of one model on ``data`` (T,), with the fast kernel."""
    m, n = params["W"].shape
    W = params["W"][None].astype(np.float32)
    b = params["b"][None].astype(np.float32)
    U = None if "W_up" not in params else np.ascontiguousarray(params["W_up"].T)[None].astype(np.float32)
    _, pl, _, _ = loss_and_grads_cpu(W, b, BatchData.stack([data]), U, importance)
    out = pl[0].copy()
    bad = ~np.isfinite(out)
    if bad.any():
        # The float32 kernel overflowed (a model stopped at huge but finite weights): float64 cannot
        # overflow for any float32 model (|W| <= 3.4e38 gives losses ~1e162), so redo those points there.
        out[bad] = evaluate_float64(params, data.rows(np.flatnonzero(bad)), importance)
    return out


def evaluate_float64(params: dict[str, np.ndarray], data: data_mod.SparseData,
                      importance: np.ndarray | None, chunk: int = 256) -> np.ndarray:
    """Per-point loss in float64, dense over chunks of points: the slow, overflow-free fallback of evaluate()."""
    W = params["W"].astype(np.float64)
    U = W if "W_up" not in params else params["W_up"].T.astype(np.float64)  # output weights, m x n
    b = params["b"].astype(np.float64)
    imp = np.ones(W.shape[1]) if importance is None else np.asarray(importance, np.float64)
    H = data_mod.hidden_vectors(data, W)  # (T, m), float64
    out = np.empty(data.T)
    for lo in range(0, data.T, chunk):
        idx = np.arange(lo, min(lo + chunk, data.T))
        X = data.rows(idx).to_dense().astype(np.float64)
        err = X - np.maximum(H[idx] @ U + b, 0.0)
        out[idx] = (err * err) @ imp
    return out
