"""Interactive (plotly) versions of the report's figures, and the vector-plot slider.

Each function returns a plotly figure (or, for the slider, HTML + inline
JavaScript); :class:`toydd.sections.ReportContext` turns figures into HTML with
the page's plotly config. Nothing here fetches anything: the page is offline.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import plots
from .findings import fmt_num
from .metrics import REPRESENTED_NORM
from .storage import RunResult


def _plotly_T_axis(tax: plots.TAxis) -> dict[str, Any]:
    """A log x axis whose ticks read like the static figures', '∞' included."""
    if not tax.has_finite:
        return {"type": "log", "tickvals": [tax.inf_pos], "ticktext": ["∞"],
                "range": [math.log10(tax.inf_pos / 3), math.log10(tax.inf_pos * 3)]}
    d0, d1 = math.floor(math.log10(tax.lo)), math.ceil(math.log10(tax.hi))
    vals = [10.0**d for d in range(d0, d1 + 1) if tax.lo / 1.6 <= 10.0**d <= tax.hi * 1.6]
    text = [plots.fmt_T(v) for v in vals]
    if tax.has_inf:
        vals.append(tax.inf_pos)
        text.append("∞")
    right = tax.inf_pos if tax.has_inf else tax.hi
    return {"type": "log", "tickvals": vals, "ticktext": text,
            "range": [math.log10(tax.lo / 1.6), math.log10(right * 1.6)]}


def _inf_break(fig, tax: plots.TAxis) -> None:
    """The static figures' dotted break before the '∞' tick (T = ∞ sits at a stand-in position of the log axis,
    not a decade further on), on every panel of ``fig``."""
    if tax.has_inf and tax.has_finite:
        where = {"row": "all", "col": "all"} if getattr(fig, "_grid_ref", None) else {}
        fig.add_vline(x=math.sqrt(tax.hi * tax.inf_pos), line={"dash": "dot", "color": "#bbbbbb", "width": 1}, **where)


def _round(a: np.ndarray, sig: int = 4) -> list:
    """Short JSON for plot data: ``sig`` significant digits."""
    return [float(f"{v:.{sig}g}") for v in np.asarray(a, np.float64).ravel()]


PAGE_VALUES = 250  # dimensionalities per T in the page's main figure (plotly ships every point as JSON)


def _mean_trace(go, agg: pd.DataFrame, tax: plots.TAxis, name: str, color: str, **kw) -> Any:
    return go.Scatter(x=_round(tax.pos(agg["T"].astype(float))), y=_round(agg["mean"]),
                      error_y={"type": "data", "array": _round(agg["std"]), "visible": True, "thickness": 1},
                      mode="lines+markers", name=name, line={"color": color},
                      text=[plots.fmt_T(t) for t in agg["T"]],
                      hovertemplate="T=%{text}<br>%{y:.4g} ± %{error_y.array:.2g} (std over data seeds)<extra>"
                      + name + "</extra>", **kw)


