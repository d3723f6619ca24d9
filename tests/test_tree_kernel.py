"""The tree-pruned dense pass (tree_kernels.py) against the plain dense kernel and autograd."""

import numpy as np
import pytest

from toydd import data as D
from toydd import tree_kernels as TK
from toydd.config import TrainConfig
from toydd.kernels import BatchData, loss_and_grads_cpu, reference_loss_and_grads
from toydd.training import train_batch


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def _run(W, b, bd, U=None, imp=None, kernel="dense"):
    loss, pl, g, ws = loss_and_grads_cpu(W, b, bd, U, imp, kernel=kernel)
    return (loss.copy(), pl.copy(), g.W.copy(), g.b.copy(), None if g.U is None else g.U.copy()), ws


def _assert_same(W, b, bd, U=None, imp=None, tol=2e-5):
    """kernel='tree' equals kernel='dense' within float32 rounding: loss, per-point loss, every gradient."""
    t, ws = _run(W, b, bd, U, imp, "tree")
    assert ws.use_tree.all()
    d, _ = _run(W, b, bd, U, imp, "dense")
    names = ("loss", "point loss", "dW", "db", "dU")
    for name, x, y in zip(names, t, d):
        if y is None:
            continue
        assert np.isfinite(x).all(), name
        assert _rel(x, y) < tol, (name, _rel(x, y))
    # per point, relative to that point's own loss (not just to the largest one)
    np.testing.assert_allclose(t[1], d[1], rtol=tol, atol=tol * 1e-3 * np.abs(d[1]).max() + 1e-30)
    return t, d


def _problem(I, m, n, T, S, tied, seed, scale=0.3, bias=0.1):
    rng = np.random.default_rng(seed)
    bd = BatchData.stack([D.training_set(n, S, T, seed * 10 + i) for i in range(I)])
    W = (rng.standard_normal((I, m, n)) * scale).astype(np.float32)
    b = (rng.standard_normal((I, n)) * bias).astype(np.float32)
    U = None if tied else (rng.standard_normal((I, m, n)) * scale).astype(np.float32)
    return bd, W, b, U


@pytest.mark.parametrize("I,m,n,T,tied", [
    (1, 1, 300, 700, True),
    (1, 2, 400, 2000, True),
    (1, 2, 300, 20000, True),  # a deeper tree: 157 leaves, 2 subtree tasks
    (2, 3, 300, 1500, False),
    (1, 5, 300, 1000, True),
    (1, 8, 200, 1200, False),
    (1, 9, 150, 600, True),  # beyond the unrolled dense kernels
])
def test_tree_equals_dense_random_states(I, m, n, T, tied):
    bd, W, b, U = _problem(I, m, n, T, 0.99, tied, seed=m * 7 + T)
    b -= 0.05  # some features dead on parts of the data, some alive: every node kind occurs
    imp = (0.995 ** np.arange(n)).astype(np.float32)
    _assert_same(W, b, bd, U, imp)


def test_tree_equals_autograd():
    bd, W, b, U = _problem(1, 2, 200, 300, 0.98, False, seed=3)
    imp = (0.99 ** np.arange(200)).astype(np.float32)
    (loss, pl, gW, gb, gU), _ = _run(W, b, bd, U, imp, "tree")
    rl, rpl, rg = reference_loss_and_grads(W, b, bd.to_dense(), U, imp)
    assert _rel(loss, rl) < 1e-5 and _rel(pl, rpl) < 1e-5
    assert _rel(gW, rg.W) < 1e-5 and _rel(gb, rg.b) < 1e-5 and _rel(gU, rg.U) < 1e-5


def _one_hot(T, n, cols):
    """Points x_t = e_{cols[t]} (value 1): h_t = W[:, cols[t]] exactly."""
    X = np.zeros((T, n), np.float32)
    X[np.arange(T), cols] = 1.0
    return BatchData.stack([D.SparseData.from_dense(X)])


