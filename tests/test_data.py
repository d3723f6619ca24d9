"""Sparse data generation and user-supplied .npz files."""

import numpy as np
import pytest

from toydd import data as D
from toydd.errors import ToyddError
from toydd.npz import read_npz


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
    with pytest.raises(ToyddError, match=r"data file .*junk.npz: not an .npz file \(a zip archive of arrays\): it is "
                                         r"text; save X"):
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


def _wrong_npz_files(tmp_path):
    """Files named .npz that are not one, each with the words the reader must find."""
    import gzip

    np.save(tmp_path / "single.npy", np.ones(3))
    good = tmp_path / "good.npz"
    np.savez(good, X=np.ones((2, 3)))
    files = {
        "text.npz": (b"not a zip, just words\n", "not an .npz file (a zip archive of arrays): it is text"),
        "empty.npz": (b"", "not an .npz file (a zip archive of arrays): it is empty"),
        "gz.npz": (gzip.compress(b"x" * 100), "it is gzip-compressed"),
        "binary.npz": (bytes(range(200, 256)), "it is something else"),
        "array.npz": ((tmp_path / "single.npy").read_bytes(), "it is a .npy file (a single array), not an .npz"),
        "cut.npz": (good.read_bytes()[:100], "truncated or corrupted .npz"),
    }
    out = []
    for name, (blob, words) in files.items():
        (tmp_path / name).write_bytes(blob)
        out.append((tmp_path / name, words))
    return out


def test_read_npz_says_what_a_file_is_instead(tmp_path):
    for path, words in _wrong_npz_files(tmp_path):
        with pytest.raises(ToyddError) as e:
            read_npz(path, "thing file", hint="save it so")
        msg = str(e.value)
        assert msg.startswith(f"cannot read thing file {path}: ") and words in msg and "\n" not in msg, msg
        if "truncated" not in words:
            assert msg.endswith("; save it so"), msg  # a wrong kind of file: how to save it right
    np.savez(tmp_path / "obj.npz", a=np.arange(2), B=np.array([None, 1], dtype=object))
    with pytest.raises(ToyddError, match=r"obj.npz: B is an object array \(pickled Python objects\)"):
        read_npz(tmp_path / "obj.npz", "thing file")
    with pytest.raises(ToyddError, match="^thing file not found: "):
        read_npz(tmp_path / "nope.npz", "thing file")
    with pytest.raises(ToyddError, match="is a directory, not a file"):
        read_npz(tmp_path, "thing file")
    np.savez(tmp_path / "ok.npz", a=np.arange(3), b=np.eye(2, dtype=np.float32))
    got = read_npz(tmp_path / "ok.npz", "thing file")
    assert set(got) == {"a", "b"} and got["b"].dtype == np.float32 and got["a"].tolist() == [0, 1, 2]


def test_every_npz_input_is_read_by_one_reader_with_the_same_words(tmp_path):
    """Data, parameters, MNIST digits and benchmark states: the same file, the same explanation, each naming
    its own kind of file (they had three readers with three wordings)."""
    from toydd import mnist
    from toydd.bench import load_states
    from toydd.storage import load_params

    readers = {"data file": D.load_npz, "init file": load_params, "MNIST file": mnist.load_npz,
               "states file": lambda p: load_states(str(p), None)}
    for path, words in _wrong_npz_files(tmp_path):
        for what, read in readers.items():
            with pytest.raises(ToyddError) as e:
                read(path)
            assert str(e.value).startswith(f"cannot read {what} {path}: ") and words in str(e.value), str(e.value)