def plotly_main(table: pd.DataFrame, runs: Sequence[RunResult]):
    """Test loss (mean ± std over seeds, each seed) and D_f / D_X against T with the m/T curve."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tax = plots.TAxis.of(list(table["T"]) + [r.config.T for r in runs])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("test loss", "dimensionality: features D_f, points D_X"))
    fig.add_trace(go.Scatter(x=_round(tax.pos(table["T"].astype(float))), y=_round(table["test_loss"]),
                             mode="markers", name="each data seed", marker={"color": "#999", "size": 5},
                             text=[f"T={plots.fmt_T(t)}, seed {s}" for t, s in zip(table["T"], table["data_seed"])],
                             hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"), 1, 1)
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "test_loss"), tax, "mean test loss", "#333"), 1, 1)
    fig.add_hline(y=1.0, line={"dash": "dash", "color": plots.BASELINE_COLOR}, row=1, col=1,
                  annotation_text="all-zeros model", annotation_position="top left")
    for kind, key, color in (("D_f", "feature_dims", plots.FEATURE_COLOR), ("D_X", "data_dims", plots.DATA_COLOR)):
        xs, ys, txt, sampled, med = [], [], [], False, []
        for r in runs:
            v = r.arrays.get(key)
            if v is None or not len(v):
                continue
            sampled |= len(v) > PAGE_VALUES
            med.append((float(tax.pos(r.config.T)), float(np.median(v)), plots.fmt_T(r.config.T)))
            v = plots.subsample_values(v, PAGE_VALUES)
            xs += [float(tax.pos(r.config.T))] * len(v)
            ys += list(v)
            txt += [plots.fmt_T(r.config.T)] * len(v)
        # The legend says what the cloud is: one model per T, and a sample where a T has many values.
        sample = f"; ≤ {PAGE_VALUES} a T: the {plots.SAMPLE_TOP} largest + random" if sampled else ""
        name = f"{kind} (data seed {plots.data_seeds(runs)}{sample})"
        fig.add_trace(go.Scatter(x=_round(xs), y=_round(ys), mode="markers", name=name, text=txt,
                                   marker={"color": color, "size": 4, "opacity": 0.5},
                                   hovertemplate="T=%{text}<br>" + kind + "=%{y:.3g}<extra></extra>"), 2, 1)
        if kind == "D_X" and med:
            mx, my, mt = zip(*med)
            fig.add_trace(go.Scatter(x=_round(mx), y=_round(my), mode="markers", name="median D_X (all points)",
                                     text=list(mt), marker={"color": "black", "symbol": "line-ew-open", "size": 10},
                                     hovertemplate="T=%{text}<br>median D_X=%{y:.3g}<extra></extra>"), 2, 1)
    t = np.geomspace(tax.lo, tax.hi, 100)
    for m in sorted({r.config.m for r in runs}) if tax.has_finite else []:
        fig.add_trace(go.Scatter(x=_round(t), y=_round(np.minimum(m / t, 1)), mode="lines", name=f"m/T (m={m})",
                                 line={"color": "black", "dash": "dash", "width": 1.5}), 2, 1)
    axis = _plotly_T_axis(tax)
    fig.update_xaxes(**axis)
    _inf_break(fig, tax)
    fig.update_xaxes(title_text="training set size T", row=2, col=1)
    fig.update_yaxes(title_text="test loss", row=1, col=1)
    fig.update_yaxes(title_text="dimensionality", range=[-0.02, 1.02], row=2, col=1)
    fig.update_layout(height=640, **_LAYOUT)
    return fig


_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
           "legend": {"orientation": "h", "y": -0.12}, "font": {"size": 12}}


def plotly_lines(table: pd.DataFrame, value: str, by: str | None, title: str, label: str = "",
                 x: str = "T", baseline: bool = False, ytitle: str | None = None, xtitle: str | None = None):
    """``value`` against T (mean ± std over seeds), one line per value of ``by`` (or one line)."""
    import plotly.graph_objects as go

    d = table.copy()
    tax = plots.TAxis.of(d[x])
    fig = go.Figure()
    groups = [(None, d)] if by is None else list(d.groupby(by))
    keys = [g for g, _ in groups]
    numeric = all(isinstance(g, (int, float)) for g in keys)  # a setting's value, or a label (a recipe)
    colors = plots.setting_colors(keys if numeric else list(range(len(keys)))) if by else ["#333"]
    for (g, sub), c in zip(groups, colors):
        if x != "T":  # aggregate() groups on "T": put the x column there
            sub = sub.drop(columns="T").rename(columns={x: "T"})
        agg = plots.aggregate(sub, value)
        col = matplotlib_to_css(c)
        name = (f"{label} = {g:g}" if isinstance(g, (int, float)) else str(g)) if by else value
        fig.add_trace(_mean_trace(go, agg, tax, name, col))
    if baseline:
        fig.add_hline(y=1.0, line={"dash": "dash", "color": plots.BASELINE_COLOR},
                      annotation_text="all-zeros model", annotation_position="top left")
    fig.update_xaxes(title_text=xtitle or ("training set size T" if x == "T" else x), **_plotly_T_axis(tax))
    _inf_break(fig, tax)
    fig.update_yaxes(title_text=ytitle or value)
    fig.update_layout(title=title, height=420, **_LAYOUT)
    return fig


def plotly_norms(table: pd.DataFrame):
    """||W||_F and ||b|| against T (mean ± std over seeds) with the pentagon's sqrt(5)."""
    import plotly.graph_objects as go

    tax = plots.TAxis.of(table["T"])
    fig = go.Figure()
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "weight_norm"), tax, "||W||_F", plots.FEATURE_COLOR))
    fig.add_trace(_mean_trace(go, plots.aggregate(table, "bias_norm"), tax, "||b||", "#e07b00"))
    fig.add_hline(y=plots.PENTAGON_NORM, line={"dash": "dot", "color": plots.BASELINE_COLOR},
                  annotation_text="√5 (ideal pentagon)", annotation_position="bottom right")
    fig.update_xaxes(title_text="training set size T", **_plotly_T_axis(tax))
    _inf_break(fig, tax)
    fig.update_yaxes(title_text="norm", rangemode="tozero")
    fig.update_layout(title="parameter norms against T", height=420, **_LAYOUT)
    return fig


