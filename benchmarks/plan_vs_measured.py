"""The cost model behind ``--plan`` against the clock: estimate, then train, the same jobs on this machine.

    python benchmarks/plan_vs_measured.py [--steps 2000] [--T 1000 10000 100000]   # -> benchmarks/results/plan_vs_measured.json

Paper settings (n = 10,000, S = 0.999, m = 2, the mean recipe), one model per T, each with its own estimate
from ``toydd.costmodel.load()`` (the cached calibration of this machine). Whole processes are not timed: the
estimate and the measurement are both of ``toydd.training.train`` in this process, after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from toydd import costmodel
from toydd.config import TrainConfig
from toydd.training import train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--T", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "plan_vs_measured.json"))
    a = ap.parse_args()
    model = costmodel.load(log=print)
    train(TrainConfig(n=200, m=2, T=20, steps=5, test_size=50))  # compile outside the timings
    rows = []
    for T in a.T:
        c = TrainConfig(n=10_000, m=2, T=T, sparsity=0.999, steps=a.steps, snapshots=0)
        est = model.job_seconds("toy", c)
        t0 = time.perf_counter()
        r = train(c)
        got = time.perf_counter() - t0
        rows.append({"T": T, "steps": a.steps, "estimated_s": est, "measured_s": got, "ratio": est / got,
                     "train_loss": r.metrics["train_loss"]})
        print(f"T={T:>7,}: estimated {est:8.1f} s, measured {got:8.1f} s, estimate/measured {est / got:.2f}")
    Path(a.out).write_text(json.dumps({"machine": model.machine, "platform": platform.platform(),
                                        "model": model.__dict__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
