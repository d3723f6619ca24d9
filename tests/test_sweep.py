"""The results store: resuming, locking, crash safety, executors, status and table.

Every sweep here trains tiny real models (n <= 60, <= 400 steps) so that
"nothing trained twice" and "same table as an uninterrupted sweep" are checked
against real training, which is deterministic.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toydd import sweep as sweep_mod
from toydd import training
from toydd.config import TrainConfig
from toydd.errors import ToyddError
from toydd.experiments import load_experiment_file
from toydd.storage import verify_run
from toydd.sweep import (JobLock, Store, format_status, load_table, make_batches, run_batch, run_sweep, status,
                         table_csv)

# 4 T values x 2 data seeds = 8 jobs in 4 batches (one per T), a couple of seconds in all.
TINY = """
name = "tiny"
description = "tiny sweep for tests"
[base]
n = 60
m = 2
sparsity = 0.9
steps = {steps}
test_size = 200
online_batch = 64
snapshots = 4
init_seeds = 2
[grid]
T = [3, 10, 40, "inf"]
data_seed = [0, 1]
"""

# Columns that legitimately differ between two trainings of one job.
VOLATILE = ["seconds", "batch_size"]  # batch_size: how the scheduler grouped the jobs that time


def tiny_file(tmp_path: Path, steps: int = 150, name: str = "tiny.toml") -> Path:
    p = tmp_path / name
    p.write_text(TINY.format(steps=steps))
    return p


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).sort_values("key").reset_index(drop=True)


def run_dirs(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every complete run's metrics.json: changes iff the run was rewritten."""
    res = {}
    for d in (out / "runs").iterdir():
        if not d.name.startswith(".") and (d / "metrics.json").exists():
            st = (d / "metrics.json").stat()
            res[d.name] = (st.st_ino, st.st_mtime_ns)
    return res


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted local sweep of the tiny experiment: its directory and table."""
    tmp = tmp_path_factory.mktemp("ref")
    f = tiny_file(tmp)
    out = tmp / "out"
    s = run_sweep(str(f), out, progress=False)
    assert s.ok and len(s.trained) == 8
    return f, out, comparable(load_table(out))


@pytest.fixture
def count_trainings(monkeypatch):
    """Counts every config handed to training.train_batch in this process."""
    trained: list[str] = []
    real = training.train_batch

    def counting(configs, progress=None, **kw):
        trained.extend(c.key() for c in configs)
        return real(configs, progress, **kw)

    monkeypatch.setattr(training, "train_batch", counting)
    return trained


def sweep_subprocess(exp: Path, out: Path, extra: str = "") -> subprocess.Popen:
    code = ("import json, sys; from toydd.sweep import run_sweep; "
            f"s = run_sweep({str(exp)!r}, {str(out)!r}, progress=False{extra}); "
            "print(json.dumps({'trained': s.trained, 'elsewhere': s.elsewhere, 'done': s.done, 'failed': s.failed}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- batching ---------------------------------------------------------------------

def test_make_batches_groups_by_shape_caps_and_orders_by_cost():
    cfgs = [TrainConfig(n=50, T=T, data_seed=d, weight_decay=wd, steps=10, init_seeds=2)
            for T in (5, 500) for d in range(5) for wd in (0.0, 0.1)]
    batches = make_batches(cfgs, max_instances=8)
    assert sorted(k for b in batches for k in (c.key() for c in b)) == sorted(c.key() for c in cfgs)
    for b in batches:
        assert len({c.shape_key() for c in b}) == 1
        assert sum(c.init_seeds for c in b) <= 8
    # 10 jobs of 2 instances per T, cap 8 instances: 3 near-equal batches each (4, 3, 3)
    assert sorted(len(b) for b in batches) == [3, 3, 3, 3, 4, 4]
    assert [b[0].T for b in batches[:3]] == [500] * 3  # the costliest first


# --- resuming -----------------------------------------------------------------------

def test_sweep_writes_store_and_rerun_trains_nothing(tmp_path, reference, count_trainings):
    f, ref_out, ref_table = reference
    out = tmp_path / "out"
    s = run_sweep(str(f), out, progress=False)
    assert len(count_trainings) == 8 and len(s.trained) == 8 and s.already_done == 0 and s.ok
    manifest = json.loads((out / "experiments" / "tiny.json").read_text())
    exp = load_experiment_file(f)
    assert manifest["name"] == "tiny" and manifest["keys"] == exp.keys()
    assert manifest["configs"] == [c.to_dict() for c in exp.configs]
    for key in exp.keys():
        verify_run(out / "runs" / key)
        assert not (out / "locks" / f"{key}.lock").exists()  # a finished job's lock is removed at the end
    assert not any((out / "failed").iterdir())
    # the same results as another sweep of the same experiment: training is deterministic
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)

    before = run_dirs(out)
    count_trainings.clear()
    s2 = run_sweep(str(f), out, progress=False)
    assert count_trainings == [] and s2.trained == [] and s2.already_done == 8 and s2.done == 8
    assert run_dirs(out) == before


def test_truncated_run_is_reported_by_name_and_rerun(tmp_path, reference, count_trainings, capsys):
    f, _, ref_table = reference
    out = tmp_path / "out"
    run_sweep(str(f), out, progress=False)
    victim = sorted(run_dirs(out))[3]
    params = out / "runs" / victim / "params.safetensors"
    params.write_bytes(params.read_bytes()[:50])  # truncate
    other = {k: v for k, v in run_dirs(out).items() if k != victim}
    count_trainings.clear()
    capsys.readouterr()

    st = status(out)
    assert st["done"] == 7 and st["pending"] == 1 and st["corrupt"] == [str(out / "runs" / victim)]
    s = run_sweep(str(f), out, progress=False)
    err = capsys.readouterr().err
    assert str(params) in err and "truncated" in err
    assert s.corrupt == [victim] and s.trained == [victim] and count_trainings == [victim]
    assert {k: v for k, v in run_dirs(out).items() if k != victim} == other  # the others untouched
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)


def test_sigkill_mid_sweep_then_resume(tmp_path, count_trainings):
    # Longer jobs (~0.5 s each) so that the kill lands mid-sweep, after some runs finished.
    f = tiny_file(tmp_path, steps=400)
    ref_out = tmp_path / "ref"
    run_sweep(str(f), ref_out, progress=False, max_batch_instances=2)  # one job per batch: 8 saves
    ref_table = comparable(load_table(ref_out))
    count_trainings.clear()

    out = tmp_path / "out"
    proc = sweep_subprocess(f, out, extra=", max_batch_instances=2")
    deadline = time.monotonic() + 120
    while len(run_dirs(out) if (out / "runs").is_dir() else {}) < 3:
        assert proc.poll() is None, "sweep finished before it could be killed: " + proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    survivors = run_dirs(out)
    assert 3 <= len(survivors) < 8
    for key in survivors:
        verify_run(out / "runs" / key)  # every finished run is intact
    st = status(out)
    assert st["running"] == 0 and st["done"] == len(survivors)  # the kernel dropped the dead sweep's locks

    s = run_sweep(str(f), out, progress=False, max_batch_instances=2)
    assert s.already_done == len(survivors)
    assert sorted(s.trained) == sorted(set(ref_table["key"]) - set(survivors))
    assert sorted(count_trainings) == sorted(s.trained)  # nothing that had finished ran again
    after = run_dirs(out)
    assert {k: after[k] for k in survivors} == survivors  # same inode and mtime: not rewritten
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]  # no temp dirs left
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)


def test_two_concurrent_sweeps_share_the_work(tmp_path, reference):
    f, _, ref_table = reference
    out = tmp_path / "out"
    procs = [sweep_subprocess(f, out, extra=", max_batch_instances=2") for _ in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    a, b = (set(r["trained"]) for r in results)
    assert not (a & b), "a job was trained by both sweeps"
    assert a | b == set(ref_table["key"])
    for r in results:
        assert r["done"] == 8 and not r["failed"]  # each sweep returns only once everything is done
    for key in ref_table["key"]:
        verify_run(out / "runs" / key)
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)


# --- locking -------------------------------------------------------------------------

def test_job_lock_is_exclusive_and_status_sees_it(tmp_path, reference):
    f, _, _ = reference
    out = tmp_path / "out"
    exp = load_experiment_file(f)
    sweep_mod.write_manifest(out, exp)
    key = exp.keys()[0]
    lock = JobLock(Store(out).lock_path(key))
    assert lock.acquire(blocking=False)
    try:
        assert not JobLock(Store(out).lock_path(key)).acquire(blocking=False)  # flock: per open file
        st = status(out)
        assert (st["running"], st["pending"], st["done"]) == (1, 7, 0)
        assert st["experiments"]["tiny"]["running"] == 1
        # a worker skips the locked job ...
        assert [o.status for o in run_batch(out, [exp.configs[0]], wait=False)] == ["busy"]
        # ... or, told to wait, blocks until the holder lets go, then trains it
        t = threading.Timer(0.5, lock.release)
        t.start()
        t0 = time.monotonic()
        outcome = run_batch(out, [exp.configs[0]], wait=True)
        assert time.monotonic() - t0 >= 0.4
        assert [o.status for o in outcome] == ["trained"]
        t.join()
    finally:
        lock.release()
    # the job is done now: a worker that gets its lock re-checks and does not train again
    assert [o.status for o in run_batch(out, [exp.configs[0]], wait=False)] == ["done"]
    st = status(out)
    assert (st["running"], st["done"]) == (0, 1)


# --- failures ----------------------------------------------------------------------

def test_failed_and_diverged_jobs_are_recorded(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(f"""
[base]
n = 40
sparsity = 0.9
steps = 60
test_size = 100
snapshots = 2
[[grid]]
T = [5]
data_seed = [0]
[[grid]]
T = [5]
data_seed = [1]
data_path = ["{tmp_path / 'missing.npz'}"]   # raises in training: no run can be saved
[[grid]]
T = [5]
data_seed = [2]
lr = [1e30]                                    # the loss becomes inf/NaN: saved, marked failed
""")
    out = tmp_path / "out"
    s = run_sweep(str(f), out, progress=False)
    exp = load_experiment_file(f)
    good, missing, diverging = exp.keys()
    assert s.failed == [missing] and s.diverged == [diverging] and sorted(s.trained) == sorted([good, diverging])
    rec = json.loads((out / "failed" / f"{missing}.json").read_text())
    assert rec["kind"] == "exception" and "data file not found" in rec["error"] and rec["config"]["data_seed"] == 1
    rec = json.loads((out / "failed" / f"{diverging}.json").read_text())
    assert rec["kind"] == "diverged" and rec["failed_step"] is not None
    assert not (out / "failed" / f"{good}.json").exists()
    assert not (out / "runs" / missing).exists()
    st = status(out)
    assert (st["done"], st["failed"], st["pending"], st["diverged"]) == (2, 1, 0, 1)
    table = load_table(out)
    assert set(table["key"]) == {good, diverging}
    assert table.set_index("key").loc[diverging, "failed_step"] >= 0
    # a failed job is retried by the next sweep (and fails again, still recorded)
    s2 = run_sweep(str(f), out, progress=False)
    assert s2.failed == [missing] and s2.trained == []


def test_bad_arguments(tmp_path, reference, monkeypatch):
    f, _, _ = reference
    with pytest.raises(ToyddError, match="unknown executor 'threads'; valid executors: local, process, ray"):
        run_sweep(str(f), tmp_path / "o", executor="threads")
    with pytest.raises(ToyddError, match="jobs must be a positive integer"):
        run_sweep(str(f), tmp_path / "o", jobs=0)
    with pytest.raises(ToyddError, match="use --executor process"):
        run_sweep(str(f), tmp_path / "o", jobs=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ToyddError, match=r"toydd\[ray\]"):
        run_sweep(str(f), tmp_path / "o", executor="ray")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ToyddError, match="not a directory"):
        run_sweep(str(f), tmp_path / "file")
    with pytest.raises(ToyddError, match="not a sweep directory"):
        status(tmp_path)
    with pytest.raises(ToyddError, match="sweep directory not found"):
        load_table(tmp_path / "nowhere")


# --- reading the store -------------------------------------------------------------

def test_table_and_status(reference):
    f, out, _ = reference
    df = load_table(out)
    assert len(df) == 8 and df["key"].is_unique
    assert df["T"].dtype == float and sorted(set(df["T"])) == [3.0, 10.0, 40.0, math.inf]
    assert set(df["experiments"]) == {"tiny"}
    for col in ("n", "m", "sparsity", "data_seed", "weight_decay", "steps", "test_loss", "train_loss",
                "weight_norm", "bias_norm", "max_feature_dim", "regime", "failed_step", "best_init_seed", "steps_run"):
        assert col in df.columns, col
    assert np.all(np.isfinite(df["test_loss"]))
    assert list(load_table(out, experiment="tiny")["key"]) == list(df["key"])
    with pytest.raises(ToyddError, match="no experiment 'nope'.*found: tiny"):
        load_table(out, experiment="nope")
    csv = table_csv(out)
    assert csv.splitlines()[0].startswith("key,kind,experiments,") and len(csv.splitlines()) == 9
    assert pd.read_csv(__import__("io").StringIO(csv))["T"].max() == math.inf

    st = status(out)
    assert (st["total"], st["done"], st["running"], st["failed"], st["pending"]) == (8, 8, 0, 0, 0)
    assert st["experiments"]["tiny"]["total"] == 8 and st["experiments"]["tiny"]["done"] == 8
    assert "8/8 done" in sweep_mod.format_status(st)


def test_status_counts_pending_jobs_of_a_fresh_manifest(tmp_path, reference):
    f, _, _ = reference
    out = tmp_path / "out"
    sweep_mod.write_manifest(out, load_experiment_file(f))
    st = status(out)
    assert (st["total"], st["pending"], st["done"]) == (8, 8, 0)
    assert len(load_table(out)) == 0


# --- executors -------------------------------------------------------------------------

def test_process_executor(tmp_path, reference):
    f, _, ref_table = reference
    out = tmp_path / "out"
    s = run_sweep(str(f), out, executor="process", jobs=2, progress=False, max_batch_instances=2)
    assert s.ok and len(s.trained) == 8
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)
    assert run_sweep(str(f), out, executor="process", jobs=2, progress=False).trained == []


def test_ray_executor(tmp_path, reference):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'toydd[ray]')")
    f, _, ref_table = reference
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_sweep(str(f), out, executor="ray", progress=False)
        assert ray.is_initialized()  # a sweep leaves a cluster it did not start alone
    finally:
        ray.shutdown()
    assert s.ok and len(s.trained) == 8
    pd.testing.assert_frame_equal(comparable(load_table(out)), ref_table)


def test_a_killed_batch_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A batch killed mid-training leaves its state in resume/; the next run_batch of it starts there, ends with
    the run an uninterrupted batch saves, and removes the state."""
    from toydd.storage import load_run
    from toydd.sweep import job_cost

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    cfg = TrainConfig(n=300, m=2, T=20, sparsity=0.98, steps=200, test_size=500, snapshots=5, init_seeds=2)
    total = job_cost(cfg)

    class Kill(BaseException):
        pass

    done = [0.0]

    def progress(units):
        done[0] += units
        if done[0] >= 0.65 * total:
            raise Kill

    out = tmp_path / "out"
    Store(out).create()
    with pytest.raises(Kill):
        run_batch(out, [cfg], progress=progress)
    assert len(list((out / "resume").iterdir())) == 1
    st = status(out)
    assert not Store(out).is_done(cfg.key()) and st["running"] == 0
    assert [(x["keys"], x["step"]) for x in st["saved_states"]] == [([cfg.key()], 120)]
    assert f"saved: 1 job ({cfg.key()}) resume at step 120" in format_status(st)
    seen = []
    [outcome] = run_batch(out, [cfg], progress=seen.append)
    assert outcome.status == "trained"
    assert seen[0] == pytest.approx(0.6 * total)  # resumed at step 120 of 200
    assert list((out / "resume").iterdir()) == []
    clean = tmp_path / "clean"
    Store(clean).create()
    run_batch(clean, [cfg])
    a, b = load_run(out / "runs" / cfg.key()), load_run(clean / "runs" / cfg.key())
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    assert a.metrics["test_loss"] == b.metrics["test_loss"]