def test_points_exactly_on_the_boundary():
    """Dyadic weights: z = W_i . W_j + b_i is exact in float32 and many pairs sit at z = 0 exactly."""
    rng = np.random.default_rng(0)
    n, m, T = 64, 2, 640
    W = (rng.integers(-8, 9, (1, m, n)) / 8).astype(np.float32)
    j0 = 5
    b = -(W[0, :, :].T @ W[0, :, j0]).astype(np.float32)[None]  # z(point e_j0, feature i) = 0 for every i
    cols = np.where(np.arange(T) % 2 == 0, j0, rng.integers(0, n, T))
    bd = _one_hot(T, n, cols)
    t, d = _assert_same(W, b, bd)
    rl, rpl, rg = reference_loss_and_grads(W, b, bd.to_dense())
    assert _rel(t[2], rg.W) < 1e-5 and _rel(t[3], rg.b) < 1e-5 and _rel(t[1], rpl) < 1e-5
    # a node of only boundary points: every point the same, z = 0 for every feature
    bd_same = _one_hot(T, n, np.full(T, j0))
    _assert_same(W, b, bd_same)


@pytest.mark.parametrize("case", ["duplicates", "zero_h", "T1", "huge", "tiny", "b0", "all_dead", "all_linear"])
def test_adversarial_geometry(case):
    n, m = 300, 2
    bd, W, b, U = _problem(1, m, n, 2000, 0.99, True, seed=1)
    if case == "duplicates":  # 2,000 copies of 3 points: leaves with zero-size boxes
        d = D.training_set(n, 0.99, 3, 0)
        bd = BatchData.stack([d.rows(np.arange(2000) % 3)])
    elif case == "zero_h":  # W = 0: every h = 0, output ReLU(b) everywhere (linear or dead at the root)
        W[:] = 0.0
    elif case == "T1":
        bd = BatchData.stack([D.training_set(n, 0.99, 1, 0)])
    elif case == "huge":
        W *= 1e4
        b *= 1e6
    elif case == "tiny":
        W *= 1e-12
        b *= 1e-20
    elif case == "b0":  # the paper's init: b = 0, every hyperplane through the origin
        b[:] = 0.0
    elif case == "all_dead":
        b[:] = -10.0
    elif case == "all_linear":
        b[:] = 10.0
    _assert_same(W, b, bd)


def test_untied_importance_and_batched_instances_are_independent():
    bd, W, b, U = _problem(3, 3, 400, 2500, 0.99, False, seed=5)
    imp = (0.99 ** np.arange(400)).astype(np.float32)
    (loss, pl, gW, gb, gU), _ = _run(W, b, bd, U, imp, "tree")
    for i in range(3):
        one = BatchData.stack([bd.instance(i)])
        (li, pli, gWi, gbi, gUi), _ = _run(W[i:i + 1], b[i:i + 1], one, U[i:i + 1], imp, "tree")
        for x, y in ((loss, li), (pl, pli), (gW, gWi), (gb, gbi), (gU, gUi)):
            assert np.array_equal(x[i:i + 1], y)
    _assert_same(W, b, bd, U, imp)


def test_tree_is_deterministic_across_thread_counts():
    import numba

    from toydd import threads as TH

    bd, W, b, _ = _problem(1, 2, 2000, 4000, 0.99, True, seed=9)
    outs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        TH.set_threads(threads)
        try:
            outs.append(_run(W, b, bd, kernel="tree")[0][:4])
        finally:
            TH.set_threads(None)
    assert all(np.array_equal(a, c) for a, c in zip(outs[0], outs[1]))


def test_auto_choice_is_deterministic_and_per_instance():
    """auto: same inputs -> bit-identical outputs; the choice is per instance and never
    depends on the batch; small T stays dense."""
    n, T = 10000, 16384
    bd, W, b, _ = _problem(2, 1, n, T, 0.999, True, seed=2)  # m = 1: sorted points, the tree wins by far
    b[1] = -5.0  # instance 1: every feature provably dead -> nothing to prune -> dense
    first, ws = _run(W, b, bd, kernel="auto")
    assert ws.use_tree.tolist() == [True, False]
    again, _ = _run(W, b, bd, kernel="auto")
    assert all(np.array_equal(x, y) for x, y in zip(first[:4], again[:4]))
    # the same instance alone makes the same choice and the same bits
    alone, ws1 = _run(W[:1], b[:1], BatchData.stack([bd.instance(0)]), kernel="auto")
    assert ws1.use_tree.tolist() == [True]
    assert all(np.array_equal(x[:1], y) for x, y in zip(first[:4], alone[:4]))
    # small T: the dense kernel, no tree built
    small = BatchData.stack([D.training_set(n, 0.999, 500, 0)])
    _, ws2 = _run(W[:1], b[:1], small, kernel="auto")
    assert not ws2.use_tree.any() and ws2.tree is None
    with pytest.raises(ValueError):
        loss_and_grads_cpu(W, b, bd, kernel="fast")


