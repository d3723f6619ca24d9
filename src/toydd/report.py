"""``DIR/report/index.html``: every figure a sweep directory allows, in one offline page.

:func:`build_report` reads the results of a sweep directory
(:mod:`toydd.results`), asks each experiment's module for its sections
(:mod:`toydd.experiments`: figures, and captions that set what the paper
reports beside what *this* sweep shows, computed from the data), and writes

* ``DIR/report/<experiment>-<figure>.png`` (and ``.gif`` training movies), and
* ``DIR/report/index.html``: the figures (embedded, so the page alone is
  enough), interactive plotly versions with plotly.js inlined once (only when
  a section has a plotly chart), a slider over T for the vector plots, the
  table of runs, the configuration, and the software versions.

This module is page assembly only: it knows no experiment by name. The page
makes no network request: plotly.js, images and data are all inline. The report
directory is built in a temporary sibling and renamed into place, so a crash
half-way never replaces a good report with a broken one; temporary folders a
killed report left behind are removed by the next one.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import plots
from .errors import ToyddError, os_reason
from .experiments import paper_order, report_function
from .jobs import get_kind
from .results import ExperimentResults, Results, load_results
from .sections import ReportContext, Section, recipe_note
from .storage import names_preview, pid_alive, write_error

# The names of this module's API before results and sections had modules of their own.
Store = Results
Experiment = ExperimentResults
load_store = load_results


def ordered_experiments(results: Results) -> list[ExperimentResults]:
    """The paper's experiments in the paper's order, then any others by name."""
    return sorted(results.experiments.values(), key=lambda e: (paper_order(e.name), e.name))


def draw_experiment(ctx: ReportContext, exp: ExperimentResults) -> None:
    """One experiment's sections, by its module (or the generic figure for a user's experiment file)."""
    if exp.table.empty:
        ctx.notes.append(f"{exp.name}: no complete run yet ({exp.n_keys} planned); nothing to draw.")
        return
    draw = report_function(exp.name, exp.kind, exp.params.get("based_on"))
    if draw is None:
        ctx.notes.append(f"{exp.name}: no figure for runs of kind {exp.kind}; they are in the table below.")
        return
    ctx.log(f"report: {exp.name} ({len(exp.table)} runs)")
    first = len(ctx.sections)
    draw(ctx, exp)
    recipe = recipe_note(exp.table) if exp.kind == "toy" else ""
    for sec in ctx.sections[first:]:  # every figure says which training recipe its runs used
        if recipe:
            sec.finding = [recipe] + ([sec.finding] if isinstance(sec.finding, str) else list(sec.finding))


# --- the page ------------------------------------------------------------------------------

def software_versions() -> dict[str, str]:
    """Versions that matter for reproducing the numbers (read from metadata: importing torch is slow)."""
    from . import __version__

    out = {"toydd": __version__}
    for pkg in ("torch", "numpy", "numba", "matplotlib", "plotly", "pandas", "safetensors"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    out["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU(s)"
    try:
        src = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode == 0 and rev.stdout.strip():
            out["toydd git commit"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


_CSS = """
:root { --blue: %FEATURE%; --red: %DATA%; --ink: #1d1d1f; --muted: #6b6b6b; --line: #e3e3e3; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 60px; background: white; min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 42px 0 8px; padding-top: 8px;
       border-top: 1px solid var(--line); } h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 18px; }