def test_bad_checkpoint_seconds_stops_the_sweep_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "-1")
    with pytest.raises(ToyddError, match="TOYDD_CHECKPOINT_SECONDS"):
        run_sweep(str(tiny_file(tmp_path)), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def _three_jobs_saving_every_20_steps(tmp_path, monkeypatch):
    """An experiment file of three jobs that batch together (T = 10, data seeds 0-2, 200 steps), and its configs;
    trainings save their state every 20 steps."""
    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    f = tmp_path / "three.toml"
    f.write_text(TINY.format(steps=200).replace('T = [3, 10, 40, "inf"]', "T = [10]").replace(
        "data_seed = [0, 1]", "data_seed = [0, 1, 2]"))
    return f, load_experiment_file(f).configs


def test_a_saved_batch_resumes_as_it_was_and_stale_states_go(tmp_path, monkeypatch, capsys):
    """A killed batch's state resumes only that very batch: the next sweep trains those jobs together again,
    whatever it would batch them into now (here: with a third job). A state no sweep can resume (a job of it
    done since, or in no experiment) is listed as stale and removed by the next sweep."""
    f, (c0, c1, c2) = _three_jobs_saving_every_20_steps(tmp_path, monkeypatch)
    resumed = []
    read = training._read_checkpoint
    monkeypatch.setattr(training, "_read_checkpoint", lambda *a: resumed.append(r := read(*a)) or r)

    class Kill(BaseException):
        pass

    def killed_batch(out, configs):
        done = [0.0]

        def progress(units):
            done[0] += units
            if done[0] >= 0.5 * sum(sweep_mod.job_cost(c) for c in configs):
                raise Kill

        with pytest.raises(Kill):
            run_batch(out, configs, progress=progress)

    out = tmp_path / "out"
    Store(out).create()
    killed_batch(out, [c0, c1])
    st = status(out)
    assert [sorted(x["keys"]) for x in st["saved_states"]] == [sorted([c0.key(), c1.key()])]
    assert st["stale_states"] == []
    s = run_sweep(str(f), out, progress=False)  # would batch all three together; trains [c0, c1] first
    assert s.ok and sorted(s.trained) == sorted(c.key() for c in (c0, c1, c2))
    assert sum(r is not None for r in resumed) == 1
    assert list((out / "resume").iterdir()) == []
    clean = tmp_path / "clean"
    run_sweep(str(f), clean, progress=False)
    pd.testing.assert_frame_equal(comparable(load_table(out)), comparable(load_table(clean)))

    out2 = tmp_path / "out2"
    Store(out2).create()
    killed_batch(out2, [c0, c1])
    run_batch(out2, [c0])  # c0 is done: [c0, c1] never trains together again
    st = status(out2)
    assert st["saved_states"] == [] and len(st["stale_states"]) == 1
    assert "stale: " in format_status(st)
    run_sweep(str(f), out2, progress=False)
    assert list((out2 / "resume").iterdir()) == []

    # The experiment's grid changed since (another preset or subset): c1 is in none of the store's experiments.
    # Its state is kept, with a warning (it may hold hours of training; a hostile review saw a sweep of another
    # preset delete one silently), and a sweep that names the jobs again resumes it.
    out3 = tmp_path / "out3"
    run_sweep(str(f), out3, progress=False)
    for c in (c0, c1):
        shutil.rmtree(out3 / "runs" / c.key())
    killed_batch(out3, [c0, c1])
    grid = f.read_text()
    f.write_text(grid.replace("data_seed = [0, 1, 2]", "data_seed = [0, 2]"))
    capsys.readouterr()
    run_sweep(str(f), out3, progress=False)  # trains c0 alone: then [c0, c1] never train together again
    assert "warning: kept " in capsys.readouterr().err
    assert len(status(out3)["stale_states"]) == 1  # c0 is done: stale now, and the next sweep removes it
    run_sweep(str(f), out3, progress=False)
    assert list((out3 / "resume").iterdir()) == []

    out4 = tmp_path / "out4"
    f.write_text(grid)
    run_sweep(str(f), out4, progress=False)
    for c in (c0, c1):
        shutil.rmtree(out4 / "runs" / c.key())
    killed_batch(out4, [c0, c1])
    f.write_text(grid.replace("data_seed = [0, 1, 2]", "data_seed = [2]"))  # names neither c0 nor c1
    capsys.readouterr()
    run_sweep(str(f), out4, progress=False)
    err = capsys.readouterr().err
    assert "warning: kept " in err and "no experiment of this store names now" in err
    [kept] = status(out4)["saved_states"]
    assert kept["unnamed"] and "no experiment here names them now" in format_status(status(out4))
    f.write_text(grid)
    resumed.clear()
    s = run_sweep(str(f), out4, progress=False)  # the grid names them again: the saved batch resumes
    assert s.ok and sorted(s.trained) == sorted([c0.key(), c1.key()])
    assert sum(r is not None for r in resumed) == 1 and list((out4 / "resume").iterdir()) == []


def test_a_full_disk_drops_the_batch_state_to_save_the_runs(tmp_path, monkeypatch):
    """The disk is full when the runs are saved and the batch's own state takes room: the state goes (the results
    are in memory) and the save is tried once more, instead of failing the same way at every rerun."""
    import errno

    from toydd import storage
    from toydd.storage import StoreWriteError, save_run, save_run_making_room

    path = tmp_path / "state.safetensors"
    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    cfg = TrainConfig(n=60, m=2, T=10, sparsity=0.9, steps=60, test_size=200, snapshots=4)
    [result] = training.train_batch([cfg], checkpoint=path)
    assert path.exists()
    calls = []

    def full_once(run_dir, res):
        calls.append(run_dir)
        if len(calls) % 2:  # every other call: the first of each save
            raise StoreWriteError(f"cannot write {run_dir}: No space left on device", errno.ENOSPC)
        return save_run(run_dir, res)

    monkeypatch.setattr(storage, "save_run", full_once)
    save_run_making_room(tmp_path / "run", result, path)
    assert len(calls) == 2 and not path.exists() and (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(StoreWriteError):  # no state of its own to drop: the error stands
        save_run_making_room(tmp_path / "run2", result, path)


def test_saved_batches_resume_in_the_wait_pass_and_live_ones_are_never_stale(tmp_path, monkeypatch):
    """Jobs another sweep held when this one looked (its second pass waits for them): if their owner was killed,
    their saved batch resumes as it was, not split for --jobs. And a saved state whose batch a live process
    holds is never stale, even when the store's experiment no longer names all its jobs."""
    from toydd.sweep import JobOutcome, _remove_stale_states

    f, (c0, c1, c2) = _three_jobs_saving_every_20_steps(tmp_path, monkeypatch)
    out = tmp_path / "out"
    Store(out).create()

    class Kill(BaseException):
        pass

    def progress(units, done=[0.0]):
        done[0] += units
        if done[0] >= 0.5 * (sweep_mod.job_cost(c0) + sweep_mod.job_cost(c1)):
            raise Kill

    with pytest.raises(Kill):
        run_batch(out, [c0, c1], progress=progress)
    [saved] = Store(out).saved_states()

    calls = []

    def held_then_free(out_, batches, wait, *rest):  # first pass: another sweep holds every job
        calls.append((wait, [[c.key() for c in b] for b in batches]))
        if not wait:
            return [JobOutcome(c.key(), "busy") for b in batches for c in b]
        return sweep_mod._run_local(out_, batches, wait, *rest)

    monkeypatch.setitem(sweep_mod._EXECUTE, "process", held_then_free)
    s = run_sweep(str(f), out, executor="process", jobs=2, progress=False)
    assert s.ok and len(s.trained) == 3
    assert calls[1][0] and calls[1][1][0] == saved["keys"]  # the saved batch, whole and first
    assert list((out / "resume").iterdir()) == []

    # a live batch's state: kept, listed as saved, whatever the manifest says now
    out2 = tmp_path / "out2"
    Store(out2).create()
    with pytest.raises(Kill):
        run_batch(out2, [c0, c1], progress=lambda u, d=[0.0]: progress(u, d))
    store = Store(out2)
    sweep_mod.write_manifest(out2, load_experiment_file(f))
    f.write_text(f.read_text().replace("data_seed = [0, 1, 2]", "data_seed = [0, 2]"))
    sweep_mod.write_manifest(out2, load_experiment_file(f))  # c1 is in no experiment now
    lock = JobLock(store.lock_path(c0.key()))
    assert lock.acquire(blocking=True)
    try:
        _remove_stale_states(store)
        assert len(store.saved_states()) == 1
        assert len(status(out2)["saved_states"]) == 1
    finally:
        lock.release()
    # and once nobody holds it: kept still (no job of it is done), listed as saved for jobs no experiment names
    [kept] = status(out2)["saved_states"]
    assert kept["unnamed"] and status(out2)["stale_states"] == []
    _remove_stale_states(store)
    assert len(store.saved_states()) == 1
