"""Where one CPU step goes: the parts of `kernels.loss_and_grads_cpu`, timed alone, in turns.

    python benchmarks/step_parts.py --T 100000 --states RUN/history.safetensors --state-step 50000

Loads one saved state (W, b) of a run (a `history.safetensors` with snapshots, or a
benchmarks/tree_states.py .npz), builds the training set of `--T` points (n = 10,000, S = 0.999,
data seed 0), runs one whole step to fill the workspace, then times each part of the step in
turns (A B C ... A B C ...) so that a load that comes and goes weighs on every part alike.
Prints one JSON object: median milliseconds per part, the whole step on each kernel, and the tree's
(node, feature) visits and (point, feature) pairs in straddling leaves.

The parts: `hidden` (h = W x and the sparse corrections, O(non-zeros)), `sparse` (the gradients at the
non-zeros: corrections and input path, O(non-zeros)), `hidden_generic` / `sparse_generic` (the same work on kernels.py's any-m versions), `tree_build` (Morton codes, radix sort, leaf moments), `tree_walk` (the walk,
which also pushes the node terms down to the points), `dense_pass` (the dense kernel's part instead of the tree).

`--in-step` times the phases inside whole tree steps instead (as training calls them, without the per-point
losses): each phase is wrapped by a timer, so the phases add up to the step save Python's glue between them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--states", required=True)
    ap.add_argument("--state-step", type=int, required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--in-step", action="store_true", help="time the phases inside whole tree steps")
    a = ap.parse_args()

    import numba

    from toydd import kernels as K
    from toydd import threads as TH
    from toydd import tree_kernels as TK
    from toydd._sparse_kernels import HIDDEN_KERNELS, SPARSE_KERNELS
    from toydd.bench import load_states
    from toydd.data import training_set

    if a.in_step and a.T < TK.PARALLEL_POINTS:
        # (the timers replace the kernels, and a serial twin is made from a kernel itself: only threaded steps)
        ap.error(f"--in-step times threaded steps only: --T {TK.PARALLEL_POINTS} or more")
    state = load_states(a.states, [a.state_step])[0][1]
    W, b = state["W"][None], state["b"][None]
    I, m, n = W.shape
    T = a.T
    data = K.BatchData.stack([training_set(n, 0.999, T, 0)])
    _, _, _, ws = K.loss_and_grads_cpu(W, b, data, kernel="tree")
    tw = ws.tree
    pts = ws.points  # the training points in the tree's order, as the step's kernels see them
    use = np.ones(I, np.bool_)
    imp = np.ones(n, np.float32)
    two_c = np.float32(2.0 / T)
    nblk1 = np.ones(I, np.int64)
    nblk = np.array([K.n_blocks(int(x)) for x in ws.n_active], np.int64)
    TH.use_threads(T * int(ws.n_active.sum()))

    if a.in_step:
        print(json.dumps(in_step(K, TK, W, b, data, ws, a.reps), indent=1))
        return
    FT, WT, G = ws.packed()
    partU, partb, partW = ws.generic()

    def step(kernel):
        return lambda: K.loss_and_grads_cpu(W, b, data, ws=ws, kernel=kernel)

    def walk():  # (it pushes the node terms down too, consuming what it left: each call is a whole walk)
        TK.walk(W, b, imp, ws.active, ws.n_active, use, ws.H, tw, float(two_c), dHout=ws.dHpart[:, 0],
                lossout=ws.losspart[:, 0])

    dense = K.DENSE_KERNELS[m]
    parts = {
        "step_tree": step("tree"),
        "step_dense": step("dense"),
        "step_auto": step("auto"),
        # the first per-non-zero pass (h = W x and the sparse corrections), then the second (the scatter)
        "hidden": lambda: HIDDEN_KERNELS[m](WT, FT, pts.indptr, pts.indices, pts.values, two_c, ws.H, ws.gs, ws.dHs,
                                            ws.ls, ws.pmax, ws.pmin, ws.pn2),
        "sparse": lambda: SPARSE_KERNELS[m](ws.H, pts.indptr, pts.indices, pts.values, nblk1, True, ws.dHpart,
                                            ws.losspart, ws.gs, ws.dHs, ws.ls, ws.dWin, ws.dU, ws.db, ws.dH,
                                            ws.point_loss, ws.loss, G, ws.closs),
        # the generic (any m) kernels on the same work: what unrolling and packed rows buy
        "hidden_generic": lambda: K._hidden(W, W, b, imp, pts.indptr, pts.indices, pts.values, two_c, ws.H, ws.gs,
                                            ws.dHs, ws.ls, ws.pmax, ws.pmin, ws.pn2),
        "sparse_generic": lambda: K._sparse_pass(W, ws.H, pts.indptr, pts.indices, pts.values, nblk1, True,
                                                 ws.dHpart, ws.losspart, ws.gs, ws.dHs, ws.ls, ws.dWin, ws.dU, ws.db,
                                                 ws.dH, ws.point_loss, ws.loss, partU, partb, partW, ws.closs),
        "tree_build": lambda: TK.build(ws.H, use, tw, ws.reorder, ws.point_sizes),
        "tree_walk": walk,
        "dense_pass": lambda: dense(W, b, imp, ws.H, ws.active, ws.n_active, nblk, two_c, ws.dU, ws.db,
                                    ws.dHpart, ws.losspart),
    }
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(a.reps + 1):
        for k, f in parts.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    ms = {k: round(1e3 * float(np.median(v[1:])), 2) for k, v in times.items()}  # first round: warm-up
    TK.build(ws.H, use, tw, ws.reorder, ws.point_sizes)
    walk()
    visits, pairs = (int(x) for x in tw.counts[0].sum(0))
    print(json.dumps({"T": T, "m": m, "n": n, "state_step": a.state_step, "states": a.states,
                      "threads": numba.get_num_threads(), "layer": numba.threading_layer(),
                      "machine": platform.processor() or platform.machine(),
                      "n_active": int(ws.n_active[0]), "nnz": int(data.indices.size), "ms": ms,
                      "tree_visits": visits, "tree_leaf_pairs": pairs}, indent=1))


def in_step(K, TK, W, b, data, ws, reps: int) -> dict:
    """Median ms of each phase of `reps` whole tree steps (training's call), each phase timed where it runs."""
    from collections import defaultdict

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(name, f):
        def g(*args, **kw):
            t0 = time.perf_counter()
            out = f(*args, **kw)
            spent[name].append(time.perf_counter() - t0)
            return out
        return g

    m = W.shape[1]
    for mod, name in ((K, "_pack_rows"), (K, "_active_features"), (K, "_zero_dense_grads"),
                      (TK, "build"), (TK, "walk"), (TK, "_reduce")):
        setattr(mod, name, timed(name.strip("_"), getattr(mod, name)))
    K.HIDDEN_KERNELS[m] = timed("hidden", K.HIDDEN_KERNELS[m])
    K.SPARSE_KERNELS[m] = timed("sparse", K.SPARSE_KERNELS[m])
    steps = []
    for _ in range(reps):
        t0 = time.perf_counter()
        K.loss_and_grads_cpu(W, b, data, ws=ws, kernel="tree", point_loss=False)
        steps.append(time.perf_counter() - t0)
    ms = {k: round(1e3 * float(np.median(v)), 2) for k, v in spent.items()}
    import numba

    return {"T": data.T, "m": m, "threads": numba.get_num_threads(), "layer": numba.threading_layer(),
            "machine": platform.processor() or platform.machine(), "nnz": int(data.indices.size),
            "step_ms_min": round(1e3 * min(steps), 2), "step_ms_median": round(1e3 * float(np.median(steps)), 2),
            "phases_ms_median": ms}


if __name__ == "__main__":
    main()
