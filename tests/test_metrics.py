"""Dimensionality metrics against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from toydd import metrics as M


def polygon(k, r=1.0, phase=0.3):
    a = phase + 2 * np.pi * np.arange(k) / k
    return r * np.stack([np.cos(a), np.sin(a)], 1)  # (k, 2)


@pytest.mark.parametrize("k", [3, 5, 8, 13])
def test_regular_polygon_has_dimensionality_m_over_k(k):
    H = polygon(k, r=2.5)
    np.testing.assert_allclose(M.data_dimensionality(H), 2 / k, rtol=1e-12)
    np.testing.assert_allclose(M.feature_dimensionality(H.T), 2 / k, rtol=1e-12)


def test_hand_computed_dimensionality():
    # v1 = (1, 0), v2 = (1, 1), v3 = (0, 2):
    # D_1 = 1 / (1 + 1 + 0) = 1/2
    # D_2 = 2 / ((1/sqrt2)^2 + 2 + (2/sqrt2)^2) = 2 / (0.5 + 2 + 2) = 4/9
    # D_3 = 4 / (0 + 1 + 4) = 4/5
    H = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_allclose(M.data_dimensionality(H), [0.5, 4 / 9, 0.8], rtol=1e-12)


def test_orthogonal_vectors_have_dimension_one_and_zero_vectors_zero():
    W = np.zeros((3, 5))
    W[0, 0], W[1, 1], W[2, 2] = 1.0, -3.0, 0.2
    fd = M.feature_dimensionality(W)
    np.testing.assert_allclose(fd, [1, 1, 1, 0, 0])
    assert not np.any(np.isnan(fd))
    assert np.all(M.data_dimensionality(np.zeros((4, 2))) == 0)
    assert np.all(M.max_data_dimensionality(np.zeros((4, 2))) == 0)


def test_numpy_in_numpy_out_torch_in_torch_out():
    H = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    for f in (M.data_dimensionality, M.max_data_dimensionality):
        r = f(H)
        assert isinstance(r, np.ndarray) and r.dtype == np.float32 and r.shape == (20,)
        t = f(torch.from_numpy(H))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (20,)
        np.testing.assert_allclose(t.numpy(), r, rtol=1e-6)
    tf = M.feature_dimensionality(torch.from_numpy(H.T.copy()))
    assert isinstance(tf, torch.Tensor) and tf.shape == (20,)


def test_max_data_dimensionality_equals_bruteforce_sup_in_2d():
    rng = np.random.default_rng(1)
    H = rng.standard_normal((12, 2)) * rng.uniform(0.1, 3, (12, 1))
    H[3] = 0.0
    exact = M.max_data_dimensionality(H)
    brute = M.max_data_dimensionality_bruteforce(H, directions=200_000)
    np.testing.assert_allclose(exact, brute, atol=1e-6)
    assert exact[3] == 0
    # leverage scores sum to the rank
    assert math.isclose(exact.sum(), 2.0, rel_tol=1e-10)
    # D* >= D_X: the supremum includes v = h_i_hat
    assert np.all(exact >= M.data_dimensionality(H) - 1e-12)


def test_max_data_dimensionality_high_dimensional_and_rank_deficient():
    rng = np.random.default_rng(2)
    H = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 8))  # rank 3 in 8-D
    d = M.max_data_dimensionality(H)
    assert math.isclose(d.sum(), 3.0, rel_tol=1e-8)
    # an outlier direction used by one point only has D* = 1
    H2 = np.vstack([H, np.eye(8)[7] * 0.01])
    H2[:, 7] = 0
    H2[-1, 7] = 0.01
    assert math.isclose(M.max_data_dimensionality(H2)[-1], 1.0, rel_tol=1e-8)


def test_regime_rule():
    m = 2
    # memorizing: T-gon of points, messy features
    assert M.regime(np.full(100, 0.01), np.full(5, 0.4), m, 5) == "memorizing"
    # generalizing: a pentagon of features, points tiny and shared
    fd = np.concatenate([np.full(5, 0.3), np.full(995, 1e-4)])
    assert M.regime(fd, np.full(5000, 1e-4), m, 5000) == "generalizing"
    # both low: transition
    assert M.regime(np.full(1000, 0.01), np.full(1000, 0.0005), m, 1000) == "transition"
    assert M.regime(fd, None, m, math.inf) == "generalizing"


def test_represented_features_and_loss_summary():
    W = np.zeros((2, 10))
    W[:, :5] = polygon(5).T
    W[0, 5] = 0.3
    assert M.represented_features(W) == 5
    mean, se = M.loss_summary(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and math.isclose(se, np.std([1, 2, 3, 4], ddof=1) / 2)