def test_state_from_a_real_training():
    cfg = TrainConfig(n=1000, m=2, T=3000, sparsity=0.99, steps=200, lr=1e-2, test_size=100, snapshots=0,
                      device="cpu")
    p = train_batch([cfg], kernel="dense")[0].params
    W, b = p["W"][None], p["b"][None]
    bd = BatchData.stack([D.training_set(1000, 0.99, 3000, 0)])
    (_, ws) = _run(W, b, bd, kernel="tree")
    assert ws.tree.counts[0, :, 1].sum() < 3000 * ws.n_active[0]  # the tree pruned something
    _assert_same(W, b, bd)


def test_training_on_the_tree_matches_dense():
    """2,000 steps at T = 1,000 (n = 1,000, S = 0.99, m = 2, lr 1e-2): same final loss within 1e-4."""
    cfg = TrainConfig(n=1000, m=2, T=1000, sparsity=0.99, steps=2000, lr=1e-2, test_size=100, snapshots=0,
                      device="cpu")
    rd = train_batch([cfg], kernel="dense")[0]
    rt = train_batch([cfg], kernel="tree")[0]
    ld, lt = rd.history["train_loss"][0, -1], rt.history["train_loss"][0, -1]
    assert abs(lt - ld) <= 1e-4 * abs(ld), (lt, ld)
    assert abs(rt.metrics["train_loss"] - rd.metrics["train_loss"]) <= 1e-4 * rd.metrics["train_loss"]


def test_online_batches_on_the_tree():
    """T = inf: a fresh BatchData every step, a fresh tree every step."""
    cfg = TrainConfig(n=500, m=2, T=float("inf"), online_batch=3000, sparsity=0.99, steps=20, lr=1e-2,
                      test_size=100, snapshots=0, device="cpu")
    ld = train_batch([cfg], kernel="dense")[0].history["train_loss"][0]
    lt = train_batch([cfg], kernel="tree")[0].history["train_loss"][0]
    np.testing.assert_allclose(lt, ld, rtol=1e-5)


def test_topology_covers_every_point_once():
    for T in (1, 31, 32, 33, 1000, 4097):
        tp = TK.Topology(T)
        leaves = np.flatnonzero(tp.leaf)
        spans = sorted((tp.s0[k], tp.s1[k]) for k in leaves)
        assert spans[0][0] == 0 and spans[-1][1] == T
        assert all(a[1] == c[0] for a, c in zip(spans, spans[1:]))
        assert all(0 < e - s <= TK.LEAF for s, e in spans)
        assert all(tp.s1[k] > tp.s0[k] for k in range(tp.K, 2 * tp.K))  # every task root exists


def test_default_kernel_is_settable_from_outside(monkeypatch):
    """kernel=None means kernels.DEFAULT_KERNEL (the TOYDD_KERNEL environment variable at import)."""
    from toydd import kernels

    bd, W, b, _ = _problem(1, 2, 300, 500, 0.99, True, seed=4)
    monkeypatch.setattr(kernels, "DEFAULT_KERNEL", "tree")
    _, _, _, ws = loss_and_grads_cpu(W, b, bd)
    assert ws.use_tree.all()  # T = 500: auto would have stayed dense
    monkeypatch.setattr(kernels, "DEFAULT_KERNEL", "auto")
    _, _, _, ws = loss_and_grads_cpu(W, b, bd)
    assert not ws.use_tree.any()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_models_stay_non_finite(bad):
    """A diverged model must not look finite on the tree (training relies on it to stop)."""
    bd, W, b, _ = _problem(1, 2, 300, 3000, 0.99, True, seed=6)
    W[0, 0, :50] = bad
    (lt, plt, *_), _ = _run(W, b, bd, kernel="tree")
    (ld, pld, *_), _ = _run(W, b, bd, kernel="dense")
    assert not np.isfinite(ld).all() and not np.isfinite(lt).all()
    assert np.array_equal(np.isfinite(plt), np.isfinite(pld))


