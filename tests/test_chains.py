"""Continuation across T: nested training sets and runs that start from another run of the store."""

from __future__ import annotations

import numpy as np
import pytest

from toydd import data as D
from toydd import sweep
from toydd.config import TrainConfig
from toydd.errors import ToyddError
from toydd.experiments import Experiment
from toydd.storage import load_run


def test_nested_training_sets_are_prefixes_across_blocks():
    small = D.training_set(200, 0.95, 700, 3, nested=True)
    big = D.training_set(200, 0.95, 2500, 3, nested=True)  # crosses two block boundaries
    np.testing.assert_array_equal(small.to_dense(), big.to_dense()[:700])
    assert np.allclose(np.linalg.norm(big.to_dense(), axis=1)[np.diff(big.indptr) > 0], 1.0, atol=1e-6)
    other = D.training_set(200, 0.95, 700, 4, nested=True)
    assert not np.array_equal(small.to_dense(), other.to_dense())
    # not nested: the default, unchanged for every store written so far
    assert not np.array_equal(D.training_set(200, 0.95, 700, 3).to_dense(), big.to_dense()[:700])


def test_new_fields_at_their_defaults_keep_keys():
    c = TrainConfig(loss_norm="sum")
    assert c.key() == "f31710941b5c0795"
    assert c.replace(nested_data=True).key() != c.key()
    assert c.replace(init_from_run="0123456789abcdef").key() != c.key()
    assert c.replace(init_from_run="0123456789abcdef").shape_key() == c.shape_key()  # warm starts batch together


@pytest.mark.parametrize("bad", [dict(init_from_run="xyz"), dict(init_from_run="0123456789abcdef", init_path="a"),
                                 dict(init_from_run="0123456789abcdef", init_method="construction", T=10),
                                 dict(nested_data=True, repeated_points=1, repeats=2, T=10)])
def test_bad_continuations_are_rejected(bad):
    with pytest.raises(ToyddError):
        TrainConfig(**bad)


def test_a_chain_over_T_trains_in_waves_and_each_link_starts_where_the_last_ended(tmp_path):
    base = TrainConfig(n=150, m=2, sparsity=0.95, steps=60, lr=1e-2, test_size=100, snapshots=3, nested_data=True)
    c1 = base.replace(T=10)
    c2 = base.replace(T=40, init_from_run=c1.key())
    c3 = base.replace(T=160, init_from_run=c2.key())
    orphan = base.replace(T=20, init_from_run="0123456789abcdef")
    exp = Experiment(name="chain", description="", preset=None, configs=[c3, orphan, c2, c1])
    s = sweep.run_sweep(exp, tmp_path / "o", progress=False)
    assert sorted(s.trained) == sorted([c1.key(), c2.key(), c3.key()]) and s.failed == [orphan.key()]
    r1, r2, r3 = (load_run(tmp_path / "o" / "runs" / c.key()) for c in (c1, c2, c3))
    # the snapshot at step 0 is the initial point: the previous link's final parameters
    np.testing.assert_array_equal(r2.history["snapshot_W"][0], r1.params["W"])
    np.testing.assert_array_equal(r3.history["snapshot_b"][0], r2.params["b"])
    assert r2.config.init_from_run == c1.key()
    st = sweep.status(tmp_path / "o")
    assert st["done"] == 3 and st["failed"] == 1
    # resumed: nothing left to train but the orphan, which fails again, named
    again = sweep.run_sweep(exp, tmp_path / "o", progress=False)
    assert again.trained == [] and again.failed == [orphan.key()]


def test_train_alone_refuses_a_continuation():
    from toydd.training import train

    with pytest.raises(ToyddError, match="sweep"):
        train(TrainConfig(n=50, m=2, T=5, steps=2, test_size=20, init_from_run="0123456789abcdef"))


def test_a_pool_gets_one_part_of_a_big_group_per_worker():
    from toydd.jobs import TOY

    base = TrainConfig(n=100, m=2, T=50, steps=10, test_size=50)
    group = [base.replace(data_seed=d) for d in range(8)]
    assert [len(b) for b in TOY.batches(group, 32)] == [8]
    assert sorted(len(b) for b in TOY.batches(group, 32, min_parts=2)) == [4, 4]
    assert len(TOY.batches(group[:1], 32, min_parts=4)) == 1
