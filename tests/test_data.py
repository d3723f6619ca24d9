"""Sparse data generation and user-supplied .npz files."""

import numpy as np
import pytest

from toydd import data as D
from toydd.errors import ToyddError


def test_points_are_unit_norm_sparse_and_uniform():
    d = D.generate(2000, 0.99, 3000, 0)
    X = d.to_dense()
    norms = np.linalg.norm(X, axis=1)
    nz = norms > 0
    np.testing.assert_allclose(norms[nz], 1.0, rtol=1e-6)
    # each feature is nonzero with probability 1 - S
    rate = (X != 0).mean()
    assert abs(rate - 0.01) < 0.001
    assert np.all(X >= 0)
    # indices sorted and unique within rows
    for t in range(50):
        row = d.indices[d.indptr[t]:d.indptr[t + 1]]
        assert np.all(np.diff(row) > 0)


def test_all_zero_points_stay_zero_without_nan():
    d = D.generate(50, 0.99, 400, 1)  # P(empty) = 0.99^50 ~ 0.6
    X = d.to_dense()
    empty = ~X.any(1)
    assert empty.sum() > 100
    assert not np.isnan(X).any()


def test_seeds_reproduce_and_differ():
    a = D.training_set(1000, 0.99, 100, 3)
    b = D.training_set(1000, 0.99, 100, 3)
    c = D.training_set(1000, 0.99, 100, 4)
    assert np.array_equal(a.to_dense(), b.to_dense())
    assert not np.array_equal(a.to_dense(), c.to_dense())
    t = D.test_set(1000, 0.99, 100, 3)
    assert not np.array_equal(a.to_dense(), t.to_dense())


def test_dense_data_path():
    d = D.generate(100, 0.5, 20, 0)
    assert abs((d.to_dense() != 0).mean() - 0.5) < 0.1


def test_online_stream_gives_fresh_batches():
    s = D.OnlineStream(500, 0.99, 64, 0)
    a, b = s.next(), s.next()
    assert a.T == 64 and not np.array_equal(a.to_dense(), b.to_dense())


def test_load_dense_and_csr_npz(tmp_path):
    d = D.generate(30, 0.8, 10, 0)
    X = d.to_dense()
    p = tmp_path / "dense.npz"
    np.savez(p, X=X, X_test=X[:4])
    tr, te = D.load_npz(p)
    assert np.array_equal(tr.to_dense(), X) and te.T == 4
    q = tmp_path / "csr.npz"
    np.savez(q, indptr=d.indptr, indices=d.indices, values=d.values, shape=np.array([10, 30]))
    tr2, te2 = D.load_npz(q)
    assert np.array_equal(tr2.to_dense(), X) and te2 is None


@pytest.mark.parametrize("content,msg", [
    ({"Y": np.zeros((3, 3))}, "no training data"),
    ({"X": np.zeros(5)}, "2-D"),
    ({"X": np.array([[1.0, np.nan]])}, "finite"),
    ({"indptr": np.array([0, 1]), "indices": np.array([0])}, "missing"),
    ({"indptr": np.array([0, 2]), "indices": np.array([0, 9]), "values": np.ones(2), "shape": np.array([1, 5])}, "out of range"),
    ({"indptr": np.array([0, 3]), "indices": np.array([0, 1]), "values": np.ones(2), "shape": np.array([1, 5])}, "indptr"),
    ({"X": np.ones((2, 3)), "X_test": np.ones((2, 4))}, "features"),
])
def test_malformed_npz_files(tmp_path, content, msg):
    p = tmp_path / "bad.npz"
    np.savez(p, **content)
    with pytest.raises(ToyddError, match=msg):
        D.load_npz(p)


def test_not_an_npz_and_missing(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(ToyddError, match="not a valid .npz"):
        D.load_npz(p)
    with pytest.raises(ToyddError, match="not found"):
        D.load_npz(tmp_path / "nope.npz")


def test_repeated_points_and_row_selection():
    d = D.training_set(500, 0.98, 40, 0, repeated_points=2, repeats=5)
    X = d.to_dense()
    assert X.shape == (40, 500)
    for k in range(2):
        block = X[k * 5:(k + 1) * 5]
        assert np.all(block == block[0]) and block[0].any()
    assert not np.array_equal(X[0], X[5])
    # fresh rows after the repeated block are distinct points
    assert len({X[i].tobytes() for i in range(10, 40)}) == 30
    sub = d.rows(np.array([3, 0, 39]))
    np.testing.assert_array_equal(sub.to_dense(), X[[3, 0, 39]])
