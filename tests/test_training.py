"""Training: schedule, optimizer, batching, determinism, failures, and the m/T law."""

import math
import os

import numpy as np
import pytest
import torch

from toydd import TrainConfig
from toydd import data as D
from toydd.errors import ToyddError
from toydd.storage import load_run, save_run
from toydd.training import _adamw, lr_at, train, train_batch, xavier_normal

SMALL = dict(n=300, m=2, T=20, sparsity=0.98, steps=200, test_size=500, snapshots=5)


def test_schedule_linear_warmup_then_half_cosine():
    c = TrainConfig(steps=50_000, lr=1e-3)
    assert c.warmup_steps == 2_500
    assert lr_at(0, c) == pytest.approx(1e-3 / 2500)
    assert lr_at(2499, c) == pytest.approx(1e-3)
    assert lr_at(2500, c) == pytest.approx(1e-3)  # cosine starts at its peak
    mid = 2500 + (50_000 - 2500) // 2
    assert lr_at(mid, c) == pytest.approx(0.5e-3, rel=1e-4)  # half-cosine: half way is half lr
    assert lr_at(49_999, c) < 1e-10
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(2500, 50_000, 997))


def test_adamw_matches_torch():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((2, 50)).astype(np.float32)
    grads = [rng.standard_normal((2, 50)).astype(np.float32) for _ in range(5)]
    P, Mo, V = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    wd = np.array([1e-2, 0.5])
    tp = [torch.nn.Parameter(torch.tensor(p0[i])) for i in range(2)]
    opts = [torch.optim.AdamW([tp[i]], lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd[i]) for i in range(2)]
    for s, g in enumerate(grads):
        _adamw(P, g, Mo, V, np.ones(2, bool), wd, 3e-3, 0.9, 0.999, 1e-8, s + 1)
        for i in range(2):
            tp[i].grad = torch.tensor(g[i])
            opts[i].step()
    np.testing.assert_allclose(P, np.stack([t.detach().numpy() for t in tp]), rtol=1e-5, atol=1e-7)


