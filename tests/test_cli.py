"""The toydd command: JSON output, run directories, and one-line errors (exit 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest


def toydd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toydd", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_clean_error(p, needle):
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr


def test_train_json_and_run_directory(tmp_path):
    out = tmp_path / "run"
    p = toydd("train", "--n", 500, "--m", 2, "--T", 5, "--sparsity", 0.99, "--steps", 1500, "--lr", 1e-2,
              "--init-seeds", 2, "--test-size", 500, "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    for k in ("train_loss", "test_loss", "weight_norm", "bias_norm", "data_dims", "feature_dims_top", "steps", "seconds"):
        assert k in obj
    assert len(obj["data_dims"]) == 5 and len(obj["feature_dims_top"]) == 10
    assert obj["feature_dims_top"] == sorted(obj["feature_dims_top"], reverse=True)
    assert obj["steps"] == 1500
    for f in ("config.json", "metrics.json", "params.safetensors", "arrays.safetensors", "history.safetensors"):
        assert (out / f).is_file()
    s = toydd("show", out)
    assert s.returncode == 0 and "test loss" in s.stdout and "memoriz" in s.stdout


def test_train_from_user_data_and_init_file(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    X = (rng.random((6, 40)) < 0.1) * rng.random((6, 40))
    np.savez(tmp_path / "d.npz", X=X)
    save_file({"W": rng.standard_normal((2, 40)).astype(np.float32) * 0.1, "b": np.zeros(40, np.float32)},
              str(tmp_path / "init.safetensors"))
    p = toydd("train", "--data", tmp_path / "d.npz", "--init", tmp_path / "init.safetensors", "--steps", 50,
              "--test-size", 50, "--json")
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    assert obj["config"]["n"] == 40 and obj["config"]["T"] == 6 and len(obj["data_dims"]) == 6


@pytest.mark.parametrize("args,needle", [
    (["train", "--n", "-5"], "n must be positive"),
    (["train", "--T", "-3"], "T must be a positive integer"),
    (["train", "--T", "abc"], "T must be a positive integer"),
    (["train", "--sparsity", "1.0"], "sparsity"),
    (["train", "--sparsity", "-0.1"], "sparsity"),
    (["train", "--steps", "0"], "steps must be positive"),
    (["train", "--data", "missing.npz"], "not found"),
    (["train", "--init", "missing.safetensors", "--steps", "1"], "not found"),
    (["train", "--device", "tpu"], "device"),
    (["train", "--m", "abc"], "--m"),
    (["train", "--bogus"], "--bogus"),
    (["show", "no-such-run"], "not found"),
    (["reproduce", "--preset", "bogus"], "unknown preset"),
])
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, args, needle):
    p = toydd(*args, "--out", tmp_path / "out") if args[0] == "train" else toydd(*args, cwd=tmp_path)
    assert_clean_error(p, needle)
    assert not (tmp_path / "out").exists()


def test_malformed_files_and_wrong_W_shape(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"garbage")
    assert_clean_error(toydd("train", "--data", junk, "--out", tmp_path / "o"), "not an .npz file")
    from safetensors.numpy import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"W": np.zeros((3, 100), np.float32), "b": np.zeros(100, np.float32)}, str(bad))
    assert_clean_error(toydd("train", "--n", 100, "--m", 2, "--init", bad, "--out", tmp_path / "o"), "W has shape")
    assert not (tmp_path / "o").exists()


def test_train_killed_mid_way_resumes_with_the_same_command(tmp_path):
    """`toydd train --out DIR` saves its state beside DIR; killed, the same command resumes there, removes the
    state, and saves the run an uninterrupted command saves."""
    import os
    import signal
    import time

    from toydd.storage import load_run

    args = ["train", "--n", 300, "--m", 2, "--T", 20, "--sparsity", 0.98, "--steps", 40_000, "--test-size", 200,
            "--init-seeds", 1]
    env = {**os.environ, "TOYDD_CHECKPOINT_SECONDS": "0"}
    out = tmp_path / "run"
    state = tmp_path / ".run.toydd-resume.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "toydd", *map(str, args), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.exists():
        assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists()
    p = subprocess.run([sys.executable, "-m", "toydd", *map(str, args), "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert not state.exists()
    fresh = tmp_path / "fresh"
    assert toydd(*args, "--out", fresh).returncode == 0
    a, b = load_run(out), load_run(fresh)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    assert np.array_equal(a.history["train_loss"], b.history["train_loss"])


def test_bad_checkpoint_seconds_is_a_one_line_error(tmp_path):
    import os

    p = subprocess.run([sys.executable, "-m", "toydd", "train", "--n", "100", "--T", "5", "--steps", "10", "--out",
                        str(tmp_path / "r")], env={**os.environ, "TOYDD_CHECKPOINT_SECONDS": "soon"},
                       capture_output=True, text=True, timeout=300)
    assert_clean_error(p, "TOYDD_CHECKPOINT_SECONDS")
    assert not (tmp_path / "r").exists()


def test_train_beside_files_long_names_and_a_second_writer(tmp_path):
    """The files `toydd train --out` keeps beside the run: a name too long for them is refused before training; a directory or a user's file where the state would go is kept (toydd removes only what it wrote);
    a second training of the same --out while one runs is refused before it trains; the lock goes at the end."""
    import os
    import time

    from toydd.storage import beside_run

    small = ["train", "--n", 50, "--T", 5, "--sparsity", 0.9, "--steps", 10, "--test-size", 20]
    assert_clean_error(toydd(*small, "--out", tmp_path / ("r" * 191)), "name a shorter directory")
    assert os.listdir(tmp_path) == []  # refused before training: nothing written
    long_out = tmp_path / ("r" * 190)  # the longest accepted: its state's temp files still fit in 255 bytes
    p = subprocess.run([sys.executable, "-m", "toydd", *map(str, small), "--out", str(long_out)],
                       env={**os.environ, "TOYDD_CHECKPOINT_SECONDS": "0"}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(beside_run(long_out, "resume.safetensors").name + ".4194304-0123abcd-abcdefgh.tmp") <= 255
    assert sorted(os.listdir(tmp_path)) == [long_out.name]  # no state, no lock left

    for i, make in enumerate((lambda q: q.mkdir(), lambda q: q.write_text("precious"))):
        out = tmp_path / f"k{i}"
        spot = tmp_path / f".k{i}.toydd-resume.safetensors"
        make(spot)
        p = subprocess.run([sys.executable, "-m", "toydd", *map(str, small), "--out", str(out)],
                           env={**os.environ, "TOYDD_CHECKPOINT_SECONDS": "0"}, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        assert spot.is_dir() if i == 0 else spot.read_text() == "precious"

    out = tmp_path / "busy"
    lock = tmp_path / ".busy.toydd-lock"
    first = subprocess.Popen([sys.executable, "-m", "toydd", *map(str, small[:-4]), "--steps", "400000",
                              "--test-size", "20", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not lock.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.5)  # (created, then locked)
        assert_clean_error(toydd(*small, "--out", out), "another toydd train is writing it")
        assert not out.exists()
    finally:
        first.kill()
        first.wait()
    p = toydd(*small, "--out", out)  # the killed one's lock is no one's: free again
    assert p.returncode == 0, p.stderr
    assert not lock.exists()


# --- Ctrl-C before the command's own imports are done ------------------------------------------------------------

def test_entry_point_imports_nothing_heavy_before_it_can_catch_ctrl_c():
    """The console script's module (and the package) import neither NumPy nor typer: a Ctrl-C is caught from
    the first moment (`toydd._entry`), not only once `cli.main` runs."""
    code = ("import sys, toydd._entry, toydd; "
            "heavy = [m for m in ('numpy', 'typer', 'rich', 'torch', 'numba') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(toydd._entry.main); print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("toydd") == "toydd._entry:main"


def test_ctrl_c_during_the_command_imports_is_one_line_and_status_130():
    """A KeyboardInterrupt raised while `toydd` imports typer (where a Ctrl-C lands in its first ~0.3 s)."""
    code = ("import sys\n"
            "class Stop:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'typer':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Stop())\n"
            "sys.argv = ['toydd', '--help']\n"
            "from toydd._entry import main\n"
            "main()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert p.stderr == "error: interrupted\n", p.stderr
    assert p.stdout == ""


def test_real_sigint_while_the_command_imports_never_prints_a_traceback():
    """A real SIGINT to the installed `toydd` script at points of its imports (NumPy, typer, rich, the CLI), each
    found by `-X importtime`'s line as it is printed: one line and status 130 every time. (Before the entry
    module runs, the interpreter and pip's wrapper script import `re` and `sys` themselves, ~20-30 ms: a Ctrl-C
    there is Python's own traceback, out of toydd's reach.)"""
    import os
    import signal
    from pathlib import Path

    script = Path(sys.executable).parent / "toydd"
    if not script.exists():
        pytest.skip("no installed toydd script beside this interpreter")
    for marker in ("numpy", "typer", "rich", "toydd.cli"):
        proc = subprocess.Popen([sys.executable, "-X", "importtime", str(script), "train", "--n", "50", "--T", "3",
                                 "--steps", "50000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONWARNINGS="ignore"))
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.rstrip().endswith(" " + marker):  # "import time: ... | numpy"
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        err = "".join(seen) + rest
        own = [ln for ln in err.splitlines() if not ln.startswith("import time:")]
        assert "Traceback" not in err, (marker, err[-2000:])
        assert proc.returncode == 130, (marker, proc.returncode, own)
        assert own == ["error: interrupted"], (marker, own)


def test_show_of_a_run_whose_metrics_lack_a_field_is_one_error_line(tmp_path):
    """metrics.json edited to drop a field and its checksum (so it reads as an old run): `show` printed half the
    run and then `unexpected KeyError` (a hostile review); now one line naming the file and the field, and nothing
    on stdout."""
    out = tmp_path / "run"
    p = toydd("train", "--n", 50, "--T", 5, "--sparsity", 0.9, "--steps", 10, "--test-size", 20, "--out", out)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "metrics.json").read_text())
    m.pop("train_loss")
    m["checksums"].pop("metrics.json")  # its own checksum: without it the file reads as an older release's
    (out / "metrics.json").write_text(json.dumps(m))
    p = toydd("show", out)
    assert_clean_error(p, "metrics.json lacks train_loss")
    assert p.stdout == ""
