"""The explicit memorizing construction: a yardstick for optimization failures."""

import numpy as np

from toydd import TrainConfig, train
from toydd import data as D
from toydd.analysis import memorizing_construction, optimization_gap
from toydd.metrics import data_dimensionality
from toydd.data import hidden_vectors


def test_construction_memorizes_sparse_points_as_a_T_gon():
    X = D.training_set(2000, 0.995, 7, 0)  # 10 nonzeros per point in 2,000: nearly orthogonal
    con = memorizing_construction(X, m=2)
    assert con.train_loss < 0.05  # the all-zeros model scores 1.0
    H = hidden_vectors(X, con.W)
    np.testing.assert_allclose(data_dimensionality(H), 2 / 7, rtol=1e-3)


def test_gap_flags_an_undertrained_model():
    cfg = TrainConfig(n=1000, m=2, T=6, sparsity=0.99, steps=30, test_size=200, snapshots=0)
    run = train(cfg)  # 30 steps: nowhere near memorized
    g = optimization_gap(run)
    assert g["gap"] > 0.3
    assert g["construction_train_loss"] < 0.1


def test_training_records_the_construction_yardstick():
    run = train(TrainConfig(n=500, m=2, T=8, sparsity=0.98, steps=100, test_size=100, snapshots=0))
    assert run.metrics["construction_train_loss"] is not None
    assert run.metrics["optimization_gap"] == run.metrics["train_loss"] - run.metrics["construction_train_loss"]
