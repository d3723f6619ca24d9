"""Is a trained model a global optimum or an optimization failure?

The paper's authors later suspected that part of the middle regime is an
optimization failure. One way to tell: build an explicit memorizing solution
for the same training set and compare its loss with the trained model's.

The construction (tied weights, any m >= 2): put the hidden vectors of the T
training points on a regular T-gon of radius r in the first two hidden
dimensions, ``h_t = r (cos 2 pi t/T, sin 2 pi t/T, 0, ...)``. A feature used
by exactly one point t gets ``W_i = x_ti h_t / q_t`` and bias
``b_i = -x_ti (r^2/q_t - 1)``, where ``q_t`` is the squared norm of t's
unshared features; features used by several points are dropped (W_i = 0,
b_i = 0). Then ``W x_t = h_t``; point t's own features come back exactly and a
neighbour's are switched off as soon as ``r^2 (1 - cos 2 pi/T) >= q_t``. Its
loss is just the mass of the shared features: an achievable memorizing loss
(the paper's "memorize any number of orthonormal examples", made concrete for
real, slightly overlapping sparse points). If training ends far above it, a
better memorizing solution exists and training failed to find it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import SparseData
from .evaluation import evaluate


@dataclass
class Construction:
    W: np.ndarray  # (m, n)
    b: np.ndarray  # (n,)
    train_loss: float
    radius: float


def memorizing_construction(X: SparseData, m: int = 2) -> Construction:
    """The explicit T-gon memorizing solution for training set ``X`` (see module doc)."""
    if m < 2:
        raise ValueError("a T-gon needs m >= 2")
    T, n = X.T, X.n
    rows = np.repeat(np.arange(T), np.diff(X.indptr))
    x = X.values.astype(np.float64)
    uses = np.bincount(X.indices, minlength=n)
    own = uses[X.indices] == 1  # nonzeros whose feature no other point uses
    q = np.bincount(rows[own], weights=x[own] ** 2, minlength=T)  # (T,)
    ang = 2 * np.pi * np.arange(T) / T
    c = math.cos(2 * math.pi / T) if T > 1 else -1.0
    r = math.sqrt(max(q.max(initial=0.0), 1e-12) / (1.0 - c))
    W = np.zeros((m, n))
    b = np.zeros(n)
    i, t, xv = X.indices[own], rows[own], x[own]
    ok = q[t] > 0
    i, t, xv = i[ok], t[ok], xv[ok]
    W[0, i] = xv * r * np.cos(ang[t]) / q[t]
    W[1, i] = xv * r * np.sin(ang[t]) / q[t]
    b[i] = -xv * (r * r / q[t] - 1.0)
    p = {"W": W.astype(np.float32), "b": b.astype(np.float32)}
    return Construction(p["W"], p["b"], float(evaluate(p, X).mean()), float(r))


def optimization_gap(run) -> dict:
    """Trained training loss vs the explicit memorizing construction's, for a run with finite T.

    ``gap`` > 0 means the construction memorizes better than training did: the
    trained model is not a global optimum (an optimization failure, if the
    regime is memorizing or transition).
    """
    X = run.training_data()
    con = memorizing_construction(X, max(2, run.config.m))
    trained = float(run.metrics["train_loss"])
    return {"trained_train_loss": trained, "construction_train_loss": con.train_loss,
            "gap": trained - con.train_loss, "construction_radius": con.radius,
            "construction_weight_norm": float(np.linalg.norm(con.W))}
