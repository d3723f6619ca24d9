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
