"""Issue 17, the review's hostile half: one regression test per row (R1, R2, R3, R6, R12, R15), and the
same classes of defect found beside them. Bad input is one `error: ...` line, exit 2, nothing written.
"""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_reliability_inputs import bad  # ARGS is bad input: exit 2, one `error:` line naming the problem
from toydd.config import TrainConfig
from toydd.errors import ToyddError

TINY = ["--n", 200, "--T", 5, "--steps", 50, "--sparsity", 0.99, "--test-size", 50, "--device", "cpu"]


@pytest.fixture
def no_training(monkeypatch):
    """Bad input must be refused before any training starts."""
    from toydd import training

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "train_batch", refuse)


# --- R1: eps that float32 cannot hold -------------------------------------------------------------------

@pytest.mark.parametrize("eps", ["1e-320", "5e-324", "1e-39", "0", "1e39"])
def test_R1_eps_outside_float32_is_bad_input(capsys, tmp_path, no_training, eps):
    # (the summed loss: with --loss-norm mean Adam gets eps x n, and 1e-39 x 200 is a normal float32)
    line = bad(capsys, "eps", "train", *TINY, "--loss-norm", "sum", "--eps", eps, "--out", tmp_path / "o")
    assert "float32" in line or "positive" in line
    assert not (tmp_path / "o").exists()


def test_R1_smallest_normal_eps_still_trains():
    from toydd import train

    # The smallest normal float32 (1.18e-38) and up are accepted, and train.
    run = train(TrainConfig(n=200, T=5, steps=50, sparsity=0.99, test_size=50, eps=1.2e-38, device="cpu"))
    assert run.metrics["failed_step"] is None


def test_R1_mean_loss_norm_checks_the_eps_adam_uses():
    with pytest.raises(ToyddError, match="eps"):
        TrainConfig(eps=1e-300, loss_norm="mean")
    TrainConfig(eps=1e-40, loss_norm="mean", n=10**4)  # Adam gets eps x n = 1e-36: a normal float32


# --- R2: initial parameters that overflow float32 ------------------------------------------------------------

@pytest.mark.parametrize("opt,value", [("--bias-init", "1e39"), ("--bias-init", "1e300"), ("--bias-init", "-1e39"),
                                       ("--init-scale", "1e30"), ("--init-scale", "1e300")])
