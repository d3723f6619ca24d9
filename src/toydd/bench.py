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
import math
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


def _interleaved_times(fns: list, seconds: float, min_reps: int = 3, max_reps: int = 10_000) -> list[float]:
    """Median seconds of each fn, timed in turns (A B C A B C ...) so that a load that comes
    and goes on a shared machine weighs on every fn alike."""
    for fn in fns:
        fn()  # warm-up (compilation, caches)
    times: list[list[float]] = [[] for _ in fns]
    t_end = time.perf_counter() + seconds
    while len(times[0]) < min_reps or (time.perf_counter() < t_end and len(times[0]) < max_reps):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


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


def _make_fast(n: int, m: int, T: int, sparsity: float, kernel: str | None = None,
               params: dict | None = None, data=None):
    """One training step of toydd's loop at ``params`` (default: Xavier init, seed 0)."""
    from .config import TrainConfig
    from .data import training_set
    from .kernels import BatchData
    from .training import ParamBatch, NumbaBackend, xavier_normal

    data = BatchData.stack([training_set(n, sparsity, T, 0)]) if data is None else data
    P = ParamBatch(1, m, n, True)
    P.set(0, xavier_normal(m, n, 0, tied=True) if params is None else params)
    init = P.flat.copy()
    be = NumbaBackend(P, np.ones(n, np.float32), np.array([1e-2]), TrainConfig(n=n, m=m, T=T), kernel)
    live = np.ones(1, bool)
    state = {"s": 0}

    def step():
        # Tiny lr keeps the state (at init: all features alive) across repetitions.
        be.loss_and_grads(data)
        state["s"] += 1
        be.adamw(live, 1e-12, state["s"])

    def reset():
        P.flat[:] = init

    step.backend = be  # the kernel's workspace (which path ran) for the kernel scan
    return step, reset


def _child(path: str, n: int, m: int, T: int, sparsity: float, steps: int, kernel: str | None = None,
           states: str | None = None, state_step: int | None = None) -> None:
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
        params = None if states is None else load_states(states, [state_step])[0][1]
        step, _ = _make_fast(n, m, T, sparsity, kernel, params)
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


def peak_memory(path: str, n: int, m: int, T: int, sparsity: float = 0.999, steps: int = 2,
                kernel: str | None = None, states: str | None = None, state_step: int | None = None) -> float | None:
    """Peak memory (bytes) of ``steps`` training steps of ``path`` in a fresh process."""
    code = (f"from toydd.bench import _child; _child({path!r}, {n}, {m}, {T}, {sparsity}, {steps}, {kernel!r}, "
            f"{states!r}, {state_step!r})")
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
    from . import threads

    return {"cpu": cpu, "cores": os.cpu_count(), "numba_threads": threads.MAX_THREADS,
            "python": platform.python_version(), "torch": torch.__version__, "numba": numba.__version__,
            "torch_threads": torch.get_num_threads(), "threading_layer": _layer()}


def _layer() -> str:
    """numba's threading layer once a parallel kernel ran (threads.LAYER's choice before), with OpenMP's spin."""
    import numba

    from . import threads

    try:
        name = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return threads.LAYER
    return threads.LAYER if name == "omp" and threads.LAYER.startswith("omp") else name


N, M = 10_000, 2  # the paper's model, bench's default


def run(n: int = N, m: int = M, Ts: list[int] | None = None, reference_max_T: int = 10_000,
        seconds: float = 2.0, sparsity: float = 0.999, memory: bool = True) -> dict:
    """Time a training step of each path for each T; returns a JSON-able dict."""
    Ts = Ts or [100, 1_000, 10_000]
    _check(n, m, Ts, seconds, sparsity, reference_max_T)
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


# --- dense vs tree kernel over T (issue 13) -------------------------------------------

def load_states(path: str, steps: list[int] | None) -> list[tuple[str, dict]]:
    """(label, {"W", "b"}) of the snapshots of a saved run (benchmarks/tree_states.py's .npz,
    or a run's history.safetensors with snapshot_steps / snapshot_W / snapshot_b).

    A file that cannot be read, lacks the snapshots, or holds arrays of the wrong shape or values (NaN, inf,
    complex, beyond float32, fractional steps) is a ToyddError naming it, as for every input file."""
    from .data import check_real_values
    from .errors import ToyddError
    from .storage import read_arrays

    names = ("snapshot_steps", "snapshot_W", "snapshot_b") if str(path).endswith(".safetensors") else ("steps", "W", "b")
    z = read_arrays(path, "states file")
    if any(k not in z for k in names):
        raise ToyddError(f"states file {path} holds no snapshots: it needs arrays {', '.join(names)} (a "
                         f"benchmarks/tree_states.py .npz, or a run's history.safetensors trained with --snapshots)")
    have, Ws, bs = (z[k] for k in names)
    for a, name in zip((have, Ws, bs), names):
        check_real_values(a, str(path), name)
    if not (have.ndim == 1 and Ws.ndim == 3 and bs.ndim == 2 and len(have) == len(Ws) == len(bs) >= 1
            and bs.shape[1] == Ws.shape[2] and Ws.shape[1] >= 1 and Ws.shape[2] >= 1):
        raise ToyddError(f"states file {path}: snapshots of the wrong shapes: {names[0]} {have.shape}, {names[1]} "
                         f"{Ws.shape}, {names[2]} {bs.shape} (need (k,), (k, m, n) and (k, n), k >= 1)")
    if np.any(have != np.round(have)):
        raise ToyddError(f"states file {path}: {names[0]} must be whole step numbers, got {have.tolist()[:5]}")
    have = [int(x) for x in have]
    want = have if steps is None else steps
    out = []
    for st in want:
        if st not in have:
            raise ToyddError(f"{path}: no snapshot at step {st} (have {have})")
        k = have.index(st)
        out.append((f"step {st}", {"W": np.ascontiguousarray(Ws[k], np.float32),
                                   "b": np.ascontiguousarray(bs[k], np.float32)}))
    return out


