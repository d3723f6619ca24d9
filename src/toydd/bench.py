"""``toydd bench``: one training step, fast path vs the dense-autograd reference.

The reference is what public replications do: a dense ``T x n`` float32 X,
``relu(X W^T W + b)``, autograd, ``torch.optim.AdamW``, one Python step per
iteration. The fast path is one step of :mod:`toydd.training`'s loop (numba
loss/gradient kernel + fused AdamW). Both are timed in this process, on the
same data, from the same Xavier init (b = 0, where every feature is alive:
the worst case for dead-feature skipping, so this understates a real run's
average speed-up; see BENCHMARKS.md for whole trainings).

Peak memory is measured in a child process per (path, T), as the growth of
peak RSS over the same process after imports, so the numbers are not
polluted by each other.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def _median_time(fn, seconds: float, min_reps: int = 3, max_reps: int = 10_000) -> float:
    fn()  # warm-up (compilation, caches)
    times = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_reps or (time.perf_counter() < t_end and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _make_reference(n: int, m: int, T: int, sparsity: float):
    import torch

    from .data import training_set
    from .training import xavier_normal

    X = torch.from_numpy(training_set(n, sparsity, T, 0).to_dense())
    p = xavier_normal(m, n, 0, tied=True)
    W = torch.nn.Parameter(torch.from_numpy(p["W"]))
    b = torch.nn.Parameter(torch.from_numpy(p["b"]))
    opt = torch.optim.AdamW([W, b], lr=1e-3, weight_decay=1e-2)

    def step():
        out = torch.relu(X @ W.T @ W + b)
        loss = ((X - out) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _make_fast(n: int, m: int, T: int, sparsity: float):
    from .config import TrainConfig
    from .data import training_set
    from .kernels import BatchData
    from .training import ParamBatch, _NumbaBackend, xavier_normal

    data = BatchData.stack([training_set(n, sparsity, T, 0)])
    P = ParamBatch(1, m, n, True)
    P.set(0, xavier_normal(m, n, 0, tied=True))
    init = P.flat.copy()
    be = _NumbaBackend(P, np.ones(n, np.float32), np.array([1e-2]), TrainConfig(n=n, m=m, T=T))
    live = np.ones(1, bool)
    state = {"s": 0}

    def step():
        # Tiny lr keeps the state at init (all features alive) across repetitions.
        be.loss_and_grads(data)
        state["s"] += 1
        be.adamw(live, 1e-12, state["s"])

    def reset():
        P.flat[:] = init

    return step, reset


def _child(path: str, n: int, m: int, T: int, sparsity: float, steps: int) -> None:
    """Run in a subprocess: print the growth of peak RSS (bytes) over a few steps."""
    import torch  # noqa: F401  (import cost is not the path's memory)

    from . import kernels  # noqa: F401

    # Linux: writing 5 to clear_refs resets the peak-RSS mark (VmHWM), so the
    # import's own transient peak does not hide the path's.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if path == "reference":
        step = _make_reference(n, m, T, sparsity)
    else:
        step, _ = _make_fast(n, m, T, sparsity)
    for _ in range(steps):
        step()
    try:
        peak = _status_kib("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_bytes": (peak - base) * 1024}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)


def peak_memory(path: str, n: int, m: int, T: int, sparsity: float = 0.999, steps: int = 2) -> float | None:
    """Peak memory (bytes) of ``steps`` training steps of ``path`` in a fresh process."""
    code = f"from toydd.bench import _child; _child({path!r}, {n}, {m}, {T}, {sparsity}, {steps})"
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
        return float(json.loads(p.stdout.strip().splitlines()[-1])["peak_bytes"])
    except Exception:
        return None


def machine() -> dict:
    import numba
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from . import kernels

    return {"cpu": cpu, "cores": os.cpu_count(), "numba_threads": kernels._MAX_THREADS,
            "python": platform.python_version(), "torch": torch.__version__, "numba": numba.__version__,
            "torch_threads": torch.get_num_threads()}


def run(n: int = 10_000, m: int = 2, Ts: list[int] | None = None, reference_max_T: int = 10_000,
        seconds: float = 2.0, sparsity: float = 0.999, memory: bool = True) -> dict:
    """Time a training step of each path for each T; returns a JSON-able dict."""
    from .errors import ToyddError

    import math

    Ts = Ts or [100, 1_000, 10_000]

    def count(name: str, v, least: int = 1) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) or v < least:
            raise ToyddError(f"{name} must be {'a positive' if least else 'a non-negative'} integer, got {v!r}"
                             + (" (bench times a fixed training set: no infinite data)" if name == "T" and v == math.inf else ""))

    count("n", n)
    count("m", m)
    for T in Ts:
        count("T", T)
    count("reference max T", reference_max_T, least=0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (math.isfinite(seconds) and seconds > 0):
        raise ToyddError(f"seconds must be a positive number, got {seconds!r}")
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ToyddError(f"sparsity S must be in [0, 1), got {sparsity!r}")
    Ts = [int(T) for T in Ts]
    rows = []
    for T in Ts:
        row: dict = {"n": n, "m": m, "T": T}
        fast, reset = _make_fast(n, m, T, sparsity)
        row["fast_ms"] = 1e3 * _median_time(fast, seconds)
        reset()
        if T <= reference_max_T:
            ref = _make_reference(n, m, T, sparsity)
            row["reference_ms"] = 1e3 * _median_time(ref, seconds, min_reps=2)
            row["speedup"] = row["reference_ms"] / row["fast_ms"]
            del ref
        else:
            row["reference_ms"] = row["speedup"] = None
        if memory:
            row["fast_peak_mib"] = _mib(peak_memory("fast", n, m, T, sparsity))
            row["reference_peak_mib"] = _mib(peak_memory("reference", n, m, T, sparsity)) if T <= reference_max_T else None
        rows.append(row)
    return {"machine": machine(), "state": "Xavier init, b = 0 (no feature skippable)", "rows": rows}


def _mib(x: float | None) -> float | None:
    return None if x is None else round(x / 2**20, 1)


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("n", "m", "T", "fast ms/step", "reference ms/step", "speed-up", "fast peak MiB", "reference peak MiB",
              title=f"one training step ({res['state']})")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for r in res["rows"]:
        t.add_row(str(r["n"]), str(r["m"]), str(r["T"]), f(r["fast_ms"], ".3f"), f(r["reference_ms"], ".1f"),
                  f(r["speedup"], ".0f") + ("x" if r["speedup"] else ""), f(r.get("fast_peak_mib"), ".0f"),
                  f(r.get("reference_peak_mib"), ".0f"))
    con = Console()
    con.print(t)
    mc = res["machine"]
    con.print(f"{mc['cpu']}, {mc['cores']} cores; python {mc['python']}, torch {mc['torch']}, numba {mc['numba']}")
