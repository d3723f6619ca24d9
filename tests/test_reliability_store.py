"""Issue 8, the store half: every store fault is one ``error:`` line or a per-run message
naming the file, nothing a user owns is ever deleted, no single bad run makes a
directory unusable. One test per row of the issue (``test_rowNN_...``), then the
same class of fault found elsewhere. docs/RELIABILITY.md lists them all.

Most commands run in-process through ``toydd.cli.main`` (a subprocess costs
seconds of imports on a busy machine): a traceback there is an uncaught
exception, which fails the test; the kill-the-parent test needs real processes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toydd import storage
from toydd import sweep as sweep_mod
from toydd import training
from toydd.cli import main
from toydd.storage import CorruptRun, verify_run

# 3 jobs (one per T), each a fraction of a second.
TINY = """
name = "tiny"
description = "tiny sweep for reliability tests"
[base]
n = 20
m = 2
sparsity = 0.9
steps = {steps}
test_size = 50
online_batch = 32
snapshots = 2
init_seeds = 1
[grid]
T = [3, 5, 8]
"""

TRAIN = ["train", "--n", "20", "--T", "4", "--sparsity", "0.9", "--steps", "20", "--test-size", "50",
         "--snapshots", "2"]


def toydd(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(code: int, err: str, *needles: str, log: bool = False) -> str:
    """Exit 2 and one ``error:`` line, no traceback. ``log``: a sweep's progress lines may come before it."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("error: "), err
    assert len(lines) == 1 or (log and sum(ln.startswith("error:") for ln in lines) == 1), err
    for n in needles:
        assert n in lines[-1], lines[-1]
    return lines[-1]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (what a user would call 'my files')."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def trainings(monkeypatch):
    """Keys (sweeps) and configs (train) handed to training in this process."""
    seen: list = []
    real_batch = training.train_batch  # training.train calls it too

    def batch(configs, *a, **k):
        seen.extend(c.key() for c in configs)
        return real_batch(configs, *a, **k)

    monkeypatch.setattr(training, "train_batch", batch)
    return seen


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A complete sweep of the tiny experiment: (experiment file, store); copy it before changing it."""
    tmp = tmp_path_factory.mktemp("tiny")
    f = tmp / "tiny.toml"
    f.write_text(TINY.format(steps=30))
    out = tmp / "store"
    s = sweep_mod.run_sweep(str(f), out, progress=False)
    assert s.ok and len(s.trained) == 3
    return f, out


@pytest.fixture
def store(tiny_store, tmp_path):
    f, out = tiny_store
    dst = tmp_path / "store"
    shutil.copytree(out, dst)
    return f, dst, sorted(p.name for p in (dst / "runs").iterdir())


# --- the rows of issue 8 ------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_row03_unwritable_out_fails_before_training(capsys, tmp_path, trainings, tiny_store):
    f, _ = tiny_store
    for args in (TRAIN + ["--out", "/proc/foo"],
                 ["sweep", f, "--out", "/proc/foo"],
                 ["reproduce", "--preset", "smoke", "--out", "/proc/foo"]):
        code, _, err = toydd(capsys, *args)
        assert_one_error(code, err, "/proc/foo", "not writable")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if not os.access(ro, os.W_OK) or os.geteuid() != 0:  # root ignores modes: /proc above covers it
            code, _, err = toydd(capsys, "sweep", f, "--out", ro / "x")
            assert_one_error(code, err, "not writable")
    finally:
        os.chmod(ro, 0o755)
    assert trainings == []  # refused before any training


def test_row09_train_refuses_foreign_directory(capsys, tmp_path, trainings):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.csv").write_text("1,2,3")
    before = tree(mine)
    code, _, err = toydd(capsys, *TRAIN, "--out", mine)
    assert_one_error(code, err, str(mine), "not a toydd run directory")
    code, _, err = toydd(capsys, *TRAIN, "--out", mine, "--overwrite")  # not even with --overwrite
    assert_one_error(code, err, "not a toydd run directory")
    assert tree(mine) == before and trainings == []

    # A toydd run is replaced only with --overwrite; an empty directory is fine.
    run = tmp_path / "run"
    run.mkdir()
    code, _, err = toydd(capsys, *TRAIN, "--out", run)
    assert code == 0, err
    verify_run(run)
    first = (run / "metrics.json").stat().st_ino
    code, _, err = toydd(capsys, *TRAIN, "--out", run)
    assert_one_error(code, err, "already holds a toydd run", "--overwrite")
    assert (run / "metrics.json").stat().st_ino == first
    code, _, err = toydd(capsys, *TRAIN, "--out", run, "--overwrite", "--steps", "25")
    assert code == 0, err
    assert verify_run(run)["steps"] == 25
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp or old dirs left
    assert len(trainings) == 2


def test_row10_train_out_dot_is_an_error_line(capsys, tmp_path, monkeypatch, trainings):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, err = toydd(capsys, *TRAIN, "--out", ".")  # empty: once EBUSY, or the shell's cwd deleted
    assert_one_error(code, err, "current directory")
    (here / "notes.txt").write_text("mine")
    code, _, err = toydd(capsys, *TRAIN, "--out", "..")
    assert_one_error(code, err, "current directory")
    assert here.is_dir() and (here / "notes.txt").read_text() == "mine" and trainings == []


def test_row14_bad_metrics_json_is_one_corrupt_run_not_a_dead_store(capsys, store, trainings):
    f, out, keys = store
    k_null, k_list, k_dir = keys
    for key, sums in ((k_null, None), (k_list, ["a", "b"])):
        p = out / "runs" / key / "metrics.json"
        m = json.loads(p.read_text())
        m["checksums"] = sums
        p.write_text(json.dumps(m))
    mdir = out / "runs" / k_dir / "metrics.json"
    mdir.unlink()
    mdir.mkdir()
    (mdir / "why.txt").write_text("a user's file where metrics.json belongs")

    code, stdout, err = toydd(capsys, "status", out)
    assert code == 0 and "0/3 done" in stdout and "Traceback" not in err
    for key in keys:
        assert f"corrupt: {out / 'runs' / key}" in stdout
    code, stdout, err = toydd(capsys, "table", out)
    assert code == 0 and stdout.count("\n") == 1  # header only
    for key in keys:
        assert f"{out / 'runs' / key / 'metrics.json'}" in err
    code, _, err = toydd(capsys, "show", out / "runs" / k_null)
    assert_one_error(code, err, str(out / "runs" / k_null / "metrics.json"))
    code, _, err = toydd(capsys, "show", out / "runs" / k_dir)
    assert_one_error(code, err, str(mdir))

    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert code == 0, err
    assert sorted(trainings) == keys  # each reported by name and retrained
    for key in keys:
        assert f"corrupt run, training it again: {out / 'runs' / key / 'metrics.json'}" in err
        verify_run(out / "runs" / key)
    kept = [p for p in (out / "runs").iterdir() if p.name.startswith(f".{k_dir}.kept-")]
    assert len(kept) == 1 and (kept[0] / "metrics.json" / "why.txt").is_file()  # the user's file survives
    assert f"kept in {kept[0]}" in err
    code, stdout, _ = toydd(capsys, "status", out)
    assert code == 0 and "3/3 done" in stdout and "corrupt" not in stdout


def test_row15_damaged_locks_and_store_folders(capsys, store, trainings):
    f, out, keys = store
    shutil.rmtree(out / "runs" / keys[0])  # job 0 not trained, its lock a directory
    lock = out / "locks" / f"{keys[0]}.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    (lock / "mine").write_text("x")
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert_one_error(code, err, str(lock), "not a lock file")
    assert (lock / "mine").is_file() and trainings == []
    (lock / "mine").unlink()  # an empty directory is repaired
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert code == 0, err
    assert trainings == [keys[0]] and not os.path.lexists(lock)  # repaired, trained, then removed as done

    for sub in ("locks", "runs"):
        d = out / sub
        os.rename(d, out / f"{sub}.moved")
        d.write_text("not a folder")
        cmds = [["status", out], ["table", out], ["sweep", f, "--out", out]]
        if sub == "runs":  # the report reads no locks
            cmds.append(["report", out, "--movies", "0"])
        for cmd in cmds:
            code, stdout, err = toydd(capsys, *cmd)
            assert_one_error(code, err, f"{d} is not a directory")
            assert "done" not in stdout
        assert d.read_text() == "not a folder"
        d.unlink()
        os.rename(out / f"{sub}.moved", d)
    code, stdout, _ = toydd(capsys, "status", out)
    assert code == 0 and "3/3 done" in stdout
    assert trainings == [keys[0]]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_row16_disk_full_is_one_error_line_naming_the_disk(capsys, tmp_path, store, trainings, monkeypatch):
    f, out, keys = store
    real = storage._write_all
    shutil.rmtree(out / "runs" / keys[1])

    def full(fh, data):  # the disk fills up once training is done: the manifest still fits, runs do not
        name = os.readlink(f"/proc/self/fd/{fh.fileno()}")
        if str(out) not in name or f"{os.sep}runs{os.sep}" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fh, data)

    monkeypatch.setattr(storage, "_write_all", full)
    sweep_out = out
    code, _, err = toydd(capsys, "sweep", f, "--out", sweep_out)
    line = assert_one_error(code, err, str(sweep_out / "runs" / keys[1]), "No space left on device", "disk mounted at",
                            log=True)
    assert "full" in line
    assert not [p for p in (sweep_out / "runs").iterdir() if p.name.startswith(".")]  # nothing half-written

    code, _, err = toydd(capsys, *TRAIN, "--out", tmp_path / "r")
    assert_one_error(code, err, str(tmp_path / "r"), "No space left on device")
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    monkeypatch.setattr(storage, "_write_all", real)  # space freed: the store resumes
    code, _, err = toydd(capsys, "sweep", f, "--out", sweep_out)
    assert code == 0, err
    verify_run(sweep_out / "runs" / keys[1])


def test_row17_edited_metrics_json_is_detected(capsys, store, trainings):
    f, out, keys = store
    p = out / "runs" / keys[0] / "metrics.json"
    text = p.read_text()
    m = json.loads(text)
    assert "metrics.json" in m["checksums"]
    p.write_text(text.replace(f'"train_loss": {json.dumps(m["train_loss"])}', '"train_loss": 0.001', 1))
    assert json.loads(p.read_text())["train_loss"] == 0.001
    with pytest.raises(CorruptRun, match="metrics.json: edited or corrupted"):
        verify_run(p.parent)

    # A run written before metrics.json covered itself still verifies.
    q = out / "runs" / keys[1] / "metrics.json"
    old = json.loads(q.read_text())
    del old["checksums"]["metrics.json"]
    q.write_text(json.dumps(old, indent=2))
    verify_run(q.parent)

    code, stdout, _ = toydd(capsys, "status", out)
    assert code == 0 and "2/3 done" in stdout and f"corrupt: {p.parent}" in stdout
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert code == 0 and str(p) in err
    assert trainings == [keys[0]]
    assert json.loads(p.read_text())["train_loss"] != 0.001


def test_row18_extra_directory_in_runs_is_reported_consistently(capsys, store, trainings):
    f, out, keys = store
    extra = out / "runs" / "my-backup"
    extra.mkdir()
    (extra / "notes.txt").write_text("mine")
    code, stdout, err = toydd(capsys, "status", out)
    assert code == 0 and "3/3 done" in stdout and "0 pending" in stdout
    assert f"ignored: {extra}" in stdout
    st = sweep_mod.status(out)
    assert (st["total"], st["done"], st["pending"]) == (3, 3, 0)
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert code == 0 and "3/3 jobs done" in err and trainings == []
    code, stdout, err = toydd(capsys, "table", out)
    assert code == 0 and stdout.count("\n") == 4 and f"ignored: {extra}" in err
    assert (extra / "notes.txt").read_text() == "mine"


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_row19_process_workers_die_with_a_killed_parent(tmp_path):
    f = tmp_path / "long.toml"
    f.write_text(TINY.format(steps=200_000))  # minutes of work: the kill lands mid-job
    out = tmp_path / "out"
    # The sweep as `toydd sweep` runs it, without the CLI's imports (seconds on a busy machine).
    code = (f"from toydd.sweep import run_sweep; run_sweep({str(f)!r}, {str(out)!r}, executor='process', jobs=2, "
            "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Both workers are up (initializer done) once they hold locks on two jobs.
        while len(list((out / "locks").glob("*.lock")) if (out / "locks").is_dir() else []) < 2 \
                or len(_children(proc.pid)) < 3:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "workers never started"
            time.sleep(0.2)
        kids = _children(proc.pid)  # 2 workers + multiprocessing's resource_tracker
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while [k for k in kids if _alive(k)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [k for k in kids if _alive(k)] == [], "orphaned workers still alive 15 s after the parent died"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = sweep_mod.status(out)
    assert st["running"] == 0  # their locks died with them: the next sweep resumes


def test_row21_report_names_a_truncated_run(capsys, store):
    f, out, keys = store
    bad = out / "runs" / keys[2] / "params.safetensors"
    bad.write_bytes(bad.read_bytes()[:20])
    code, stdout, err = toydd(capsys, "report", out, "--movies", "0", "--dpi", "40")
    assert code == 0, err
    assert f"warning: {bad}: truncated or corrupted" in err and "Traceback" not in err
    assert (out / "report" / "index.html").is_file()
    assert str(bad) in (out / "report" / "index.html").read_text()


# --- the same class of fault elsewhere ---------------------------------------------------------

def test_report_never_replaces_a_report_folder_holding_user_files(capsys, store):
    f, out, keys = store
    rep = out / "report"
    (rep / "drafts").mkdir(parents=True)
    (rep / "drafts" / "paper.md").write_text("mine")
    (rep / "index.html").write_text("old")
    code, _, err = toydd(capsys, "report", out, "--movies", "0", "--dpi", "40")
    assert_one_error(code, err, str(rep), "drafts")
    assert (rep / "drafts" / "paper.md").read_text() == "mine"
    code, _, err = toydd(capsys, "reproduce", "--preset", "smoke", "--out", out)  # refused before any sweep
    assert_one_error(code, err, "drafts")
    shutil.rmtree(rep / "drafts")  # an old toydd report is replaced
    code, _, err = toydd(capsys, "report", out, "--movies", "0", "--dpi", "40")
    assert code == 0, err
    assert (rep / "index.html").read_text() != "old"
    assert not [p for p in out.iterdir() if p.name.startswith(".report")]


def test_sweep_refuses_a_foreign_nonempty_directory(capsys, tmp_path, tiny_store, trainings):
    f, _ = tiny_store
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "main.py").write_text("print('mine')")
    for args in (["sweep", f, "--out", mine], ["reproduce", "--preset", "smoke", "--out", mine]):
        code, _, err = toydd(capsys, *args)
        assert_one_error(code, err, str(mine), "not a toydd results directory")
    assert sorted(p.name for p in mine.iterdir()) == ["main.py"] and trainings == []


def test_cleanup_touches_only_what_toydd_wrote(store, capsys):
    f, out, keys = store
    runs = out / "runs"
    # Leftovers of a killed save_run are removed; a look-alike holding someone's file is not.
    dead = runs / f".{keys[0]}.tmp-1-deadbeef"
    shutil.copytree(runs / keys[0], dead)
    lookalike = runs / f".{keys[0]}.old-cafecafe"
    lookalike.mkdir()
    (lookalike / "mine.txt").write_text("mine")
    sweep_mod.Store(out).clean_partial(keys[0])
    assert not dead.exists() and (lookalike / "mine.txt").read_text() == "mine"

    # failed/<key>.json that is a directory: not removed, not a traceback.
    fdir = out / "failed" / f"{keys[1]}.json"
    fdir.mkdir(parents=True)
    shutil.rmtree(runs / keys[1])
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert code == 0, err
    assert fdir.is_dir() and verify_run(runs / keys[1])

    # save_run over a run directory holding a foreign file keeps that file aside.
    (runs / keys[2] / "notes.txt").write_text("mine")
    r = storage.load_run(runs / keys[2])
    storage.save_run(runs / keys[2], r)
    kept = [p for p in runs.iterdir() if p.name.startswith(f".{keys[2]}.kept-")]
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "mine"
    verify_run(runs / keys[2])


def test_store_write_errors_name_the_file(tmp_path, monkeypatch):
    target = tmp_path / "d" / "x.json"
    target.mkdir(parents=True)  # a directory where a file must go
    with pytest.raises(storage.StoreWriteError, match=f"cannot write {target}"):
        storage.atomic_write_json(target, {"a": 1})
    assert target.is_dir() and list(target.parent.iterdir()) == [target]


def test_a_lock_symlinked_to_a_user_file_is_never_truncated(capsys, store, tmp_path, trainings):
    f, out, keys = store
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate")
    shutil.rmtree(out / "runs" / keys[0])
    lock = out / "locks" / f"{keys[0]}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    code, _, err = toydd(capsys, "sweep", f, "--out", out)
    assert_one_error(code, err, str(lock), "not a lock file")
    with pytest.raises(sweep_mod.ToyddError, match="symbolic link"):
        sweep_mod.JobLock(lock).acquire(blocking=False)
    assert precious.read_text() == "do not truncate" and trainings == []


def test_report_on_a_full_disk_is_one_error_line(capsys, store, monkeypatch):
    from toydd import report as report_mod

    f, out, keys = store

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report_mod, "render_html", full)
    code, _, err = toydd(capsys, "report", out, "--movies", "0", "--dpi", "40")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and sum(ln.startswith("error:") for ln in err.splitlines()) == 1
    assert line.startswith(f"error: cannot write {out / 'report'}: No space left on device (the disk mounted at")
    assert not [p for p in out.iterdir() if p.name.startswith(".report")]  # the half-built report is gone
