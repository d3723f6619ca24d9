"""Whole tree steps with different leaf sizes, in turns in one process (see ab_steps.py for why in turns).

    python benchmarks/leaf_sizes.py --T 1000000 --state-step 50000 --sizes 128,256,512 [--reps 12]

Each leaf size gets its own workspace (the tree built with `TreeWorkspace(..., leaf_size=L)`) on the same saved
state (n = 10,000, S = 0.999, data seed 0); the steps alternate between them. Prints one JSON line: min and
median ms per leaf size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--state-step", type=int, required=True)
    ap.add_argument("--states", default=str(ROOT / "benchmarks/results/tree_states_T100000_50k.npz"))
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--reps", type=int, default=12)
    a = ap.parse_args()

    from toydd import kernels as K
    from toydd import tree_kernels as TK
    from toydd.bench import load_states
    from toydd.data import training_set

    state = load_states(a.states, [a.state_step])[0][1]
    W, b = state["W"][None], state["b"][None]
    I, m, n = W.shape
    data = K.BatchData.stack([training_set(n, 0.999, a.T, 0)])

    def step(ws=None):
        return K.loss_and_grads_cpu(W, b, data, ws=ws, kernel="tree", point_loss=False)[3]

    workspaces = {}
    for L in (int(x) for x in a.sizes.split(",")):
        ws = step()
        ws.tree = TK.TreeWorkspace(I, m, n, a.T, leaf_size=L)  # the next step builds (and sorts) this tree
        step(ws)
        workspaces[L] = ws
    times: dict[int, list[float]] = {L: [] for L in workspaces}
    for _ in range(a.reps):
        for L, ws in workspaces.items():
            t0 = time.perf_counter()
            step(ws)
            times[L].append(time.perf_counter() - t0)
    print(json.dumps({"T": a.T, "state_step": a.state_step, "reps": a.reps,
                      "ms_min_median": {str(L): (round(1e3 * min(v), 2), round(1e3 * float(np.median(v)), 2))
                                        for L, v in times.items()}}))


if __name__ == "__main__":
    main()
