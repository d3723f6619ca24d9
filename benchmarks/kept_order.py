"""Keeping the last Morton order (tree_kernels.RESORT_GROWTH) against sorting every step, in real training.

    python benchmarks/kept_order.py --T 100000 --steps 300
    python benchmarks/kept_order.py --T 1000000 --steps 40

A bench of one state repeats the same points, where a kept order is perfect; the honest measure is a
training, where points move every step. This trains `--steps` steps (n = 10,000, S = 0.999, m = 2, mean
recipe, lr 1e-3) from a mid-run state of the 50,000-step T = 100,000 run (step 24,306 of
benchmarks/results/tree_states_T100000_50k.npz), twice each way in turns (RESORT_GROWTH = 0: sort every step;
the default: keep the order while good), and prints ms per step (training time over steps), the number of
sorts and the final training loss of each run as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--state-step", type=int, default=24_306)
    a = ap.parse_args()

    from toydd import tree_kernels as TK
    from toydd.bench import load_states
    from toydd.config import TrainConfig
    from toydd.training import train

    states = Path(__file__).resolve().parent / "results" / "tree_states_T100000_50k.npz"
    init = Path(tempfile.mkdtemp()) / "init.npz"
    np.savez(init, **load_states(str(states), [a.state_step])[0][1])

    sorts = [0]
    radix = TK._radix_argsort

    def counted(*args):  # build() looks the sort up in the module at each call
        sorts[0] += 1
        return radix(*args)

    TK._radix_argsort = counted
    cfg = TrainConfig(n=10_000, m=2, T=a.T, sparsity=0.999, steps=a.steps, lr=1e-3, init_path=str(init),
                      test_size=1000, snapshots=0, device="cpu")
    default = TK.RESORT_GROWTH
    out: dict[str, list] = {"sort every step": [], f"keep while good ({default})": []}
    for growth, name in [(0.0, "sort every step"), (default, f"keep while good ({default})")] * 2:
        TK.RESORT_GROWTH = growth
        sorts[0] = 0
        r = train(cfg)
        out[name].append({"ms_per_step": round(1e3 * r.metrics["seconds"] / a.steps, 2), "sorts": sorts[0],
                          "train_loss": r.metrics["train_loss"]})
    TK.RESORT_GROWTH = default
    print(json.dumps({"T": a.T, "steps": a.steps, "state_step": a.state_step, "runs": out}, indent=1))


if __name__ == "__main__":
    main()
