"""Named experiments, presets and user experiment files (no training here)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from toydd.config import TrainConfig, parse_T
from toydd.errors import ToyddError
from toydd.experiments import (EXPERIMENTS, PAPER_T_GRID, PRESETS, get_experiment, load_experiment_file,
                               named_experiment, reproduce_plan)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# mnist-dstar's jobs are MnistConfig (tests/test_mnist.py); its paper preset needs the full MNIST installed.
TOY_EXPERIMENTS = [name for name, d in EXPERIMENTS.items() if d.kind == "toy"]


# --- built-in experiments ----------------------------------------------------------

def test_paper_t_sweep_is_the_papers_grid():
    e = named_experiment("t-sweep", "paper")
    assert [c.T for c in e.configs[::4]] == list(PAPER_T_GRID)
    assert PAPER_T_GRID[:6] == (3, 5, 6, 8, 10, 15) and math.isinf(PAPER_T_GRID[-1]) and len(PAPER_T_GRID) == 21
    assert len(e.configs) == 21 * 4
    for c in e.configs:
        assert (c.n, c.m, c.sparsity, c.steps, c.warmup_steps, c.lr, c.weight_decay) == \
            (10_000, 2, 0.999, 50_000, 2_500, 1e-3, 1e-2)
        assert c.init_seeds > 1  # best-of-k at m = 2
    # 4 data seeds at every T, and one batch (shape key) per T
    per_T = Counter(c.T for c in e.configs)
    assert set(per_T.values()) == {4}
    assert len({c.shape_key() for c in e.configs}) == 21
    assert e.params["vector_plot_T"][0] == 3 and e.params["vector_plot_T"][-1] == "inf"


def test_every_experiment_module_settings_cover_every_preset():
    from toydd import experiments

    for name in ("tm_grid", "weight_decay", "epochs", "sparsity", "repeated", "replication_gap", "crossover"):
        assert set(getattr(experiments, name).SETTINGS) == set(PRESETS), name


def test_norms_is_an_alias_of_the_t_sweep_jobs():
    for preset in PRESETS:
        assert named_experiment("norms", preset).keys() == named_experiment("t-sweep", preset).keys()


def test_tm_grid_weight_decay_epochs_sparsity_paper():
    tm = named_experiment("tm-grid", "paper")
    assert sorted({c.m for c in tm.configs}) == list(range(1, 11))
    assert len(tm.configs) == 10 * 21 * 4
    assert {c.init_seeds for c in tm.configs if c.m <= 3} == {4}
    assert {c.init_seeds for c in tm.configs if c.m > 3} == {1}  # the paper: m > 3 is robust

    wd = named_experiment("weight-decay", "paper")
    assert {c.m for c in wd.configs} == {4}
    assert sorted({c.weight_decay for c in wd.configs}) == [0.0, 1e-3, 1e-2, 1e-1, 1.0]
    # weight decay is per instance: all decays of one T share a batch
    assert len({c.shape_key() for c in wd.configs}) == 21

    ep = named_experiment("epochs", "paper")
    assert sorted({c.steps for c in ep.configs}) == [5_000, 10_000, 25_000, 50_000, 100_000, 200_000]
    for c in ep.configs:
        assert c.warmup_steps == round(0.05 * c.steps)

    sp = named_experiment("sparsity", "paper")
    assert sorted({c.sparsity for c in sp.configs}) == [0.99, 0.995, 0.999, 0.9995]
    for S in (0.99, 0.995, 0.999, 0.9995):
        feats = [c.T * (1 - S) for c in sp.configs if c.sparsity == S]
        assert min(feats) == pytest.approx(1, rel=0.05) and max(feats) == pytest.approx(1000, rel=0.05)


def test_quick_preset_scale():
    e = named_experiment("t-sweep", "quick")
    assert {(c.n, c.sparsity, c.m) for c in e.configs} == {(1_000, 0.99, 2)}
    Ts = sorted({c.T for c in e.configs})
    assert Ts[0] == 3 and math.isinf(Ts[-1]) and 10_000 <= Ts[-2] <= 50_000
    assert len({c.data_seed for c in e.configs}) == 4
    # best-of-k where local minima live (memorization regime), one init where the cost is
    assert {c.init_seeds for c in e.configs if c.T <= 1_000} == {2}
    assert {c.init_seeds for c in e.configs if c.T > 1_000} == {1}
    assert all(t in Ts for t in (parse_T(x) for x in e.params["vector_plot_T"]))


def test_repeated_experiment():
    from toydd.experiments import repeated

    for preset in PRESETS:
        p = repeated.SETTINGS[preset]  # the experiment's own per-preset settings, in its module
        e = named_experiment("repeated", preset)
        assert len(e.configs) == len(p["setups"]) * len(p["T_over_N"]) * len(p["R"]) * p["seeds"]
        for c in e.configs:
            assert c.repeated_points == 1 and c.repeats in p["R"] and c.m == 2
            assert (c.n, c.sparsity) in p["setups"]
            assert c.T / c.n in p["T_over_N"]
    assert {(c.n, c.sparsity) for c in named_experiment("repeated", "paper").configs} == {(10_000, 0.999), (1_000, 0.99)}


def test_every_experiment_builds_for_every_preset_with_unique_valid_jobs():
    for preset in PRESETS:
        for name in TOY_EXPERIMENTS:
            e = named_experiment(name, preset)
            assert e.configs and e.description and e.preset == preset
            assert len(set(e.keys())) == len(e.configs)
            m = e.manifest()
            assert m["keys"] == e.keys() and len(m["configs"]) == len(e.configs)
            assert [TrainConfig.from_dict(d).key() for d in m["configs"]] == e.keys()


def test_smoke_preset_is_small():
    from toydd.sweep import job_cost

    # unique jobs: experiments that share a job (norms and t-sweep) train it once
    jobs = {c.key(): c for name in TOY_EXPERIMENTS for c in named_experiment(name, "smoke").configs}
    smoke = sum(job_cost(c) for c in jobs.values())
    quick = sum(job_cost(c) for c in named_experiment("t-sweep", "quick").configs)
    # every smoke experiment together costs under 1/1000 of the quick t-sweep (minutes): CI seconds
    assert smoke < quick / 1000
    for name in TOY_EXPERIMENTS:
        for c in named_experiment(name, "smoke").configs:
            assert c.n <= 100 and c.steps <= 200


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ToyddError, match="t-sweep.*tm-grid"):
        get_experiment("t-swep")
    with pytest.raises(ToyddError, match="valid presets: paper, quick, smoke") as ei:
        get_experiment("t-sweep", "fast")
    assert "\n" not in str(ei.value)
    with pytest.raises(ToyddError, match="unknown preset"):
        reproduce_plan("nope")
    assert set(reproduce_plan("quick")) <= set(EXPERIMENTS)


# --- experiment files ---------------------------------------------------------------

def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_toml_grid_is_a_cartesian_product_over_base(tmp_path):
    p = write(tmp_path, "wd.toml", """