nav { background: #f4f6f8; border-radius: 6px; padding: 10px 16px; margin: 16px 0; font-size: 14px;
      display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: #185abc; text-decoration: none; white-space: nowrap; }
figure { margin: 10px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.captions { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin: 10px 0 12px; }
.captions div { background: #f7f7f9; border-left: 3px solid #999; padding: 8px 12px; font-size: 14px; }
.captions div.ours { border-left-color: var(--blue); background: #f3f7fd; }
.captions ul { margin: 2px 0 0; padding-left: 18px; } .captions li { margin: 2px 0; }
.captions b { display: block; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.plotly-box { width: 100%; min-height: 430px; }
.slider-row { display: flex; align-items: center; gap: 14px; margin: 12px 0 4px; }
.slider-row input[type=range] { flex: 1; max-width: 520px; }
.tlabel { font-weight: 600; min-width: 80px; } .check { color: var(--muted); font-size: 14px; }
.slider-info { color: var(--muted); font-size: 13px; min-height: 20px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; } td.l, th.l { text-align: left; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line); }
.notes li { color: #8a4b00; } code { background: #f1f1f1; padding: 0 4px; border-radius: 3px; }
details { margin: 8px 0; } summary { cursor: pointer; color: #185abc; }
.movies { display: flex; flex-direction: column; gap: 8px; }
/* Nothing may widen the page: key-value tables wrap (long params, paths), wide tables scroll in their box. */
table.kv { width: 100%; table-layout: fixed; } table.kv td { white-space: normal; overflow-wrap: anywhere; }
table.kv td:first-child { width: 28%; } .scroll { max-width: 100%; }
.sub code, .notes li { overflow-wrap: anywhere; }
.plotly-box, .js-plotly-plot, .plot-container { max-width: 100%; }
@media (max-width: 800px) { .captions { grid-template-columns: 1fr; } main { padding: 16px 12px 40px; }
  .slider-row { flex-wrap: wrap; }
  /* its own line (flex-basis 100%): as a flex item of basis 0 it shrank to ~30 px on a phone */
  .slider-row input[type=range] { flex: 1 1 100%; min-width: 0; width: 100%; max-width: none; } }
"""

# The run table's columns per job kind: the settings that identify a run, then its results. Every other
# config field that varies across an experiment's runs (lr, eps, init_method, ...) is added after the settings,
# so two runs never look identical in the table.
_RUN_COLUMNS = {
    "toy": [("key", "key"), ("T", "T"), ("m", "m"), ("n", "n"), ("sparsity", "S"), ("weight_decay", "wd"),
            ("steps", "steps"), ("loss_norm", "loss norm"), ("data_seed", "data seed"), ("init_seeds", "inits"),
            ("train_loss", "train loss"), ("test_loss", "test loss"), ("test_loss_se", "± se (test set)"),
            ("weight_norm", "||W||_F"), ("bias_norm", "||b||"), ("max_feature_dim", "max D_f"),
            ("represented_features", "#||W_i||>0.5"), ("median_data_dim", "median D_X"), ("regime", "regime"),
            ("repeated_points", "k repeated"), ("repeats", "R"), ("repeated_memorized_fraction", "memorized"),
            ("seconds", "seconds"), ("batch_size", "of a batch of")],
    "mnist": [("key", "key"), ("T", "T"), ("seed", "seed"), ("label_noise", "flipped"), ("hidden", "hidden"),
              ("epochs", "epochs"), ("train_acc", "train acc"), ("held_out_acc", "held-out acc"), ("rank", "rank"),
              ("dstar_median", "median D*"), ("dstar_p99_ratio", "D* p99/median"),
              ("dstar_max_ratio", "D* max/median"), ("dstar_robust_max_ratio", "robust max/median"),
              ("flip_auc", "flip AUC"), ("seconds", "seconds")],
}
_REPEAT_COLUMNS = {"repeated_points", "repeats", "repeated_memorized_fraction"}
_SHARED_OK = {"m", "n", "sparsity", "weight_decay", "steps", "loss_norm", "hidden", "epochs"}  # settings, not results
_LEFT = {"key", "regime", "loss_norm", "init_method", "data_path", "init_path", "data"}


def _cell(v: Any, col: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col == "T":
        return plots.fmt_T(float(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return html.escape(str(v))


def run_columns(t: pd.DataFrame, kind: str = "toy") -> list[tuple[str, str]]:
    """(column, header) of an experiment's run table: its kind's columns, plus every other varying setting."""
    base = _RUN_COLUMNS.get(kind, _RUN_COLUMNS["toy"])
    has_repeats = "repeated_points" in t and (t["repeated_points"].fillna(0) > 0).any()
    # A setting every run shares is said once, under Configuration: as a column it only pushed the results
    # out of view (a browser review: 6 of 21 columns constant).
    shared = {c for c in _SHARED_OK if c in t and len(t) > 1 and t[c].astype(str).nunique() == 1}
    cols = [(c, h) for c, h in base if c in t and (has_repeats or c not in _REPEAT_COLUMNS) and c not in shared]
    shown = {c for c, _ in cols}
    fields = get_kind(kind).config_fields if kind in ("toy", "mnist") else ()
    extra = [(f, f) for f in fields if f in t and f not in shown and f not in ("device",)
             and t[f].astype(str).nunique() > 1]
    at = next((i for i, (c, _) in enumerate(cols) if c in ("train_loss", "train_acc")), len(cols))
    return cols[:at] + extra + cols[at:]


def runs_table_html(t: pd.DataFrame, kind: str = "toy") -> str:
    cols = run_columns(t, kind)
    head = "".join(f'<th class="{"l" if c in _LEFT else ""}">{html.escape(h)}</th>' for c, h in cols)
    body = "\n".join("<tr>" + "".join(f'<td class="{"l" if c in _LEFT else ""}">{_cell(r[c], c)}</td>'
                                      for c, _ in cols) + "</tr>" for _, r in t.iterrows())
    return f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def runs_html(exps: list[ExperimentResults]) -> str:
    """One run table per experiment; an experiment whose runs were all listed above (norms reads t-sweep's)
    gets a line saying so instead of the same table again."""
    parts, shown = [], {}
    for e in exps:
        if e.table.empty:
            continue
        keys = set(e.table["key"])
        same = next((name for name, ks in shown.items() if keys <= ks), None)
        head = f"{html.escape(e.name)}: {len(e.table)} complete runs of {e.n_keys}"
        if same is not None:
            parts.append(f"<p>{head}: the same runs as <b>{html.escape(same)}</b>, listed above.</p>")
            continue
        shown[e.name] = keys
        note = " (the settings every run shares are under Configuration)" if len(e.table) > 1 else ""
        parts.append(f"<details {'open' if len(e.table) <= 40 else ''}><summary>{head}{note}</summary>"
                     f"{runs_table_html(e.table, e.kind)}</details>")
    return "".join(parts)


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td class="l"><code>{html.escape(str(k))}</code></td><td class="l">'
                   f"{html.escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>" for k, v in d.items())
    return f'<table class="kv">{rows}</table>'


def config_html(exp: ExperimentResults) -> str:
    """Manifest facts, the config fields shared by every run, and those that vary."""
    t, man = exp.table, exp.manifest
    facts = {"preset": man.get("preset", "–"), "description": man.get("description", "–"),
             "runs complete": f"{len(t)} of {exp.n_keys}"}
    if exp.failed:
        facts["failed"] = "; ".join(f"{f.get('key', '?')}: {f.get('error', '?')}" for f in exp.failed[:10])
    if exp.corrupt:
        facts["corrupt"] = "; ".join(exp.corrupt[:10])
    if man.get("params"):
        facts["params"] = man["params"]
    if exp.kind == "toy" and "loss_norm" in t:
        facts["recipe"] = recipe_note(t)
    fields = [f for f in get_kind(exp.kind).config_fields if f in t]
    shared = {f: (plots.fmt_T(float(t[f].iloc[0])) if f == "T" else _py(t[f].iloc[0]))
              for f in fields if t[f].astype(str).nunique() == 1}
    varying = {f: ", ".join(plots.fmt_T(x) for x in plots.sort_T(t[f])) if f == "T" else
               ", ".join(str(_py(x)) for x in sorted(t[f].dropna().unique(), key=str))
               for f in fields if t[f].astype(str).nunique() > 1}
    return (f"<h3>{html.escape(exp.name)}</h3>{_kv_table(facts)}"
            f"<details><summary>config shared by every run ({len(shared)} fields)</summary>{_kv_table(shared)}</details>"
            + (f"<details open><summary>config that varies</summary>{_kv_table(varying)}</details>" if varying else ""))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _embed(out: Path, name: str, alt: str) -> str:
    """The figure inline (the page alone is enough), linked to its file beside index.html for full size."""
    mime = "image/gif" if name.endswith(".gif") else "image/png"
    b64 = base64.b64encode((out / name).read_bytes()).decode()
    f = html.escape(name)
    return (f'<a href="{f}" title="open {f} at full size"><img src="data:{mime};base64,{b64}" '
            f'alt="{html.escape(alt)}" data-file="{f}"></a>')


# What a first-time reader needs to read the toy models' figures (a browser review found these terms undefined).
_READING_GUIDE = """
<details class="guide"><summary>How to read this page: the loss, D<sub>f</sub>, D<sub>X</sub>, error bars, regimes</summary>
<ul>
<li><b>Test loss</b>: the mean over held-out points of &Sigma;<sub>i</sub> I<sub>i</sub> (x<sub>i</sub> &minus;
x&prime;<sub>i</sub>)&sup2;, with x&prime; = ReLU(W<sup>T</sup>W x + b). Generated points have unit norm (the rare
point with no active feature is zero), so the all-zeros model scores 1, or a hair below (the dashed line): below
it a model predicts better than nothing. (Points from a <code>--data</code> file keep their own norms.)</li>
<li><b>Recipe</b>: how the training loss was normalized. &ldquo;Mean over T&middot;n&rdquo; averages the squared error over
every (point, feature) element, like torch's <code>MSELoss</code>, and gives the paper's figures; &ldquo;summed&rdquo;
sums over features and averages over points, as the paper's text says, and gives Adam Jermyn's replication (in
the paper's Comments &amp; Replications). docs/REPLICATION.md in the toydd repository shows why.</li>
<li><b>Feature dimensionality</b> D<sub>f</sub> of feature i: &Vert;W<sub>i</sub>&Vert;&sup2; / &Sigma;<sub>j</sub>
(&#373;<sub>i</sub>&middot;W<sub>j</sub>)&sup2;, with W<sub>i</sub> the column of W for feature i and &#373;<sub>i</sub>
its unit vector: 1 for a feature with a hidden dimension of its own, 2/5 for each feature of a pentagon, near 0 for
a feature the model does not store. <b>Data dimensionality</b> D<sub>X</sub>: the same for the hidden vectors
h<sub>t</sub> = W x<sub>t</sub> of the training points; the T points of a T-gon get m/T each (the dashed curve).
&ldquo;Top-m&rdquo; is the mean of the m largest.</li>
<li><b>Error bars</b>: mean &plusmn; 1 standard deviation over data seeds (training sets). Where a caption weighs a
difference it uses the standard error of the mean (std / &radic;seeds). The runs table's &ldquo;&plusmn; se (test
set)&rdquo; is another quantity: the standard error of one model's test loss over its test points.</li>
<li><b>Regime</b> (a reading aid; the figures show the raw values): <i>memorizing</i> when the top-m D<sub>X</sub> is
at least the top-m D<sub>f</sub> and the median D<sub>X</sub> is at least half of m/T; <i>generalizing</i> when the
top-m D<sub>f</sub> is &ge; 0.1 and at least twice the top-m D<sub>X</sub>; <i>transition</i> otherwise.</li>
<li>The paper: T. Henighan, S. Carter, T. Hume, N. Elhage, R. Lasenby, S. Fort, N. Schiefer, C. Olah,
&ldquo;Superposition, Memorization, and Double Descent&rdquo;, Transformer Circuits Thread, 2023.</li>
</ul></details>
"""


def render_html(store: Results, b: ReportContext, versions: dict[str, str]) -> str:
    import plotly.offline

    exps = ordered_experiments(store)
    # plotly.js is 4.8 MB: inlined only when some section has a plotly chart (an MNIST-only report has none).
    plotly_js = f"<script>{plotly.offline.get_plotlyjs()}</script>" if b.plotly_charts else ""
    # Experiments may share runs (norms draws t-sweep's): count models, not experiment rows.
    total = len({k for e in exps if not e.table.empty for k in e.table["key"]})
    planned = len({k for e in exps for k in e.manifest.get("keys", [])})
    shared = " (experiments share runs)" if planned < sum(e.n_keys for e in exps) else ""
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title.split(": ", 1)[-1])}</a>'
                  for s in b.sections)
    nav += '<a href="#runs">runs</a><a href="#config">configuration</a><a href="#software">software</a>'
    parts = []
    for s in b.sections:
        alt = lambda f: f"{s.title} ({f})"  # noqa: E731
        imgs = "".join(f"<figure>{_embed(b.out, f, alt(f))}</figure>" for f in s.files)
        if len(s.files) > 1:
            imgs = f'<div class="movies">{imgs}</div>'
        if any(f.endswith(".gif") for f in s.files):
            # Animations loop: shown on request only, so nothing moves on the page unasked (WCAG 2.2.2).
            imgs = f"<details><summary>play the animation{'s' if len(s.files) > 1 else ''}</summary>{imgs}</details>"
        caps = (f'<div class="captions"><div><b>The paper reports</b>{html.escape(s.paper)}</div>'
                f'<div class="ours"><b>This sweep shows</b>{s.finding_html()}</div></div>')
        inter = f"<h3>Interactive</h3>{s.interactive}" if s.interactive else ""
        parts.append(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>{caps}{imgs}{inter}</section>')
    notes = b.notes + store.problems
    notes_html = ("<h2>Notes</h2><ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                  + "</ul>") if notes else ""
    runs = runs_html(exps)
    config = "".join(config_html(e) for e in exps)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    css = _CSS.replace("%FEATURE%", plots.FEATURE_COLOR).replace("%DATA%", plots.DATA_COLOR)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>toydd report: {html.escape(store.root.name)}</title>
<style>{css}</style>
{plotly_js}
</head><body><main>
<h1>Superposition, memorization and double descent</h1>
<p class="sub">toydd report of <code>{html.escape(str(store.root))}</code>: {len(exps)} experiment(s),
{total} of {planned} runs complete{shared}; generated {now}. Figures follow Henighan et al. (2023):
features / columns of W in blue, training points / hidden vectors in red.</p>
<nav>{nav}</nav>
{_READING_GUIDE if any(e.kind == "toy" for e in exps) else ""}
{"".join(parts)}
{notes_html}
<h2 id="runs">Runs</h2>{runs or "<p>No complete run.</p>"}
<h2 id="config">Configuration</h2>{config}
<h2 id="software">Software</h2>{_kv_table(versions)}
</main></body></html>
"""


# --- entry point ---------------------------------------------------------------------------

def build_report(root: str | os.PathLike, movies: int = 3, log: Callable[[str], None] | None = None,
                 dpi: int = 150) -> Path:
    """Write ``root/report/index.html`` and one PNG (or GIF) per figure; returns the index path.

    Every figure the experiments in ``root`` allow is drawn; missing experiments
    are skipped, an experiment with no complete run is listed, and a figure that
    fails is reported in the page rather than aborting the report. ``movies``
    caps the training movies per t-sweep (0 for none: they are the slowest part);
    ``dpi`` sets the PNG resolution (movies get two thirds of it). ``log``
    receives progress lines (default: stderr).

    Raises :class:`~toydd.errors.ToyddError` if ``root`` is not a sweep directory.
    The report directory is replaced atomically: built in a temporary sibling,
    then renamed into place.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    store = load_store(root)
    root = store.root
    check_report_dir(root)  # before drawing anything
    for problem in store.problems:  # corrupt runs, unreadable manifests: each named, and left out
        log(f"warning: {problem}")
    _clean_stale_temporaries(root)
    tmp = root / f".report.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
    except OSError as e:
        raise write_error(e, root / "report") from None
    try:
        b = ReportContext(store, tmp, movies, log, dpi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # matplotlib layout chatter, not the user's problem
            for exp in ordered_experiments(store):
                draw_experiment(b, exp)
        page = render_html(store, b, software_versions())
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        _swap_into_place(tmp, root / "report")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # disk full while writing index.html, ...
            raise write_error(e, root / "report") from None
        raise
    return root / "report" / "index.html"


REPORT_SUFFIXES = (".html", ".png", ".gif")


def check_report_dir(root: str | os.PathLike) -> None:
    """A ToyddError if ``root/report`` exists and is not a report toydd wrote (it would be replaced).

    A toydd report holds only regular ``.html``/``.png``/``.gif`` files; anything
    else there (a subdirectory, notes, a file instead of the folder) is someone's
    and is never deleted.
    """
    final = Path(root) / "report"
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        raise ToyddError(f"{final} exists and is not a directory toydd wrote; move it away to write the report")
    try:
        with os.scandir(final) as it:
            foreign = sorted(e.name for e in it
                             if not (e.is_file(follow_symlinks=False) and e.name.endswith(REPORT_SUFFIXES)))
    except OSError as e:
        raise ToyddError(f"{final}: cannot read it: {os_reason(e)}") from None
    if foreign:
        shown = names_preview(foreign)
        raise ToyddError(f"{final} holds files toydd did not write ({shown}); the report replaces that "
                         "directory: move them away (or the directory) and run again")


def _clean_stale_temporaries(root: Path) -> None:
    """Remove what a killed report left: ``.report.tmp-<pid>-*`` of a dead process, and ``.report.old-*``.

    Only folders holding nothing but report files (``.html``/``.png``/``.gif``) are removed: anything else
    there is someone's. A temporary folder of a live process (another report running now) is left alone.
    """
    for p in root.glob(".report.*-*"):
        if not p.is_dir() or p.is_symlink():
            continue
        if p.name.startswith(".report.tmp-"):
            try:
                pid = int(p.name.split("-")[1])
            except (ValueError, IndexError):
                continue
            if pid_alive(pid):
                continue  # alive: another report is drawing into it
        elif not p.name.startswith(".report.old-"):
            continue
        try:
            with os.scandir(p) as it:
                if any(not (e.is_file(follow_symlinks=False) and e.name.endswith(REPORT_SUFFIXES)) for e in it):
                    continue
        except OSError:
            continue
        shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing report is moved aside first and removed after."""
    os.chmod(tmp, 0o755)
    check_report_dir(final.parent)  # again: someone may have put files there while we drew
    if final.exists():
        old = final.with_name(f".report.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


__all__ = ["Experiment", "Store", "Section", "build_report", "load_store", "software_versions"]

