"""toydd: superposition, memorization and double descent in toy models.

Quick start (from a notebook)::

    import toydd
    run = toydd.train(toydd.TrainConfig(n=1000, m=2, T=5, sparsity=0.99, steps=3000, lr=1e-2, init_seeds=4))
    run                                     # config, headline metrics, array shapes
    run.arrays["data_dims"]                 # D_X per training point, ~ m/T = 0.4 each: a memorized pentagon
    toydd.metrics.feature_dimensionality(run.W)   # D_f per feature

Every name (``TrainConfig``, ``train``, ``train_batch``, ``load_run``, ``save_run``,
``RunResult``, ``run_sweep``, ``load_table``, ``ToyddError``) and the submodules
(``toydd.metrics``, ``toydd.plots``, ...) are loaded on first use: importing toydd
imports nothing else (no NumPy, no kernels, no matplotlib), so the ``toydd`` command
can catch Ctrl-C before its first heavy import (see ``_entry``). They are listed by
``dir(toydd)`` (so they tab-complete).
"""

__version__ = "0.1.0"

import importlib as _importlib

# Lazy names: where each one lives.
_LAZY = {
    "TrainConfig": "config", "ToyddError": "errors",
    "train": "training", "train_batch": "training",
    "load_run": "storage", "save_run": "storage", "RunResult": "storage",
    "run_sweep": "sweep", "load_table": "sweep",
}
_SUBMODULES = ("analysis", "config", "data", "errors", "experiments", "metrics", "mnist", "plots", "plots_mnist",
               "replication", "report", "storage", "sweep", "training")

__all__ = ["metrics", *_LAZY]


def __getattr__(name):  # lazy: importing toydd must import nothing heavy
    if name in _LAZY:
        return getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'toydd' has no attribute {name!r}")


def __dir__():
    public = {n for n in globals() if not n.startswith("_") or n.startswith("__")}
    return sorted(public | set(_LAZY) | set(_SUBMODULES))
