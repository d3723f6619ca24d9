"""Regression tests of the hostile review's store rows (issue 17: R4, R5, R7, R8, R9, R10, R11, R13) on the
surfaces experiments-as-modules unified: one store for toy and MNIST jobs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toydd import report, sweep
from toydd.errors import ToyddError

FIX = Path(__file__).parent / "fixtures"


def toydd(*args, env=None, cwd=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "toydd", *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=300)


@pytest.fixture
def prev(tmp_path):
    shutil.copytree(FIX / "store-0.1.0", tmp_path / "prev")
    return tmp_path / "prev"


def test_r4_mnist_sweep_refuses_a_foreign_folder(tmp_path):
    f = tmp_path / "f"
    f.mkdir()
    (f / "notes.md").write_text("a")
    p = toydd("sweep", "mnist-dstar", "--preset", "smoke", "--out", f)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "not empty" in p.stderr, p.stderr
    assert sorted(x.name for x in f.iterdir()) == ["notes.md"]


def test_r5_bad_mnist_data_writes_nothing(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    p = toydd("sweep", "mnist-dstar", "--preset", "quick", "--out", tmp_path / "new", env={"TOYDD_MNIST": str(bad)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "bad.npz" in p.stderr, p.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("edit", [{"jobs": 5, "keys": []}, {"keys": [None]}, {"params": 5}, {"keys": 5},
                                  # keys that name a folder outside runs/ (a hostile review: status counted a run
                                  # elsewhere as done)
                                  {"keys": ["../../elsewhere/runs/0439633b6b2f1d45"]}, {"keys": ["/tmp/run1"]},
                                  {"keys": [".."]}])
def test_r7_a_malformed_manifest_is_skipped_with_a_warning(prev, edit, capsys):
    path = prev / "experiments" / "tiny-recipes.json"
    m = json.loads(path.read_text())
    m.update(edit)
    if "jobs" in edit:
        m["kind"] = "mnist"
    path.write_text(json.dumps(m))
    st = sweep.status(prev)
    assert "tiny-recipes" not in st["experiments"] and "mnist-dstar" in st["experiments"]
    assert "unreadable experiment manifest" in capsys.readouterr().err
    r = report.load_store(prev)
    assert "tiny-recipes" not in r.experiments and any("unreadable experiment manifest" in p for p in r.problems)


def test_table_of_an_experiment_whose_manifest_is_unreadable_is_one_error_line(prev):
    """It printed the manifest's warning, then "no experiment ... found: none": two lines for one failure."""
    (prev / "experiments" / "tiny-recipes.json").write_text('{"garbage')
    p = toydd("table", prev, "--experiment", "tiny-recipes")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "tiny-recipes.json: unreadable experiment manifest" in p.stderr


def test_a_folder_of_someone_elses_files_is_no_store_not_a_damaged_one(tmp_path):
    """A folder holding a file named like a store's folder ("resume", "locks": /proc has one) was told to "move
    cv/resume away", as if it were a damaged store; a file was "not found" (a hostile review)."""
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "resume").write_text("my CV")
    (cv / "notes.txt").write_text("x")
    for args, needle in ((["status", cv], "not a sweep directory"),
                         (["sweep", "t-sweep", "--preset", "smoke", "--out", cv, "--plan"], "not a toydd results directory"),
                         (["status", cv / "notes.txt"], "is a file, not a results directory")):
        p = toydd(*args)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr and "move" not in p.stderr, p.stderr
    assert (cv / "resume").read_text() == "my CV"


def test_a_fifo_in_locks_or_experiments_never_hangs_the_readers(prev):
    """A FIFO where a lock file or a manifest belongs blocked `status`, `table` and `report` for ever in open():
    they now see it is no regular file (a hostile review)."""
    key = sorted(p.name for p in (prev / "runs").iterdir())[0]
    lock = prev / "locks" / f"{key}.lock"
    lock.parent.mkdir(exist_ok=True)
    if lock.exists():
        lock.unlink()
    os.mkfifo(lock)
    os.mkfifo(prev / "experiments" / "fifo.json")
    for args in (["status", prev], ["table", prev]):
        p = subprocess.run([sys.executable, "-m", "toydd", *map(str, args)], capture_output=True, text=True,
                           timeout=60)  # (hung for ever before)
        assert p.returncode == 0 and "fifo.json: unreadable experiment manifest (not a regular file)" in p.stderr, p.stderr


