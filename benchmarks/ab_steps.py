"""Whole training steps of two versions of the code, in turns in one process: what a change buys, on a noisy machine.

    python benchmarks/ab_steps.py --old-rev HEAD~1 --T 100000 --state-step 24306 [--kernel tree] [--reps 40]

This VM's speed moves by 10-50% between minutes and processes (steal time), so two `toydd bench` runs, or two
processes in a row, cannot tell a 5% change. Here the old version (`git archive` of ``--old-rev`` into a
temporary folder, imported as the package ``toydd_old``) and the working tree's (``toydd``) each keep a workspace
on the same saved state (n = 10,000, S = 0.999, data seed 0, as `toydd bench --states`), and the steps alternate
A B A B, so a slow minute weighs on both alike. Prints one JSON line: min and median ms of each, their ratios,
and whether the two gave the same bits (loss and gradients).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _old_package(rev: str, into: Path):
    """The package at git revision ``rev``, importable as ``toydd_old`` (it imports itself relatively)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/toydd"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    (into / "src" / "toydd").rename(into / "toydd_old")
    sys.path.insert(0, str(into))
    return importlib.import_module("toydd_old.kernels"), importlib.import_module("toydd_old.data")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-rev", required=True, help="git revision to compare the working tree against")
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--state-step", type=int, required=True)
    ap.add_argument("--states", default=str(ROOT / "benchmarks/results/tree_states_T100000_50k.npz"))
    ap.add_argument("--kernel", default="tree", choices=("tree", "dense", "auto"))
    ap.add_argument("--reps", type=int, default=40)
    a = ap.parse_args()

    from toydd import kernels as K
    from toydd.bench import load_states
    from toydd.data import training_set

    state = load_states(a.states, [a.state_step])[0][1]
    W, b = state["W"][None], state["b"][None]
    with tempfile.TemporaryDirectory() as tmp:
        KO, DO = _old_package(a.old_rev, Path(tmp))
        versions = {"old": (KO, KO.BatchData.stack([DO.training_set(W.shape[2], 0.999, a.T, 0)])),
                    "new": (K, K.BatchData.stack([training_set(W.shape[2], 0.999, a.T, 0)]))}

        def step(name, ws=None):
            mod, data = versions[name]
            return mod.loss_and_grads_cpu(W, b, data, ws=ws, kernel=a.kernel, point_loss=False)

        ws = {k: step(k)[3] for k in versions}
        out = {k: step(k, ws[k]) for k in versions}
        same = bool(np.array_equal(out["old"][0], out["new"][0]) and np.array_equal(out["old"][2].W, out["new"][2].W)
                    and np.array_equal(out["old"][2].b, out["new"][2].b))
        times: dict[str, list[float]] = {k: [] for k in versions}
        for _ in range(a.reps):
            for k in versions:
                t0 = time.perf_counter()
                step(k, ws[k])
                times[k].append(time.perf_counter() - t0)
    ms = {k: (round(1e3 * min(v), 2), round(1e3 * float(np.median(v)), 2)) for k, v in times.items()}
    print(json.dumps({"old_rev": a.old_rev, "T": a.T, "state_step": a.state_step, "kernel": a.kernel, "reps": a.reps,
                      "same_bits": same, "ms_min_median": ms,
                      "new_over_old_min": round(ms["new"][0] / ms["old"][0], 3),
                      "new_over_old_median": round(ms["new"][1] / ms["old"][1], 3)}))


if __name__ == "__main__":
    main()