def plotly_tm(table: pd.DataFrame):
    """Heat map of mean test loss over (T, m), diverging at the all-zeros loss 1.0."""
    import plotly.graph_objects as go

    agg = plots.aggregate(table, "test_loss", by=["m", "T"])
    Ts, ms = plots.sort_T(agg["T"]), sorted(agg["m"].unique())
    Z = [[None] * len(Ts) for _ in ms]
    for _, r in agg.iterrows():
        Z[ms.index(r["m"])][Ts.index(float(r["T"]))] = float(f"{r['mean']:.5g}")
    vals = agg["mean"].to_numpy(float)
    lo, hi = float(vals.min()), float(vals.max())
    kw: dict[str, Any] = {"colorscale": "RdBu_r", "zmid": 1.0} if lo < 1.0 < hi else {"colorscale": "Viridis"}
    fig = go.Figure(go.Heatmap(z=Z, x=[plots.fmt_T(t) for t in Ts], y=[str(int(m)) for m in ms],
                               colorbar={"title": {"text": "test loss"}},
                               hovertemplate="T=%{x}, m=%{y}<br>loss %{z:.4g}<extra></extra>", **kw))
    fig.update_xaxes(title_text="training set size T", type="category")
    fig.update_yaxes(title_text="hidden dimensions m", type="category")
    fig.update_layout(title="mean test loss over (T, m)", height=max(320, 40 * len(ms) + 160), **_LAYOUT)
    return fig


def plotly_repeated(table: pd.DataFrame):
    """The repeated-point phase diagram: R against T/N coloured by the memorized fraction, with R = 0.4 T/N."""
    import plotly.graph_objects as go

    g = plots.repeated_table(table)
    fig = go.Figure()
    symbols = ["cross", "x", "circle", "square", "triangle-up", "diamond"]
    for (setup, sub), sym in zip(g.groupby(["n", "sparsity"]), symbols):
        n, S = setup
        fig.add_trace(go.Scatter(x=_round(sub["T_over_N"]), y=_round(sub["repeats"]), mode="markers",
                                 name=f"N = {int(n):,}, S = {S:g}",
                                 marker={"symbol": sym, "size": 12, "color": _round(sub["memorized"]),
                                         "colorscale": "RdBu", "reversescale": True, "cmin": 0, "cmax": 1,
                                         "line": {"width": 1, "color": "#333"},
                                         "colorbar": {"title": {"text": "memorized"}}},
                                 text=[f"{v:.2f} memorized over {k} seed(s)" for v, k in zip(sub["memorized"], sub["seeds"])],
                                 hovertemplate="T/N=%{x}, R=%{y}<br>%{text}<extra></extra>"))
    x = np.geomspace(g["T_over_N"].min() / 1.5, g["T_over_N"].max() * 1.5, 50)
    fig.add_trace(go.Scatter(x=_round(x), y=_round(plots.JERMYN_SLOPE * x), mode="lines",
                             name=f"R = {plots.JERMYN_SLOPE:g} T/N", line={"color": "black"}))
    fig.update_xaxes(type="log", title_text="T/N")
    fig.update_yaxes(type="log", title_text="repeats R")
    fig.update_layout(title="repeated points: memorized or not", height=440, **_LAYOUT)
    return fig


