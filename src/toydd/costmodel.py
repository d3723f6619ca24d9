"""How long a sweep will take on this machine, before it starts: a cost model of one training step.

A toy-model step costs ``a + b * work`` seconds, ``work = instances x (T + 64) x n x m``
(:meth:`toydd.jobs.ToyModels.cost` per step: every point's reconstruction is dense over
the n outputs; infinite data counts the online batch); a job adds ``overhead``
seconds (data, test set, metrics). An MNIST job costs ``mnist_b`` seconds per unit of
:meth:`toydd.mnist.MnistJobs.cost`. The coefficients are *measured here*:
:func:`calibrate` times a few short trainings (about 10 seconds) and caches the fit
per machine, toydd version and hot-path source (``HOT_PATH``) in ``~/.cache/toydd/`` (``TOYDD_CACHE_DIR`` moves it),
so the next plan is instant.

The toy steps are timed at initialization, where every feature is alive: the most a
dense step costs. Trained models skip dead features (and the tree-pruned step skips
settled regions), so real runs are usually faster than the estimate; BENCHMARKS.md
records how far off it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np



@dataclass(frozen=True)
class CostModel:
    a: float  # seconds per toy step, fixed (optimizer, Python)
    b: float  # seconds per unit of work per toy step
    overhead: float  # seconds per toy job beyond its steps
    mnist_b: float  # seconds per unit of MNIST cost
    machine: str
    calibrated_at: float
    threads: int

    def job_seconds(self, kind: str, config: Any) -> float:
        """Estimated seconds of one job on this machine, with the threads it was calibrated with."""
        from .jobs import get_kind

        units = get_kind(kind).cost(config)
        if kind == "mnist":
            return self.mnist_b * units
        return config.steps * self.a + self.b * units + self.overhead


# The modules whose code sets a step's speed: a change to any of them (a faster kernel) makes the cached
# calibration stale even when toydd's version number has not moved.
HOT_PATH = ("kernels.py", "_dense_kernels.py", "_sparse_kernels.py", "tree_kernels.py", "training.py", "mnist.py")


def kernels_digest() -> str:
    """A short hash of the hot-path modules' source."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in HOT_PATH:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:8]


def machine_id() -> str:
    """What the calibration depends on: CPU model, core count, Python, toydd's version and hot-path code."""
    from . import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}; {os.cpu_count()} CPU(s); python {platform.python_version()}; toydd {__version__}; "
            f"kernels {kernels_digest()}")


