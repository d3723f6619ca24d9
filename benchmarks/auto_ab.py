"""dense, auto and tree on one saved state, interleaved call by call: what `auto` costs where it should pick dense.

    python benchmarks/auto_ab.py --T 2500 --state-step 0 [--states benchmarks/results/tree_states_T100000_50k.npz]

`toydd bench` times each kernel for a while, then the next, so a load that comes and goes can make the same code
look 20% slower in one row than in the next (this VM does that). Here each round calls dense, auto and tree once,
in turn, on their own workspaces, and the medians over rounds are compared. Prints one line: the medians in ms,
whether auto ran the tree on its last step, and whether it built one at all.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--state-step", type=int, required=True)
    ap.add_argument("--states", default="benchmarks/results/tree_states_T100000_50k.npz")
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()

    from toydd import kernels as K
    from toydd.bench import load_states
    from toydd.data import training_set

    state = load_states(a.states, [a.state_step])[0][1]
    W, b = state["W"][None], state["b"][None]
    data = K.BatchData.stack([training_set(W.shape[2], 0.999, a.T, 0)])
    ws = {k: K.loss_and_grads_cpu(W, b, data, kernel=k, point_loss=False)[3] for k in ("dense", "auto", "tree")}
    times: dict[str, list[float]] = {k: [] for k in ws}
    for _ in range(a.rounds):
        for k, w in ws.items():
            t0 = time.perf_counter()
            K.loss_and_grads_cpu(W, b, data, ws=w, kernel=k, point_loss=False)
            times[k].append(time.perf_counter() - t0)
    ms = {k: round(1e3 * float(np.median(v[3:])), 2) for k, v in times.items()}  # first rounds: warm-up
    print(f"T = {a.T}, state {a.state_step}: ms {ms}; auto ran the tree: {bool(ws['auto'].use_tree[0])}, "
          f"built one: {ws['auto'].tree is not None}")


if __name__ == "__main__":
    main()