def matplotlib_to_css(c: Any) -> str:
    """A matplotlib colour (name, hex, or RGBA tuple) as a CSS colour string."""
    from matplotlib.colors import to_hex

    return to_hex(c)


# --- the vector-plot slider -------------------------------------------------------------------

SLIDER_VECTORS = 600  # vectors per panel per T in the page: enough to see the shape, small enough to ship
SLIDER_LONGEST = 200  # of which the longest (the few vectors that carry the geometry), the rest at random


def _drawn(V: np.ndarray, V_full: np.ndarray) -> str:
    """What a slider panel draws of V_full: all of it, or (``plots.subsample``) the longest and a random rest."""
    return (f"{len(V):,} of {len(V_full):,} (the {SLIDER_LONGEST} longest and a random rest)"
            if len(V) < len(V_full) else f"all {len(V_full):,}")


def vector_slider_data(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per T: subsampled W columns and hidden vectors, their extents, and a one-line summary."""
    out = []
    for r in sorted(runs, key=lambda r: (r.config.infinite, float(r.config.T))):
        W_full = np.asarray(r.W, np.float64).T
        W = plots.subsample(W_full, SLIDER_VECTORS, keep_longest=SLIDER_LONGEST)
        H_full, what = plots.display_hidden(r)
        H = plots.subsample(H_full, SLIDER_VECTORS, keep_longest=SLIDER_LONGEST)
        n_rep = int(np.sum(np.linalg.norm(np.asarray(r.W, np.float64), axis=0) > REPRESENTED_NORM))
        dd = r.arrays.get("data_dims")
        info = (f"T = {plots.fmt_T(r.config.T)}, data seed {r.config.data_seed}: test loss "
                f"{fmt_num(r.metrics.get('test_loss'), 4)}, ||W||_F = {fmt_num(r.metrics.get('weight_norm'))}, "
                f"{n_rep} feature{'' if n_rep == 1 else 's'} with ||W_i|| > 0.5, "
                f"max D_f = {fmt_num(r.metrics.get('max_feature_dim'))}"
                + (f", median D_X = {fmt_num(float(np.median(dd)))} (m/T = {fmt_num(r.config.m / r.config.T)})"
                   if dd is not None and len(dd) else "")
                + f"; blue: {_drawn(W, W_full)} features, red: {_drawn(H, H_full)} {what} drawn.")
        out.append({"label": plots.fmt_T(r.config.T), "W": [_round(W[:, 0]), _round(W[:, 1])],
                    "H": [_round(H[:, 0]), _round(H[:, 1])], "extW": plots.vector_extent(W),
                    "extH": plots.vector_extent(H_full), "info": info})
    return out


_SLIDER_JS = r"""
(function () {
  const frames = JSON.parse(document.getElementById('vector-slider-data').textContent);
  const div = document.getElementById('vector-slider-plot');
  const slider = document.getElementById('vector-slider');
  const label = document.getElementById('vector-slider-label');
  const info = document.getElementById('vector-slider-info');
  const consistent = document.getElementById('vector-slider-consistent');
  const maxW = Math.max(...frames.map(f => f.extW)), maxH = Math.max(...frames.map(f => f.extH));
  // Lines from the origin, one trace per panel: 0 -> v, then a gap (null).
  function spokes(v) {
    const x = [], y = [];
    for (let i = 0; i < v[0].length; i++) { x.push(0, v[0][i], null); y.push(0, v[1][i], null); }
    return {x: x, y: y};
  }
  function axis(half, domain, anchor) {
    return {range: [-half, half], domain: domain, anchor: anchor, zeroline: true, zerolinecolor: '#eee',
            showgrid: false, showticklabels: true, ticks: '', mirror: true, showline: true, linecolor: '#ccc'};
  }
  function draw() {
    const f = frames[+slider.value];
    const w = spokes(f.W), h = spokes(f.H);
    const hw = 1.12 * (consistent.checked ? maxW : f.extW), hh = 1.12 * (consistent.checked ? maxH : f.extH);
    const traces = [
      {x: w.x, y: w.y, xaxis: 'x', yaxis: 'y', mode: 'lines+markers', name: 'features W_i',
       line: {color: '%FEATURE%', width: 1}, marker: {size: 3}, hoverinfo: 'x+y'},
      {x: h.x, y: h.y, xaxis: 'x2', yaxis: 'y2', mode: 'lines+markers', name: 'hidden vectors h_i',
       line: {color: '%DATA%', width: 1}, marker: {size: 3}, hoverinfo: 'x+y'}];
    const layout = {template: 'plotly_white', height: 430, margin: {l: 40, r: 30, t: 40, b: 30}, showlegend: false,
                    modebar: {orientation: 'v'},  // beside the panels, not over their titles on a phone
      xaxis: axis(hw, [0, 0.47], 'y'), yaxis: Object.assign(axis(hw, [0, 1], 'x'), {scaleanchor: 'x'}),
      xaxis2: axis(hh, [0.53, 1], 'y2'), yaxis2: Object.assign(axis(hh, [0, 1], 'x2'), {scaleanchor: 'x2'}),
      annotations: [
        {text: 'features W<sub>i</sub>', x: 0.235, y: 1.07, xref: 'paper', yref: 'paper', showarrow: false},
        {text: 'points h<sub>i</sub> = W x<sub>i</sub>', x: 0.765, y: 1.07, xref: 'paper', yref: 'paper', showarrow: false}]};
    Plotly.react(div, traces, layout, {responsive: true, displaylogo: false, showSendToCloud: false,
                                       showEditInChartStudio: false, showLink: false});
    label.textContent = 'T = ' + f.label;
    info.textContent = f.info;
    div.setAttribute('data-t', f.label);
  }
  slider.addEventListener('input', draw);
  consistent.addEventListener('change', draw);
  draw();
})();
"""


def vector_slider_html(runs: Sequence[RunResult]) -> str:
    """A range input over T driving a plotly figure of W columns (blue) and h_i (red), with a scale toggle."""
    frames = vector_slider_data(runs)
    data = json.dumps(frames, separators=(",", ":")).replace("</", "<\\/")
    js = _SLIDER_JS.replace("%FEATURE%", plots.FEATURE_COLOR).replace("%DATA%", plots.DATA_COLOR)
    return f"""
<div class="slider-row">
  <label for="vector-slider">dataset size</label>
  <input type="range" id="vector-slider" min="0" max="{len(frames) - 1}" step="1" value="0">
  <span id="vector-slider-label" class="tlabel"></span>
  <label class="check"><input type="checkbox" id="vector-slider-consistent"> one scale for all T</label>
</div>
<div id="vector-slider-info" class="slider-info"></div>
<div id="vector-slider-plot" class="plotly-box"></div>
<script type="application/json" id="vector-slider-data">{data}</script>
<script>{js}</script>
"""