def cache_path() -> Path:
    base = Path(os.environ.get("TOYDD_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                          Path.home() / ".cache") / "toydd")
    digest = hashlib.sha256(machine_id().encode()).hexdigest()[:12]
    return base / f"costmodel-{digest}.json"


def _time_train(cfg) -> float:
    from .training import train

    t0 = time.perf_counter()
    train(cfg)
    return time.perf_counter() - t0


def calibrate(quick: bool = False) -> CostModel:
    """Time short trainings here and fit the model (about 10 s; ``quick``: about 3 s, for tests)."""
    from .config import TrainConfig
    from .jobs import TOY
    threads = int(os.environ.get("TOYDD_THREADS") or os.cpu_count() or 1)  # estimates assume the same threads

    # lr tiny: the state stays at initialization, where every feature is alive (the most a dense step costs).
    # A tiny size pins the fixed per-step cost (optimizer, Python), the larger ones the cost per unit of work.
    sizes = [(200, 20), (1_000, 500), (1_000, 10_000), (10_000, 2_000)] if not quick else [(100, 10), (300, 3_000)]
    s1, s2 = (5, 25) if not quick else (3, 9)
    base = dict(m=2, sparsity=0.99, lr=1e-9, test_size=200, snapshots=0, history_every=1_000_000)
    _time_train(TrainConfig(n=200, T=50, steps=2, **base))  # compile the kernels outside the timings
    works, per_step, overheads = [], [], []
    for n, T in sizes:
        c1 = TrainConfig(n=n, T=T, steps=s1, **base)
        t1, t2 = _time_train(c1), _time_train(c1.replace(steps=s2))
        step = max((t2 - t1) / (s2 - s1), 1e-7)
        works.append(TOY.cost(c1) / c1.steps)
        per_step.append(step)
        overheads.append(max(t1 - s1 * step, 0.0))
    A = np.stack([np.ones(len(works)), np.array(works)], 1)
    (a, b), *_ = np.linalg.lstsq(A, np.array(per_step), rcond=None)
    if b <= 0:  # noise on a busy machine: all the cost per unit of work
        a, b = 0.0, float(np.mean(np.array(per_step) / np.array(works)))
    a = max(float(a), 0.0)
    return CostModel(a=a, b=float(b), overhead=float(np.median(overheads)), mnist_b=_calibrate_mnist(quick),
                     machine=machine_id(), calibrated_at=time.time(), threads=threads)


def _calibrate_mnist(quick: bool) -> float:
    """Seconds per MNIST cost unit: a few minibatch steps of the 784-hidden-10 MLP, and one D* SVD."""
    import torch

    from .mnist import MnistConfig, MnistJobs

    hidden, batch, steps = (128, 64, 5) if quick else (512, 128, 20)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X = torch.rand(batch * steps, 784)
    y = torch.randint(0, 10, (batch * steps,))
    for _ in range(2):  # warm-up: torch's first calls pay for thread pools and allocations, not for the work
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[:batch]), y[:batch]).backward()
        opt.step()
    t0 = time.perf_counter()
    for k in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[k * batch:(k + 1) * batch]), y[k * batch:(k + 1) * batch]).backward()
        opt.step()
    t_epoch = time.perf_counter() - t0  # one "epoch" of batch * steps digits
    H = np.random.default_rng(0).random((batch * steps, hidden))
    t0 = time.perf_counter()
    np.linalg.svd(H, full_matrices=False)
    t_svd = time.perf_counter() - t0
    c = MnistConfig(T=batch * steps, hidden=hidden, epochs=1, checkpoints=(0, 1), batch_size=batch, data="sample")
    return (t_epoch + 2 * t_svd) / MnistJobs().cost(c)


def _sane(model: CostModel) -> bool:
    """A cached model whose numbers can make a plan (an edited or damaged cache held null, NaN or -1)."""
    rates = (model.a, model.b, model.overhead, model.mnist_b, model.calibrated_at)
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                for v in rates)
            and isinstance(model.threads, int) and model.threads >= 1 and isinstance(model.machine, str))


def load(recalibrate: bool = False, log=None) -> CostModel:
    """The cached model of this machine and version, or a fresh calibration (written atomically)."""
    from .storage import atomic_write_json

    path = cache_path()
    if not recalibrate and path.is_file():
        try:
            d = json.loads(path.read_text())
            model = CostModel(**d)
            if model.machine == machine_id() and _sane(model):
                return model
        except (OSError, ValueError, TypeError):
            pass  # unreadable or from another version: measure again
    if log:
        log("calibrating the cost model on this machine (about 10 s, once per machine, version and kernel code)...")
    model = calibrate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, asdict(model))
    except OSError:
        pass  # no cache: the next plan measures again
    return model


# --- the plan ------------------------------------------------------------------------------

HOURS_WARNING = 3.0  # beyond this the plan names a faster way to run it


