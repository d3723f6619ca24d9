"""Real training states for the tree-kernel benchmark (issue 13).

A paper-scale 50,000-step model is too slow for a benchmark session, so this trains a
short run at n = 10,000, S = 0.999, m = 2 with the mean-normalized recipe and keeps its
log-spaced snapshots (W, b). `toydd bench --states FILE` times the kernels on them.

    python benchmarks/tree_states.py --T 10000 --steps 5000 --out benchmarks/results/tree_states_T10000.npz
"""

import argparse
import time

import numpy as np

from toydd.config import TrainConfig
from toydd.training import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--S", type=float, default=0.999)
    ap.add_argument("--steps", type=int, default=5_000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--snapshots", type=int, default=12)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = TrainConfig(n=a.n, m=a.m, T=a.T, sparsity=a.S, steps=a.steps, lr=a.lr, loss_norm="mean",
                      snapshots=a.snapshots, test_size=1000, device="cpu")
    t0 = time.perf_counter()
    r = train(cfg)
    h = r.history
    np.savez_compressed(a.out, steps=h["snapshot_steps"], W=h["snapshot_W"], b=h["snapshot_b"],
                        loss_steps=h["loss_steps"], train_loss=h["train_loss"][0],
                        config=np.array(repr(cfg)), seconds=time.perf_counter() - t0)
    print(f"{a.out}: {len(h['snapshot_steps'])} snapshots at steps {h['snapshot_steps'].tolist()}, "
          f"final train loss {r.metrics['train_loss']:.4f}, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
