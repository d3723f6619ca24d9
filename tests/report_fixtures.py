"""Small synthetic sweep directories for the plot and report tests.

Training is not needed to test figures: a run is built directly with known
geometry, so tests can assert on what the figures must show.

* Small T (``T < n / 4``): an explicitly constructed memorizing solution. The
  hidden vectors of the training points are placed on a regular T-gon
  (``W = P X^+``), so ``D_X = m/T`` exactly for every point.
* Large T and ``T = inf``: the idealised generalizing solution, five features on
  a pentagon and every other column small.

Runs are written with :func:`toydd.storage.save_run` into ``DIR/runs/<key>`` and
listed in ``DIR/experiments/<name>.json`` manifests, the layout documented in
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from toydd import data as data_mod
from toydd.config import TrainConfig
from toydd.metrics import data_dimensionality, feature_dimensionality, regime, represented_features
from toydd.storage import RunResult, atomic_write_json, save_run

T_GRID = [3, 5, 10, 30, 100, 300, 1000, math.inf]


def synthetic_loss(T: float, m: int = 2, weight_decay: float = 1e-2, steps: int = 200, seed: int = 0) -> float:
    """A double-descent-shaped test loss: a bump at T = 100 whose height grows with steps, shrinks with wd."""
    if math.isinf(T):
        x = 5.0
    else:
        x = math.log10(T)
    bump = 0.08 * math.exp(-((x - 2.0) ** 2) / 0.15) * (steps / 200) * (0.01 / max(weight_decay, 1e-4)) ** 0.5
    if weight_decay >= 1.0:
        bump = 0.0
    base = 1.0 - 0.05 * (1 - math.exp(-x / 2)) - 0.01 * m
    return base + bump + 0.002 * math.sin(seed + 7 * x)


def synthetic_training_matrix(cfg: TrainConfig) -> np.ndarray:
    """The run's training set, dense (small n only), exactly as training and the plots regenerate it."""
    return data_mod.training_set(cfg.n, cfg.sparsity, int(cfg.T), cfg.data_seed, cfg.repeated_points,
                                 cfg.repeats).to_dense().astype(np.float64)


def repeated_runs(n: int = 100, sparsity: float = 0.9) -> list[RunResult]:
    """One repeated point x R inside T: memorized (fraction 1) exactly when R > 0.4 T/N."""
    runs = []
    for T in (200, 1000, 5000):
        for R in (2, 5, 20):
            r = synthetic_run(T, n=n, sparsity=sparsity, snapshots=0, repeated_points=1, repeats=R)
            r.metrics["repeated_memorized_fraction"] = 1.0 if R > 0.4 * T / n else 0.0
            r.metrics["repeated_dx_percentile"] = [0.9995 if R > 0.4 * T / n else 0.5]
            runs.append(r)
    return runs


def _polygon(k: int, m: int, radius: float) -> np.ndarray:
    """k points: a regular k-gon in the first two of m dimensions (m x k); m = 1 gets its cosines."""
    ang = 2 * np.pi * np.arange(k) / k
    P = np.zeros((m, k))
    P[0] = radius * np.cos(ang)
    if m > 1:
        P[1] = radius * np.sin(ang)
    return P