def plan(experiments: list, out: str | os.PathLike | None, executor: str = "local", jobs: int = 1,
         model: CostModel | None = None) -> dict[str, Any]:
    """What a sweep (or ``reproduce``) would run, and how long it would take here; trains nothing.

    ``experiments``: :class:`toydd.experiments.Experiment` objects. Jobs already done in ``out`` are counted
    and left out of the estimate (a job shared by two experiments, like t-sweep and norms, is counted once), and
    so are jobs another process is training now (``running``); a job with a saved state in ``out/resume`` is
    estimated from the step it resumes at.
    """
    from .store import Store

    model = model or load()
    store = Store(out) if out is not None and Path(out).is_dir() else None
    resumes = {k: x["step"] for x in store.saved_states() for k in x["keys"]} if store is not None else {}
    workers = parallel_workers(executor, jobs)
    seen: set[str] = set()
    rows = []
    for exp in experiments:
        total, done, running, pending_s, pending = 0, 0, 0, 0.0, 0
        for c in exp.configs:
            k = c.key()
            total += 1
            if store is not None and store.is_done(k):
                done += 1
                continue
            if k in seen:
                continue  # trained by an earlier experiment of this plan
            seen.add(k)
            if store is not None and store.is_running(k):
                running += 1  # another sweep is training it: this one would wait, not train it
                continue
            pending += 1
            left = 1.0
            steps = getattr(c, "steps", 0) or 0
            if k in resumes and steps > 0:
                left = max(0.0, 1.0 - resumes[k] / steps)  # its saved state resumes there
            pending_s += left * model.job_seconds(exp.kind, c)
        rows.append({"experiment": exp.name, "preset": exp.preset, "kind": exp.kind, "jobs": total, "done": done,
                     "running": running, "to_train": pending, "cpu_seconds": pending_s,
                     "seconds": pending_s / workers})
    total_s = sum(r["seconds"] for r in rows)
    return {"machine": model.machine, "executor": executor, "jobs": jobs, "parallel": workers,
            "experiments": rows, "seconds": total_s, "advice": advice(total_s, executor, jobs, experiments)}


def parallel_workers(executor: str, jobs: int) -> float:
    """How many jobs' worth of work run at once: workers up to the cores here (Ray: the tasks in flight)."""
    cores = os.cpu_count() or 1
    if executor == "process":
        return float(max(1, min(jobs, cores)))
    if executor == "ray":
        return float(max(1, jobs))  # a cluster's size is unknown here: --jobs tasks in flight
    return 1.0


def advice(seconds: float, executor: str, jobs: int, experiments: list) -> list[str]:
    """The way out when a plan is beyond a few hours on this machine."""
    if seconds <= HOURS_WARNING * 3600:
        return []
    out = [f"This is {_duration(seconds)} on this machine: more than {HOURS_WARNING:g} hours."]
    cores = os.cpu_count() or 1
    if executor == "local" and cores > 1:
        out.append(f"--executor process --jobs {cores} runs {cores} batches at once here.")
    out.append("--executor ray on a cluster runs one task per batch, one GPU per task where there are GPUs "
               "(set RAY_ADDRESS); the store must be on a filesystem every node sees.")
    out.append("On a GPU: --device cuda (or auto) in the experiment's configs; the paper preset is meant for one.")
    if any(e.preset == "paper" for e in experiments):
        out.append("Or a smaller preset: --preset quick (n = 1,000, S = 0.99) shows the same phenomena in minutes.")
    return out


def _duration(s: float) -> str:
    if not math.isfinite(s):
        return "unknown"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def format_plan(p: dict[str, Any]) -> str:
    """A plan as a small table for people."""
    lines = [f"plan on this machine ({p['machine']}), executor {p['executor']}"
             + (f" x {p['jobs']}" if p["jobs"] > 1 else "") + ":"]
    w = max([len(r["experiment"]) for r in p["experiments"]] + [10])
    run = any(r.get("running") for r in p["experiments"])  # the column only when another sweep trains some
    rcol = f" {'running':>7}" if run else ""
    lines.append(f"  {'experiment':<{w}}  {'jobs':>6} {'done':>6}{rcol} {'to train':>8}  {'estimate':>9}")
    for r in p["experiments"]:
        rv = f" {r.get('running', 0):>7}" if run else ""
        lines.append(f"  {r['experiment']:<{w}}  {r['jobs']:>6} {r['done']:>6}{rv} {r['to_train']:>8}  "
                     f"{_duration(r['seconds']):>9}")
    lines.append(f"  {'total':<{w}}  {'':>6} {'':>6}{' ' * len(rcol)} {'':>8}  {_duration(p['seconds']):>9}")
    lines.append("  (steps timed with every feature alive: trained models skip dead features and large T takes the "
                 "tree-pruned step, so independent jobs took 1.5-13x less; chains that train in waves, like the "
                 "crossover's, took up to 2.3x more: BENCHMARKS.md)")
    lines += [f"note: {a}" for a in p["advice"]]
    return "\n".join(lines)