def _check(n, m, Ts, seconds, sparsity, reference_max_T: int = 0) -> None:
    """bench's arguments, one ToyddError each (run and run_kernels alike)."""
    from .errors import ToyddError

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


def run_kernels(n: int | None = None, m: int | None = None, Ts: list[int] | None = None,
                kernels: list[str] | None = None, states: str | None = None, state_steps: list[int] | None = None,
                seconds: float = 2.0, sparsity: float = 0.999, memory: bool = True) -> dict:
    """ms per training step of each dense-part kernel (kernels.KERNELS) for each T and state.

    States: Xavier init (b = 0) of an m x n model (default 2 x 10,000), or the snapshots of
    ``states`` (a saved run) at ``state_steps`` (default: all), whose shape is the file's (an
    ``n`` or ``m`` given too must agree with it). The same model is applied to a fresh training
    set of each T (data seed 0), so a state saved at one T is timed at every T.
    """
    from .data import training_set
    from .errors import ToyddError
    from .kernels import KERNELS, BatchData

    Ts = Ts or [1_000, 10_000, 100_000]
    kernels = kernels or ["dense", "tree"]
    for k in kernels:
        if k not in KERNELS:
            raise ToyddError(f"kernel must be one of {', '.join(KERNELS)}, got {k!r}")
    todo = [("init", None, None)]
    if states:
        todo = [(label, p, int(label.split()[1])) for label, p in load_states(states, state_steps)]
        fm, fn = todo[0][1]["W"].shape
        for name, given, have in (("n", n, fn), ("m", m, fm)):
            if given is not None and given != have:
                raise ToyddError(f"--{name} {given} disagrees with the states file {states}, whose models have "
                                 f"{name} = {have:,} (leave --{name} out to take the file's)")
        m, n = fm, fn
    n = N if n is None else n
    m = M if m is None else m
    _check(n, m, Ts, seconds, sparsity)
    rows = []
    for T in [int(t) for t in Ts]:
        data = BatchData.stack([training_set(n, sparsity, T, 0)])
        for label, params, st in todo:
            base = None
            steps = {k: _make_fast(n, m, T, sparsity, k, params, data)[0] for k in kernels}
            times = _interleaved_times(list(steps.values()), seconds * len(kernels))
            for k, tk in zip(kernels, times):
                step = steps[k]
                ws_ms = 1e3 * tk
                ws = step.backend.ws
                row = {"n": n, "m": m, "T": T, "state": label, "kernel": k, "ms": ws_ms,
                       "n_active": int(ws.n_active[0]), "ran_tree": bool(ws.use_tree[0])}
                if ws.use_tree[0]:
                    visits, pairs = (int(x) for x in ws.tree.counts[0].sum(0))
                    row.update(tree_visits=visits, tree_leaf_pairs=pairs,
                               dense_pairs_over_tree_work=T * row["n_active"] / max(1, visits + pairs))
                if k == "dense":
                    base = ws_ms
                row["speedup_vs_dense"] = None if base is None else base / ws_ms
                if memory:
                    row["peak_mib"] = _mib(peak_memory("fast", n, m, T, sparsity, 2, k, states, st))
                rows.append(row)
            del steps
        del data
    return {"machine": machine(), "states": states or "Xavier init, b = 0", "rows": rows}


def print_kernel_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("T", "state", "kernel", "ms/step", "vs dense", "active features", "ran tree", "pairs / tree work",
              "peak MiB", title=f"one training step per dense-part kernel (n = {res['rows'][0]['n'] if res['rows'] else '-'}, "
              f"m = {res['rows'][0]['m'] if res['rows'] else '-'}; states: {res['states']})")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for r in res["rows"]:
        t.add_row(str(r["T"]), r["state"], r["kernel"], f(r["ms"], ".2f"),
                  f(r["speedup_vs_dense"], ".2f") + ("x" if r["speedup_vs_dense"] else ""), str(r["n_active"]),
                  "yes" if r["ran_tree"] else "no", f(r.get("dense_pairs_over_tree_work"), ".1f"),
                  f(r.get("peak_mib"), ".0f"))
    con = Console()
    con.print(t)
    mc = res["machine"]
    con.print(f"{mc['cpu']}, {mc['cores']} cores; python {mc['python']}, torch {mc['torch']}, numba {mc['numba']}")