def test_show_of_a_store_gives_an_example_run_that_shows(prev):
    """`show STORE` says where its runs are, with an example; the example was the first folder, a corrupt run
    here (a hostile review)."""
    first, second = sorted(p.name for p in (prev / "runs").iterdir())[:2]
    params = prev / "runs" / first / "params.safetensors"
    params.write_bytes(params.read_bytes()[:20])
    p = toydd("show", prev)
    assert p.returncode == 2 and f"(e.g. {prev / 'runs' / second})" in p.stderr, p.stderr


def test_r8_a_legacy_mnist_runs_folder_replaced_by_a_file_is_named(prev):
    shutil.rmtree(prev / "mnist" / "runs")
    (prev / "mnist" / "runs").write_text("x")
    with pytest.raises(ToyddError, match=r"mnist/runs is not a directory"):
        sweep.status(prev)
    p = toydd("status", prev)
    assert p.returncode == 2 and "mnist/runs is not a directory" in p.stderr


def test_r9_swapped_run_folders_are_corrupt_and_retrained(prev):
    a, b = sorted((prev / "runs").iterdir())
    tmp = prev / "runs" / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    st = sweep.status(prev)
    assert st["experiments"]["tiny-recipes"]["done"] == 0 and len(st["corrupt"]) == 2
    assert len(sweep.load_table(prev, experiment="tiny-recipes")) == 0
    s = sweep.run_sweep(str(FIX / "tiny-recipes.toml"), prev, progress=False)
    assert sorted(s.corrupt) == sorted([a.name, b.name]) and len(s.trained) == 2
    t = sweep.load_table(prev, experiment="tiny-recipes")
    for _, row in t.iterrows():  # each key now holds its own config
        assert sweep.get_experiment(str(FIX / "tiny-recipes.toml")).keys().count(row["key"]) == 1


def test_r9_legacy_mnist_runs_are_read_in_place_and_keep_their_keys(prev):
    st = sweep.status(prev)
    assert st["experiments"]["mnist-dstar"]["done"] == 3 and st["done"] == 5
    t = sweep.load_table(prev, experiment="mnist-dstar")
    assert len(t) == 3 and set(t["kind"]) == {"mnist"}
    key = t["key"].iloc[0]
    p = toydd("show", prev / "mnist" / "runs" / key)
    assert p.returncode == 0 and "mnist-dstar run" in p.stdout and "D* p99 / median" in p.stdout, p.stderr


def test_r10_report_warns_on_stderr_naming_a_truncated_mnist_run(prev):
    run = sorted((prev / "mnist" / "runs").iterdir())[0]
    arr = run / "arrays.safetensors"
    arr.write_bytes(arr.read_bytes()[:-10])
    p = toydd("report", prev, "--movies", "0", "--dpi", "50")
    assert p.returncode == 0, p.stderr
    assert any(line.startswith("warning:") and str(arr) in line for line in p.stderr.splitlines()), p.stderr


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--jobs", "-1"], ["--executor", "foo"]])
def test_r11_mnist_sweep_rejects_bad_executor_options(tmp_path, args):
    p = toydd("sweep", "mnist-dstar", "--preset", "smoke", "--out", tmp_path / "o", *args)
    assert p.returncode == 2 and p.stderr.startswith("error: "), p.stderr
    assert not (tmp_path / "o").exists()


def test_r13_a_killed_reports_temporary_folders_are_cleaned_next_time(prev):
    dead = prev / ".report.tmp-999999-deadbeef"  # pid 999999: not running
    dead.mkdir()
    (dead / "t-sweep-main.png").write_bytes(b"png")
    old = prev / ".report.old-cafef00d"
    old.mkdir()
    (old / "index.html").write_text("<html>")
    kept = prev / ".report.tmp-999998-0badf00d"
    kept.mkdir()
    (kept / "notes.md").write_text("someone's")  # not a report file: never deleted
    report.build_report(prev, movies=0, log=lambda m: None, dpi=50)
    assert not dead.exists() and not old.exists() and (kept / "notes.md").exists()


def test_r15_a_run_file_replaced_by_a_folder_is_named_as_such(prev):
    from toydd.storage import CorruptRun, verify_run

    run = sorted((prev / "runs").iterdir())[0]
    (run / "arrays.safetensors").unlink()
    (run / "arrays.safetensors").mkdir()
    with pytest.raises(CorruptRun, match=r"arrays.safetensors: a directory, not the run's file"):
        verify_run(run)


def test_importing_toydd_plots_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import toydd.plots, toydd.report; "
            "print(matplotlib.get_backend())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "svg", p.stderr


@pytest.mark.parametrize("args", [["--n", "99999999999999999999"], ["--m", "99999999999999999999", "--T", "10"],
                                  ["--m", "0"], ["--T", "0"], ["--seconds", "-1"]])
def test_r14_bench_sizes_out_of_range_are_bad_input(args):
    p = toydd("bench", *args)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
