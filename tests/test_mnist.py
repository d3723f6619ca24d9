"""mnist-dstar: D* of MLP hidden activations, MNIST loading (npz, IDX, bad files), training, label flips,
determinism, the resumable job store, status and the report section.

Uses the 1,000 + 200 real digits shipped with toydd (``toydd/mnist_sample.npz``) and tiny MLPs.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toydd import mnist
from toydd.errors import ToyddError
from toydd.experiments import reproduce_plan
from toydd.metrics import max_data_dimensionality

TINY = dict(hidden=16, epochs=1, batch_size=64, checkpoints=(0, 1), held_out=50, top_images=4, data="sample")


@pytest.fixture(scope="module")
def sample():
    return mnist.load_mnist("sample")


# --- D* of hidden activations ------------------------------------------------------------------

def test_dstar_of_hidden_activations_hand_computed():
    # Three inputs, three hidden units; unit 3 is dead (pre-activation -x1 - x2 < 0 for all inputs).
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    W1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    H = mnist.hidden_activations(X, W1, np.zeros(3))
    np.testing.assert_array_equal(H, [[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    # G = diag(2, 1, 0): the two copies of e1 share a direction (1/2 each), e2 owns one (1); sum = rank = 2.
    np.testing.assert_allclose(max_data_dimensionality(H), [0.5, 0.5, 1.0], atol=1e-12)
    # A held-out point against the training G: h = (1, 1, 0) -> 1/2 + 1/1 = 1.5 (can exceed 1).
    np.testing.assert_allclose(mnist.held_out_dstar(H, np.array([[1.0, 1.0, 0.0]]), rank=2), [1.5])


def test_dstar_matches_brute_force_supremum():
    rng = np.random.default_rng(3)
    H = np.maximum(rng.normal(size=(7, 3)), 0) + 0.05 * rng.random((7, 3))
    Hn = np.maximum(rng.normal(size=(4, 3)), 0)
    d = np.asarray(max_data_dimensionality(H))
    dv = mnist.held_out_dstar(H, Hn, rank=3)
    V = rng.normal(size=(200_000, 3))
    P = (H @ V.T) ** 2  # (T, K)
    denom = P.sum(0)
    brute = (P / denom).max(1)
    brute_v = (((Hn @ V.T) ** 2) / denom).max(1)
    # The sup is never exceeded by any direction, and random directions come within 1% of it.
    assert np.all(brute <= d + 1e-12) and np.all(brute >= 0.99 * d)
    assert np.all(brute_v <= dv + 1e-12) and np.all(brute_v >= 0.99 * dv)
    # ... and it is attained at v = G^+ h_i.
    G = H.T @ H
    v = np.linalg.pinv(G) @ H[2]
    assert (v @ H[2]) ** 2 / np.sum((H @ v) ** 2) == pytest.approx(d[2], rel=1e-10)
    # Held-out D* l and the point's own leverage once added to the set agree (Sherman-Morrison: l / (1 + l)).
    for i in range(len(Hn)):
        own = np.asarray(max_data_dimensionality(np.vstack([H, Hn[i:i + 1]])))[-1]
        assert own == pytest.approx(dv[i] / (1 + dv[i]), rel=1e-9)


def test_a_unit_firing_on_one_digit_alone_gives_it_dstar_one_however_weak(sample):
    # Why toydd also records robust D*: D* is scale-free, so a barely-alive unit that one digit alone
    # activates makes that digit an outlier at D* = 1.
    X = sample[0][:300].astype(np.float64)
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(8, 784)) * 0.05, np.zeros(8)
    w = X[7] / np.linalg.norm(X[7])
    W1 = np.vstack([W1, w])
    assert np.argmax(X @ w) == 7 and np.sort(X @ w)[-2] < X[7] @ w - 0.01
    b1 = np.append(b1, -(X[7] @ w - 0.01))  # fires on digit 7 only, by a hair (activation 0.01)
    H = mnist.hidden_activations(X, W1, b1)
    assert np.count_nonzero(H[:, -1]) == 1 and 0 < H[7, -1] < 0.1
    d = np.asarray(max_data_dimensionality(H))
    assert d[7] == pytest.approx(1.0) and np.median(d) < 0.05
    d_robust = np.asarray(max_data_dimensionality(H[:, :-1]))
    assert d_robust[7] < 0.2


def test_dstar_when_T_is_below_the_hidden_width():
    # T < hidden: every digit owns a direction, D* = 1 for all (why the presets keep T well above 512).
    rng = np.random.default_rng(0)
    H = mnist.hidden_activations(rng.random((20, 784)), rng.normal(size=(64, 784)), np.zeros(64))
    np.testing.assert_allclose(max_data_dimensionality(H), np.ones(20), atol=1e-9)


# --- loading ---------------------------------------------------------------------------------

def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> Path:
    raw = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) \
        + arr.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def small_mnist(rng=None):
    rng = rng or np.random.default_rng(1)
    return (rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30, dtype=np.uint8),
            rng.integers(0, 256, (7, 28, 28), dtype=np.uint8), rng.integers(0, 10, 7, dtype=np.uint8))


def check_same(loaded, raw):
    Xtr, ytr, Xte, yte = loaded
    assert Xtr.dtype == np.float32 and Xtr.shape == (30, 784) and 0 <= Xtr.min() and Xtr.max() <= 1
    np.testing.assert_allclose(Xtr, raw[0].reshape(30, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ytr, raw[1])
    np.testing.assert_allclose(Xte, raw[2].reshape(7, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yte, raw[3])


def test_shipped_sample_is_real_mnist(sample):
    Xtr, ytr, Xte, yte = sample
    assert Xtr.shape == (1000, 784) and Xte.shape == (200, 784)
    assert set(np.unique(ytr)) == set(range(10))
    # Real digits: mostly blank borders, ink in the middle (random or synthetic data would fail this).
    img = Xtr.reshape(-1, 28, 28)
    assert img[:, :3, :].mean() < 0.01 and img[:, 10:18, 10:18].mean() > 0.3


def test_load_npz_and_idx(tmp_path):
    raw = small_mnist()
    p = tmp_path / "m.npz"
    np.savez(p, x_train=raw[0], y_train=raw[1], x_test=raw[2], y_test=raw[3])
    check_same(mnist.load_npz(p), raw)
    # X, y: the last 1/7 is held out.
    q = tmp_path / "xy.npz"
    np.savez(q, X=np.concatenate([raw[0], raw[2]]).reshape(37, 784) / 255.0, y=np.concatenate([raw[1], raw[3]]))
    Xtr, ytr, Xte, yte = mnist.load_npz(q)
    assert len(Xtr) == 32 and len(Xte) == 5 and np.array_equal(np.concatenate([ytr, yte]), np.concatenate(raw[1::2]))
    for compress in (False, True):
        d = tmp_path / f"idx{int(compress)}"
        d.mkdir()
        for k, arr in zip(("x_train", "y_train", "x_test", "y_test"), raw):
            write_idx(d / mnist.IDX_FILES[k], arr, compress)
        check_same(mnist.load_mnist(d), raw)
        assert mnist.data_id(d).startswith("idx:")


def _bad_npz(tmp_path: Path, name: str, **arrays) -> Path:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def bad_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    raw = small_mnist()
    x, y = raw[0], raw[1]
    cases = {
        "missing": (tmp_path / "nope.npz", "not found"),
        "garbage": (tmp_path / "garbage.npz", "cannot read"),
        "keys": (_bad_npz(tmp_path, "keys.npz", images=x), "expected arrays x_train"),
        "shape": (_bad_npz(tmp_path, "shape.npz", X=x.reshape(30, 28 * 28)[:, :700], y=y), "N x 784"),
        "labels": (_bad_npz(tmp_path, "labels.npz", X=x, y=y.astype(int) + 5), "0..9"),
        "count": (_bad_npz(tmp_path, "count.npz", X=x, y=y[:10]), "labels of shape"),
        "pixels": (_bad_npz(tmp_path, "pixels.npz", X=x.astype(float) * 2, y=y), "pixel values"),
        "nan": (_bad_npz(tmp_path, "nan.npz", X=np.full((30, 784), np.nan), y=y), "NaN"),
    }
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file")
    for name, mutate, msg in (
        ("magic", lambda b: b"\x01\x02" + b[2:], "bad magic"),
        ("truncated", lambda b: b[:-100], "truncated"),
        ("dtype", lambda b: b[:2] + b"\x0d" + b[3:], "not unsigned bytes"),
        ("gzip", lambda b: b"\x1f\x8b" + b"broken gzip stream", "corrupt gzip"),
        ("absent", None, "missing MNIST IDX file"),
    ):
        d = tmp_path / f"idx-{name}"
        d.mkdir()
        for k, arr in zip(("x_train", "y_train", "x_test", "y_test"), raw):
            write_idx(d / mnist.IDX_FILES[k], arr)
        f = d / mnist.IDX_FILES["x_train"]
        if mutate is None:
            f.unlink()
        else:
            f.write_bytes(mutate(f.read_bytes()))
        cases[f"idx-{name}"] = (d, msg)
    return cases


def test_every_bad_file_is_a_one_line_error(tmp_path):
    for name, (path, msg) in bad_sources(tmp_path).items():
        mnist._CACHE.clear()
        with pytest.raises(ToyddError, match=msg) as ei:
            mnist.load_mnist(path)
        assert "\n" not in str(ei.value), name


def test_cli_bad_data_and_missing_extra(tmp_path, monkeypatch):
    from toydd import sweep

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"nope")
    env = {"TOYDD_MNIST": str(garbage), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "toydd", "sweep", "mnist-dstar", "--preset", "quick", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert "garbage.npz" in p.stderr
    assert not (tmp_path / "out").exists()  # a bad data file writes nothing to --out
    # Without the extra (and no TOYDD_MNIST), the full-data presets name the extra to install.
    monkeypatch.delenv("TOYDD_MNIST", raising=False)
    monkeypatch.setattr(mnist, "package_path", lambda: None)
    with pytest.raises(ToyddError, match=r"toydd\[mnist\]"):
        sweep.run_sweep("mnist-dstar", tmp_path / "out2", preset="quick", progress=False)
    assert not (tmp_path / "out2").exists()  # nothing written before the data was found
    assert not mnist.data_available("auto") and mnist.data_available("sample")
    assert "mnist-dstar" not in reproduce_plan("paper")
    assert "mnist-dstar" in reproduce_plan("smoke") and "mnist-dstar" not in reproduce_plan("quick")


# --- training ---------------------------------------------------------------------------------

def test_training_learns_and_records_flipped_labels(sample):
    c = mnist.MnistConfig(T=1000, label_noise=25, hidden=32, epochs=3, batch_size=64, checkpoints=(0, 3),
                          held_out=200, top_images=8, data="sample")
    r = mnist.train(c, data=sample)
    assert r.metrics["train_acc"] > 0.6 and r.metrics["held_out_acc"] > 0.6  # chance: 0.1
    assert r.history["checkpoint_acc"][0] < 0.35  # an untrained model is near chance
    a = r.arrays
    assert a["dstar"].shape == (2, 1000) and a["held_out_dstar"].shape == (2, 200)
    assert a["dstar_robust"].shape == (2, 1000) and r.metrics["rare_units"] >= r.metrics["solo_units"] >= 0
    # D* of the training digits sums to the numerical rank of H; never above 1.
    for d, rank in zip(a["dstar"], r.history["checkpoint_rank"]):
        assert d.sum() == pytest.approx(rank, abs=1e-6) and d.max() <= 1 + 1e-9
    # Exactly the recorded digits have a different label, each a different class than its true one.
    fl = a["flipped"]
    assert len(fl) == 25 and len(set(fl.tolist())) == 25
    assert np.array_equal(np.flatnonzero(a["y"] != a["y_true"]), np.sort(fl))
    assert np.array_equal(a["y_true"], sample[1][a["train_index"]])
    assert 0 <= r.metrics["flip_precision_at_k"] <= 1 and r.metrics["flip_k"] == 25


def test_flip_labels_and_detection_metrics():
    y = np.arange(100) % 10
    noisy, idx = mnist.flip_labels(y, 10, np.random.default_rng(0))
    assert len(idx) == 10 and np.all(noisy[idx] != y[idx]) and np.all((noisy == y)[np.setdiff1d(np.arange(100), idx)])
    d = np.linspace(0.01, 0.02, 100)
    d[idx] = 1.0  # the flipped digits on top: perfect detection
    m = mnist.flip_detection(d, idx)
    assert m["precision_at_k"] == 1 and m["auc"] == 1 and m["recall_top"] == 0.1 and m["chance"] == 0.1
    d[idx] = 0.0  # at the bottom
    assert mnist.flip_detection(d, idx)["precision_at_k"] == 0 and mnist.flip_detection(d, idx)["auc"] == 0


def test_same_seed_same_dstar(sample):
    c = mnist.MnistConfig(T=400, label_noise=4, **TINY)
    a, b = mnist.train(c, data=sample), mnist.train(c, data=sample)
    assert np.array_equal(a.arrays["dstar"], b.arrays["dstar"])
    assert np.array_equal(a.arrays["held_out_dstar"], b.arrays["held_out_dstar"])
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    other = mnist.train(c.__class__(**{**c.to_dict(), "seed": 1, "checkpoints": (0, 1)}), data=sample)
    assert not np.array_equal(a.arrays["dstar"], other.arrays["dstar"])


# --- the sweep: resumable, atomic, seen by status and report ------------------------------------

def _sweep(out, jobs):
    from toydd import sweep
    from toydd.experiments import mnist_dstar

    return sweep.run_sweep(mnist_dstar.experiment("smoke", configs=jobs), out, progress=False)


def test_sweep_resumes_training_only_the_rest(tmp_path):
    from toydd import sweep

    out = tmp_path / "sw"
    jobs = [mnist.MnistConfig(T=T, label_noise=nf, **TINY) for T, nf in ((300, 0), (500, 0), (500, 5))]
    first = _sweep(out, jobs[:1])  # a sweep cut short
    assert len(first.trained) == 1
    s = _sweep(out, jobs)
    assert s.already_done == 1 and sorted(s.trained) == sorted(c.key() for c in jobs[1:]) and s.ok
    # A job killed mid-write leaves only a temp directory; a corrupted file is reported and re-run.
    store = out / "runs"  # one store layout for every job kind
    shutil.rmtree(store / jobs[1].key())
    (store / f".{jobs[1].key()}.tmp-999-deadbeef").mkdir()
    arr = store / jobs[2].key() / "arrays.safetensors"
    arr.write_bytes(arr.read_bytes()[:-10])
    st = sweep.status(out)
    assert st["experiments"]["mnist-dstar"]["done"] == 1 and st["experiments"]["mnist-dstar"]["pending"] == 2
    assert any(jobs[2].key() in c for c in st["corrupt"])
    again = _sweep(out, jobs)
    assert again.already_done == 1 and again.corrupt == [jobs[2].key()]
    assert sorted(again.trained) == sorted([jobs[1].key(), jobs[2].key()])
    assert not list(store.glob(".*"))  # the temp directory was cleaned up
    final = _sweep(out, jobs)
    assert final.trained == [] and final.already_done == 3
    st = sweep.status(out)
    assert st["done"] == 3 and st["total"] == 3 and st["experiments"]["mnist-dstar"]["done"] == 3


def test_smoke_sweep_status_and_report(tmp_path):
    from PIL import Image

    from toydd import report, sweep

    out = tmp_path / "smoke"
    s = sweep.run_sweep("mnist-dstar", out, preset="smoke", progress=False)  # through the sweep dispatcher
    assert s.ok and s.total == len(s.trained) == 3
    man = json.loads((out / "experiments" / "mnist-dstar.json").read_text())
    assert man["kind"] == "mnist" and len(man["keys"]) == 3 and man["params"]["data"] == "sample"
    assert "mnist-dstar" in sweep.format_status(sweep.status(out))
    again = sweep.run_sweep("mnist-dstar", out, preset="smoke", executor="process", jobs=2, progress=False)
    assert again.already_done == 3 and again.trained == []  # resumed: nothing left to train
    with pytest.raises(ToyddError, match="has 1,000"):  # the shipped sample is too small for the quick preset
        from toydd.experiments import mnist_dstar

        sweep.run_sweep(mnist_dstar.experiment("quick", source="sample"), tmp_path / "q", progress=False)
    assert not (tmp_path / "q").exists()
    index = report.build_report(out, movies=0, log=lambda m: None, dpi=60)
    files = {p.name for p in index.parent.iterdir()}
    for f in ("hist", "top", "step", "held-out", "label-noise"):
        assert f"mnist-dstar-{f}.png" in files
        with Image.open(index.parent / f"mnist-dstar-{f}.png") as im:
            assert im.format == "PNG" and im.width > 300
    page = index.read_text(encoding="utf-8")
    assert "* plotly.js v" not in page  # no plotly chart in an MNIST-only report: no 4.8 MB of plotly.js
    assert 'id="mnist-dstar-hist"' in page and "100x higher than typical" in page
    # Captions computed from the runs: the outlier ratio of the stored D* appears in the page.
    runs = report.load_store(out).runs("mnist-dstar")
    T1000 = next(r for r in runs if r.config.T == 1000 and r.config.label_noise == 0)
    ratio = mnist.dstar_stats(T1000.arrays["dstar"][-1])["p99_ratio"]
    assert f"the top 1% of digits sit at ≥ {ratio:.1f}x the median" in page
    assert "precision = recall" in page and "not drawn" not in page
    table = sweep.load_table(out, experiment="mnist-dstar")
    assert len(table) == 3 and set(table["kind"]) == {"mnist"} and "dstar_p99_ratio" in table
    # the report header and run table count the MNIST runs
    assert "3 of 3 runs complete" in page and "mnist-dstar: 3 complete runs of 3" in page
