"""toydd: superposition, memorization and double descent in toy models.

Quick start (from a notebook)::

    import toydd
    run = toydd.train(toydd.TrainConfig(n=1000, m=2, T=5, sparsity=0.99, steps=5000))
    run.metrics["data_dims"]        # ~ m/T = 0.4 for every point: a memorized pentagon of points
    toydd.metrics.feature_dimensionality(run.W)
"""

__version__ = "0.1.0"

from . import metrics  # noqa: E402,F401
from .config import TrainConfig  # noqa: E402,F401
from .errors import ToyddError  # noqa: E402,F401


def __getattr__(name):  # lazy: importing toydd must not compile kernels
    if name in ("train", "train_batch"):
        from . import training as _t

        return getattr(_t, name)
    if name in ("load_run", "save_run", "RunResult"):
        from . import storage as _s

        return getattr(_s, name)
    if name in ("run_sweep", "load_table"):
        from . import sweep as _w

        return getattr(_w, name)
    raise AttributeError(name)
