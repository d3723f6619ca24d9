"""The fast loss/gradient paths against plain dense autograd (the definition)."""

import numpy as np
import pytest
import torch

from toydd import data as D
from toydd.kernels import BatchData, loss_and_grads, loss_and_grads_cpu, reference_loss_and_grads
from toydd.threads import chunks


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


def _problem(I, m, n, T, S, tied, seed, zero_rows=0, scale=0.3):
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(I):
        d = D.training_set(n, S, T, seed * 10 + i)
        if zero_rows:  # force some all-zero points
            keep = np.ones(T, bool)
            keep[:zero_rows] = False
            X = d.to_dense() * keep[:, None]
            d = D.SparseData.from_dense(X)
        sets.append(d)
    bd = BatchData.stack(sets)
    W = (rng.standard_normal((I, m, n)) * scale).astype(np.float32)
    b = (rng.standard_normal((I, n)) * 0.1).astype(np.float32)
    U = None if tied else (rng.standard_normal((I, m, n)) * scale).astype(np.float32)
    return bd, W, b, U


def _assert_matches_reference(got, ref, tied):
    """Loss, per-point loss and every gradient within float32 tolerance of the dense-autograd reference."""
    (loss, pl, g), (rl, rpl, rg) = got, ref
    assert _rel(loss, rl) < 1e-5
    assert _rel(pl, rpl) < 1e-5
    assert _rel(g.W, rg.W) < 1e-5
    assert _rel(g.b, rg.b) < 1e-5
    if not tied:
        assert _rel(g.U, rg.U) < 1e-5


CASES = [
    # I, m, n, T, S, tied
    (1, 1, 200, 5, 0.97, True),
    (1, 2, 300, 7, 0.98, True),
    (3, 3, 500, 20, 0.99, True),
    (2, 2, 400, 9, 0.97, False),
    (2, 5, 600, 40, 0.99, False),
    (2, 9, 300, 30, 0.95, True),  # m > 8: the generic (non-unrolled) dense pass
    (1, 4, 2000, 300, 0.998, True),  # T > 256: float32 tiles flushed to float64
]


@pytest.mark.parametrize("I,m,n,T,S,tied", CASES)
@pytest.mark.parametrize("path", ["numba", "torch"])
def test_fast_paths_match_autograd(I, m, n, T, S, tied, path):
    bd, W, b, U = _problem(I, m, n, T, S, tied, seed=m + T, zero_rows=2)
    imp = (0.97 ** np.arange(n)).astype(np.float32)
    if path == "numba":
        loss, pl, g = loss_and_grads(W, b, bd, U, imp)
    else:
        tl, tpl, tg = loss_and_grads(torch.tensor(W), torch.tensor(b), bd, None if U is None else torch.tensor(U), imp)
        loss, pl = tl.numpy(), tpl.numpy()
        g = type(tg)(tg.W.numpy(), tg.b.numpy(), None if tg.U is None else tg.U.numpy())
    rl, rpl, rg = reference_loss_and_grads(W, b, bd.to_dense(), U, imp)
    _assert_matches_reference((loss, pl, g), (rl, rpl, rg), tied)
    # an all-zero point's loss is sum_i I_i ReLU(b_i)^2 (no NaN from the unit-norm rescale)
    expect = (imp * np.maximum(b, 0).astype(np.float64) ** 2).sum(1)
    np.testing.assert_allclose(pl[:, :2], np.repeat(expect[:, None], 2, 1), rtol=1e-5)


def test_relu_boundary_matches_autograd():
    """Pre-activations exactly at 0: ReLU'(0) = 0 in both paths."""
    n, T = 50, 6
    bd = BatchData.stack([D.training_set(n, 0.8, T, 3)])
    W = np.zeros((1, 2, n), np.float32)
    W[0, 0, :10] = 0.5  # features 10.. have U_j = 0 and b_j = 0: z == 0 exactly
    b = np.zeros((1, n), np.float32)
    b[0, :5] = -0.25  # some features negative, some at 0
    loss, pl, g = loss_and_grads(W, b, bd)
    rl, rpl, rg = reference_loss_and_grads(W, b, bd.to_dense())
    assert _rel(loss, rl) < 1e-6
    assert _rel(g.W, rg.W) < 1e-5
    np.testing.assert_allclose(g.b, rg.b, atol=1e-6)


