"""Stores written by earlier releases read back with their meaning intact.

tests/fixtures/store-0.1.0-pre-recipe was written by toydd at git 70f4ad6 (before the recipe fields
existed: every run then trained the summed loss) and tests/fixtures/store-0.1.0 by the release just
before loss_norm defaulted to "mean" (git 4cf89ad): one summed-loss and one mean-loss toy run
(tests/fixtures/tiny-recipes.toml) and the mnist-dstar smoke preset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toydd.config import TrainConfig
from toydd.storage import load_run, run_row

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def prev_store(tmp_path):
    shutil.copytree(FIX / "store-0.1.0", tmp_path / "prev")
    return tmp_path / "prev"


@pytest.fixture
def old_store(tmp_path):
    shutil.copytree(FIX / "store-0.1.0-pre-recipe", tmp_path / "old")
    return tmp_path / "old"


def test_a_run_from_before_the_recipe_fields_reads_as_the_summed_loss(old_store):
    (run_dir,) = (old_store / "runs").iterdir()
    assert "loss_norm" not in (run_dir / "config.json").read_text()  # really written before the field
    run = load_run(run_dir)
    assert run.config.loss_norm == "sum"  # not today's default
    assert run.config.key() == run_dir.name  # and it hashes to its folder
    assert run_row(run_dir)["loss_norm"] == "sum"


def test_summed_and_mean_runs_of_the_previous_release_keep_their_keys_and_recipes(prev_store):
    by_norm = {}
    for run_dir in (prev_store / "runs").iterdir():
        run = load_run(run_dir)
        assert run.config.key() == run_dir.name
        by_norm[run.config.loss_norm] = run_dir.name
    assert set(by_norm) == {"sum", "mean"}
    base = dict(n=60, m=2, T=6, sparsity=0.9, steps=30, test_size=50, snapshots=2)
    # The same jobs asked for today find those runs: mean by default, sum one flag away.
    assert TrainConfig(**base).key() == by_norm["mean"]
    assert TrainConfig(**base, loss_norm="sum").key() == by_norm["sum"]


def test_old_stores_are_done_and_never_reused_for_the_other_recipe(prev_store, old_store, tmp_path, monkeypatch):
    from toydd import sweep, training

    def no_training(*a, **k):
        raise AssertionError("a run of an old store was retrained")

    monkeypatch.setattr(training, "train_batch", no_training)
    summary = sweep.run_sweep(str(FIX / "tiny-recipes.toml"), prev_store)
    assert summary.ok and summary.trained == [] and summary.done == summary.total == summary.already_done == 2
    # The pre-recipe file run today asks for the mean loss (the new default): the old summed run is not it...
    (old_run,) = (old_store / "runs").iterdir()
    assert TrainConfig.from_stored({}).loss_norm == "sum"
    today = sweep.get_experiment(str(FIX / "tiny-old.toml"))
    assert today.keys() != [old_run.name]
    # ... and the same file with the summed loss named finds it, trained and done.
    summed = tmp_path / "tiny-old.toml"
    summed.write_text((FIX / "tiny-old.toml").read_text().replace("[base]", '[base]\nloss_norm = "sum"'))
    summary = sweep.run_sweep(str(summed), old_store)
    assert summary.ok and summary.trained == [] and summary.already_done == 1


def test_figures_tables_and_show_name_the_recipe(prev_store):
    import subprocess
    import sys

    from toydd import report
    from toydd.sections import recipe_note

    index = report.build_report(prev_store, movies=0, log=lambda m: None, dpi=50)
    page = index.read_text(encoding="utf-8")
    # tiny-recipes holds one run of each recipe: its caption and its configuration say they are mixed
    assert "Recipes mixed in this sweep: mean over T·n (the paper’s figures); summed loss (the paper’s text)." in page
    assert "<th class=\"l\">loss norm</th>" in page  # the run table's recipe column
    import pandas as pd

    assert recipe_note(pd.DataFrame({"loss_norm": ["mean"], "eps": [1e-8]})) == \
        "Recipe: mean over T·n (the paper’s figures)."
    assert recipe_note(pd.DataFrame({"loss_norm": ["sum"], "eps": [1e-6]})) == \
        "Recipe: summed loss (the paper’s text), Adam eps 1e-06."
    for run_dir in (prev_store / "runs").iterdir():
        norm = load_run(run_dir).config.loss_norm
        p = subprocess.run([sys.executable, "-m", "toydd", "show", str(run_dir)], capture_output=True, text=True)
        assert p.returncode == 0 and f"recipe: loss_norm={norm}" in p.stdout, p.stderr
