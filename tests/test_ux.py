"""Issue 17, what a researcher meets first: CLI help, `show` / `table` on a store, the progress line,
the notebook API (dir(toydd), RunResult's repr), and the per-batch `seconds`.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from test_reliability_inputs import cli  # `toydd ARGS` in this process: (exit status, stdout, stderr)
from toydd.sweep import run_sweep

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Two experiments in one store: 2 + 1 tiny jobs (a second or two).
EXP = """
name = "{name}"
description = "tiny"
[base]
n = 40
m = 2
sparsity = 0.9
steps = 60
test_size = 50
snapshots = 2
[grid]
T = {Ts}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ux")
    for name, Ts in (("alpha", "[3, 300]"), ("beta", "[7]")):
        (tmp / f"{name}.toml").write_text(EXP.format(name=name, Ts=Ts))
        assert run_sweep(str(tmp / f"{name}.toml"), tmp / "out", progress=False).ok
    return tmp / "out"


# --- help ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["train"], ["show"], ["sweep"], ["status"], ["table"], ["report"],
                                     ["reproduce"]])
def test_help_is_conventional(capsys, command):
    code, out, _ = cli(capsys, *command, "--help")
    assert code == 0
    assert "<bool>" not in out  # flags (--json, --help, --untied, ...) take no value
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


def test_usage_names_arguments_in_capitals(capsys):
    _, out, _ = cli(capsys, "show", "--help")
    assert re.search(r"Usage: toydd show \[OPTIONS\] RUN_DIR", out), out


def test_every_train_option_has_help(capsys):
    import typer

    from toydd import cli as cli_mod

    command = typer.main.get_command(cli_mod.app)
    for name, sub in command.commands.items():
        if name == "bench":  # the bench command is another change's (issue 17 notes it)
            continue
        for p in sub.params:
            assert p.help, f"toydd {name} {p.name} has no help text"


def test_sweep_help_lists_every_experiment(capsys):
    from toydd.experiments import experiment_names

    _, out, _ = cli(capsys, "sweep", "--help")
    text = re.sub(r"[│\s]+", " ", out)
    for name in experiment_names() + ["mnist-dstar"]:
        assert name in text, name
    assert "..." not in text


def test_flags_take_no_value(capsys):
    code, _, err = cli(capsys, "status", "somewhere", "--json", "true")
    assert code == 2 and "unexpected extra argument" in err.lower()


# --- show / table on a store -----------------------------------------------------------------------------

def test_show_on_a_results_directory_explains_itself(capsys, store):
    code, out, err = cli(capsys, "show", store)
    assert code == 2 and out == ""
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "is a results directory" in line and f"{store}/runs/<key>" in line and f"toydd status {store}" in line
    assert "metrics.json" not in line
    key = sorted(p.name for p in (store / "runs").iterdir())[0]
    code, out, _ = cli(capsys, "show", store / "runs" / key)  # the run it points to is shown
    assert code == 0 and "test loss" in out


def test_table_experiment_filter_and_integer_T(capsys, store):
    import json

    code, out, _ = cli(capsys, "table", store)
    assert code == 0
    full = pd.read_csv(io.StringIO(out))
    assert len(full) == 3
    for name, Ts in (("alpha", {3, 300}), ("beta", {7})):
        code, out, _ = cli(capsys, "table", store, "--experiment", name)
        assert code == 0
        df = pd.read_csv(io.StringIO(out))
        keys = json.loads((store / "experiments" / f"{name}.json").read_text())["keys"]
        assert sorted(df["key"]) == sorted(keys) and set(df["T"]) == Ts
        assert set(df["experiments"]) == {name}
    # T is written as an integer (300, not 300.0); so is an integer column pandas had turned into floats
    lines = out.splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[1].split(",")))
    assert row["T"] == "7" and row["steps"] == "60"
    code, _, err = cli(capsys, "table", store, "--experiment", "gamma")
    assert code == 2 and "no experiment 'gamma'" in err and "alpha" in err


def test_csv_writes_inf_and_integers_with_gaps():
    from toydd.cli import csv_text

    df = pd.DataFrame({"T": [300.0, float("inf")], "warmup": [250.0, None], "lr": [1.0, 0.5],
                       "train_loss": [0.25, float("nan")]})
    lines = csv_text(df).splitlines()
    assert lines[1] == "300,250,1.0,0.25" and lines[2] == "inf,,0.5,", lines