def test_bench_kernel_scan_reports_every_kernel(tmp_path):
    from toydd import bench

    res = bench.run_kernels(n=300, m=2, Ts=[2500], kernels=["dense", "tree", "auto"], seconds=0.01, memory=False)
    rows = res["rows"]
    assert [r["kernel"] for r in rows] == ["dense", "tree", "auto"]
    assert rows[1]["ran_tree"] and not rows[0]["ran_tree"] and rows[1]["tree_leaf_pairs"] >= 0
    assert rows[0]["speedup_vs_dense"] == 1.0 and all(r["ms"] > 0 for r in rows)
    # states from a saved run (benchmarks/tree_states.py's format)
    W = np.stack([np.zeros((2, 300), np.float32), np.full((2, 300), 0.1, np.float32)])
    path = tmp_path / "states.npz"
    np.savez(path, steps=np.array([0, 7]), W=W, b=np.zeros((2, 300), np.float32))
    res = bench.run_kernels(n=300, m=2, Ts=[100], kernels=["dense"], states=str(path), state_steps=[7],
                            seconds=0.01, memory=False)
    assert [r["state"] for r in res["rows"]] == ["step 7"]


def _moved(W, b, seed, eps):
    """The state after a small step: every parameter moved by about eps relative."""
    rng = np.random.default_rng(seed)
    return ((W * (1 + eps * rng.standard_normal(W.shape))).astype(np.float32),
            (b + eps * np.abs(b).mean() * rng.standard_normal(b.shape)).astype(np.float32))


def test_order_of_the_last_sort_is_kept_while_good_and_stays_exact():
    """A small step keeps the last Morton order (no new sort) and the step still equals the dense kernel and
    a fresh workspace; a fresh data set (points that have nothing to do with that order) sorts again."""
    bd, W, b, _ = _problem(1, 2, 300, 20000, 0.99, True, seed=4)
    b -= 0.05
    _, _, _, ws = loss_and_grads_cpu(W, b, bd, kernel="tree")
    assert ws.tree.sorts == 1
    W2, b2 = _moved(W, b, 1, 1e-3)
    loss, pl, g, ws = loss_and_grads_cpu(W2, b2, bd, ws=ws, kernel="tree")
    assert ws.tree.sorts == 1  # kept the order
    kept = (loss.copy(), pl.copy(), g.W.copy(), g.b.copy())
    fresh_loss, fresh_pl, fresh_g, fresh_ws = loss_and_grads_cpu(W2, b2, bd, kernel="tree")
    assert fresh_ws.tree.sorts == 1
    dense = loss_and_grads_cpu(W2, b2, bd, kernel="dense")
    for x, y, z in zip(kept, (fresh_loss, fresh_pl, fresh_g.W, fresh_g.b), (dense[0], dense[1], dense[2].W, dense[2].b)):
        assert _rel(x, y) < 2e-5 and _rel(x, z) < 2e-5
    # other points of the same T: the kept order groups them at random, its boxes blow up, it sorts again
    other = BatchData.stack([D.training_set(300, 0.99, 20000, 999)])
    _, _, _, ws = loss_and_grads_cpu(W2, b2, other, ws=ws, kernel="tree")
    assert ws.tree.sorts == 2


def test_kept_order_is_per_instance_and_deterministic():
    """The order an instance keeps depends on its own earlier steps only: a sequence of steps gives the same
    bits alone and batched with another instance, and run twice."""
    bd, W, b, _ = _problem(2, 2, 300, 12000, 0.99, True, seed=6)
    b -= 0.05
    steps = [(W, b)] + [_moved(W, b, s, 1e-3) for s in (1, 2, 3)]

    def run(Ws, bs, data):
        ws, out = None, []
        for Wk, bk in zip(Ws, bs):
            loss, pl, g, ws = loss_and_grads_cpu(Wk, bk, data, ws=ws, kernel="tree")
            out.append((loss.copy(), g.W.copy(), g.b.copy()))
        return out, ws

    batched, ws = run([s[0] for s in steps], [s[1] for s in steps], bd)
    assert ws.tree.sorts < 2 * len(steps)  # some steps kept the order
    again, _ = run([s[0] for s in steps], [s[1] for s in steps], bd)
    alone, _ = run([s[0][:1] for s in steps], [s[1][:1] for s in steps], BatchData.stack([bd.instance(0)]))
    for (l1, w1, b1), (l2, w2, b2), (l3, w3, b3) in zip(batched, again, alone):
        assert np.array_equal(l1, l2) and np.array_equal(w1, w2) and np.array_equal(b1, b2)
        assert np.array_equal(l1[:1], l3) and np.array_equal(w1[:1], w3) and np.array_equal(b1[:1], b3)


