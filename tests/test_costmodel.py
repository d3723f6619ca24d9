"""--plan: what would run and how long, from a cost model calibrated on this machine; nothing trains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toydd import costmodel
from toydd.config import TrainConfig
from toydd.experiments import named_experiment

FIX = Path(__file__).parent / "fixtures"
MODEL = costmodel.CostModel(a=1e-4, b=1e-9, overhead=0.5, mnist_b=1e-9, machine="test", calibrated_at=0.0, threads=2)


def test_job_seconds_follow_the_model():
    c = TrainConfig(n=1000, m=2, T=936, steps=100)
    assert MODEL.job_seconds("toy", c) == pytest.approx(100 * 1e-4 + 1e-9 * 100 * (936 + 64) * 1000 * 2 + 0.5)
    assert MODEL.job_seconds("toy", c.replace(init_seeds=2)) > MODEL.job_seconds("toy", c)


def test_plan_counts_done_jobs_and_shared_jobs_once(tmp_path):
    shutil.copytree(FIX / "store-0.1.0", tmp_path / "prev")
    from toydd.experiments import load_experiment_file

    exp = load_experiment_file(FIX / "tiny-recipes.toml")
    p = costmodel.plan([exp], tmp_path / "prev", model=MODEL)
    (row,) = p["experiments"]
    assert (row["jobs"], row["done"], row["to_train"], row["seconds"]) == (2, 2, 0, 0.0)
    # t-sweep and norms share their jobs: the second costs nothing more
    ts, nm = named_experiment("t-sweep", "quick"), named_experiment("norms", "quick")
    p = costmodel.plan([ts, nm], None, model=MODEL)
    assert p["experiments"][1]["to_train"] == 0 and p["experiments"][0]["to_train"] == len(ts.configs)
    assert p["seconds"] == pytest.approx(sum(MODEL.job_seconds("toy", c) for c in ts.configs))
    # two workers halve the wall time; the advice starts beyond 3 hours
    p2 = costmodel.plan([ts], None, executor="process", jobs=2, model=MODEL)
    assert p2["seconds"] == pytest.approx(p["seconds"] / min(2, __import__("os").cpu_count()))
    assert p["advice"] == []
    paper = costmodel.plan([named_experiment("t-sweep", "paper")], None, model=MODEL)
    assert paper["seconds"] > 3 * 3600 and any("--executor ray" in a for a in paper["advice"])
    assert any("--preset quick" in a for a in paper["advice"])


def test_cli_plan_trains_nothing_and_prints_json(tmp_path):
    env_cache = tmp_path / "cache"
    env_cache.mkdir()
    # a cached model for this machine: the plan is instant and deterministic
    import os

    from toydd.storage import atomic_write_json

    os.environ["TOYDD_CACHE_DIR"] = str(env_cache)
    try:
        atomic_write_json(costmodel.cache_path(), {**MODEL.__dict__, "machine": costmodel.machine_id()})
        env = dict(os.environ)
    finally:
        del os.environ["TOYDD_CACHE_DIR"]
    out = tmp_path / "new"
    p = subprocess.run([sys.executable, "-m", "toydd", "sweep", "t-sweep", "--preset", "quick", "--out", str(out),
                        "--plan", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["experiments"][0]["to_train"] == 68 and d["seconds"] > 0 and not out.exists()
    p = subprocess.run([sys.executable, "-m", "toydd", "reproduce", "--preset", "paper", "--out", str(out),
                        "--plan"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "t-sweep" in p.stdout and "note: This is" in p.stdout and not out.exists()
    p = subprocess.run([sys.executable, "-m", "toydd", "sweep", "t-sweep", "--plan", "--out", str(out),
                        "--jobs", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ")
    # an --out the sweep would refuse gets the same refusal, not a plan of work it would never do
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    for cmd in (["sweep", "t-sweep", "--preset", "smoke"], ["reproduce", "--preset", "smoke"]):
        p = subprocess.run([sys.executable, "-m", "toydd", *cmd, "--out", str(foreign), "--plan"], capture_output=True,
                           text=True, env=env, timeout=120)
        assert p.returncode == 2 and "not a toydd results directory" in p.stderr and p.stdout == "", p.stderr


def test_calibration_measures_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYDD_CACHE_DIR", str(tmp_path))
    m = costmodel.calibrate(quick=True)
    assert m.b > 0 and m.a >= 0 and m.mnist_b > 0 and m.machine == costmodel.machine_id()
    # a bigger job is estimated as slower
    small, big = TrainConfig(n=300, T=100, steps=100), TrainConfig(n=300, T=10_000, steps=100)
    assert m.job_seconds("toy", big) > m.job_seconds("toy", small)


def test_a_change_to_the_hot_path_makes_the_cached_calibration_stale(tmp_path, monkeypatch):
    """The cache is keyed by the kernels' source too: a faster kernel at the same version number re-calibrates."""
    before = costmodel.machine_id()
    real = costmodel.Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# edited" if self.name == "kernels.py" else data

    monkeypatch.setattr(costmodel.Path, "read_bytes", edited)
    assert costmodel.machine_id() != before
    monkeypatch.undo()
    assert costmodel.machine_id() == before


@pytest.mark.parametrize("field,value", [("b", None), ("b", float("nan")), ("a", -1.0), ("threads", 0)])
def test_a_damaged_cached_model_is_measured_again(tmp_path, monkeypatch, field, value):
    """A cache file edited or damaged into null, NaN or negative rates crashed the plan (TypeError), printed NaN
    (not JSON) or planned negative hours (a hostile review): it is calibrated again instead."""
    from toydd.storage import atomic_write_json

    monkeypatch.setenv("TOYDD_CACHE_DIR", str(tmp_path))
    atomic_write_json(costmodel.cache_path(), {**MODEL.__dict__, "machine": costmodel.machine_id(), field: value})
    measured = []
    monkeypatch.setattr(costmodel, "calibrate", lambda: measured.append(1) or MODEL)
    assert costmodel.load() == MODEL and measured == [1]
    atomic_write_json(costmodel.cache_path(), {**MODEL.__dict__, "machine": costmodel.machine_id()})
    assert costmodel.load().b == MODEL.b and measured == [1]  # a sound cache is used as it is


def test_plan_leaves_out_jobs_being_trained_and_estimates_saved_ones_from_their_step(tmp_path, monkeypatch):
    """The plan counted a job another process trains as to train, and a job with a saved state from step 0
    (a hostile review: '2 to train, 49.6 h' for one job running and one at step 11,000 of 50,000)."""
    from toydd.store import Store

    ts = named_experiment("t-sweep", "quick")
    out = tmp_path / "store"
    Store(out).create()
    a, b = ts.configs[0], ts.configs[1]
    monkeypatch.setattr(Store, "is_running", lambda self, k: k == a.key())
    monkeypatch.setattr(Store, "saved_states", lambda self: [{"file": "x", "step": b.steps // 4, "keys": [b.key()]}])
    p = costmodel.plan([ts], out, model=MODEL)
    (row,) = p["experiments"]
    assert row["running"] == 1 and row["to_train"] == len(ts.configs) - 1
    full = sum(MODEL.job_seconds("toy", c) for c in ts.configs[2:])
    assert row["cpu_seconds"] == pytest.approx(full + 0.75 * MODEL.job_seconds("toy", b))
    text = costmodel.format_plan(p)
    assert "running" in text.splitlines()[1]