def synthetic_run(T: float, m: int = 2, n: int = 60, sparsity: float = 0.9, data_seed: int = 0,
                  steps: int = 200, weight_decay: float = 1e-2, snapshots: int = 6,
                  test_loss: float | None = None, **config) -> RunResult:
    """A RunResult with the geometry of a memorizing (small T) or generalizing (large T) model."""
    cfg = TrainConfig(n=n, m=m, T=T, sparsity=sparsity, data_seed=data_seed, steps=steps,
                      weight_decay=weight_decay, test_size=100, snapshots=snapshots, **config)
    rng = np.random.default_rng([data_seed, 11])
    radius = 1.0 + 0.3 * math.log10(T) if not math.isinf(T) else 1.0
    if not cfg.infinite and T < n / 4:
        X = synthetic_training_matrix(cfg)
        W = _polygon(int(T), m, radius) @ np.linalg.pinv(X.T)  # W x_j = p_j exactly
    else:
        W = 0.03 * rng.standard_normal((m, n))
        W[:, :5] = _polygon(5, m, 1.0)
    b = -0.1 * np.ones(n)
    arrays = {"feature_dims": feature_dimensionality(W).astype(np.float32)}
    if not cfg.infinite:
        X = synthetic_training_matrix(cfg)
        H = X @ W.T
        arrays["H"] = H.astype(np.float32)
        arrays["data_dims"] = data_dimensionality(H).astype(np.float32)
    dd = arrays.get("data_dims")
    fd = arrays["feature_dims"]
    loss = synthetic_loss(T, m, weight_decay, steps, data_seed) if test_loss is None else test_loss
    metrics = {
        "train_loss": 0.5 * loss, "test_loss": loss, "test_loss_se": 0.004,
        "weight_norm": float(np.linalg.norm(W)), "bias_norm": float(np.linalg.norm(b)),
        "max_feature_dim": float(fd.max()), "feature_dims_top": np.sort(fd)[::-1][:10].tolist(),
        "represented_features": represented_features(W),
        "regime": regime(fd, dd, m, T),
        "mean_data_dim": float(dd.mean()) if dd is not None else None,
        "median_data_dim": float(np.median(dd)) if dd is not None else None,
        "hidden_norm_max": float(np.linalg.norm(arrays["H"], axis=1).max()) if dd is not None else None,
        "steps": steps, "seconds": 0.1, "failed_step": None, "best_init_seed": 0,
        "instances": [{"init_seed": 0, "train_loss": 0.5 * loss, "test_loss": loss, "failed_step": None}],
    }
    K = 20
    loss_steps = np.linspace(0, steps - 1, K).astype(np.int64)
    snap_steps = np.unique(np.geomspace(1, steps, snapshots).astype(np.int64)) - 1
    W0 = 0.1 * rng.standard_normal((m, n))
    frac = (snap_steps / max(steps - 1, 1))[:, None, None]
    history = {
        "loss_steps": loss_steps,
        "train_loss": (0.5 * loss + np.exp(-loss_steps / 40.0))[None].astype(np.float32),
        "snapshot_steps": snap_steps,
        "snapshot_W": ((1 - frac) * W0 + frac * W).astype(np.float32),
        "snapshot_b": np.repeat(b[None], len(snap_steps), 0).astype(np.float32),
    }
    params = {"W": W.astype(np.float32), "b": b.astype(np.float32)}
    return RunResult(config=cfg, metrics=metrics, params=params, arrays=arrays, history=history)


def write_experiment(root: Path, name: str, runs: Iterable[RunResult], params: dict | None = None,
                     preset: str = "test", extra_keys: Iterable[str] = ()) -> list[str]:
    """Save runs under ``root/runs`` and their manifest under ``root/experiments/<name>.json``."""
    runs = list(runs)
    keys = []
    for r in runs:
        k = r.config.key()
        if not (root / "runs" / k).exists():
            save_run(root / "runs" / k, r)
        keys.append(k)
    manifest = {"name": name, "preset": preset, "description": f"synthetic {name} for tests",
                "keys": keys + list(extra_keys), "configs": [r.config.to_dict() for r in runs],
                "params": params or {}}
    atomic_write_json(root / "experiments" / f"{name}.json", manifest)
    return keys


def t_sweep_runs(Ts=T_GRID, seeds=(0, 1), m: int = 2, **kw) -> list[RunResult]:
    return [synthetic_run(T, m=m, data_seed=s, **kw) for T in Ts for s in seeds]


def make_store(root: Path, experiments: Iterable[str] = ("t-sweep", "tm-grid", "weight-decay", "epochs", "sparsity")) -> Path:
    """A sweep directory holding the named synthetic experiments (small: builds in a few seconds)."""
    root = Path(root)
    exps = set(experiments)
    if "t-sweep" in exps:
        write_experiment(root, "t-sweep", t_sweep_runs(), params={"vector_plot_T": [3, 10, 100, 1000, "inf"]})
    if "tm-grid" in exps:
        write_experiment(root, "tm-grid", [synthetic_run(T, m=m, data_seed=s, snapshots=0)
                                           for T in [3, 10, 100, 1000] for m in (1, 2, 3) for s in (0, 1)])
    if "weight-decay" in exps:
        write_experiment(root, "weight-decay", [synthetic_run(T, m=4, weight_decay=wd, snapshots=0)
                                                for T in [10, 30, 100, 300, 1000] for wd in (0.0, 1e-2, 1.0)])
    if "epochs" in exps:
        write_experiment(root, "epochs", [synthetic_run(T, m=4, steps=st, snapshots=0)
                                          for T in [10, 30, 100, 300, 1000] for st in (100, 200, 400)])
    if "sparsity" in exps:
        runs = []
        for S in (0.8, 0.9):
            for seen in (1, 3, 10, 30, 100):  # expected occurrences of each feature, T(1-S)
                T = int(round(seen / (1 - S)))
                r = synthetic_run(T, n=80, sparsity=S, snapshots=0)
                # Make max D_f jump once each feature is seen ~10 times, as Jermyn found.
                r.metrics["max_feature_dim"] = 0.35 if seen >= 10 else 0.05
                runs.append(r)
        write_experiment(root, "sparsity", runs)
    if "repeated" in exps:
        write_experiment(root, "repeated", repeated_runs())
    return root


def read_manifest(root: Path, name: str) -> dict:
    return json.loads((Path(root) / "experiments" / f"{name}.json").read_text())