def test_all_zeros_model_scores_exactly_one_on_unit_norm_data():
    """Loss is summed over features and averaged over points: 0 model -> sum x^2 / T = 1."""
    n, T = 1000, 64
    d = D.generate(n, 0.95, T, 0)  # 50 nonzeros per point: no empty rows
    assert np.all(np.diff(d.indptr) > 0)
    bd = BatchData.stack([d])
    loss, pl, _ = loss_and_grads(np.zeros((1, 2, n), np.float32), np.zeros((1, n), np.float32), bd)
    assert abs(loss[0] - 1.0) < 1e-6
    np.testing.assert_allclose(pl[0], 1.0, atol=1e-6)


def test_skipping_is_exact():
    """Dead-feature skipping changes nothing: compare with skipping disabled."""
    bd, W, b, _ = _problem(2, 2, 3000, 50, 0.99, True, seed=7)
    b[:, 100:] = -0.5  # most features provably dead
    l1, p1, g1, ws = loss_and_grads_cpu(W, b, bd, skip=True)
    assert ws.n_active.max() < 3000
    l1, p1, gW1, gb1 = l1.copy(), p1.copy(), g1.W.copy(), g1.b.copy()
    l2, p2, g2, _ = loss_and_grads_cpu(W, b, bd, skip=False)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    np.testing.assert_allclose(gW1, g2.W, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gb1, g2.b, rtol=1e-5, atol=1e-8)


def test_batched_instances_equal_separate_calls():
    bd, W, b, U = _problem(3, 2, 800, 30, 0.99, False, seed=11)
    loss, pl, g = loss_and_grads(W, b, bd, U)
    for i in range(3):
        li, pli, gi = loss_and_grads(W[i:i + 1], b[i:i + 1], BatchData.stack([bd.instance(i)]), U[i:i + 1])
        assert np.array_equal(loss[i:i + 1], li)
        assert np.array_equal(g.W[i:i + 1], gi.W)
        assert np.array_equal(g.U[i:i + 1], gi.U)
        assert np.array_equal(g.b[i:i + 1], gi.b)