# --- seconds of a batch -------------------------------------------------------------------------------------

def test_batch_size_is_recorded_beside_the_shared_seconds(store):
    from toydd.sweep import load_table

    df = load_table(store)
    assert (df["batch_size"] >= 1).all()
    # Runs of one batch share `seconds` (the batch's wall time), and batch_size says how many shared it.
    for _, g in df.groupby("seconds"):
        assert (g["batch_size"] >= len(g)).all()


def test_train_batch_records_batch_size():
    from toydd import TrainConfig, train_batch

    cfg = TrainConfig(n=40, m=2, T=5, sparsity=0.9, steps=20, test_size=50, snapshots=2)
    runs = train_batch([cfg.replace(data_seed=s) for s in range(3)])
    assert [r.metrics["batch_size"] for r in runs] == [3, 3, 3]
    assert len({r.metrics["seconds"] for r in runs}) == 1


# --- the notebook API ---------------------------------------------------------------------------------------

def test_dir_lists_the_lazy_names_without_importing_them():
    code = ("import sys, toydd; d = dir(toydd); "
            "assert {'train', 'train_batch', 'load_run', 'save_run', 'RunResult', 'run_sweep', 'load_table', "
            "'plots', 'TrainConfig'} <= set(d), d; "
            "assert set(toydd.__all__) <= set(d); "
            "assert 'toydd.training' not in sys.modules and 'matplotlib' not in sys.modules; "
            "import toydd.plots; assert callable(toydd.plots.fig_main); print('ok')")
    import toydd

    src = str(Path(toydd.__file__).resolve().parents[1])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=src))
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_run_result_repr_is_short_and_says_what_matters(store):
    from toydd import load_run

    run = load_run(sorted((store / "runs").iterdir())[0])
    text = repr(run)
    assert len(text) < 1200, len(text)
    for needle in ("n=40", "m=2", "T=", "test_loss=", "regime=", "W: (2, 40)", "snapshot_W", "path="):
        assert needle in text, needle
    assert "array(" not in text


# --- progress -------------------------------------------------------------------------------------------------

def _render(total, steps, jobs=None, unit="work", pause=0.3):
    from rich.console import Console

    from toydd.progress import ProgressBar

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=200)
    bar = ProgressBar(True, "replication-gap (smoke)", total, jobs, unit=unit, console=con)
    for k in steps:
        bar.advance(k)
        time.sleep(pause)
    if jobs:
        bar.jobs(1)
    bar.close()
    text = ANSI.sub("", buf.getvalue()).replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip()]


def test_progress_line_is_labelled_and_fits_80_columns():
    lines = _render(1000, [250, 250], jobs=24)
    assert lines and all(len(line) <= 80 for line in lines), lines
    last = lines[-1]
    assert "50% of work" in last and "1/24 jobs" in last and "elapsed" in last and "ETA " in last, last
    assert "-:--:--" not in "".join(lines)
    assert "ETA measuring" in lines[0]  # nothing done yet: no made-up clock


def test_progress_eta_comes_from_the_measured_rate():
    from toydd.progress import eta_seconds

    assert eta_seconds(0, 100, 5.0) is None
    assert eta_seconds(25, 100, 10.0) == pytest.approx(30.0)  # 25 units in 10 s: 75 more take 30 s
    assert eta_seconds(100, 100, 10.0) == 0.0
    # with the cost model's estimate (issue 18): an ETA from the first second, then the measurement takes over
    assert eta_seconds(0, 100, 0.0, estimate=200.0) == pytest.approx(200.0)
    assert eta_seconds(10, 100, 10.0, estimate=200.0) == pytest.approx(0.8 * 180.0 + 0.2 * 90.0)
    assert eta_seconds(50, 100, 10.0, estimate=200.0) == pytest.approx(10.0)  # half done: measured alone
    lines = _render(100, [50], unit="steps", pause=1.2)
    m = re.search(r"50/100 steps, (\d+)s elapsed, ETA (\d+)s", lines[-1])
    assert m, lines[-1]
    assert abs(int(m.group(2)) - int(m.group(1))) <= 1  # half done: as long again


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path):
    import toydd

    src = str(Path(toydd.__file__).resolve().parents[1])
    (tmp_path / "e.toml").write_text(EXP.format(name="e", Ts="[3]"))
    p = subprocess.run([sys.executable, "-m", "toydd", "sweep", tmp_path / "e.toml", "--out", tmp_path / "o"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=src))
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "jobs done" in p.stderr, p.stderr
    assert "━" not in p.stderr and "ETA" not in p.stderr


