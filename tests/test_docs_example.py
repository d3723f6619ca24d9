"""docs/ARCHITECTURE.md's "How to add an experiment" runs as written: one module, one registry line."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def test_the_worked_example_is_a_working_experiment(tmp_path, monkeypatch):
    from toydd import experiments, report, sweep

    code = re.search(r"```python\n(from \.\.config import TrainConfig.*?)```", DOC.read_text(), re.S).group(1)
    mod = types.ModuleType("toydd.experiments.lr_scan")
    mod.__package__ = "toydd.experiments"
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    exec(compile(code, str(DOC), "exec"), mod.__dict__)
    monkeypatch.setitem(experiments.REGISTRY, mod.DEF.name, mod.DEF)
    s = sweep.run_sweep("lr-scan", tmp_path / "o", preset="smoke", progress=False)
    assert s.ok and s.done == s.total == 16
    assert sweep.status(tmp_path / "o")["experiments"]["lr-scan"]["done"] == 16
    assert len(sweep.load_table(tmp_path / "o", experiment="lr-scan")) == 16
    page = report.build_report(tmp_path / "o", movies=0, log=lambda m: None, dpi=40).read_text()
    assert 'id="lr-scan-lines"' in page and "Lowest training loss at the largest T" in page


def test_the_paper_tsweep_subset_example_never_drops_finished_jobs_from_the_manifest(tmp_path):
    """examples/paper_tsweep_subset.py grows a subset of the t-sweep one T at a time; the report reads only the jobs the
    manifest names. Growing a second data seed over small T must keep the first seed's larger T in it (it once
    dropped them: docs/PAPER_SCALE.md)."""
    import json
    import subprocess

    script = Path(__file__).resolve().parents[1] / "examples" / "paper_tsweep_subset.py"
    out = tmp_path / "store"

    def run(*args):
        p = subprocess.run([sys.executable, str(script), str(out), "--preset", "smoke", *args], capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        return json.loads((out / "experiments" / "t-sweep.json").read_text())

    first = run("--data-seeds", "1")  # data seed 0: T = 3, 10, 100 and inf
    assert len(first["keys"]) == 4
    grown = run("--data-seeds", "2", "--max-T", "10")  # data seed 1 at T = 3, 10 and inf, smallest first
    assert set(first["keys"]) <= set(grown["keys"])  # seed 0's T = 100 (outside this pass's subset) is still named
    assert len(grown["keys"]) == 7
    from toydd import sweep

    assert len(sweep.load_table(out, experiment="t-sweep")) == 7


def test_the_paper_tsweep_subset_example_refuses_bad_input_in_one_line(tmp_path):
    """Its errors are the toydd command's: one line, status 2, no traceback; nonsense sizes are refused
    (it took --max-T nan for "only T = inf", and --data-seeds 0 for "nothing", silently: a hostile review)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "examples" / "paper_tsweep_subset.py"
    (tmp_path / "afile").write_text("x")
    for args, needle in (([str(tmp_path / "s"), "--plan", "--preset", "nope"], "unknown preset 'nope'"),
                         ([str(tmp_path / "afile"), "--preset", "smoke"], "exists and is not a directory"),
                         ([str(tmp_path / "s"), "--plan", "--max-T", "nan"], "--max-T must be"),
                         ([str(tmp_path / "s"), "--plan", "--data-seeds", "0"], "--data-seeds must be at least 1")):
        p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert not (tmp_path / "s").exists()