def test_kernel_is_deterministic_across_thread_counts():
    import numba

    from toydd import threads as TH

    bd, W, b, _ = _problem(1, 2, 5000, 200, 0.99, True, seed=5)
    outs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        TH.set_threads(threads)
        old = TH.PARALLEL_MIN_WORK
        TH.PARALLEL_MIN_WORK = 0
        try:
            loss, _, g = loss_and_grads(W, b, bd)
        finally:
            TH.PARALLEL_MIN_WORK = old
            TH.set_threads(None)
        outs.append((loss, g.W, g.b))
    assert all(np.array_equal(a, c) for a, c in zip(outs[0], outs[1]))


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunked", [False, True])
def test_unrolled_sparse_kernels_equal_generic_bit_for_bit(m, tied, chunked):
    """_sparse_kernels (generated, m unrolled, packed rows) against kernels' generic _hidden/_sparse_pass
    (both passes, and what the first leaves for the second): same arithmetic in the same order, so equal
    bit for bit, with one chunk and with SPARSE_CHUNKS."""
    from toydd import kernels as K
    from toydd._sparse_kernels import HIDDEN_KERNELS, SPARSE_KERNELS

    I, n = 2, 97
    T = K.SPARSE_CHUNK_T + 11 if chunked else 300
    bd, W, b, U = _problem(I, m, n, T, 0.95, tied, seed=m)
    Uo = W if tied else U
    rng = np.random.default_rng(m)
    imp = rng.uniform(0.2, 1.0, n).astype(np.float32)
    C = K.sparse_chunks(T)
    assert (C > 1) == chunked
    nblk = np.array([2, 1], np.int64)
    dHpart = rng.standard_normal((I, K.MAX_BLOCKS, T, m)).astype(np.float32) * 1e-3
    losspart = rng.uniform(0, 1e-2, (I, K.MAX_BLOCKS, T)).astype(np.float32)
    dU0 = rng.standard_normal((I, m, n)).astype(np.float32) * 1e-3  # the dense part's gradients
    db0 = rng.standard_normal((I, n)).astype(np.float32) * 1e-3

    def outputs():
        return dict(dW=np.full((I, m, n), np.nan, np.float32), dU=dU0.copy(), db=db0.copy(),
                    dH=np.empty((I, T, m), np.float32), point_loss=np.empty((I, T)), loss=np.empty(I), closs=np.empty((I, C)))

    nnz = bd.indices.size
    two_c = np.float32(2.0 / T)
    H_ref, dHs_ref, ls_ref, gs_ref = (np.empty((I, T, m), np.float32), np.empty((I, T, m), np.float32),
                                      np.empty((I, T)), np.empty(nnz, np.float32))
    Cp = chunks(I, T)
    bounds_ref = (np.empty((I, Cp, m)), np.empty((I, Cp, m)), np.empty((I, Cp)))
    K._hidden(W, Uo, b, imp, bd.indptr, bd.indices, bd.values, two_c, H_ref, gs_ref, dHs_ref, ls_ref, *bounds_ref)
    ref = outputs()
    big = C > 1
    partU = np.empty((I, C, m, n) if big else (I, 1, 1, 1), np.float32)
    partb = np.empty((I, C, n) if big else (I, 1, 1), np.float32)
    partW = np.empty((I, C, m, n) if big and not tied else (I, C, 1, 1), np.float32)
    K._sparse_pass(Uo, H_ref, bd.indptr, bd.indices, bd.values, nblk, tied, dHpart, losspart, gs_ref, dHs_ref,
                   ls_ref, ref["dW"], ref["dU"], ref["db"], ref["dH"], ref["point_loss"], ref["loss"], partU, partb,
                   partW, ref["closs"])

    FT = np.concatenate([Uo.transpose(0, 2, 1), b[:, :, None], np.broadcast_to(imp, (I, n))[:, :, None]], 2)
    FT = np.ascontiguousarray(FT, np.float32)
    P = FT if tied else np.ascontiguousarray(W.transpose(0, 2, 1))
    H, dHs, ls, gs = np.empty((I, T, m), np.float32), np.empty((I, T, m), np.float32), np.empty((I, T)), np.empty(nnz, np.float32)
    bounds = (np.empty((I, Cp, m)), np.empty((I, Cp, m)), np.empty((I, Cp)))
    HIDDEN_KERNELS[m](P, FT, bd.indptr, bd.indices, bd.values, two_c, H, gs, dHs, ls, *bounds)
    for a, r in ((H, H_ref), (gs, gs_ref), (dHs, dHs_ref), (ls, ls_ref)) + tuple(zip(bounds, bounds_ref)):
        assert np.array_equal(a, r)
    got = outputs()
    G = np.empty((I, C, n, m + 1 if tied else 2 * m + 1) if big else (I, 1, 1, 1), np.float32)
    SPARSE_KERNELS[m](H, bd.indptr, bd.indices, bd.values, nblk, tied, dHpart, losspart, gs, dHs, ls,
                      got["dW"], got["dU"], got["db"], got["dH"], got["point_loss"], got["loss"], G, got["closs"])
    for k in ("dU", "db", "dH", "point_loss", "loss") + (() if tied else ("dW",)):
        assert np.array_equal(got[k], ref[k]), k
    assert np.abs(ref["dU"] - dU0).max() > 0  # the corrections did something