# --- lock files (row 10) ---------------------------------------------------------------------------------------

def test_sweep_leaves_no_lock_files_of_finished_jobs(store):
    assert (store / "locks").is_dir()
    assert list((store / "locks").iterdir()) == []


def test_removed_lock_is_never_held_twice(tmp_path):
    """A holder removes its lock while a second process waits on it: the waiter ends up holding the file at the
    path (not the deleted one), and a third cannot take the job's lock meanwhile."""
    import threading

    from toydd.sweep import JobLock

    path = tmp_path / "k.lock"
    a = JobLock(path)
    assert a.acquire(blocking=False)
    b = JobLock(path)
    got = []
    t = threading.Thread(target=lambda: got.append(b.acquire(blocking=True)))
    t.start()
    time.sleep(0.3)  # b has opened the file and blocks in flock
    assert got == []
    a.release(remove=True)
    t.join(10)
    assert got == [True]
    assert path.exists() and os.fstat(b.fd).st_ino == os.stat(path).st_ino  # b holds the file that is there now
    c = JobLock(path)
    assert not c.acquire(blocking=False)  # one holder only
    b.release()
    assert c.acquire(blocking=False)
    c.release()


def test_remove_done_locks_spares_held_and_unfinished_jobs(store, tmp_path):
    import shutil

    from toydd.sweep import JobLock, Store, remove_done_locks

    out = tmp_path / "copy"
    shutil.copytree(store, out)
    st = Store(out)
    done = sorted(p.name for p in (out / "runs").iterdir())
    held, free = done[0], done[1]
    for key in (held, free, "0123456789abcdef"):  # the last: a job with no run (pending or failed)
        st.lock_path(key).write_text("")
    other = JobLock(st.lock_path(held))
    assert other.acquire(blocking=False)  # another sweep still at work on it
    try:
        assert remove_done_locks(st, [held, free, "0123456789abcdef"]) == 1
    finally:
        other.release()
    assert st.lock_path(held).exists() and not st.lock_path(free).exists()
    assert st.lock_path("0123456789abcdef").exists()


# --- figures (row 9) ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Smoke sweeps of the experiments whose figures the review read: (table by experiment, runs, mnist runs)."""
    import json

    from toydd import load_run, load_table
    from toydd.results import load_results

    out = tmp_path_factory.mktemp("smoke") / "store"
    for name in ("t-sweep", "replication-gap", "repeated", "mnist-dstar"):
        assert run_sweep(name, out, preset="smoke", progress=False).ok
    table = load_table(out)
    table = table[table["kind"] == "toy"]
    tables = {name: table[table["key"].isin(json.loads((out / "experiments" / f"{name}.json").read_text())["keys"])]
              for name in ("t-sweep", "replication-gap", "repeated")}
    t = tables["t-sweep"]
    runs = [load_run(out / "runs" / k) for k in t.drop_duplicates("T")["key"]]
    return tables, runs, load_results(out).runs("mnist-dstar")


def tick_texts(ax) -> list[str]:
    ax.figure.canvas.draw()
    return [t.get_text() for axis in (ax.xaxis, ax.yaxis) for minor in (False, True)
            for t in axis.get_ticklabels(minor=minor) if t.get_text()]


def assert_plain_ticks(ax):
    texts = tick_texts(ax)
    assert texts, "no tick labels"
    bad = [t for t in texts if "times" in t or "×" in t]
    assert not bad, bad


def assert_legend_off_the_data(fig):
    """The legend is the figure's, drawn outside every axes (not over a line or a marker)."""
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes), "a legend inside an axes"
    assert len(fig.legends) == 1
    box = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        a = ax.get_window_extent()
        overlap = min(box.x1, a.x1) - max(box.x0, a.x0) > 0 and min(box.y1, a.y1) - max(box.y0, a.y0) > 0
        assert not overlap, (box, a)


