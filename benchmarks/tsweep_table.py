"""Markdown table of a t-sweep's runs, one row per (T, data seed): the numbers behind the main figure.

    python benchmarks/tsweep_table.py RESULTS_DIR [--experiment t-sweep]

Columns: T, the final training and test loss (test: mean ± standard error over the test set), the median data
dimensionality D_X against the T-gon's m/T, the largest feature dimensionality D_f, the features with
||W_i|| > 0.5, ||W||_F, the regime label (`toydd.metrics.regime`), the best of the init seeds, and the job's
wall time (all of its init seeds, as recorded by the run).
"""

from __future__ import annotations

import argparse
import math

from toydd import sweep


def fmt_T(T: float) -> str:
    return "∞" if math.isinf(T) else f"{int(T):,}"


def table(out: str, experiment: str = "t-sweep") -> str:
    t = sweep.load_table(out, experiment)
    t = t.sort_values(["T", "data_seed"])
    rows = ["| T | data seed | train loss | test loss | median D_X / (m/T) | max D_f | features ‖W_i‖ > 0.5 | ‖W‖_F "
            "| regime | best init | wall |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for _, r in t.iterrows():
        ratio = (r["median_data_dim"] / r["tgon_dim"]) if r["tgon_dim"] and not math.isinf(r["T"]) else float("nan")
        rows.append(f"| {fmt_T(r['T'])} | {int(r['data_seed'])} | {r['train_loss']:.4g} | {r['test_loss']:.5f} ± "
                    f"{r['test_loss_se']:.1g} | {'-' if math.isnan(ratio) else f'{ratio:.2f}'} | "
                    f"{r['max_feature_dim']:.3f} | {int(r['represented_features'])} | {r['weight_norm']:.3g} | "
                    f"{r['regime']} | seed {int(r['best_init_seed'])} (of {int(r['init_seeds'])}) | {r['seconds'] / 60:.1f} min |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--experiment", default="t-sweep")
    a = ap.parse_args()
    print(table(a.out, a.experiment))


if __name__ == "__main__":
    main()
