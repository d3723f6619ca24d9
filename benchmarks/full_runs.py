"""Whole 50,000-step trainings at paper settings: wall time, peak memory, and what the model learned.

    python benchmarks/full_runs.py --T 5 100 1000 10000 --out benchmarks/results/full_runs.json

Each T runs in its own process (so peak RSS is that run's), one model (data seed 0, init seed 0),
n = 10,000, m = 2, S = 0.999, the paper's optimizer and schedule. Results are appended to --out.

Besides the whole run's wall time, each row has ``step_ms_by_tenth``: the median wall time of one loss-and-gradients
call (the kernel step AdamW waits on, on the CPU backend) in each tenth of the schedule, so "a step late in
training" is read off a real training, not a saved state replayed on other data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def one(T: str, steps: int, n: int, m: int, S: float) -> dict:
    import resource

    import numpy as np

    import toydd
    from toydd.bench import machine
    from toydd.config import parse_T

    from toydd import training

    # Time every step's loss-and-gradients call where training makes it (one perf_counter pair a step).
    call_s: list[float] = []
    step = training.NumbaBackend.loss_and_grads

    def timed(self, batch):
        t = time.perf_counter()
        out = step(self, batch)
        call_s.append(time.perf_counter() - t)
        return out

    training.NumbaBackend.loss_and_grads = timed
    cfg = toydd.TrainConfig(n=n, m=m, T=parse_T(T), sparsity=S, steps=steps, snapshots=0)
    t0 = time.perf_counter()
    r = toydd.train(cfg)
    wall = time.perf_counter() - t0
    tenths = [call_s[k * len(call_s) // 10:(k + 1) * len(call_s) // 10] for k in range(10)]
    mt = r.metrics
    dd = r.arrays["data_dims"]
    return {
        "T": T, "n": n, "m": m, "S": S, "steps": steps, "wall_seconds": round(wall, 1),
        "ms_per_step": round(1e3 * wall / steps, 3),
        "step_ms_by_tenth": [round(1e3 * float(np.median(x)), 2) if x else None for x in tenths],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_loss": mt["train_loss"], "test_loss": mt["test_loss"], "weight_norm": mt["weight_norm"],
        "bias_norm": mt["bias_norm"], "max_feature_dim": mt["max_feature_dim"],
        "represented_features": mt["represented_features"], "regime": mt["regime"],
        "construction_train_loss": mt.get("construction_train_loss"), "optimization_gap": mt.get("optimization_gap"),
        "median_data_dim_times_T_over_m": (float(np.median(dd)) * float(T) / m) if len(dd) else None,
        "machine": machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", nargs="+", default=["5", "100", "1000", "10000"])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--m", type=int, default=2)
    ap.add_argument("--S", type=float, default=0.999)
    ap.add_argument("--out", default="benchmarks/results/full_runs.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one(a.T[0], a.steps, a.n, a.m, a.S)))
        return
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.read_text()) if out.exists() else []
    for T in a.T:
        p = subprocess.run([sys.executable, __file__, "--child", "--T", T, "--steps", str(a.steps), "--n", str(a.n),
                            "--m", str(a.m), "--S", str(a.S)], capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            continue
        row = json.loads(p.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
