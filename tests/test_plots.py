"""Figures on small stored runs: assert on what each figure draws, not just that it draws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib import animation
from matplotlib.collections import LineCollection, PathCollection, QuadMesh
from PIL import Image

from report_fixtures import repeated_runs, synthetic_run, t_sweep_runs
from toydd import data as data_mod
from toydd import plots
from toydd.metrics import data_dimensionality


def table_of(runs) -> pd.DataFrame:
    """The table a sweep would give: config fields and scalar metrics, T as float."""
    rows = []
    for r in runs:
        row = dict(r.config.to_dict(), T=float(r.config.T), key=r.config.key())
        row.update({k: v for k, v in r.metrics.items() if not isinstance(v, (list, dict))})
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sweep():
    runs = t_sweep_runs()
    reps = [r for r in runs if r.config.data_seed == 0]
    return table_of(runs), reps


# --- the T axis -------------------------------------------------------------------

def test_inf_sits_right_of_the_largest_T_with_its_own_tick():
    tax = plots.TAxis.of([3, 100, 5000, math.inf])
    assert tax.pos(math.inf) > 5000 and tax.pos(5000) == 5000
    fig = plots.new_figure(4, 3)
    ax = fig.subplots()
    tax.decorate(ax)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert ax.get_xscale() == "log"
    assert labels[-1] == "∞" and ax.get_xticks()[-1] == pytest.approx(tax.inf_pos)
    assert ax.get_xlim()[1] > tax.inf_pos


def test_fmt_T():
    assert [plots.fmt_T(t) for t in (3, 500, 1000, 1500, 20_000, 500_000, 2_000_000, math.inf)] == \
        ["3", "500", "1k", "1.5k", "20k", "500k", "2M", "∞"]


# --- hidden vectors -------------------------------------------------------------------

def test_hidden_vectors_match_dense_product_single_and_stacked():
    X = data_mod.training_set(50, 0.9, 40, 3)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 50))
    dense = X.to_dense().astype(np.float64) @ W.T
    np.testing.assert_allclose(plots.hidden_vectors(X, W), dense, rtol=1e-6, atol=1e-9)
    Ws = np.stack([W, 2 * W, -W])
    H = plots.hidden_vectors(X, Ws)
    assert H.shape == (3, 40, 2)
    np.testing.assert_allclose(H[1], 2 * dense, rtol=1e-6, atol=1e-9)


def test_display_hidden_of_an_infinite_data_run_uses_fresh_points():
    run = synthetic_run(math.inf)
    H, what = plots.display_hidden(run)
    assert H.shape == (plots.DISPLAY_POINTS_INF, 2) and "fresh" in what
    finite = synthetic_run(10)
    H10, what10 = plots.display_hidden(finite)
    np.testing.assert_allclose(H10, finite.arrays["H"])
    assert what10 == "training points"


# --- main figure -------------------------------------------------------------------------

def test_main_figure_panels_curve_and_loss(sweep):
    table, reps = sweep
    vt = [3, 10, 100, math.inf]
    fig = plots.fig_main(table, reps, vector_T=vt)
    ax_loss, ax_dim, *vec = fig.axes
    assert len(vec) == 2 * len(vt)  # a W panel and an h panel per chosen T
    assert ax_loss.get_xscale() == "log" and ax_dim.get_xscale() == "log"
    assert [t.get_text() for t in ax_loss.get_xticklabels()][-1] == "∞"
    # Top: the mean over the 2 data seeds at each of the 8 T, and the all-zeros baseline at 1.0.
    mean_line = data_lines(ax_loss, 8)[0]
    expected = table.groupby("T")["test_loss"].mean().to_numpy()
    np.testing.assert_allclose(mean_line.get_ydata(), expected)
    assert mean_line.get_xdata()[-1] == pytest.approx(plots.TAxis.of(table["T"]).inf_pos)
    assert any(np.allclose(ln.get_ydata(), 1.0) for ln in ax_loss.get_lines())
    # Middle: the m/T curve is m/T, and the T-gon runs' red points lie on it.
    curve = [ln for ln in ax_dim.get_lines() if ln.get_gid() == "m_over_T"][0]
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    np.testing.assert_allclose(y, np.minimum(2 / x, 1.0))
    dx = [c for c in ax_dim.collections if c.get_gid() == "D_X"]
    pts = np.concatenate([c.get_offsets() for c in dx])
    at3 = pts[np.isclose(pts[:, 0], 3)]
    np.testing.assert_allclose(at3[:, 1], 2 / 3, rtol=1e-4)
    # Each T's median D_X over every point is marked, and the panel says which models it draws.
    med = np.concatenate([c.get_offsets() for c in ax_dim.collections if c.get_gid() == "D_X_median"])
    for r in reps:
        if len(r.arrays.get("data_dims", [])):
            at = med[np.isclose(med[:, 0], plots.TAxis.of(table["T"]).pos(r.config.T))]
            np.testing.assert_allclose(at[:, 1], np.median(r.arrays["data_dims"]))
    assert ax_dim.get_title(loc="right").startswith("one model per T (data seed 0)")
    # Bottom: titles name the chosen T in order.
    assert [a.get_title() for a in vec[:4]] == ["T = 3", "T = 10", "T = 100", "T = ∞"]


def test_main_figure_default_vector_T_includes_ends(sweep):
    table, reps = sweep
    fig = plots.fig_main(table, reps)  # 8 T values: all of them fit
    titles = [a.get_title() for a in fig.axes[2:] if a.get_title()]
    assert titles[0] == "T = 3" and titles[-1] == "T = ∞"
    assert plots.default_vector_T([3, 5, 6, 8, 10, 15, 30, 50, 100, 1e3, 1e4, 1e5, math.inf], k=5)[::4] == [3, math.inf]


# --- vector plots ----------------------------------------------------------------------------

def data_lines(ax, npoints: int) -> list:
    """Drawn curves with ``npoints`` points (error-bar caps are marker-only lines: left out)."""
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) == npoints and ln.get_linestyle() != "None"]


def _lims(axes):
    return [ax.get_xlim() for ax in axes]


def test_vector_plots_per_panel_and_consistent_scale(sweep):
    _, reps = sweep
    per = plots.fig_vector_plots(reps, consistent_scale=False)
    same = plots.fig_vector_plots(reps, consistent_scale=True)
    k = len(reps)
    w_per, w_same = per.axes[:k], same.axes[:k]  # first row: W panels (8 runs fit one block)
    h_same = same.axes[k:2 * k]
    assert len({round(l[1], 9) for l in _lims(w_same)}) == 1
    assert len({round(l[1], 9) for l in _lims(h_same)}) == 1
    assert len({round(l[1], 6) for l in _lims(w_per)}) > 1
    # Every column of W is a blue line from the origin; every training point a red one.
    n = reps[0].config.n
    lc_w = [c for c in w_per[0].collections if isinstance(c, LineCollection)][0]
    assert len(lc_w.get_segments()) == n
    assert np.allclose([s[0] for s in lc_w.get_segments()], 0)
    lc_h = [c for c in per.axes[k].collections if isinstance(c, LineCollection)][0]
    assert len(lc_h.get_segments()) == 3  # T = 3
    # The consistent scale fits the longest vector of all panels.
    longest = max(np.abs(r.W).max() for r in reps)
    assert w_same[0].get_xlim()[1] == pytest.approx(1.12 * longest, rel=1e-6)


def test_vector_plots_wrap_and_refuse_other_m():
    runs = [synthetic_run(T) for T in (3, 5, 6, 8, 10)]
    fig = plots.fig_vector_plots(runs, per_row=3)
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(fig.axes) == 4 * 3 and len(visible) == 2 * 5
    with pytest.raises(ValueError, match="m = 2"):
        plots.fig_vector_plots([synthetic_run(10, m=3)])


def test_vector_plot_caps_vectors_keeping_the_longest():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((10_000, 2))
    V[17] = [50, 0]
    fig = plots.new_figure(2, 2)
    lc = plots.draw_vectors(fig.subplots(), V, "red", max_vectors=500)
    segs = np.asarray(lc.get_segments())
    assert len(segs) == 500
    assert np.any(np.all(np.isclose(segs[:, 1], [50, 0]), axis=1))


# --- the other figures ----------------------------------------------------------------------

def test_norms_figure(sweep):
    table, _ = sweep
    fig = plots.fig_norms(table)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("W" in s for s in labels) and any("b" in s for s in labels)
    sqrt5 = [ln for ln in ax.get_lines() if np.allclose(ln.get_ydata(), math.sqrt(5))]
    assert sqrt5
    wline = data_lines(ax, 8)[0]
    np.testing.assert_allclose(wline.get_ydata(), table.groupby("T")["weight_norm"].mean().to_numpy())


def test_tm_grid_heat_map_cells_are_mean_losses():
    runs = [synthetic_run(T, m=m, data_seed=s, snapshots=0) for T in (3, 30, 300) for m in (1, 3) for s in (0, 1)]
    table = table_of(runs)
    fig = plots.fig_tm_grid(table)
    ax = fig.axes[0]
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    Z = np.asarray(mesh.get_array()).reshape(2, 3)
    expected = table.groupby(["m", "T"])["test_loss"].mean().unstack().to_numpy()
    np.testing.assert_allclose(Z, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "30", "300"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "3"]
    assert len(ax.patches) == 2  # each m's worst T outlined


@pytest.mark.parametrize("fn,setting,values", [(plots.fig_weight_decay, "weight_decay", (0.0, 1e-2, 1.0)),
                                                (plots.fig_epochs, "steps", (100, 200, 400))])
def test_setting_lines_one_line_per_value(fn, setting, values):
    runs = [synthetic_run(T, m=4, snapshots=0, **{setting: v}) for T in (10, 100, 1000) for v in values]
    fig = fn(table_of(runs))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("=" in t for t in texts) == len(values) and any("all-zeros" in t for t in texts)
    assert len(data_lines(ax, 3)) == len(values)
    assert "m = 4" in ax.get_title(loc="left")


def test_sparsity_figure_rescales_T_by_feature_frequency():
    runs = [synthetic_run(T, n=80, sparsity=S, snapshots=0) for S in (0.8, 0.9) for T in (10, 100)]
    fig = plots.fig_sparsity(table_of(runs))
    ax_T, ax_seen = fig.axes
    xs = sorted({round(float(x), 6) for ln in data_lines(ax_seen, 2) for x in ln.get_xdata()})
    assert xs == [1.0, 2.0, 10.0, 20.0]  # T(1-S)
    assert any(np.allclose(ln.get_xdata(), 10) for ln in ax_seen.get_lines())  # "seen 10 times"


def test_repeated_phase_diagram_points_colours_and_boundary():
    runs = repeated_runs(n=100)
    fig = plots.fig_repeated(table_of(runs))
    ax = fig.axes[0]
    sc = [c for c in ax.collections if isinstance(c, PathCollection)][0]
    xy = sc.get_offsets()
    assert len(xy) == 9
    mem = np.asarray(sc.get_array())
    # Red (1) exactly above R = 0.4 T/N, blue (0) below, as the fixture was built.
    np.testing.assert_array_equal(mem, (xy[:, 1] > 0.4 * xy[:, 0]).astype(float))
    assert sorted(set(np.round(xy[:, 0], 6))) == [2.0, 10.0, 50.0]  # T/N
    line = [ln for ln in ax.get_lines() if ln.get_gid() == "jermyn"][0]
    np.testing.assert_allclose(line.get_ydata(), 0.4 * np.asarray(line.get_xdata()))
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_training_curves_one_per_run(sweep):
    _, reps = sweep
    fig = plots.fig_training_curves(reps)
    assert len(fig.axes[0].get_lines()) == len(reps)
    assert fig.axes[0].get_yscale() == "log"


# --- files: PNG and GIF ---------------------------------------------------------------------

def test_save_figure_is_atomic_png(tmp_path, sweep):
    table, _ = sweep
    p = plots.save_figure(plots.fig_norms(table), tmp_path / "norms.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["norms.png"]


def test_movie_has_a_frame_per_snapshot_and_shows_training(tmp_path):
    run = synthetic_run(5, snapshots=6)
    n_snap = len(run.history["snapshot_steps"])
    anim = plots.movie(run)
    assert anim._toydd_frames == n_snap
    anim.save(tmp_path / "direct.gif", writer=animation.PillowWriter(fps=5), dpi=40)
    (tmp_path / "direct.gif").unlink()
    path = plots.save_movie(run, tmp_path / "m.gif", fps=5, dpi=60)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == n_snap
        im.seek(0)
        first = np.asarray(im.convert("RGB")).copy()
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("RGB"))
    assert np.abs(first.astype(int) - last).sum() > 0  # the embedding moves over training
    assert [f.name for f in tmp_path.iterdir()] == ["m.gif"]


def test_snapshot_geometry_ends_at_the_final_model():
    run = synthetic_run(5, snapshots=6)
    geo = plots.snapshot_geometry(run)
    # The last snapshot is the final W: its hidden vectors are the stored T-gon.
    np.testing.assert_allclose(geo["H"][-1], run.arrays["H"], rtol=1e-4, atol=1e-5)
    assert geo["top_data_dim"][-1] == pytest.approx(np.sort(data_dimensionality(run.arrays["H"]))[-2:].mean(), rel=1e-3)
    assert plots.snapshot_geometry(synthetic_run(5, snapshots=0)) is None


def test_infinite_data_only_axis_has_a_single_inf_tick():
    tax = plots.TAxis.of([math.inf, math.inf])
    fig = plots.new_figure(3, 2)
    ax = fig.subplots()
    tax.decorate(ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["∞"]
    lo, hi = ax.get_xlim()
    assert lo < tax.inf_pos < hi


def test_dimensionality_panel_says_when_it_draws_a_sample():
    """Above max_points values at a T the scatter keeps the largest and a random rest, which lifts the red
    cloud above the typical point (a browser review read D_X ~ 0.05 where the median was 1e-4): the panel
    says so, and the marked median is of every point, not of the sample."""
    from matplotlib.figure import Figure

    rng = np.random.default_rng(1)
    run = synthetic_run(1000)
    run.arrays["data_dims"] = rng.exponential(1e-3, 1000)
    ax = Figure().subplots()
    plots.plot_dims_vs_T(ax, [run], plots.TAxis.of([1000]), max_points=250)
    assert "over 250 values at a T: the 100 largest and a random rest" in ax.get_title(loc="right")
    drawn = np.asarray(np.concatenate([c.get_offsets() for c in ax.collections if c.get_gid() == "D_X"]))[:, 1]
    assert len(drawn) == 250 and np.median(drawn) > np.median(run.arrays["data_dims"])  # the sample is biased
    (med,) = [c.get_offsets()[0, 1] for c in ax.collections if c.get_gid() == "D_X_median"]
    assert med == pytest.approx(np.median(run.arrays["data_dims"]))
    ax2 = Figure().subplots()
    plots.plot_dims_vs_T(ax2, [run], plots.TAxis.of([1000]), max_points=5000)
    assert "largest" not in ax2.get_title(loc="right")  # every value drawn: nothing to say


def test_interactive_main_figure_names_its_model_its_sample_and_the_median(sweep):
    from toydd import plots_interactive as PI

    import dataclasses

    table, reps = sweep
    many = np.random.default_rng(0).exponential(1e-3, 1000)  # many points at one T: the page ships a sample
    reps = [dataclasses.replace(r, arrays={**r.arrays, "data_dims": many}) if r.config.T == 1000 else r for r in reps]
    fig = PI.plotly_main(table, reps)
    names = [t.name for t in fig.data]
    assert any(n.startswith("D_f (data seed 0") for n in names)
    dx = next(t for t in fig.data if t.name.startswith("D_X (data seed 0"))
    assert f"≤ {PI.PAGE_VALUES} a T: the 100 largest + random" in dx.name
    med = next(t for t in fig.data if t.name == "median D_X (all points)")
    at = plots.TAxis.of(list(table["T"]) + [r.config.T for r in reps]).pos(1000.0)
    (y,) = [yy for xx, yy in zip(med.x, med.y) if np.isclose(xx, at, rtol=1e-3)]
    assert y == pytest.approx(np.median(next(r for r in reps if r.config.T == 1000).arrays["data_dims"]), rel=1e-3)
    mean = next(t for t in fig.data if t.name == "mean test loss")
    assert "std over data seeds" in mean.hovertemplate
    # the static figures' dotted break before '∞', on both panels (T = ∞ sits at a stand-in position)
    tax = plots.TAxis.of(list(table["T"]) + [r.config.T for r in reps])
    breaks = [sh for sh in fig.layout.shapes if sh.line.dash == "dot"]
    assert len(breaks) == 2 and all(sh.x0 == pytest.approx(math.sqrt(tax.hi * tax.inf_pos)) for sh in breaks)


def test_vector_slider_info_says_what_each_panel_draws():
    """The slider's info line named the sample of the red points only; the blue panel draws 600 of the 1,000
    features too (a browser review)."""
    from toydd import plots_interactive as PI

    run = synthetic_run(10, n=1000)
    (frame,) = PI.vector_slider_data([run])
    assert f"blue: {PI.SLIDER_VECTORS} of 1,000 (the {PI.SLIDER_LONGEST} longest and a random rest) features" in frame["info"]
    assert "red: all 10 training points drawn" in frame["info"]
    assert len(frame["W"][0]) == PI.SLIDER_VECTORS