def test_points_run_in_tree_order_and_per_point_losses_come_back_in_data_order():
    """A tree sort reorders the workspace's copy of the points (CSR rows and H together, so the walk, push
    and per-non-zero passes need no gather or scatter); the caller's data is untouched and read-only, the
    per-point losses come back in its order, and a new data set starts from its own order."""
    bd, W, b, _ = _problem(2, 2, 300, 20000, 0.99, True, seed=8)
    b -= 0.05
    before = (bd.indptr.copy(), bd.indices.copy(), bd.values.copy())
    loss, pl, g, ws = loss_and_grads_cpu(W, b, bd, kernel="tree")
    for a, c in zip((bd.indptr, bd.indices, bd.values), before):
        assert np.array_equal(a, c)
    with pytest.raises(ValueError):
        bd.values[0] = 1.0
    rows = ws.rows
    assert rows is not None and ws.points is not bd
    for i in range(2):
        assert np.array_equal(np.sort(rows[i]), np.arange(20000)) and not np.array_equal(rows[i], np.arange(20000))
        src, pts = bd.instance(i), ws.points.instance(i)
        for s in (0, 1, 777, 19999):
            t = rows[i, s]
            a, c = slice(pts.indptr[s], pts.indptr[s + 1]), slice(src.indptr[t], src.indptr[t + 1])
            assert np.array_equal(pts.indices[a], src.indices[c]) and np.array_equal(pts.values[a], src.values[c])
        np.testing.assert_allclose(ws.H[i], np.einsum("mn,tn->tm", W[i], src.to_dense())[rows[i]], rtol=1e-5,
                                   atol=1e-6)
    dl, dpl, dg, _ = loss_and_grads_cpu(W, b, bd, kernel="dense")
    assert _rel(pl, dpl) < 2e-5 and _rel(loss, dl) < 2e-5 and _rel(g.W, dg.W) < 2e-5
    _, none, _, ws = loss_and_grads_cpu(W, b, bd, ws=ws, kernel="tree", point_loss=False)
    assert none is None
    other = BatchData.stack([D.training_set(300, 0.99, 20000, s) for s in (5, 6)])
    loss, pl, g, ws = loss_and_grads_cpu(W, b, other, ws=ws, kernel="tree")
    dl, dpl, dg, _ = loss_and_grads_cpu(W, b, other, kernel="dense")
    assert ws.source is other and _rel(pl, dpl) < 2e-5 and _rel(g.W, dg.W) < 2e-5


def test_a_sort_orders_each_leafs_points_by_their_non_zeros_and_keeps_the_leaves():
    """A sort puts each leaf's points in order of their number of non-zeros (ties in Morton order), so the
    per-non-zero loops meet runs of equal trip counts: the leaves hold the same points as the Morton order's
    (the same boxes), and a step on that order still equals the dense kernel's."""
    bd, W, b, _ = _problem(2, 2, 300, 20000, 0.99, True, seed=11)
    b -= 0.05
    I, T = 2, 20000
    H = np.einsum("imn,itn->itm", W, np.stack([bd.instance(i).to_dense() for i in range(I)])).astype(np.float32)
    use = np.ones(I, np.bool_)
    counts = np.stack([np.diff(bd.instance(i).indptr) for i in range(I)])
    orders = {}
    for name, sizes in (("morton", None), ("by_count", lambda: counts)):
        tw = TK.TreeWorkspace(I, 2, 300, T)
        got = []
        TK.build(H.copy(), use, tw, lambda which, perm: got.append(perm.copy()), sizes=sizes)
        orders[name] = got[0]
    L = TK.LEAF
    for i in range(I):
        by_count, morton = orders["by_count"][i], orders["morton"][i]
        assert not np.array_equal(by_count, morton)
        for a in range(0, T, L):
            leaf, ref = by_count[a:a + L], morton[a:a + L]
            assert np.array_equal(np.sort(leaf), np.sort(ref))  # the same points
            k = counts[i, leaf]
            assert np.all(np.diff(k) >= 0)  # by their non-zeros
            for c in np.unique(k):  # ties keep the Morton order
                assert np.array_equal(leaf[k == c], ref[np.isin(ref, leaf[k == c])])
    _assert_same(W, b, bd)