def test_adamw_flushes_its_moments_before_subnormals_and_still_matches_torch():
    """A gradient that stops leaves AdamW's moments decaying through float32's subnormals (~10x slower
    arithmetic on x86). Both backends flush them to 0 first (config.ADAM_M_TINY); the parameters still
    match torch's unflushed AdamW, and the torch backend flushes alike."""
    from toydd.config import ADAM_M_TINY, ADAM_V_TINY
    from toydd.training_torch import TorchBackend

    tiny = np.finfo(np.float32).tiny
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((2, 64)).astype(np.float32)
    # tiny gradients (v ~ 1e-33) for 5 steps, then none: v decays by beta2 a step into the subnormals
    g_live = [(rng.standard_normal((2, 64)) * 1e-15).astype(np.float32) for _ in range(5)]
    zero = np.zeros((2, 64), np.float32)
    steps = 12_000
    wd = np.array([1e-2, 1e-2])
    P, Mo, V = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.AdamW([tp], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)

    class P_:  # the shape TorchBackend reads (ParamBatch's fields)
        I, m, n, tied, flat = 2, 1, 32, True, p0.copy()
    tb = TorchBackend(P_, np.ones(32, np.float32), wd, TrainConfig(n=32, m=1, T=5, eps=1e-8, loss_norm="sum"), "cpu")
    subnormal = lambda a: bool(((a != 0) & (np.abs(a) < tiny)).any())  # noqa: E731
    for s in range(steps):
        g = g_live[s] if s < 5 else zero
        _adamw(P, g, Mo, V, np.ones(2, bool), wd, 1e-3, 0.9, 0.999, 1e-8, s + 1)
        tp.grad = torch.tensor(g)
        opt.step()
        tb.G.copy_(torch.tensor(g))
        tb.adamw(np.ones(2, bool), 1e-3, s + 1)
        if s % 500 == 0 or s == steps - 1:
            assert not subnormal(Mo) and not subnormal(V), s
            assert not (((Mo != 0) & (np.abs(Mo) < ADAM_M_TINY)).any() or ((V != 0) & (V < ADAM_V_TINY)).any())
    st = opt.state[tp]
    assert subnormal(st["exp_avg_sq"].numpy())  # torch's own AdamW does go through the subnormals here
    assert not V.any() and not Mo.any()  # ours are flushed to exact zeros
    np.testing.assert_allclose(P, tp.detach().numpy(), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(tb.V.numpy(), V)
    np.testing.assert_allclose(tb.flat.numpy(), P, rtol=1e-6, atol=0)


def test_adamw_flush_keeps_nan_gradients_visible():
    """The flush-to-zero must not turn a NaN gradient into a zero update: the parameters go NaN, as torch's
    AdamW makes them, so the training loop still sees the divergence (both backends)."""
    from toydd.training_torch import TorchBackend

    P = np.ones((1, 4), np.float32)
    Mo, V = np.zeros_like(P), np.zeros_like(P)
    g = np.array([[np.nan, 1.0, 1e-20, 0.0]], np.float32)
    _adamw(P, g, Mo, V, np.ones(1, bool), np.array([0.0]), 1e-3, 0.9, 0.999, 1e-8, 1)
    assert np.isnan(P[0, 0]) and np.isnan(Mo[0, 0]) and np.isnan(V[0, 0])
    assert np.isfinite(P[0, 1:]).all()

    class P_:
        I, m, n, tied, flat = 1, 1, 2, True, np.ones((1, 4), np.float32)
    tb = TorchBackend(P_, np.ones(2, np.float32), np.array([0.0]), TrainConfig(n=2, m=1, T=5, loss_norm="sum"), "cpu")
    tb.G.copy_(torch.tensor(g))
    tb.adamw(np.ones(1, bool), 1e-3, 1)
    assert torch.isnan(tb.flat[0, 0]) and torch.isfinite(tb.flat[0, 1:]).all()


def test_xavier_std_is_per_model():
    p = xavier_normal(2, 10_000, 0, tied=True)
    assert abs(p["W"].std() - math.sqrt(2 / 10_002)) < 3e-4
    assert np.all(p["b"] == 0)
    # the stored step-0 snapshot of a trained model is exactly its per-model init
    run = train(TrainConfig(**{**SMALL, "steps": 1}, init_seed_base=7))
    assert run.history["snapshot_steps"][0] == 0
    assert np.array_equal(run.history["snapshot_W"][0], xavier_normal(2, 300, 7, tied=True)["W"])


def _torch_reference_training(cfg: TrainConfig, init: dict) -> dict:
    """The public replications' style: dense X, autograd, torch AdamW, one Python step per iteration."""
    X = torch.tensor(D.training_set(cfg.n, cfg.sparsity, int(cfg.T), cfg.data_seed).to_dense())
    W = torch.nn.Parameter(torch.tensor(init["W"]))
    b = torch.nn.Parameter(torch.tensor(init["b"]))
    # adam_eps: eps on the summed loss that trains exactly as cfg.loss_norm does (eps * n for the mean)
    opt = torch.optim.AdamW([W, b], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg.lr)
    for _ in range(cfg.steps):
        out = torch.relu(X @ W.T @ W + b)
        loss = ((X - out) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return {"W": W.detach().numpy(), "b": b.detach().numpy()}


def test_warm_start_matches_torch_reference_step_for_step(tmp_path):
    from safetensors.numpy import save_file

    cfg = TrainConfig(n=200, m=2, T=12, sparsity=0.97, steps=40, warmup=4, lr=1e-2, test_size=100, snapshots=0)
    rng = np.random.default_rng(3)
    init = {"W": (rng.standard_normal((2, 200)) * 0.3).astype(np.float32), "b": (rng.standard_normal(200) * 0.05).astype(np.float32)}
    f = tmp_path / "init.safetensors"
    save_file(init, str(f))
    ours = train(cfg.replace(init_path=str(f)))
    ref = _torch_reference_training(cfg, init)
    np.testing.assert_allclose(ours.params["W"], ref["W"], atol=2e-4)
    np.testing.assert_allclose(ours.params["b"], ref["b"], atol=2e-4)
    assert np.abs(ours.params["W"] - init["W"]).max() > 0.05  # it really trained


def test_batched_training_equals_separate_runs():
    base = TrainConfig(**SMALL)
    cfgs = [base.replace(data_seed=1), base.replace(data_seed=2, weight_decay=0.1), base.replace(data_seed=1, init_seed_base=5)]
    together = train_batch(cfgs)
    for c, r in zip(cfgs, together):
        alone = train(c)
        assert np.array_equal(alone.params["W"], r.params["W"])
        assert np.array_equal(alone.params["b"], r.params["b"])
        assert alone.metrics["test_loss"] == r.metrics["test_loss"]


def test_same_seeds_give_identical_results_and_different_seeds_differ():
    c = TrainConfig(**SMALL, init_seeds=2)
    a, b = train(c), train(c)
    assert np.array_equal(a.params["W"], b.params["W"])
    assert a.metrics["instances"] == b.metrics["instances"]
    d = train(c.replace(data_seed=9))
    assert not np.array_equal(a.params["W"], d.params["W"])


def test_best_of_k_keeps_lowest_final_training_loss_and_all_metrics():
    r = train(TrainConfig(**SMALL, init_seeds=3))
    losses = [x["train_loss"] for x in r.metrics["instances"]]
    assert len(losses) == 3
    assert r.metrics["train_loss"] == min(losses)
    assert r.metrics["best_init_seed"] == r.metrics["instances"][int(np.argmin(losses))]["init_seed"]
    assert r.history["train_loss"].shape[0] == 3


@pytest.mark.parametrize("T", [3, 5, 8])
def test_short_training_memorizes_T_gons(T):
    """m = 2, small T: the hidden vectors form a T-gon, D_X ~ m/T, and training loss -> 0."""
    r = train(TrainConfig(n=1000, m=2, T=T, sparsity=0.99, steps=3000, lr=1e-2, init_seeds=4,
                          test_size=1000, snapshots=0))
    dd = r.arrays["data_dims"]
    assert r.metrics["train_loss"] < 1e-3
    assert dd.sum() == pytest.approx(2.0, abs=0.05)  # the points share both dimensions
    tol = 0.35 if T == 3 else 0.15  # three points are memorized by any triangle; more need a polygon
    np.testing.assert_allclose(dd, 2 / T, rtol=tol)
    assert r.metrics["regime"] == "memorizing"


def test_nan_marks_instance_failed_and_keeps_finite_params():
    r = train(TrainConfig(**{**SMALL, "steps": 50}, lr=1e30, warmup=0))
    assert r.metrics["failed_step"] is not None and 0 < r.metrics["failed_step"] <= 50
    assert np.all(np.isfinite(r.params["W"])) and np.all(np.isfinite(r.params["b"]))


def test_infinite_data_and_untied_models_train():
    r = train(TrainConfig(n=200, m=2, T=math.inf, sparsity=0.98, steps=100, online_batch=256, test_size=200))
    assert r.metrics["test_loss"] < 1.0 and len(r.arrays["data_dims"]) == 0
    u = train(TrainConfig(**{**SMALL, "steps": 1000}, lr=1e-2, tied=False))
    assert u.params["W_up"].shape == (300, 2)
    first = u.history["train_loss"][0, 0]
    assert first > 0.9 and u.metrics["train_loss"] < 0.7 * first  # it learns
    assert math.isfinite(u.metrics["test_loss"])


def test_run_directory_roundtrip_and_corruption_detection(tmp_path):
    from toydd.storage import CorruptRun

    r = train(TrainConfig(**SMALL))
    d = save_run(tmp_path / "run", r)
    back = load_run(d)
    assert back.config == r.config
    assert np.array_equal(back.params["W"], r.params["W"])
    assert np.array_equal(back.history["snapshot_W"], r.history["snapshot_W"])
    assert back.metrics["test_loss"] == r.metrics["test_loss"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left behind
    p = d / "params.safetensors"
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(CorruptRun, match="params.safetensors"):
        load_run(d)


def test_bad_init_shapes_are_reported(tmp_path):
    from safetensors.numpy import save_file

    f = tmp_path / "bad.safetensors"
    save_file({"W": np.zeros((3, 300), np.float32), "b": np.zeros(300, np.float32)}, str(f))
    with pytest.raises(ToyddError, match="W has shape"):
        train(TrainConfig(**SMALL, init_path=str(f)))


def test_torch_engine_matches_numba_engine():
    """The torch path (what runs on CUDA) trains the same models as the numba kernel."""
    for tied in (True, False):
        c = TrainConfig(**{**SMALL, "steps": 150}, tied=tied, init_seeds=2)
        a = train(c, engine="numba")
        b = train(c, engine="torch")
        np.testing.assert_allclose(a.params["W"], b.params["W"], atol=2e-4)
        np.testing.assert_allclose(a.params["b"], b.params["b"], atol=2e-4)
        assert a.metrics["test_loss"] == pytest.approx(b.metrics["test_loss"], rel=1e-3)


def test_repeated_point_metrics():
    r = train(TrainConfig(n=300, m=2, T=200, sparsity=0.98, steps=300, lr=1e-2, repeated_points=1, repeats=20,
                          test_size=200, snapshots=0))
    pct = r.metrics["repeated_dx_percentile"]
    assert len(pct) == 1 and 0.0 <= pct[0] <= 1.0
    assert r.metrics["repeated_memorized_fraction"] in (0.0, 1.0)
    with pytest.raises(ToyddError, match="must fit"):
        TrainConfig(T=10, repeated_points=3, repeats=4)


# --- resuming an interrupted training (train_batch's checkpoint) --------------------------------------------

class _Kill(BaseException):
    """Stands for a kill: nothing in toydd catches it."""


def _train_until_killed(cfgs, at_step, path, **kw):
    done = [0]

    def progress(k):
        done[0] += k
        if done[0] >= at_step:
            raise _Kill

    with pytest.raises(_Kill):
        train_batch(cfgs, progress=progress, checkpoint=path, **kw)


def _same_results(a, b):
    for x, y in zip(a, b):
        for d1, d2 in ((x.params, y.params), (x.history, y.history), (x.arrays, y.arrays)):
            assert d1.keys() == d2.keys()
            for k in d1:
                assert np.array_equal(d1[k], d2[k], equal_nan=True), k
        assert {k: v for k, v in x.metrics.items() if k != "seconds"} == \
            {k: v for k, v in y.metrics.items() if k != "seconds"}


@pytest.mark.parametrize("case", ["tree", "infinite", "untied"])
def test_a_resumed_training_is_the_uninterrupted_one_bit_for_bit(tmp_path, monkeypatch, case):
    import safetensors

    from toydd import training

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    base = TrainConfig(**SMALL, init_seeds=2)
    kw = {}
    if case == "tree":  # the tree's kept point order shapes the sums: what RESET_EVERY is for
        base, kw = base.replace(T=3_000), {"kernel": "tree", "engine": "numba"}
    elif case == "infinite":  # the online stream's generator state is saved too
        base = base.replace(T=math.inf, online_batch=64)
    else:
        base = base.replace(tied=False)
    cfgs = [base, base.replace(data_seed=4, weight_decay=0.05)]
    ref = train_batch(cfgs, **kw)
    path = tmp_path / "state.safetensors"
    _train_until_killed(cfgs, 130, path, **kw)
    with safetensors.safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["step"] == "120"  # the last boundary before the kill
    seen = []
    resumed = train_batch(cfgs, progress=seen.append, checkpoint=path, **kw)
    assert seen[0] == 120  # it started there, not at 0
    _same_results(resumed, ref)
    assert resumed[0].metrics["seconds"] > 0


def test_a_checkpoint_of_another_batch_or_garbage_is_ignored(tmp_path, monkeypatch):
    from toydd import training

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    a = [TrainConfig(**SMALL)]
    b = [TrainConfig(**SMALL).replace(data_seed=3)]
    path = tmp_path / "state.safetensors"
    _train_until_killed(a, 90, path)
    seen = []
    _same_results(train_batch(b, progress=seen.append, checkpoint=path), train_batch(b))
    assert sum(seen) == 200 and seen[0] < 20  # from step 0
    path.write_bytes(b"not a checkpoint")
    _same_results(train_batch(a, checkpoint=path), train_batch(a))


def test_a_state_resumes_only_the_same_inputs_and_engine(tmp_path, monkeypatch):
    """The same job keys can hide other inputs (a --data file rewritten between the kill and the rerun) and
    another engine or kernel gives other bits: either way the state is ignored and the training starts over."""
    from toydd import training

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"

    def write_data(seed):
        X = (np.random.default_rng(seed).random((20, 300)) < 0.05) * rng.random((20, 300))
        np.savez(data, X=X.astype(np.float32))

    write_data(1)
    cfg = [TrainConfig(**{**SMALL, "T": 20}, data_path=str(data))]
    path = tmp_path / "state.safetensors"
    _train_until_killed(cfg, 90, path)
    write_data(2)  # same path, same config key, other points
    seen = []
    _same_results(train_batch(cfg, progress=seen.append, checkpoint=path), train_batch(cfg))
    assert seen[0] < 20  # from step 0

    # another kernel
    small = [TrainConfig(**SMALL).replace(T=3_000, steps=60)]
    _train_until_killed(small, 50, path, kernel="tree", engine="numba")
    seen = []
    _same_results(train_batch(small, progress=seen.append, checkpoint=path, kernel="dense", engine="numba"),
                  train_batch(small, kernel="dense", engine="numba"))
    assert seen[0] < 20


def test_a_damaged_state_is_not_resumed(tmp_path, monkeypatch):
    """One flipped bit in a saved parameter would change the run without a word: the arrays' sha256 is checked."""
    from toydd import training
    from toydd.storage import checkpoint_info

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    cfg = [TrainConfig(**SMALL)]
    path = tmp_path / "state.safetensors"
    _train_until_killed(cfg, 90, path)
    assert checkpoint_info(path)["step"] == 80
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x10  # in the last array's bytes (the header comes first)
    path.write_bytes(bytes(raw))
    assert checkpoint_info(path) is not None  # the metadata still reads
    seen = []
    _same_results(train_batch(cfg, progress=seen.append, checkpoint=path), train_batch(cfg))
    assert seen[0] < 20


def test_a_killed_save_leaves_no_temp_file_behind(tmp_path, monkeypatch):
    """A kill during a save leaves `.<state>.<pid>-<random>.tmp`: the next save of that state removes it, and
    leaves a live writer's alone."""
    import subprocess

    from toydd import training

    monkeypatch.setattr(training, "RESET_EVERY", 20)
    monkeypatch.setenv("TOYDD_CHECKPOINT_SECONDS", "0")
    from toydd.storage import FOREIGN_TEMP_SECONDS, _host_tag

    dead = subprocess.Popen(["true"])
    dead.wait()
    here = _host_tag()
    path = tmp_path / "state.safetensors"
    stale = tmp_path / f".state.safetensors.{dead.pid}-{here}-abc123.tmp"
    live = tmp_path / f".state.safetensors.{os.getpid()}-{here}-def456.tmp"
    other = tmp_path / f".other.safetensors.{dead.pid}-{here}-abc123.tmp"
    # another machine's writer (a store shared by nodes): its pid means nothing here; removed once a day old
    remote = tmp_path / f".state.safetensors.{dead.pid}-ffffffff-abc123.tmp"
    remote_old = tmp_path / f".state.safetensors.{os.getpid()}-ffffffff-xyz789.tmp"
    for p in (stale, live, other, remote, remote_old):
        p.write_bytes(b"partial")
    old = os.stat(remote_old).st_mtime - FOREIGN_TEMP_SECONDS - 60
    os.utime(remote_old, (old, old))
    _train_until_killed([TrainConfig(**SMALL)], 50, path)
    assert path.exists() and not stale.exists() and not remote_old.exists()
    assert live.exists() and other.exists() and remote.exists()