def test_R2_huge_init_is_refused_naming_the_option(capsys, tmp_path, no_training, opt, value):
    bad(capsys, opt.lstrip("-").replace("-", "_"), "train", *TINY, opt, value, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_R2_bounds_are_where_float32_overflows():
    # n = 200, m = 2 measured: bias 1e18 gives an initial loss of 2e38 (finite, no headroom), 1e19 overflows;
    # init_scale 3e9 gives 1.4e36, 1e10 overflows. The checks sit between.
    TrainConfig(n=200, bias_init=1e17)
    TrainConfig(n=200, init_scale=3e9)
    TrainConfig(n=200, bias_init=-1e30)  # a negative bias is cut off by the ReLU: a dead but finite model
    for kw in ({"bias_init": 1e19}, {"init_scale": 1e10}):
        with pytest.raises(ToyddError, match=next(iter(kw))):
            TrainConfig(n=200, **kw)


def test_R2_experiment_file_base_is_refused_before_anything_is_written(capsys, tmp_path, no_training):
    f = tmp_path / "e.yaml"
    f.write_text("name: e\nbase: {n: 50, steps: 5, bias_init: 1.0e+39}\ngrid: {T: [3]}\n")
    bad(capsys, "bias_init", "sweep", f, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- R3: options that do not apply to the construction -----------------------------------------------------

@pytest.mark.parametrize("extra,needle", [(["--init-scale", "0"], "init_scale"), (["--bias-init", "3"], "bias_init"),
                                          (["--init-scale", "0", "--bias-init", "3"], "does not apply"),
                                          (["--init-seeds", "2"], "init_seeds")])
def test_R3_construction_refuses_xavier_options(capsys, tmp_path, no_training, extra, needle):
    line = bad(capsys, needle, "train", *TINY, "--init-method", "construction", *extra, "--out", tmp_path / "o")
    assert "construction" in line
    assert not (tmp_path / "o").exists()


def test_R3_init_file_refuses_xavier_options(tmp_path):
    with pytest.raises(ToyddError, match="bias_init does not apply to init_path"):
        TrainConfig(init_path=str(tmp_path / "i.npz"), bias_init=1.0)
    TrainConfig(init_method="construction")  # the plain construction is fine


# --- R6, R15: MNIST data files -------------------------------------------------------------------------------

def _digits_npz(path: Path, X=None, y=None) -> Path:
    X = np.zeros((14, 784), np.uint8) if X is None else X
    y = np.zeros(len(X), np.int64) if y is None else y
    np.savez(path, X=X, y=y)
    return path


def _mnist_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad TOYDD_MNIST files and what the error line must say about each."""
    full = _digits_npz(tmp_path / "full.npz")
    blob = full.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(blob[: len(blob) // 2])
    np.save(tmp_path / "one.npy", np.zeros(3))
    os.replace(tmp_path / "one.npy", tmp_path / "array.npz")  # a .npy named .npz
    (tmp_path / "notes.npz").write_text("these are my digits\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    labels = np.zeros(14, np.uint64)
    labels[3] = 2**64 - 1
    _digits_npz(tmp_path / "labels.npz", y=labels)
    pixels = np.zeros((14, 784))
    pixels[0, 0] = 1e300
    _digits_npz(tmp_path / "pixels.npz", X=pixels)
    return {
        "truncated.npz": (tmp_path / "truncated.npz", "truncated or corrupted .npz"),
        "array.npz": (tmp_path / "array.npz", "is a .npy file"),
        "notes.npz": (tmp_path / "notes.npz", "not an .npz file (a zip archive of arrays): it is text"),
        "empty.npz": (tmp_path / "empty.npz", "it is empty"),
        "labels.npz": (tmp_path / "labels.npz", "labels must lie in 0..9, got 0..18446744073709551615"),
        "pixels.npz": (tmp_path / "pixels.npz", "pixel values must lie in [0, 1] or [0, 255], got [0, 1e+300]"),
    }


def test_R6_R15_bad_mnist_files_are_named_and_described(tmp_path):
    from toydd import mnist

    for name, (path, needle) in _mnist_files(tmp_path).items():
        with pytest.raises(ToyddError) as e:
            mnist.load_npz(path)
        msg = str(e.value)
        assert str(path) in msg and needle in msg, (name, msg)
        assert "pickled" not in msg and "NaN or inf" not in msg and "got -1" not in msg, msg


@pytest.mark.parametrize("name", ["truncated.npz", "array.npz", "notes.npz"])
def test_R6_sweep_with_a_bad_TOYDD_MNIST_is_exit_2_naming_the_file(capsys, tmp_path, monkeypatch, name):
    path, needle = _mnist_files(tmp_path)[name]
    monkeypatch.setenv("TOYDD_MNIST", str(path))
    bad(capsys, needle, "sweep", "mnist-dstar", "--preset", "quick", "--out", tmp_path / "out")


def test_R15_huge_idx_header_reports_the_real_size(tmp_path):
    from toydd import mnist

    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(b"\0\0\x08\x03" + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 10)
    with pytest.raises(ToyddError) as e:
        mnist.read_idx(f)
    size = (2**32 - 1) ** 3  # int64 wrapped this to 12,884,901,887
    assert f"{size:,} bytes" in str(e.value) and "found 10" in str(e.value)
    g = tmp_path / "train-images-idx3-ubyte.gz"
    g.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(ToyddError, match=f"{size:,} bytes"):
        mnist.read_idx(g)


# --- R12: SIGINT to the parent of a process-executor sweep ---------------------------------------------------

SIG_EXP = """
name = "sig"
description = "12 one-job batches of about a second each"
[base]
n = 300
m = 2
sparsity = 0.95
steps = 3000
test_size = 100
snapshots = 2
[grid]
T = [20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130]
"""


def test_R12_sigint_to_the_parent_stops_the_process_sweep_promptly(tmp_path):
    import toydd

    f = tmp_path / "sig.toml"
    f.write_text(SIG_EXP)
    out = tmp_path / "out"
    src = str(Path(toydd.__file__).resolve().parents[1])
    p = subprocess.Popen([sys.executable, "-m", "toydd", "sweep", str(f), "--out", str(out), "--executor", "process",
                          "--jobs", "2"], stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=src))
    try:
        deadline = time.monotonic() + 120
        while not ((out / "runs").is_dir() and any(not q.name.startswith(".") for q in (out / "runs").iterdir())):
            assert p.poll() is None and time.monotonic() < deadline, "the sweep never finished a job"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGINT)  # the parent alone, as `kill -INT PID` does (Ctrl-C signals the group)
        t_int = time.monotonic()
        started = {q.name for q in (out / "locks").iterdir()}  # every job a worker has begun (its lock file)
        rc = p.wait(60)
        stopped_after = time.monotonic() - t_int
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 130 and p.stderr.read().strip().splitlines()[-1] == "error: interrupted"
    assert stopped_after < 10, stopped_after
    # No job started after the interrupt: no new lock file, and every saved run is one that had begun.
    assert {q.name for q in (out / "locks").iterdir()} <= started
    runs = {q.name for q in (out / "runs").iterdir() if not q.name.startswith(".")}
    assert {f"{k}.lock" for k in runs} <= started and len(runs) < 12


# --- R15: a full disk under a pipe: the error line alone ---------------------------------------------------

FULL_DISK = """
import errno, os, sys
from toydd import storage
real = storage._write_all

def full(fh, data):  # the manifest fits, the runs do not
    if os.sep + "runs" + os.sep in os.readlink(f"/proc/self/fd/{fh.fileno()}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fh, data)

storage._write_all = full
from toydd.cli import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_R15_disk_full_under_a_pipe_is_one_line_without_a_stray_progress_line(tmp_path):
    import toydd

    f = tmp_path / "e.toml"
    f.write_text(SIG_EXP.replace("steps = 3000", "steps = 200").replace("T = [20, 30, 40, 50, 60, 70, 80, 90, 100, "
                                                                         "110, 120, 130]", "T = [5, 6]"))
    src = str(Path(toydd.__file__).resolve().parents[1])
    p = subprocess.run([sys.executable, "-c", FULL_DISK, "sweep", str(f), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=src, TOYDD_LOG_DIR=str(tmp_path / "logs")))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], p.stderr


@pytest.mark.parametrize("lr", ["1e-320", "1e-39"])
def test_R1_subnormal_lr_is_bad_input(capsys, tmp_path, no_training, lr):
    # (a huge lr stays a diverged training, exit 3: test_row11_diverged_training_saves_nothing_non_finite_and_exits_3)
    line = bad(capsys, "lr", "train", *TINY, "--lr", lr, "--out", tmp_path / "o")
    assert "float32" in line