name = "my-wd"
description = "weight decays"
[base]
n = 200
m = 4
sparsity = 0.95
steps = 5e2            # an integral float is accepted for an integer field
[grid]
T = [10, 100, "inf"]
weight_decay = [0, 0.01]
data_seed = [0, 1]
[params]
vector_plot_T = [10]
""")
    e = load_experiment_file(p)
    assert e.name == "my-wd" and e.description == "weight decays" and e.source == str(p)
    assert len(e.configs) == 3 * 2 * 2
    assert {(c.n, c.m, c.sparsity, c.steps) for c in e.configs} == {(200, 4, 0.95, 500)}
    assert Counter(c.weight_decay for c in e.configs) == {0.0: 6, 0.01: 6}
    assert sum(math.isinf(c.T) for c in e.configs) == 4
    assert e.params == {"vector_plot_T": [10]}
    # weight_decay = 0 in a file is the same job as 0.0 in code (same key)
    c = next(c for c in e.configs if c.weight_decay == 0 and c.T == 10 and c.data_seed == 0)
    assert c.key() == TrainConfig(n=200, m=4, sparsity=0.95, steps=500, T=10, weight_decay=0.0).key()
    # get_experiment recognises the file
    assert get_experiment(str(p)).keys() == e.keys()


def test_list_of_grids_is_a_union_and_duplicates_collapse(tmp_path):
    p = write(tmp_path, "u.toml", """
