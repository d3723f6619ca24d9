"""Issue 8, bad inputs: every failure is one `error:` line with the right exit status, never a traceback,
and nothing is written to --out. One test per row of the issue's table (rows 1-13, 20), then the bad inputs
found beside them. Exit statuses: 0 ok, 1 unexpected, 2 bad input, 3 trained but failed, 130 interrupted.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from toydd.cli import main
from toydd.config import TrainConfig, parse_T
from toydd.errors import ToyddError
from toydd.experiments import load_experiment_file

TINY = ["--n", 50, "--m", 2, "--T", 6, "--sparsity", 0.9, "--test-size", 50, "--device", "cpu"]


def cli(capsys, *args):
    """Run `toydd ARGS` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as ex:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return ex.value.code, out, err


def toydd_proc(*args, env=None, pyflags=()):
    return subprocess.run([sys.executable, *pyflags, "-m", "toydd", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def assert_error(err, needle=None):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Warning" not in err, err
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def bad(capsys, needle, *args):
    """ARGS is bad input: exit 2, one error line naming the problem."""
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    return assert_error(err, needle)


def small_data(tmp_path, name="d.npz", **over):
    rng = np.random.default_rng(0)
    X = (rng.random((6, 40)) < 0.2) * rng.random((6, 40))
    arrays = {"X": X, **over}
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def without(args, opt):
    """ARGS without option OPT and its value."""
    args = list(args)
    if opt in args:
        i = args.index(opt)
        del args[i:i + 2]
    return args


def all_finite(run_dir):
    for f in ("params", "arrays", "history"):
        for k, v in load_file(str(run_dir / f"{f}.safetensors")).items():
            assert v.dtype.kind not in "fc" or np.isfinite(v).all(), f"{f}.safetensors: {k} holds NaN/inf"
    text = (run_dir / "metrics.json").read_text()
    assert '"nan"' not in text and '"inf"' not in text and '"-inf"' not in text


# --- the rows ------------------------------------------------------------------------------------

def test_row01_unexpected_exception_is_one_line_with_a_log(tmp_path):
    # A bug anywhere (here: bench.run raising) must not print a traceback: one line, exit 1, the log has it.
    code = ("import sys, toydd.bench as b\n"
            "def boom(**kw): raise RuntimeError('boom from a bug')\n"
            "b.run = boom\n"
            "from toydd.cli import main\n"
            "main(['bench', '--n', '10'])\n")
    env = {**__import__("os").environ, "TOYDD_LOG_DIR": str(tmp_path / "logs")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 1, p.stderr
    line = assert_error(p.stderr, "unexpected RuntimeError: boom from a bug")
    assert "please report" in line
    logs = list((tmp_path / "logs").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback" in text and "boom from a bug" in text and "bench" in text


def test_row01_keyboard_interrupt_and_exit_codes_from_commands(capsys, monkeypatch):
    import toydd.bench as b

    def interrupt(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(b, "run", interrupt)
    code, _, err = cli(capsys, "bench", "--n", 10)
    assert code == 130
    assert assert_error(err) == "error: interrupted"

    # A status a command raises (sweep: 1 when jobs failed) reaches the shell.
    import toydd.sweep as sw

    class Summary:
        failed = ["job"]

        def __str__(self):
            return "1 job failed"

    monkeypatch.setattr(sw, "run_sweep", lambda *a, **k: Summary())
    code, _, err = cli(capsys, "sweep", "t-sweep", "--out", "unused")
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: 1 job(s) failed")


def test_row02_show_prints_a_failed_run(capsys, tmp_path):
    # The repro (importance decay inf) is now rejected as bad input...
    bad(capsys, "importance decay", "train", *TINY, "--steps", 20, "--importance-decay", "inf", "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    # ...a diverged run is saved marked failed, and show prints it...
    code, _, err = cli(capsys, "train", *TINY, "--steps", 20, "--lr", 1e6, "--out", tmp_path / "run")
    assert code == 3, err
    code, out, err = cli(capsys, "show", tmp_path / "run")
    assert code == 0 and err == "", err
    assert "FAILED" in out and "train loss" in out
    # ...and so is a run whose metrics hold non-finite values (stored as "nan"/"inf" strings, as older runs do).
    from toydd.storage import load_run, save_run

    r = load_run(tmp_path / "run")
    r.metrics.update(train_loss=float("nan"), test_loss=float("inf"), optimization_gap=float("nan"))
    r.metrics["instances"][0]["train_loss"] = float("nan")
    save_run(tmp_path / "nan-run", r)
    assert json.loads((tmp_path / "nan-run" / "metrics.json").read_text())["train_loss"] == "nan"
    code, out, err = cli(capsys, "show", tmp_path / "nan-run")
    assert code == 0 and err == "", err
    assert "nan" in out and "inf" in out and "FAILED" in out


def test_row04_object_arrays_and_string_W_rejected(capsys, tmp_path):
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=np.array([[0.5, None], [None, 1.0]], dtype=object))
    bad(capsys, "X is an object array", "train", "--data", obj, "--steps", 5, "--out", tmp_path / "o")
    data = small_data(tmp_path)
    init = tmp_path / "init.npz"
    np.savez(init, W=np.array([["0.1"] * 40] * 2), b=np.zeros(40))
    bad(capsys, "W must hold real numbers", "train", "--data", data, "--init", init, "--steps", 5, "--out", tmp_path / "o")
    np.savez(init, W=np.zeros((2, 40), dtype=object), b=np.zeros(40))
    msg = bad(capsys, "init file", "train", "--data", data, "--init", init, "--steps", 5, "--out", tmp_path / "o")
    assert "W is an object array" in msg, msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,needle", [
    (["--T", "inf", "--n", 200], "no infinite data"),
    (["--seconds", -1], "seconds must be a positive number"),
    (["--seconds", "nan"], "seconds must be a positive number"),
    (["--seconds", "inf"], "seconds must be a positive number"),
    (["--reference-max-T", -5], "reference max T"),
    (["--n", 0], "n must be a positive integer"),
    (["--m", -2], "m must be a positive integer"),
    (["--T", 0], "T must be a positive integer"),
])
def test_row05_bench_options_rejected(capsys, args, needle):
    bad(capsys, needle, "bench", *args)


KERNEL_SCAN = ["bench", "--no-memory", "--seconds", 0.01, "--kernel", "dense", "--T", 50]
KERNEL_SCAN_NO_T = KERNEL_SCAN[:-2]


@pytest.mark.parametrize("args,needle", [
    # the kernel scan checks what the reference bench checks (it skipped n, m and seconds: a hostile review)
    (["--n", 0], "n must be a positive integer"),
    (["--m", -2], "m must be a positive integer"),
    (["--seconds", 0], "seconds must be a positive number"),
    (["--seconds", "nan"], "seconds must be a positive number"),
    # empty lists are no values, and options that cannot apply are named, not ignored
    (["--T", ","], "--T: no value given"),
    (["--kernel", ","], "--kernel: no value given"),
    (["--state-steps", 1], "--state-steps applies only with --states"),
    (["--reference-max-T", 5], "--reference-max-T applies only without --kernel"),
])
def test_v4_bench_kernel_scan_options_rejected(capsys, args, needle):
    bad(capsys, needle, *(KERNEL_SCAN_NO_T if "--T" in args else KERNEL_SCAN), *args)


def test_v2_bench_states_files_that_cannot_serve_are_one_line_naming_them(capsys, tmp_path):
    """`bench --states FILE`: a missing, damaged or wrong file, or one whose values or shapes cannot be a model,
    is bad input naming the file (it was 'unexpected ..., please report', exit 1, or silently timed)."""
    good = dict(steps=np.array([0, 10]), W=np.zeros((2, 2, 30), np.float32), b=np.zeros((2, 30), np.float32))

    def states(name, **over):
        p = tmp_path / name
        np.savez(p, **{**good, **over})
        return p

    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "cut.npz").write_bytes(states("whole.npz").read_bytes()[:200])
    cases = [
        (tmp_path / "missing.npz", "states file not found"),
        (tmp_path, "is a directory, not a file"),
        (tmp_path / "text.npz", "cannot read states file"),
        (tmp_path / "cut.npz", "truncated or corrupted .npz"),
        (_npz(tmp_path / "nokeys.npz", W=good["W"]), "holds no snapshots"),
        (states("nan.npz", W=np.full((2, 2, 30), np.nan, np.float32)), "W must hold finite numbers"),
        (states("big.npz", W=np.full((2, 2, 30), 1e300)), "too large for float32"),
        (states("cplx.npz", W=np.ones((2, 2, 30), np.complex64)), "complex numbers"),
        (states("half.npz", steps=np.array([0.5, 1.0])), "whole step numbers"),
        (states("count.npz", steps=np.array([0, 10, 20])), "snapshots of the wrong shapes"),
        (states("shape.npz", b=np.zeros((2, 31), np.float32)), "snapshots of the wrong shapes"),
    ]
    for path, needle in cases:
        bad(capsys, needle, *KERNEL_SCAN, "--states", path)
    ok = states("ok.npz")
    bad(capsys, "no value given", *KERNEL_SCAN, "--states", ok, "--state-steps", ",")
    bad(capsys, "--n 40 disagrees with the states file", *KERNEL_SCAN, "--states", ok, "--n", 40)
    code, out, err = cli(capsys, *KERNEL_SCAN, "--states", ok, "--json")  # n and m from the file
    assert code == 0, err
    assert {(r["n"], r["m"], r["state"]) for r in json.loads(out)["rows"]} == {(30, 2, "step 0"), (30, 2, "step 10")}


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_row06_huge_float64_init_is_exactly_one_line(tmp_path):
    data = small_data(tmp_path)
    init = tmp_path / "init.npz"
    np.savez(init, W=np.full((2, 40), 1e300), b=np.zeros(40))
    # -W error: any RuntimeWarning (the overflowing cast) would turn into a crash here.
    p = toydd_proc("train", "--data", data, "--init", init, "--steps", 5, "--out", tmp_path / "o",
                   pyflags=("-W", "error::RuntimeWarning"))
    assert p.returncode == 2, p.stderr
    assert_error(p.stderr, "W holds values too large for float32")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind,needle", [("huge", "too large for float32"), ("complex", "complex"),
                                         ("negative", "negative values"), ("nan", "finite")])
