"""Counts, not timings: how many (point, feature) pairs the tree would leave to the per-point loop with tighter
bounding volumes than its axis-aligned boxes (m = 2). Tried on paper, kept out of the kernels (BENCHMARKS.md).

    python benchmarks/bounding_polygons.py --T 100000 --state-step 24306

Builds the tree the step builds (Morton order, leaves of 128) on a saved state, then walks it in NumPy with
each node bounded by a K-direction polygon (the intersection of the half-planes d_k . h >= min over the node's
points, K regular directions; K = 4 is the box). A feature's bound on a polygon: write u = a d_k + c d_k+1 with
a, c >= 0 (the two directions around u), so min u . h >= a s_k + c s_k+1 (exact for the polygon). Variants:
  nodes+leaf_dead   classify at internal nodes, drop the dead ones at leaves (today's walk when K = 4)
  nodes+leaf_full   classify at leaves too (linear ones by a closed form at the leaf: no per-point work)
and, for reference, the exact floor: pairs whose leaf really has points on both sides of the feature's line.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=100_000)
    ap.add_argument("--states", default="benchmarks/results/tree_states_T100000_50k.npz")
    ap.add_argument("--state-step", type=int, default=24306)
    ap.add_argument("--directions", default="4,8,16,32")
    a = ap.parse_args()

    from toydd import kernels as K
    from toydd.bench import load_states
    from toydd.data import training_set

    state = load_states(a.states, [a.state_step])[0][1]
    W, b = state["W"][None], state["b"][None]
    data = K.BatchData.stack([training_set(W.shape[2], 0.999, a.T, 0)])
    _, _, _, ws = K.loss_and_grads_cpu(W, b, data, kernel="tree", point_loss=False)  # builds the tree
    tp = ws.tree.topo
    H = ws.H[0].astype(np.float64)  # in tree order
    U, bias = W[0].astype(np.float64), b[0].astype(np.float64)
    leaf, s0, s1 = tp.leaf.astype(bool), tp.s0, tp.s1
    NN, n = s0.shape[0], U.shape[1]
    out = {"T": a.T, "state_step": a.state_step, "features": n, "variants": {}}

    floor = 0
    for k in np.nonzero(leaf & (s1 > s0))[0]:
        alive = ((H[s0[k]:s1[k]] @ U + bias) > 0).sum(0)
        floor += int(((alive > 0) & (alive < s1[k] - s0[k])).sum()) * int(s1[k] - s0[k])
    out["exact_floor_pairs"] = floor

    for Kd in (int(x) for x in a.directions.split(",")):
        th = 2 * np.pi * np.arange(Kd) / Kd
        D = np.stack([np.cos(th), np.sin(th)])  # (2, K)
        s = np.full((NN, Kd), np.inf)  # s[node, k] = min over the node's points of d_k . h
        for k in np.nonzero(leaf & (s1 > s0))[0]:
            s[k] = (H[s0[k]:s1[k]] @ D).min(0)
        for k in range(NN - 1, 0, -1):
            if not leaf[k] and 2 * k + 1 < NN:
                s[k] = np.minimum(s[2 * k], s[2 * k + 1])
        lo_k = np.floor(np.mod(np.arctan2(U[1], U[0]), 2 * np.pi) / (2 * np.pi / Kd)).astype(int) % Kd
        hi_k = (lo_k + 1) % Kd
        det = D[0, lo_k] * D[1, hi_k] - D[1, lo_k] * D[0, hi_k]
        ca = (U[0] * D[1, hi_k] - U[1] * D[0, hi_k]) / det
        cc = (D[0, lo_k] * U[1] - D[1, lo_k] * U[0]) / det
        opp = Kd // 2  # max u . h = -min (-u) . h, and -u sits between the opposite directions

        def bounds(k):
            zmin = bias + ca * s[k, lo_k] + cc * s[k, hi_k]
            zmax = bias - (ca * s[k, (lo_k + opp) % Kd] + cc * s[k, (hi_k + opp) % Kd])
            return zmin, zmax

        for name, full_leaf in (("nodes+leaf_dead", False), ("nodes+leaf_full", True)):
            pairs = visits = 0
            stack = [(1, np.arange(n))]
            while stack:
                k, f = stack.pop()
                if s1[k] <= s0[k] or f.size == 0:
                    continue
                zmin, zmax = bounds(k)
                if leaf[k]:
                    keep = (zmax[f] > 0) & (zmin[f] <= 0) if full_leaf else zmax[f] > 0
                    visits += f.size if full_leaf else 0
                    pairs += int(keep.sum()) * int(s1[k] - s0[k])
                    continue
                visits += f.size
                st = f[(zmax[f] > 0) & (zmin[f] <= 0)]
                stack += [(2 * k, st), (2 * k + 1, st)]
            out["variants"][f"K={Kd} {name}"] = {"leaf_pairs": pairs, "node_feature_visits": visits}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