[base]
n = 100
[[grid]]
sparsity = [0.9]
T = [10, 20]
[[grid]]
sparsity = [0.95]
T = [20, 40, 80]
[[grid]]
sparsity = 0.9
T = 10                # a scalar is a one-point axis; this job repeats the first grid's
""")
    e = load_experiment_file(p)
    assert e.name == "u"  # default: the file's stem
    assert sorted((c.sparsity, c.T) for c in e.configs) == [(0.9, 10), (0.9, 20), (0.95, 20), (0.95, 40), (0.95, 80)]


def test_preset_fills_unset_fields_and_file_wins(tmp_path):
    p = write(tmp_path, "p.toml", 'preset = "quick"\n[base]\nm = 3\nsteps = 123\n[grid]\nT = [5]\n')
    (c,) = load_experiment_file(p).configs
    assert (c.n, c.sparsity, c.m, c.steps) == (1_000, 0.99, 3, 123)
    (c,) = load_experiment_file(p, preset="smoke").configs  # the argument overrides the file's preset
    assert (c.n, c.m, c.steps) == (PRESETS["smoke"].base["n"], 3, 123)
    # no preset at all: the paper's defaults
    q = write(tmp_path, "q.toml", "[grid]\nT = [5]\n")
    (c,) = load_experiment_file(q).configs
    assert (c.n, c.sparsity, c.steps) == (10_000, 0.999, 50_000)


def test_yaml_file_and_its_quirks(tmp_path):
    p = write(tmp_path, "y.yaml", """
name: y-exp
base:
  n: 100
  lr: 1e-3
grid:
  T: [5, inf]
  weight_decay: [1e-2, 0]
""")
    e = load_experiment_file(p)
    assert len(e.configs) == 4
    assert {c.lr for c in e.configs} == {1e-3}
    assert {c.weight_decay for c in e.configs} == {1e-2, 0.0}
    assert sum(math.isinf(c.T) for c in e.configs) == 2


@pytest.mark.parametrize("fname,text,needle", [
    ("bad.toml", "[grid\nT = [1]\n", "invalid TOML"),
    ("bad.yaml", "grid: [1, 2\n", "invalid YAML"),
    ("list.yaml", "- 1\n- 2\n", "must be a mapping"),
    ("top.toml", "gird = 1\n", "unknown key(s) 'gird'"),
    ("field.toml", "[grid]\nTT = [1, 2]\n", "unknown config field(s) 'TT'"),
    ("basefield.toml", "[base]\nsparsty = 0.9\n", "base: unknown config field(s) 'sparsty'"),
    ("empty.toml", "[grid]\nT = []\n", "T is an empty list"),
    ("neg.toml", "[base]\nn = 100\n[grid]\nT = [10, -5]\n", "T must be a positive integer"),
    ("S.toml", "[base]\nsparsity = 1.5\n", "sparsity S must be in [0, 1)"),
    ("name.toml", 'name = "../evil"\n', "name must be"),
    ("nested.toml", "[grid]\nT = [[1, 2]]\n", "T must be a single value"),
    ("gridtype.toml", "grid = 3\n", "grid must be a table"),
    ("str.yaml", "base:\n  lr: fast\n", "lr must be a number"),
    ("params.toml", "params = 3\n", "params must be a table"),
])
def test_malformed_files_give_one_line_errors_naming_the_file(tmp_path, fname, text, needle):
    p = write(tmp_path, fname, text)
    with pytest.raises(ToyddError) as ei:
        load_experiment_file(p)
    msg = str(ei.value)
    assert needle in msg, msg
    assert fname in msg and "\n" not in msg


def test_bad_grid_point_is_named(tmp_path):
    p = write(tmp_path, "g.toml", "[base]\nn = 100\n[grid]\nm = [2, 0]\n")
    with pytest.raises(ToyddError, match=r"m must be positive.*grid point m=0"):
        load_experiment_file(p)


def test_missing_or_unknown_file_type(tmp_path):
    with pytest.raises(ToyddError, match="experiment file not found"):
        get_experiment(str(tmp_path / "nope.toml"))
    p = write(tmp_path, "exp.json", "{}")
    with pytest.raises(ToyddError, match="unknown experiment file type"):
        get_experiment(str(p))


def test_examples_parse():
    files = sorted(EXAMPLES.glob("*.toml")) + sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        e = load_experiment_file(f, preset="smoke")
        assert e.configs and e.description, f