def test_auto_walks_coarsely_only_when_the_last_step_did_not_run_the_tree(monkeypatch):
    """auto's estimate for an instance that ran on the tree last step uses that walk's exact counts (no coarse
    walk); an instance that ran dense walks coarsely first. The values never depend on the choice."""
    bd, W, b, _ = _problem(1, 1, 10000, 16384, 0.999, True, seed=2)  # the tree wins (as above)
    calls = []
    walk = TK.walk

    def spy(*args, **kw):
        calls.append(args[-1] if len(args) > 9 else kw.get("count_depth"))
        return walk(*args, **kw)

    monkeypatch.setattr(TK, "walk", spy)
    l1, _, _, ws = loss_and_grads_cpu(W, b, bd, kernel="auto")
    assert ws.use_tree[0], "this state should run on the tree"
    assert calls[0] == TK.coarse_depth(ws.tree.topo) and calls[-1] is None  # coarse count, then the walk
    calls.clear()
    l2, _, _, ws = loss_and_grads_cpu(W, b, bd, ws=ws, kernel="auto")
    assert calls == [None] and ws.use_tree[0]  # the last walk's counts decided
    assert ws.tree.counts_depth[0] == ws.tree.topo.depth_max
    assert _rel(l1, l2) < 1e-6


def test_auto_calibrates_its_coarse_estimate_by_the_exact_count_of_the_same_step():
    """A step that walked coarsely and then ran the tree records the exact straddling pairs over the coarse
    extrapolation (pair_scale); a later coarse estimate is scaled by it, so it reproduces that exact count."""
    bd, W, b, _ = _problem(1, 1, 10000, 16384, 0.999, True, seed=2)  # the tree wins (as above)
    _, _, _, ws = loss_and_grads_cpu(W, b, bd, kernel="auto")
    tw = ws.tree
    assert ws.use_tree[0] and tw.coarse_fine[0] == 0.0  # consumed by the tree pass
    exact = tw.counts[0, :, 1].sum()
    scale = tw.pair_scale[0]
    assert scale > 0 and scale != 1.0
    # a coarse walk of the same state, scaled, estimates the exact count
    imp = np.ones(10000, np.float32)
    TK.walk(W, b, imp, ws.active, ws.n_active, np.ones(1, bool), ws.H, tw, float(np.float32(2.0 / 16384)),
            TK.coarse_depth(tw.topo))
    tree, _ = TK.estimate(tw, 1, 16384, ws.n_active)
    fixed = TK.build_point_ns(1) * 16384 + TK.TASK_FEATURE_NS * tw.topo.K * ws.n_active[0]
    np.testing.assert_allclose((tree[0] - fixed) / TK.LEAF_PAIR_NS[1], exact, rtol=1e-9)


def test_a_writable_batch_changed_in_place_is_never_served_from_a_stale_reordered_copy():
    """The workspace keeps its tree-ordered copy of the points across calls only for read-only batches
    (BatchData.stack); a batch built on writable arrays and then changed in place gives the new data's values."""
    bd, W, b, _ = _problem(1, 2, 300, 20000, 0.99, True, seed=5)
    b -= 0.05
    mine = BatchData(bd.indptr.copy(), bd.indices.copy(), bd.values.copy(), bd.n)
    _, _, _, ws = loss_and_grads_cpu(W, b, mine, kernel="tree")
    assert ws.rows is not None  # it sorted (the step ran on a reordered copy)
    mine.values[:] *= 0.5  # the same object, new values
    loss, pl, g, ws = loss_and_grads_cpu(W, b, mine, ws=ws, kernel="tree")
    dl, dpl, dg, _ = loss_and_grads_cpu(W, b, mine, kernel="dense")
    assert _rel(loss, dl) < 2e-5 and _rel(pl, dpl) < 2e-5 and _rel(g.W, dg.W) < 2e-5
