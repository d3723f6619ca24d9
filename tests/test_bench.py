"""The benchmark runs and reports both paths (no timing assertions: machines are noisy)."""

import json
import subprocess
import sys

from toydd import bench


def test_bench_reports_both_paths_and_memory():
    res = bench.run(n=500, m=2, Ts=[50], seconds=0.05, memory=True)
    (row,) = res["rows"]
    assert row["fast_ms"] > 0 and row["reference_ms"] > 0
    assert row["speedup"] == row["reference_ms"] / row["fast_ms"]
    assert row["fast_peak_mib"] is not None and row["reference_peak_mib"] is not None
    assert res["machine"]["cores"] >= 1


def test_bench_cli_json():
    """(--no-memory: the memory children are test_bench_reports_both_paths_and_memory's; here they would only
    add a child process per row.)"""
    p = subprocess.run([sys.executable, "-m", "toydd", "bench", "--json", "--n", "300", "--T", "20", "--T", "40",
                        "--seconds", "0.02", "--reference-max-T", "20", "--no-memory"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [r["T"] for r in res["rows"]] == [20, 40]
    assert res["rows"][1]["reference_ms"] is None  # above --reference-max-T
    assert all("fast_peak_mib" not in r for r in res["rows"])  # --no-memory holds without --kernel too
