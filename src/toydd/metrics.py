"""Exact geometry and loss metrics of trained toy models.

One dimensionality function serves features (the columns ``W_i`` of ``W``) and
data points (the hidden vectors ``h_i = W x_i``): given vectors ``v_1..v_N`` in
R^d it returns

    D_i = ||v_i||^2 / sum_j (v_i_hat . v_j)^2  =  ||v_i||^2 / (v_i_hat^T G v_i_hat),

with ``G = sum_j v_j v_j^T`` (d x d). Using G makes it O(N d^2) instead of
O(N^2 d). Zero vectors get dimensionality 0, never NaN.

Maximal data dimensionality ``D*_i = sup_v (v.h_i)^2 / sum_j (v.h_j)^2`` is a
generalized Rayleigh quotient whose supremum is the leverage score
``h_i^T G^+ h_i`` (G^+ the pseudo-inverse): exact, no gradient ascent.

All three public functions accept numpy arrays or torch tensors and return the
same kind they were given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ArrayLike = Any  # np.ndarray | torch.Tensor


def _to_numpy(a: ArrayLike) -> tuple[np.ndarray, Any]:
    """float64 numpy copy of ``a`` and a function converting a result back to a's kind."""
    if type(a).__module__.startswith("torch"):
        import torch

        dev, dt = a.device, a.dtype if a.dtype.is_floating_point else torch.float32
        return a.detach().cpu().double().numpy(), lambda r: torch.as_tensor(r, dtype=dt, device=dev)
    arr = np.asarray(a)
    dt = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return arr.astype(np.float64), lambda r: np.asarray(r, dtype=dt)


def _dimensionality_rows(V: np.ndarray) -> np.ndarray:
    """Dimensionality of each row of V (N x d), in float64."""
    if V.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {V.shape}")
    G = V.T @ V  # (d, d)
    sq = np.einsum("nd,nd->n", V, V)  # ||v_i||^2
    # v_i^T G v_i = sum_j (v_i . v_j)^2 ; dividing by ||v_i||^2 gives the hat form.
    quad = np.einsum("nd,de,ne->n", V, G, V)
    # D_i = ||v_i||^4 / (v_i^T G v_i); quad >= ||v_i||^4 > 0 for nonzero v_i.
    out = np.zeros(len(V))
    nz = sq > 0
    out[nz] = sq[nz] ** 2 / quad[nz]
    return out


def feature_dimensionality(W: ArrayLike) -> ArrayLike:
    """D_f for each feature: ``W`` is m x n (features are columns) -> n values."""
    Wn, back = _to_numpy(W)
    return back(_dimensionality_rows(Wn.T))


def data_dimensionality(H: ArrayLike) -> ArrayLike:
    """D_X for each point: ``H`` is T x m (rows h_i = W x_i) -> T values. A T-gon gives m/T."""
    Hn, back = _to_numpy(H)
    return back(_dimensionality_rows(Hn))


def max_data_dimensionality(H: ArrayLike, rcond: float = 1e-10) -> ArrayLike:
    """D* for each point: ``H`` is T x d (any activations) -> T values, h_i^T G^+ h_i.

    Eigen-directions of G with eigenvalue below ``rcond`` times the largest are
    treated as absent (they carry no data). Values lie in [0, 1] and sum to rank(G).
    """
    Hn, back = _to_numpy(H)
    return back(dstar_decomposition(Hn, rcond)[0])


def dstar_decomposition(H: np.ndarray, rcond: float = 1e-10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D* of every row of ``H`` (T x d, numpy) with what a new point needs, from one SVD of H.

    Returns (D* (T,), the kept singular values s (k,), the right singular vectors V (d x k)):
    k = len(s) is the numerical rank of G = H^T H, s[0] / s[-1] its square-root condition number,
    and a new point h (a held-out example) has D* = ||h V / s||^2 against the same G (it can
    exceed 1). The SVD of H is better conditioned than inverting G: h_i^T G^+ h_i = ||U_i||^2.
    """
    if H.ndim != 2:
        raise ValueError(f"expected a 2-D array (T x d), got shape {H.shape}")
    if H.size == 0 or not np.any(H):
        return np.zeros(len(H)), np.zeros(0), np.zeros((H.shape[1], 0))
    U, s, Vt = np.linalg.svd(H, full_matrices=False)
    keep = s > rcond * s[0]
    return np.einsum("tk,tk->t", U[:, keep], U[:, keep]), s[keep], Vt[keep].T


def max_data_dimensionality_bruteforce(H: np.ndarray, directions: int = 20_000) -> np.ndarray:
    """Sup over ``directions`` evenly spaced unit vectors (2-D only): for tests."""
    H = np.asarray(H, dtype=np.float64)
    assert H.shape[1] == 2, "brute force only in 2-D"
    ang = np.linspace(0, np.pi, directions, endpoint=False)
    V = np.stack([np.cos(ang), np.sin(ang)], 1)  # (K, 2)
    P = (H @ V.T) ** 2  # (T, K)
    denom = P.sum(0)
    ratio = np.divide(P, denom, out=np.zeros_like(P), where=denom > 0)
    return ratio.max(1)


# --- summary metrics of one trained model --------------------------------------

REPRESENTED_NORM = 0.5


def represented_features(W: np.ndarray) -> int:
    """Number of features with ``||W_i|| > 0.5``: features the model stores (a pentagon has 5)."""
    return int(np.sum(np.linalg.norm(np.asarray(W, np.float64), axis=0) > REPRESENTED_NORM))


def regime(feature_dims: np.ndarray, data_dims: np.ndarray | None, m: int, T: float) -> str:
    """Label a model ``memorizing``, ``generalizing`` or ``transition``.

    The rule compares the objects that hold the most dimension: ``top_f``, the
    mean of the ``m`` largest feature dimensionalities, and ``top_x``, the mean of
    the ``m`` largest data dimensionalities.

    * memorizing: ``top_x >= top_f`` and the median D_X is at least half the
      T-gon share ``m/T`` (the training points, not the features, share the
      hidden space);
    * generalizing: ``top_f >= 0.1`` and ``top_f >= 2 top_x`` (a few features
      hold a real fraction of a dimension each, as in the pentagon, D_f ~ 0.3);
    * transition: neither (both dimensionalities low, the paper's middle regime).

    With infinite data there are no training points: generalizing iff ``top_f >= 0.1``.
    It is a reading aid; figures always show the raw dimensionalities.
    """
    fd = np.sort(np.asarray(feature_dims, np.float64))[::-1]
    top_f = float(fd[:m].mean()) if len(fd) else 0.0
    if data_dims is None or len(data_dims) == 0 or math.isinf(T):
        return "generalizing" if top_f >= 0.1 else "transition"
    dd = np.asarray(data_dims, np.float64)
    top_x = float(np.sort(dd)[::-1][:m].mean())
    if top_x >= top_f and np.median(dd) * len(dd) / m >= 0.5:
        return "memorizing"
    if top_f >= 0.1 and top_f >= 2 * top_x:
        return "generalizing"
    return "transition"


def loss_summary(point_losses: np.ndarray) -> tuple[float, float]:
    """Mean loss over points and its standard error."""
    p = np.asarray(point_losses, np.float64)
    if len(p) == 0:
        return float("nan"), float("nan")
    se = float(p.std(ddof=1) / math.sqrt(len(p))) if len(p) > 1 else 0.0
    return float(p.mean()), se