def test_generated_kernel_modules_are_up_to_date():
    """src/toydd/_dense_kernels.py and _sparse_kernels.py are what tools/gen_kernels.py writes."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gen_kernels", root / "tools" / "gen_kernels.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, text in gen.sources().items():
        assert (root / "src" / "toydd" / name).read_text() == text, f"{name}: run python tools/gen_kernels.py"
    # the unrolled kernels skew their scratch rows as the generic one does, and no two row starts come within
    # 4096 // R - 64 bytes of each other modulo 4 KiB, whatever the block's feature count L
    from toydd.kernels import row_skew

    for R in range(3, 22):
        assert gen.row_skew(R) == row_skew(R)
        for L in (1, 100, 625, 1023, 1024, 5000):
            Lp = L + (row_skew(R) - L) % 1024
            assert Lp >= L and (4 * Lp) % 4096 == 4 * row_skew(R)
            starts = [(r * 4 * Lp) % 4096 for r in range(R)]
            gaps = [min(abs(x - y), 4096 - abs(x - y)) for i, x in enumerate(starts) for y in starts[:i]]
            assert min(gaps) >= 4096 // R - 64, (R, L)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("S,packed", [(0.9, True), (0.999, False)])
def test_step_takes_packed_kernels_with_many_non_zeros_and_matches_autograd(tied, S, packed):
    """loss_and_grads_cpu runs the unrolled packed-row kernels once non-zeros >= features (else the generic
    ones, whose per-step packing would cost more than it saves); either way it matches autograd."""
    I, m, n, T = 2, 3, 150, 400
    bd, W, b, U = _problem(I, m, n, T, S, tied, seed=3)
    assert (bd.indices.size >= I * n) == packed
    imp = (0.99 ** np.arange(n)).astype(np.float32)
    loss, pl, g, ws = loss_and_grads_cpu(W, b, bd, U, imp)
    assert (ws.packed_buffers is not None) == packed
    assert (ws.generic_buffers is not None) == (not packed)
    rl, rpl, rg = reference_loss_and_grads(W, b, bd.to_dense(), U, imp)
    _assert_matches_reference((loss, pl, g), (rl, rpl, rg), tied)


@pytest.mark.parametrize("I,T", [(1, 1), (1, 7), (3, 300), (1, 70_000)])
@pytest.mark.parametrize("m", [2, 3, 9])
def test_first_pass_leaves_the_points_bounds_of_every_chunk(I, T, m):
    """The first per-non-zero pass leaves, per chunk of points, the per-dim max/min of h and the max |h|^2 (the
    active-feature bound's input): over the chunks they equal numpy's on the H it wrote, from one chunk (T = 1)
    to 256, in the unrolled kernels (m <= 8) and the generic one (m = 9); a NaN h is left out."""
    from toydd import kernels as K
    from toydd._sparse_kernels import HIDDEN_KERNELS

    bd, W, b, _ = _problem(I, m, 50, T, 0.9, True, seed=T + m)
    if T == 300:
        W[0, :, :] = np.nan  # instance 0 diverged: every h is NaN
        W[1, 0, 3] = np.nan  # instance 1: the points with feature 3 have a NaN first coordinate
    imp = np.ones(50, np.float32)
    C = chunks(I, T)
    assert C == min(T, 256 // I)
    H, gs = np.empty((I, T, m), np.float32), np.empty(bd.indices.size, np.float32)
    dHs, ls = np.empty((I, T, m), np.float32), np.empty((I, T))
    pmax, pmin, pn2 = np.full((I, C, m), 7.0), np.full((I, C, m), 7.0), np.full((I, C), 7.0)
    args = (bd.indptr, bd.indices, bd.values, np.float32(2.0 / T), H, gs, dHs, ls, pmax, pmin, pn2)
    if m in HIDDEN_KERNELS:
        FT = np.ascontiguousarray(np.concatenate([W.transpose(0, 2, 1), b[:, :, None],
                                                  np.ones((I, 50, 1), np.float32)], 2))
        HIDDEN_KERNELS[m](FT, FT, *args)
    else:
        K._hidden(W, W, b, imp, *args)
    Hm = np.where(np.isnan(H), -np.inf, H).max(1)
    HM = np.where(np.isnan(H), np.inf, H).min(1)
    np.testing.assert_array_equal(pmax.max(1), Hm)
    np.testing.assert_array_equal(pmin.min(1), HM)
    q = (H.astype(np.float64) ** 2).sum(2)
    np.testing.assert_allclose(pn2.max(1), np.where(np.isnan(q), 0.0, q).max(1), rtol=1e-12)
    if T == 300:  # (the NaN cases happened; a point without non-zeros has h = 0 even when W is NaN)
        assert np.isnan(H[0]).mean() > 0.9 and np.isnan(H[1, :, 0]).any() and np.isfinite(pmax[1]).all()


def test_a_feature_with_a_tiny_column_is_not_skipped_while_a_huge_h_keeps_it_alive():
    """The active-feature test's ball bound |U_j| max|h|: |U_j|^2 = 1e-46 underflows to 0 in float32, and with it
    the bound, which called feature 1 dead although z = 1e15 * 1e-23 - 1e-20 = 1e-8 > 0 at every point and its
    gradient is the largest one (found by a hostile review). Also |h|^2 = 1e40 overflows a float32 square."""
    from toydd import kernels as K
    from toydd.data import SparseData

    n, m, T = 3, 2, 4
    X = np.zeros((T, n), np.float32)
    X[:, 0] = 1.0
    bd = K.BatchData.stack([SparseData.from_dense(X)])
    W = np.zeros((1, m, n), np.float32)
    W[0, 0, 0] = 1e15  # h_t = (1e15, 0)
    U = np.zeros((1, m, n), np.float32)
    U[0, 0, 1] = 1e-23
    b = np.zeros((1, n), np.float32)
    b[0, 1] = -1e-20
    b[0, 2] = -1.0  # feature 2: dead at every point, may be skipped
    _, _, g, ws = K.loss_and_grads_cpu(W, b, bd, U, kernel="dense")
    assert 1 in ws.active[0, :ws.n_active[0]]
    ref = K.reference_loss_and_grads(W, b, X[None], U)[2]
    assert abs(g.U[0, 0, 1] - ref.U[0, 0, 1]) <= 1e-5 * abs(ref.U[0, 0, 1]) and ref.U[0, 0, 1] != 0
    W[0, 0, 0] = 1e20  # |h|^2 = 1e40: beyond float32, not beyond the bound's float64
    U[0, 0, 1] = 1e-28
    b[0, 1] = -1e-10  # z = 1e-8 - 1e-10 > 0
    _, _, g, ws = K.loss_and_grads_cpu(W, b, bd, U, kernel="dense")
    assert 1 in ws.active[0, :ws.n_active[0]] and np.isfinite(ws.pn2).all()


@pytest.mark.parametrize("kernel", ["dense", "tree", "auto"])
def test_a_batch_of_no_instances_gives_empty_results(kernel):
    from toydd import kernels as K

    T, n, m = 5, 20, 2
    bd = K.BatchData(np.zeros((0, T + 1), np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), n)
    loss, pl, g, _ = K.loss_and_grads_cpu(np.zeros((0, m, n), np.float32), np.zeros((0, n), np.float32), bd,
                                          kernel=kernel)
    assert loss.shape == (0,) and pl.shape == (0, T) and g.W.shape == (0, m, n) and g.b.shape == (0, n)


@pytest.mark.parametrize("m,n,T,tied", [(2, 300, 400, True), (3, 200, 50, False), (9, 100, 60, True), (1, 500, 3, True)])
def test_serial_twins_give_the_threaded_kernels_bits(monkeypatch, m, n, T, tied):
    """A small step runs every kernel as its serial twin (no parallel region to launch), a large one threaded:
    the same loops, so the same bits, on the packed and the generic per-non-zero kernels; AdamW too."""
    from toydd import kernels as K
    from toydd import threads as TH
    from toydd.training import _adamw

    bd, W, b, U = _problem(2, m, n, T, 0.97, tied, seed=m + T)
    imp = (0.98 ** np.arange(n)).astype(np.float32)
    outs = []
    for threshold in (0, 10**18):  # everything threaded / everything serial
        monkeypatch.setattr(TH, "PARALLEL_MIN_WORK", threshold)
        loss, pl, g, _ = loss_and_grads_cpu(W, b, bd, U, imp, kernel="dense")
        outs.append([loss.copy(), pl.copy(), g.W.copy(), g.b.copy()] + ([] if tied else [g.U.copy()]))
    assert all(np.array_equal(x, y) for x, y in zip(*outs))
    assert TH.serial(K._hidden) is TH.serial(K._hidden) and TH.serial(K._hidden) is not K._hidden
    rng = np.random.default_rng(0)
    P, G = rng.standard_normal((2, 2, 500), dtype=np.float32)
    res = []
    for f in (_adamw, TH.serial(_adamw)):
        p, mo, v = P.copy(), np.zeros_like(P), np.zeros_like(P)
        for step in range(1, 4):
            f(p, G, mo, v, np.array([True, False]), np.full(2, 0.01, np.float32), 1e-3, 0.9, 0.999, 1e-8, step)
        res.append(p)
    assert np.array_equal(res[0], res[1]) and np.array_equal(res[0][1], P[1])


_LAYER_PROBE = r"""
import json, os, sys
import numpy as np
if sys.argv[1] == "gomp-first":  # a library loaded libgomp before toydd could set its spin count
    import ctypes, ctypes.util
    ctypes.CDLL(ctypes.util.find_library("gomp") or "libgomp.so.1")
if sys.argv[1] == "torch-first":  # torch maps its own copy of libgomp: numba's is still toydd's to set up
    import torch  # noqa: F401
import numba
from toydd import data as D, threads as TH
from toydd.kernels import BatchData, loss_and_grads_cpu
TH.PARALLEL_MIN_WORK = 0
rng = np.random.default_rng(3)
bd = BatchData.stack([D.training_set(3000, 0.99, 20000, 1)])  # 2 walk tasks: the walk runs threaded
W = (rng.standard_normal((1, 2, 3000)) * 0.3).astype(np.float32)
b = (rng.standard_normal((1, 3000)) * 0.1 - 0.05).astype(np.float32)
out = [loss_and_grads_cpu(W, b, bd, kernel=k) for k in ("dense", "tree")]
np.savez(sys.argv[2], *[a for l, pl, g, _ in out for a in (l, pl, g.W, g.b)])
print(json.dumps({"layer": numba.threading_layer(), "chosen": TH.LAYER, "env": os.environ.get("GOMP_SPINCOUNT")}))
"""


def _probe(tmp_path, name, mode="plain", env=None):
    import json
    import os
    import subprocess
    import sys

    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT")}
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", _LAYER_PROBE, mode, str(tmp_path / name)], capture_output=True,
                       text=True, env=e, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with np.load(tmp_path / name) as z:
        arrays = [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))]
    return json.loads(p.stdout.strip().splitlines()[-1]), arrays


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the layer choice is Linux's")
def test_threading_layer_choice_and_same_bits_on_every_layer(tmp_path):
    """toydd takes OpenMP with a short spin (threads.GOMP_SPIN) where libgomp loads, workqueue where it does not or
    where numba's libgomp was loaded before toydd could set the spin (the default spin starves a busy machine), and
    NUMBA_THREADING_LAYER decides when set. The spin is set only while numba's libgomp loads (torch's own copy keeps
    its defaults). Whatever the layer, a threaded step gives the same bits, dense and tree."""
    from toydd import threads as TH

    chosen, a = _probe(tmp_path, "chosen.npz")
    assert chosen["layer"] in ("omp", "workqueue") and chosen["env"] is None
    if chosen["layer"] == "omp":
        assert chosen["chosen"] == f"omp (GOMP_SPINCOUNT={TH.GOMP_SPIN})"
    forced, c = _probe(tmp_path, "wq.npz", env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert forced["layer"] == "workqueue" and forced["env"] is None
    assert all(np.array_equal(x, y) for x, y in zip(a, c))
    if chosen["layer"] == "omp":
        early, d = _probe(tmp_path, "early.npz", mode="gomp-first")
        assert early["layer"] == "workqueue" and early["chosen"] == "workqueue"
        assert all(np.array_equal(x, y) for x, y in zip(a, d))
        after_torch, e = _probe(tmp_path, "torch.npz", mode="torch-first")
        assert after_torch["layer"] == "omp" and after_torch["env"] is None
        assert all(np.array_equal(x, y) for x, y in zip(a, e))
        user, _ = _probe(tmp_path, "user.npz", env={"GOMP_SPINCOUNT": "777"})
        assert user["chosen"] == "omp (GOMP_SPINCOUNT=777)" and user["env"] == "777"
