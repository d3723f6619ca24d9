"""Every script in benchmarks/ still runs, at tiny sizes.

BENCHMARKS.md gives each figure with the command that measured it; a script that no longer runs makes its
figures unreproducible. They call private kernels, so they break silently when a kernel's arguments change
(sell_layout.py did, when the first pass grew the points' bounds, and nobody saw it for a session). Timing is
not checked (never in tests); the scripts' own self-checks are (same bits, counts that add up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
STATES = "benchmarks/results/tree_states_T100000_50k.npz"

# script -> arguments: the smallest sizes that still go through every part of the script
SCRIPTS = {
    "auto_ab.py": ["--T", "2500", "--state-step", "0", "--rounds", "1"],
    "bounding_polygons.py": ["--T", "3000", "--state-step", "24306", "--directions", "4,8"],
    "full_runs.py": ["--T", "5", "--steps", "20", "--n", "200", "--out", "{tmp}/full_runs.json"],
    "kept_order.py": ["--T", "3000", "--steps", "3"],
    "leaf_sizes.py": ["--T", "3000", "--state-step", "50000", "--sizes", "64,128", "--reps", "1"],
    "plan_vs_measured.py": ["--steps", "20", "--T", "1000", "--out", "{tmp}/plan_vs_measured.json"],
    "sell_layout.py": ["--T", "3000", "--reps", "1"],
    "step_parts.py": ["--T", "3000", "--states", STATES, "--state-step", "50000", "--reps", "1"],
    "tree_states.py": ["--T", "1000", "--steps", "30", "--snapshots", "3", "--out", "{tmp}/states.npz"],
    "tree_table.py": ["benchmarks/results/bench_tree_m2.json"],
    "tsweep_table.py": ["results/paper-tsweep"],
}
NOT_RUN = {"ab_steps.py": "checks out another revision and compiles its kernels from nothing (~50 s)"}

# One child process runs them all in turn (one import of torch and numba, not eleven), each as `python
# benchmarks/NAME ARGS` would, and reports per script: its stdout, or the error it stopped with.
RUNNER = """
import contextlib, io, json, runpy, sys, traceback
out = {}
for name, args in json.loads(sys.argv[1]).items():
    sys.argv = ["benchmarks/" + name] + args
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path("benchmarks/" + name, run_name="__main__")
        out[name] = {"ok": True, "stdout": buf.getvalue()}
    except SystemExit as e:
        out[name] = {"ok": e.code in (None, 0), "stdout": buf.getvalue(), "error": f"exit {e.code}"}
    except Exception:
        out[name] = {"ok": False, "stdout": buf.getvalue(), "error": traceback.format_exc(limit=-3)}
print(json.dumps(out))
"""


def test_every_script_is_listed():
    assert {p.name for p in BENCH.glob("*.py")} == set(SCRIPTS) | set(NOT_RUN)


def test_benchmark_scripts_run_at_tiny_sizes(tmp_path):
    todo = {k: [a.format(tmp=tmp_path) for a in v] for k, v in SCRIPTS.items()}
    p = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(todo)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    failed = {k: v.get("error") for k, v in res.items() if not v["ok"]}
    assert not failed, "\n".join(f"{k}: {e}" for k, e in failed.items())
    # the self-checks that the scripts print
    sell = json.loads(res["sell_layout.py"]["stdout"])["runs"][0]
    assert sell["sell4_same_bits"] and sell["vec16_same_bits"] and sell["csr_sorted_same_bits"]
    parts = json.loads(res["step_parts.py"]["stdout"])
    assert parts["ms"]["hidden"] > 0 and parts["tree_leaf_pairs"] >= 0
    assert (tmp_path / "states.npz").exists() and (tmp_path / "full_runs.json").exists()
    run = json.loads((tmp_path / "full_runs.json").read_text())[0]  # every step timed, by tenth of the schedule
    assert len(run["step_ms_by_tenth"]) == 10 and all(t > 0 for t in run["step_ms_by_tenth"])
    assert "| T |" in res["tsweep_table.py"]["stdout"]