def test_narrow_log_axes_have_plain_tick_labels(smoke):
    from toydd import plots, plots_mnist

    tables, runs, mruns = smoke
    gap = plots.fig_replication_gap(tables["replication-gap"])
    ax_norm = gap.axes[1]
    assert ax_norm.get_yscale() == "log" and ax_norm.get_ylabel() == "weight norm ||W||_F"
    assert_plain_ticks(ax_norm)
    for ax in (plots_mnist.fig_vs_step(plots_mnist.clean_runs(mruns)).axes[0],
               plots.fig_training_curves(runs).axes[0],
               plots.fig_repeated(tables["repeated"]).axes[0]):
        assert "log" in (ax.get_xscale(), ax.get_yscale())
        assert_plain_ticks(ax)
    # The T axis of a narrow sweep (T = 3 ... 30): plain numbers at 1, 2, 5 x 10^k, not one lone 10^1.
    labels = [t for t in tick_texts(gap.axes[0]) if t]
    assert {"3", "10", "30"} <= set(labels) and not any("^" in t for t in labels), labels


def test_plain_log_formatter_words():
    from toydd.plots import PlainLogFormatter

    f = PlainLogFormatter(labelOnlyBase=False)
    assert [f._num_to_string(x, 0, 1) for x in (0.6, 1.9, 2.0, 300.0, 1000.0, 0.002)] == \
        ["0.6", "1.9", "2", "300", "1,000", "0.002"]
    assert f._num_to_string(1e6, 0, 1) == "$10^{6}$" and f._num_to_string(2e-5, 0, 1) == r"$2\times10^{-5}$"


def test_legends_do_not_cover_the_data(smoke):
    from toydd import plots, plots_mnist

    tables, _, mruns = smoke
    assert_legend_off_the_data(plots_mnist.fig_vs_step(plots_mnist.clean_runs(mruns)))
    assert_legend_off_the_data(plots.fig_repeated(tables["repeated"]))


def test_every_axis_is_titled_in_words(smoke):
    from toydd import plots, plots_mnist

    tables, runs, mruns = smoke
    noise = plots_mnist.fig_label_noise(plots_mnist.noisy_runs(mruns))
    left, right = noise.axes[:2]
    assert left.get_ylabel() == "density of digits" and right.get_ylabel()
    chance = [t.get_text() for t in right.get_legend().get_texts() if "chance" in t.get_text()]
    assert chance, "the chance line is not in the legend"
    gap = plots.fig_replication_gap(tables["replication-gap"])
    figs = [gap, noise, plots_mnist.fig_vs_step(plots_mnist.clean_runs(mruns)),
            plots_mnist.fig_train_vs_held_out(plots_mnist.clean_runs(mruns)),
            plots.fig_training_curves(runs), plots.fig_repeated(tables["repeated"])]
    for fig in figs:
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel(), (fig, ax.get_title())
            # a row of panels shares one y title, on its first panel
            first = ax.get_subplotspec().colspan.start == 0 if ax.get_subplotspec() else True
            if first or fig is gap or fig is noise:
                assert ax.get_ylabel() and ax.get_ylabel() not in ("D*", "||W||_F"), (ax.get_title(), ax.get_ylabel())


def test_the_infinity_break_is_explained(smoke):
    from toydd import plots

    tables, runs, _ = smoke
    fig = plots.fig_main(tables["t-sweep"], runs)
    assert "∞: infinite data" in fig.axes[1].get_xlabel()
    gap = plots.fig_replication_gap(tables["replication-gap"])  # finite T only: no break, no note
    assert "∞" not in gap.axes[0].get_xlabel()


@pytest.mark.parametrize("command", ["status", "table", "report"])
def test_store_commands_on_a_run_directory_point_to_show(capsys, store, command):
    run = sorted((store / "runs").iterdir())[0]
    code, out, err = cli(capsys, command, run)
    assert code == 2 and out == ""
    assert err.strip() == f"error: {run} is a run directory (one trained model), not a results directory: " \
                          f"see it with toydd show {run}"
    assert not (run / "report").exists()