def test_row07_data_with_huge_complex_or_negative_values_rejected(capsys, tmp_path, kind, needle):
    rng = np.random.default_rng(1)
    X = (rng.random((6, 40)) < 0.2) * rng.random((6, 40))
    if kind == "huge":
        X[0, 0] = 1e300
    elif kind == "complex":
        X = X + 1j * X
    elif kind == "negative":
        X[2, 3] = -0.25
    else:
        X[1, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X)
    bad(capsys, needle, "train", "--data", tmp_path / "d.npz", "--steps", 5, "--out", tmp_path / "o")
    # The same checks hold for CSR values and for the test set.
    np.savez(tmp_path / "csr.npz", indptr=np.array([0, 1]), indices=np.array([0]),
             values=X[X != 0][:1] if kind != "complex" else np.array([1 + 1j]), shape=np.array([1, 40]))
    if kind != "nan":
        vals = {"huge": [1e300], "negative": [-0.25]}.get(kind)
        if vals is not None:
            np.savez(tmp_path / "csr.npz", indptr=np.array([0, 1]), indices=np.array([0]), values=np.array(vals),
                     shape=np.array([1, 40]))
        bad(capsys, needle, "train", "--data", tmp_path / "csr.npz", "--steps", 5, "--out", tmp_path / "o")
        good = (rng.random((6, 40)) < 0.2) * rng.random((6, 40))
        np.savez(tmp_path / "t.npz", X=good, X_test=X)
        bad(capsys, needle, "train", "--data", tmp_path / "t.npz", "--steps", 5, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_row08_T_too_large_for_a_float_is_not_inf(capsys, tmp_path):
    bad(capsys, "too large", "train", *TINY[:4], "--T", "1e400", "--steps", 5, "--out", tmp_path / "o")
    bad(capsys, "at most", "train", *TINY[:4], "--T", "1e300", "--steps", 5, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ToyddError, match="too large"):
        parse_T("1e400")
    assert parse_T("inf") == math.inf and parse_T("+Infinity") == math.inf and parse_T("1e3") == 1000


@pytest.mark.parametrize("args", [["--lr", 1e300], ["--weight-decay", 1e300, "--T", "inf"], ["--lr", 1e6]])
def test_row11_diverged_training_saves_nothing_non_finite_and_exits_3(capsys, tmp_path, args):
    out = tmp_path / "run"
    base = without(TINY, "--T") if "--T" in args else TINY
    code, stdout, err = cli(capsys, "train", *base, "--steps", 30, "--snapshots", 8, *args, "--out", out, "--json")
    assert code == 3, err
    line = assert_error(err, "training failed")
    assert str(out) in line
    obj = json.loads(stdout)  # --json still prints its object
    assert obj["failed_step"] is not None and obj["failed_step"] >= 1
    assert all(math.isfinite(obj[k]) for k in ("train_loss", "test_loss", "weight_norm", "bias_norm"))
    all_finite(out)
    hist = load_file(str(out / "history.safetensors"))
    assert (hist["snapshot_steps"] < obj["failed_step"]).all() and len(hist["snapshot_steps"]) >= 1
    assert hist["failed_step"].tolist() == [obj["failed_step"]]


def test_row11_parameters_overflowing_under_a_finite_loss_are_a_failure_too(capsys, tmp_path):
    # n = 100 at S = 0.999: the 5 training points are all zero, the loss stays exactly 0 while decoupled
    # weight decay (1 - lr * wd = -9,999) blows W up. Found beside the rows: W was saved as inf.
    out = tmp_path / "run"
    code, stdout, err = cli(capsys, "train", "--n", 100, "--T", 5, "--sparsity", 0.999, "--test-size", 50,
                            "--steps", 50, "--lr", 1e6, "--out", out, "--json")
    assert code == 3, err
    assert_error(err, "non-finite loss or parameters")
    obj = json.loads(stdout)
    assert 1 <= obj["failed_step"] < 50  # caught when W overflowed, not after the last step
    assert all(math.isfinite(obj[k]) for k in ("train_loss", "test_loss", "weight_norm"))
    assert obj["weight_norm"] > 1e30  # the last finite parameters are huge, and their metrics still finite
    all_finite(out)


def test_float64_evaluation_matches_the_kernel():
    from toydd import data as D
    from toydd.evaluation import evaluate, evaluate_float64
    from toydd.training import xavier_normal

    X = D.training_set(300, 0.97, 40, 3)
    for tied in (True, False):
        p = xavier_normal(2, 300, 1, tied)
        p["W"] *= 30  # well past init, so the ReLU is active
        p["b"] = np.random.default_rng(0).normal(0, 0.1, 300).astype(np.float32)
        imp = (0.99 ** np.arange(300)).astype(np.float32)
        np.testing.assert_allclose(evaluate_float64(p, X, imp), evaluate(p, X, imp), rtol=2e-4, atol=1e-6)


def test_row12_experiment_file_type_errors_name_the_field(capsys, tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text('base: {tied: "no", n: 50, steps: 5}\n')
    bad(capsys, "tied must be true or false", "sweep", f, "--out", tmp_path / "o")
    for text, needle in [("base: {n: 50, warmup: true}\n", "warmup must be an integer"),
                         ("base: {n: '50'}\n", "n must be an integer"),
                         ("base: {n: 50, data_path: 5}\n", "data_path must be a string"),
                         ("base: {n: 50, lr: .nan}\n", "lr must be positive"),
                         ("base: {n: 50, steps: 1e400}\n", "steps must be an integer"),
                         ("grid: {device: [cpu, 7]}\n", "device"),
                         ("base: {n: 50}\nparams: {when: 2024-01-01}\n", "params must hold only")]:
        f.write_text(text)
        with pytest.raises(ToyddError, match=needle):
            load_experiment_file(f)
    t = tmp_path / "e.toml"
    t.write_text("[base]\nn = 50\nuntied = true\n")
    with pytest.raises(ToyddError, match="unknown config field"):
        load_experiment_file(t)
    t.write_text("[base]\nn = 50\ntied = 1\n")
    with pytest.raises(ToyddError, match="tied must be true or false"):
        load_experiment_file(t)
    assert not (tmp_path / "o").exists()


def test_row13_yaml_duplicate_key_rejected(capsys, tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("base:\n  n: 50\n  steps: 5\n  n: 60\n")
    bad(capsys, "duplicate key 'n'", "sweep", f, "--out", tmp_path / "o")
    f.write_text("name: a\nname: b\n")
    with pytest.raises(ToyddError, match="duplicate key 'name'"):
        load_experiment_file(f)
    # A merge key overridden by an explicit key is not a duplicate.
    f.write_text("base:\n  <<: {n: 50, steps: 5}\n  n: 60\n")
    assert load_experiment_file(f).configs[0].n == 60
    assert not (tmp_path / "o").exists()


def test_row20_huge_grid_refused_before_expanding(capsys, tmp_path, monkeypatch):
    axes = {"T": list(range(1, 11)), "data_seed": list(range(10)), "init_seed_base": list(range(10)),
            "m": list(range(1, 11)), "steps": list(range(1, 11)), "snapshots": list(range(10)),
            "test_size": list(range(1, 11))}
    f = tmp_path / "big.toml"
    f.write_text("[grid]\n" + "".join(f"{k} = {v}\n" for k, v in axes.items()))
    line = bad(capsys, "10,000,000 jobs", "sweep", f, "--out", tmp_path / "o")
    assert "limit of 100,000" in line
    assert not (tmp_path / "o").exists()
    # The limit is a setting: under it the file loads; a list of grids counts all of them.
    monkeypatch.setenv("TOYDD_MAX_JOBS", "19")
    f.write_text("[[grid]]\nT = [3, 4, 5, 6]\nm = [1, 2, 3]\n[[grid]]\nT = [7, 8]\nm = [1, 2, 3, 4]\n")
    with pytest.raises(ToyddError, match="20 jobs, more than the limit of 19"):
        load_experiment_file(f)
    monkeypatch.setenv("TOYDD_MAX_JOBS", "20")
    assert len(load_experiment_file(f).configs) == 20


# --- beside the rows: the same class of bug elsewhere ------------------------------------------------------

@pytest.mark.parametrize("kw,needle", [
    (dict(n="5"), "n must be an integer"),
    (dict(n=True), "n must be an integer"),
    (dict(m=2.0), "m must be an integer"),
    (dict(steps=None), "steps must be an integer"),
    (dict(lr=float("nan")), "lr must be positive"),
    (dict(lr="1e-3"), "lr must be a number"),
    (dict(eps=float("nan")), "eps must be positive and finite"),
    (dict(eps=float("inf")), "eps must be positive and finite"),
    (dict(beta1=float("nan")), "betas"),
    (dict(sparsity=float("nan")), "sparsity"),
    (dict(importance_decay=float("inf")), "importance decay"),
    (dict(importance_decay=2.0), "overflow float32"),
    (dict(tied="no"), "tied must be true or false"),
    (dict(tied=1), "tied must be true or false"),
    (dict(warmup=True, steps=10), "warmup must be an integer"),
    (dict(snapshots=1.5), "snapshots must be an integer"),
    (dict(data_seed=2**64), "data_seed is too large"),
    (dict(T="100"), "T must be a number"),
    (dict(T=1e20), "T must be at most"),
    (dict(data_path=3), "data_path must be a string"),
    (dict(device=None), "device must be a string"),
])
def test_extra_trainconfig_wrong_types_and_values_from_python(kw, needle):
    with pytest.raises(ToyddError, match=needle):
        TrainConfig(**kw)


def test_extra_trainconfig_keys_unchanged():
    # Validation must not change how existing configs hash (results stores keep their keys).
    assert TrainConfig().key() == TrainConfig.from_dict(TrainConfig().to_dict()).key()
    assert TrainConfig(lr=1).key() != TrainConfig(lr=1.0).key()  # values are stored as given, not coerced


@pytest.mark.parametrize("opt,value,needle", [
    ("--lr", "nan", "lr"), ("--lr", "inf", "lr"), ("--lr", "-1", "lr"),
    ("--weight-decay", "nan", "weight decay"), ("--weight-decay", "inf", "weight decay"),
    ("--weight-decay", "-1", "weight decay"),
    ("--sparsity", "nan", "sparsity"), ("--sparsity", "inf", "sparsity"),
    ("--importance-decay", "nan", "importance decay"), ("--importance-decay", "-1", "importance decay"),
    ("--importance-decay", "0", "importance decay"),
    ("--warmup", "-1", "warmup"), ("--warmup", "31", "warmup"), ("--snapshots", "-1", "snapshots"),
    ("--init-seeds", "0", "init_seeds"), ("--init-seed", "-1", "init_seed_base"), ("--data-seed", "-1", "data_seed"),
    ("--test-size", "-1", "test_size"), ("--m", "0", "m must be positive"),
    ("--T", "nan", "T must be"), ("--T", "-inf", "T must be"), ("--T", "2.5", "T must be"),
    ("--n", "inf", "--n"), ("--steps", "nan", "--steps"), ("--steps", "1e3", "--steps"),
])
def test_extra_train_numeric_options_nan_inf_negative(capsys, tmp_path, opt, value, needle):
    steps = [] if opt == "--steps" else ["--steps", 30]
    bad(capsys, needle, "train", *without(TINY, opt), *steps, opt, value, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_extra_npz_that_are_not_npz(capsys, tmp_path):
    ok = small_data(tmp_path, "ok.npz")
    blob = ok.read_bytes()
    cases = {"notzip.npz": b"this is not a zip file", "trunc.npz": blob[: len(blob) // 2]}
    damaged = bytearray(blob)
    damaged[damaged.find(b"\x93NUMPY") + 150] ^= 0xFF
    cases["crc.npz"] = bytes(damaged)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        bad(capsys, name, "train", "--data", tmp_path / name, "--steps", 5, "--out", tmp_path / "o")
    np.save(tmp_path / "plain.npy", np.ones((3, 4)))
    bad(capsys, "plain.npy: it is a .npy file (a single array), not an .npz", "train", "--data", tmp_path / "plain.npy", "--steps", 5, "--out", tmp_path / "o")
    np.savez(tmp_path / "strs.npz", X=np.array([["a", "b"]]))
    bad(capsys, "real numbers", "train", "--data", tmp_path / "strs.npz", "--steps", 5, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_extra_init_files_truncated_or_not_safetensors(capsys, tmp_path):
    data = small_data(tmp_path)
    rng = np.random.default_rng(0)
    W, b = (rng.standard_normal((2, 40)) * 0.1).astype(np.float32), np.zeros(40, np.float32)
    save_file({"W": W, "b": b}, str(tmp_path / "ok.safetensors"))
    blob = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(blob[: len(blob) - 40])
    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 20)
    np.savez(tmp_path / "real.npz", W=W, b=b)
    (tmp_path / "npz-named.safetensors").write_bytes((tmp_path / "real.npz").read_bytes())
    (tmp_path / "junk.npz").write_bytes(b"junk")
    for name in ("trunc.safetensors", "junk.safetensors", "npz-named.safetensors", "junk.npz"):
        bad(capsys, "cannot read init file", "train", "--data", data, "--init", tmp_path / name, "--steps", 5,
            "--out", tmp_path / "o")
    for arrays, needle in [(dict(W=W + 1j, b=b), "complex"), (dict(W=W * np.nan, b=b), "NaN or inf"),
                           (dict(W=W), "must hold arrays 'W' and 'b'"), (dict(W=W[:, :3], b=b), "W has shape")]:
        np.savez(tmp_path / "i.npz", **arrays)
        bad(capsys, needle, "train", "--data", data, "--init", tmp_path / "i.npz", "--steps", 5, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_extra_init_whose_loss_overflows_at_step_0_is_bad_input(capsys, tmp_path):
    # Finite in float32, but W^T W x overflows: no update happened, so it is the input, not a failed training.
    data = small_data(tmp_path)
    np.savez(tmp_path / "i.npz", W=np.full((2, 40), 1e19, np.float32), b=np.zeros(40, np.float32))
    bad(capsys, "not finite at the initial parameters", "train", "--data", data, "--init", tmp_path / "i.npz",
        "--steps", 5, "--out", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_extra_report_and_no_command(capsys, tmp_path):
    (tmp_path / "res").mkdir()
    bad(capsys, "--dpi", "report", tmp_path / "res", "--dpi", 0)
    bad(capsys, "--movies", "report", tmp_path / "res", "--movies", -1)
    code, out, err = cli(capsys)
    assert code == 2 and "Usage" in out
    assert_error(err, "missing command")


def test_extra_warnings_shown_on_success_not_beside_an_error(capsys, monkeypatch):
    import warnings

    import toydd.bench as b

    def ok(**kw):
        warnings.warn("careful now", UserWarning)
        return {"machine": {"cpu": "x", "cores": 1, "python": "3", "torch": "t", "numba": "n"}, "state": "s", "rows": []}

    def fails(**kw):
        warnings.warn("careful now", RuntimeWarning)
        raise ToyddError("bad bench input")

    monkeypatch.setattr(b, "run", ok)
    with pytest.warns(UserWarning, match="careful now"):  # re-shown after the command (here: to pytest's recorder)
        code, _, err = cli(capsys, "bench", "--n", 10)
    assert code == 0
    monkeypatch.setattr(b, "run", fails)
    code, _, err = cli(capsys, "bench", "--n", 10)
    assert code == 2 and assert_error(err) == "error: bad bench input"
