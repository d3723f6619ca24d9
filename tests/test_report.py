"""The report of a sweep directory: files, captions computed from data, atomicity, and a real browser."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from report_fixtures import make_store, synthetic_run, write_experiment
from toydd import findings, report
from toydd.errors import ToyddError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

ALL = ("t-sweep", "tm-grid", "weight-decay", "epochs", "sparsity", "repeated")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A store with every synthetic experiment and its report (one movie to keep it quick)."""
    root = make_store(tmp_path_factory.mktemp("sweep"), ALL)
    report.build_report(root, movies=1, log=lambda msg: None, dpi=80)
    return root


def page(root: Path) -> str:
    return (root / "report" / "index.html").read_text(encoding="utf-8")


# --- files ------------------------------------------------------------------------

def test_report_writes_one_png_per_figure_and_embeds_them(built):
    out = built / "report"
    files = sorted(p.name for p in out.iterdir())
    expected = ["t-sweep-main.png", "t-sweep-vectors.png", "t-sweep-vectors-consistent.png", "t-sweep-norms.png",
                "t-sweep-training.png", "tm-grid-heatmap.png", "weight-decay-lines.png", "epochs-lines.png",
                "sparsity-sparsity.png", "repeated-phase.png"]
    for name in expected:
        assert name in files
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 200
    gifs = [f for f in files if f.endswith(".gif")]
    assert len(gifs) == 1  # movies=1
    html = page(built)
    head, body = html.split("</head>")
    # plotly.js is inlined once, in the head: no <script src=...> anywhere.
    assert head.count("<script>") == 1 and len(head) > 3_000_000
    assert "<script src" not in html
    # Self-contained: every figure is inline (the page alone is enough), no external reference in the body.
    assert body.count('src="data:image/png;base64,') == len(expected)
    assert body.count('src="data:image/gif;base64,') == 1
    assert not re.search(r'(src|href)="(https?:)?//', body)
    assert body.count("Plotly.newPlot") >= 7  # main, norms, heat map, two line plots, sparsity, repeated
    # Each figure says what it is to a screen reader, and opens at full size from its file beside the page.
    assert 'alt="t-sweep: test loss, dimensionality and geometry against T (t-sweep-main.png)"' in body
    assert body.count('<a href="t-sweep-main.png"') == 1
    # Animations play on request only (they loop), and the page defines its terms once.
    assert re.search(r'<details><summary>play the animation</summary><figure><a href="[^"]+\.gif"', body)
    assert "How to read this page" in body and "Feature dimensionality" in body
    # No temporary directory left behind.
    assert not [p for p in built.iterdir() if p.name.startswith(".report")]


def test_report_captions_pair_the_paper_with_numbers_from_this_sweep(built):
    html = page(built)
    assert html.count("The paper reports") == html.count("This sweep shows") >= 8
    # The synthetic t-sweep has its bump at T=100 and exact T-gons for T < 15.
    assert "Interior bump (local maximum) of the test loss at T=100" in html
    assert "Median D_X is within 0.0% of m/T in every run for T ≤ 10" in html
    assert "5 features with ||W_i|| &gt; 0.5" in html
    assert "||W||_F goes from" in html and "to a peak of" in html
    # weight decay: the synthetic bump shrinks with decay and is gone at 1.0
    assert "The bump shrinks monotonically with weight decay" in html
    assert "At weight decay 1 the bump is gone." in html
    assert "The bump grows monotonically with steps" in html
    assert "S=0.8: T=50 (T(1-S) = 10); S=0.9: T=100 (T(1-S) = 10)" in html
    assert "spans a factor 2 in T but 1 in T(1-S)" in html
    # repeated: the fixture memorizes exactly when R > 0.4 T/N
    assert "9 of 9 fall on the side of R = 0.4 T/N that the argument predicts" in html


def test_report_lists_runs_configuration_and_versions(built):
    html = page(built)
    for name in ALL:
        assert f"<h3>{name}</h3>" in html
    keys = [p.name for p in (built / "runs").iterdir()]
    assert all(k in html for k in keys)
    for pkg in ("toydd", "torch", "numpy", "python", "platform"):
        assert f"<code>{pkg}</code>" in html
    assert "vector_plot_T" in html  # the manifest's params


def test_missing_experiments_are_skipped(tmp_path):
    root = make_store(tmp_path, ("weight-decay",))
    report.build_report(root, log=lambda m: None)
    files = sorted(p.name for p in (root / "report").iterdir())
    assert files == ["index.html", "weight-decay-lines.png"]
    html = page(root)
    assert "t-sweep" not in html and "heat map" not in html


def test_incomplete_failed_and_corrupt_runs_are_reported_by_name(tmp_path):
    runs = [synthetic_run(T, snapshots=0) for T in (3, 10, 100, 1000)]
    keys = write_experiment(tmp_path, "t-sweep", runs, extra_keys=["feedfacefeedface", "0123456789abcdef"])
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "0123456789abcdef.json").write_text(json.dumps(
        {"key": "0123456789abcdef", "error": "diverged: NaN loss at step 17"}))
    bad = tmp_path / "runs" / keys[1] / "arrays.safetensors"
    bad.write_bytes(bad.read_bytes()[:-10])  # truncate one run
    report.build_report(tmp_path, movies=0, log=lambda m: None)
    html = page(tmp_path)
    assert "3 of 6" in html  # complete runs of planned
    assert "diverged: NaN loss at step 17" in html
    assert f"{keys[1]}/arrays.safetensors: truncated or corrupted" in html
    runs_section = html.split('id="runs"')[1].split('id="config"')[0]
    assert keys[0] in runs_section and keys[1] not in runs_section  # the corrupt run is not read
    table = report.load_store(tmp_path).experiments["t-sweep"].table
    assert sorted(table["key"]) == sorted(keys[:1] + keys[2:])


def test_an_experiment_with_no_complete_run_is_listed_not_drawn(tmp_path):
    write_experiment(tmp_path, "tm-grid", [], extra_keys=["feedfacefeedface"])
    write_experiment(tmp_path, "epochs", [synthetic_run(T, m=4, steps=s, snapshots=0)
                                          for T in (10, 100, 1000) for s in (100, 400)])
    report.build_report(tmp_path, log=lambda m: None)
    html = page(tmp_path)
    assert "tm-grid: no complete run yet (1 planned)" in html
    assert (tmp_path / "report" / "epochs-lines.png").is_file()


def test_an_unknown_experiment_gets_the_figure_its_varying_field_allows(tmp_path):
    runs = [synthetic_run(T, m=4, snapshots=0).config.replace(lr=lr) for T in (10, 100, 1000) for lr in (1e-3, 1e-2)]
    results = []
    for c in runs:
        r = synthetic_run(c.T, m=4, snapshots=0)
        r.config = c
        results.append(r)
    write_experiment(tmp_path, "my-lr-sweep", results)
    report.build_report(tmp_path, log=lambda m: None)
    assert (tmp_path / "report" / "my-lr-sweep-lines.png").is_file()
    assert "test loss against T by lr" in page(tmp_path)


def test_not_a_sweep_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(ToyddError, match="no sweep directory"):
        report.build_report(tmp_path / "nope")
    with pytest.raises(ToyddError, match="holds no experiments"):
        report.build_report(tmp_path)


def test_a_failed_build_keeps_the_previous_report(tmp_path, monkeypatch):
    root = make_store(tmp_path, ("epochs",))
    index = report.build_report(root, log=lambda m: None)
    before = index.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        report.build_report(root, log=lambda m: None)
    assert index.read_bytes() == before
    assert sorted(p.name for p in root.iterdir()) == ["experiments", "report", "runs"]


def test_a_figure_that_fails_is_noted_and_the_rest_still_drawn(tmp_path, monkeypatch):
    root = make_store(tmp_path, ("epochs", "weight-decay"))

    def broken(table):
        raise ValueError("broken figure")

    monkeypatch.setattr(report.plots, "fig_epochs", broken)
    report.build_report(root, log=lambda m: None)
    html = page(root)
    assert "epochs: lines: not drawn (ValueError: broken figure)" in html
    assert (root / "report" / "weight-decay-lines.png").is_file()


# --- what the data shows -----------------------------------------------------------

def _agg(Ts, means, se=0.001):
    return pd.DataFrame({"T": [float(t) for t in Ts], "mean": means, "std": se, "se": se, "count": 4})


def test_loss_bump_is_the_largest_rise_over_a_smaller_T():
    b = findings.loss_bump(_agg([3, 10, 100, 1000, math.inf], [0.99, 0.97, 1.02, 0.95, 0.94]))
    assert b["T"] == 100 and b["T_best"] == 10
    assert b["rise"] == pytest.approx(0.05) and b["over_neighbours"] == pytest.approx(0.05)
    assert b["z"] == pytest.approx(0.05 / math.hypot(0.001, 0.001))
    flat = findings.loss_bump(_agg([3, 10, 100], [1.0, 0.99, 0.98]))
    assert flat["rise"] < 0
    assert findings.loss_bump(_agg([3, 10], [1, 1])) is None


def test_find_loss_reads_noise_from_the_test_set_when_there_is_one_seed():
    t = pd.DataFrame({"T": [3.0, 10.0, 100.0], "test_loss": [0.99, 0.98, 0.9805], "test_loss_se": 0.01,
                      "data_seed": 0})
    s = findings.find_loss(t)
    assert "local maximum) of the test loss at T=100" in s  # a 0.0005 rise ...
    assert findings.loss_bump(findings.loss_curve(t))["z"] < 2  # ... well inside the test-set noise


def test_find_data_dims_tolerance_and_first_departure():
    t = pd.DataFrame({"T": [3.0, 10.0, 100.0], "m": 2, "median_data_dim": [2 / 3 * 1.02, 0.2 * 0.95, 0.002]})
    s = findings.find_data_dims(t)
    assert "within 5.0% of m/T in every run for T ≤ 10" in s
    assert "At T=100 it is 0.1× m/T" in s


def test_find_setting_bumps_checks_the_papers_direction():
    rows = []
    for wd, h in ((0.0, 0.1), (0.01, 0.05), (1.0, 0.0)):
        for T, base in ((10, 0.95), (100, 0.95 + h), (1000, 0.9)):
            rows.append({"T": float(T), "weight_decay": wd, "test_loss": base, "test_loss_se": 0.001})
    s = findings.find_setting_bumps(pd.DataFrame(rows), "weight_decay", "weight decay", "down")
    assert "weight decay 0: 0.1 at T=100" in s and "weight decay 1: none" in s
    assert "shrinks monotonically" in s


# --- a real browser ------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install -y chromium chromium-driver)")
def test_report_in_headless_chromium(built, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: selenium-manager must never try to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get((built / "report" / "index.html").as_uri())
        deadline = time.time() + 20
        while time.time() < deadline and driver.execute_script(
                "return document.querySelectorAll('.js-plotly-plot').length") < 8:
            time.sleep(0.2)

        # Every plotly figure rendered, every image decoded.
        n_plots = driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length")
        assert n_plots >= 8  # 7 figures + the vector slider
        broken = driver.execute_script(
            "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")
        assert broken == []

        # The T slider changes the plotted vectors.
        def plotted():
            return driver.execute_script(
                "const d = document.getElementById('vector-slider-plot');"
                "return [d.getAttribute('data-t'), d.data[1].x.slice(0, 12), d.data[0].x.length]")

        # The scale toggle: at T=3 its own scale is tighter than the one shared by all T.
        def xrange(axis):
            return driver.execute_script(
                f"return document.getElementById('vector-slider-plot').layout.{axis}.range[1]")

        own = xrange("xaxis")
        toggle = driver.find_element(By.ID, "vector-slider-consistent")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
        toggle.click()
        assert xrange("xaxis") > own
        toggle.click()
        assert xrange("xaxis") == own

        t0, h0, _ = plotted()
        slider = driver.find_element(By.ID, "vector-slider")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", slider)
        slider.send_keys(Keys.ARROW_RIGHT)
        slider.send_keys(Keys.ARROW_RIGHT)
        t1, h1, _ = plotted()
        assert (t0, t1) == ("3", "10")
        assert h0 != h1
        assert driver.find_element(By.ID, "vector-slider-label").text == "T = 10"

        # Screenshot of the page as a person sees it.
        shot = tmp_path / "report.png"
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.format == "PNG" and im.width >= 1000 and im.height >= 600
            px = np.asarray(im.convert("L"), dtype=float)
        assert px.std() > 10  # not a blank page

        # An offline report offers no upload: the charts' toolbars keep "download as PNG", nothing that shares.
        titles = driver.execute_script(
            "return [...document.querySelectorAll('.modebar-btn')].map(b => b.getAttribute('data-title') || '')")
        assert any("png" in t.lower() for t in titles), titles
        assert not [t for t in titles if any(w in t.lower() for w in ("share", "cloud", "chart studio", "edit"))]

        # No horizontal overflow at a laptop's and a phone's width; on a phone the T slider takes its own line
        # (it once shrank to ~30 px for 17 stops).
        for width in (1440, 390):
            driver.set_window_size(width, 900)
            time.sleep(1.0)
            sw, iw = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert sw <= iw, f"at {width} px the page is {sw} px wide (window {iw})"
            wide = driver.execute_script("return document.getElementById('vector-slider').getBoundingClientRect().width")
            assert wide >= (0.8 * iw if iw <= 800 else 300), (width, wide, iw)
        driver.set_window_size(1280, 1000)

        # No console errors, and no request left the machine.
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        urls = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
        assert any(u.startswith("file:") and u.endswith("index.html") for u in urls)
        # chrome:// and about: are the browser's own blank tab; anything else would be the network.
        outside = [u for u in urls if not u.startswith(("file:", "data:", "blob:", "chrome:", "about:"))]
        assert outside == []
    finally:
        driver.quit()


# --- real training -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny real t-sweep (toydd.training.train): 4 dataset sizes x 2 data seeds, 300 steps at n = 100."""
    from toydd.config import TrainConfig
    from toydd.training import train

    root = tmp_path_factory.mktemp("trained")
    runs = [train(TrainConfig(n=100, m=2, T=T, sparsity=0.95, steps=300, data_seed=s, test_size=500,
                              online_batch=256, snapshots=8, init_seeds=2))
            for T in (3, 10, 100, math.inf) for s in (0, 1)]
    write_experiment(root, "t-sweep", runs, params={"vector_plot_T": [3, 100, "inf"]})
    report.build_report(root, movies=2, log=lambda m: None, dpi=80)
    return root


def test_report_of_real_training_runs(trained):
    from toydd import plots

    out = trained / "report"
    for name in ("t-sweep-main.png", "t-sweep-vectors.png", "t-sweep-norms.png", "t-sweep-training.png"):
        assert (out / name).is_file()
    gifs = sorted(p for p in out.iterdir() if p.suffix == ".gif")
    assert len(gifs) == 2
    with Image.open(gifs[0]) as im:
        assert im.n_frames == 8  # one frame per stored snapshot
    html = page(trained)
    assert "t-sweep: test loss, dimensionality and geometry against T" in html
    assert "Final training / test loss" in html and "at T=3 (best of 2 inits)" in html and "at T=∞ (best of 2 inits)" in html
    store = report.load_store(trained)
    table = store.experiments["t-sweep"].table
    assert len(table) == 8 and table["test_loss"].notna().all()
    # The hidden vectors the figures recompute from the regenerated training set (and the
    # last snapshot) are the ones training stored: the plots read the runs correctly.
    run = store.run(table[table["T"] == 10]["key"].iloc[0])
    np.testing.assert_allclose(plots.hidden_vectors(run.training_data(), run.W), run.H, rtol=1e-4, atol=1e-5)
    geo = plots.snapshot_geometry(run)
    np.testing.assert_allclose(geo["W"][-1], run.W, rtol=1e-5, atol=1e-6)
    steps, loss = plots.training_curve(run)
    assert len(steps) == len(loss) > 10 and loss[-1] == pytest.approx(run.metrics["train_loss"], rel=0.05)


def test_degenerate_sweeps_still_report(tmp_path):
    """m = 3 (no vector plots), infinite data only, and a single T: every figure that makes sense is drawn."""
    cases = {"m3": [synthetic_run(T, m=3, snapshots=0) for T in (10, math.inf)],
             "inf": [synthetic_run(math.inf, data_seed=s, snapshots=0) for s in (0, 1)],
             "one": [synthetic_run(10, snapshots=0)]}
    for name, runs in cases.items():
        write_experiment(tmp_path / name, "t-sweep", runs)
        index = report.build_report(tmp_path / name, log=lambda m: None)
        files = {p.name for p in index.parent.iterdir()}
        assert {"t-sweep-main.png", "t-sweep-norms.png", "t-sweep-training.png"} <= files
        assert ("t-sweep-vectors.png" in files) == (name != "m3")
        assert "not drawn" not in index.read_text()


def test_training_caption_gives_each_quoted_T_its_own_init_count():
    """Presets train best-of-k only up to some T: the caption quoted the smallest T's count for the largest T too
    (a browser review saw "best of 2" beside a T = ∞ run of 1 init)."""
    from types import SimpleNamespace as NS

    from toydd.config import TrainConfig
    from toydd.experiments.t_sweep import training_finding

    reps = [NS(config=TrainConfig(T=T, init_seeds=k, steps=3000), metrics={"train_loss": tr, "test_loss": te})
            for T, k, tr, te in ((3, 2, 1.1e-8, 1.092), (math.inf, 1, 0.988, 0.9883))]
    text = training_finding(reps)
    assert "1.10e-08 / 1.092 at T=3 (best of 2 inits)" in text and "0.988 / 0.9883 at T=∞ (1 init)" in text
    assert "3,000 steps" in text


def test_experiments_that_share_runs_count_them_once_and_list_them_once(tmp_path):
    """norms draws t-sweep's runs: the page said "2 experiment(s), 2N of 2N runs complete" and showed the same
    table twice (a browser review)."""
    from report_fixtures import t_sweep_runs

    runs = t_sweep_runs(Ts=(3, 10, 100), seeds=(0,))
    write_experiment(tmp_path, "t-sweep", runs)
    write_experiment(tmp_path, "norms", runs, params={"source_experiment": "t-sweep"})
    report.build_report(tmp_path, movies=0, log=lambda m: None, dpi=50)
    html = page(tmp_path)
    assert "2 experiment(s),\n3 of 3 runs complete (experiments share runs)" in html
    assert html.count('<table class="runs">') == 1
    assert "norms: 3 complete runs of 3: the same runs as <b>t-sweep</b>, listed above." in html


def test_runs_table_leaves_out_settings_every_run_shares():
    """Six of 21 columns were constant (m, n, S, wd, steps, loss norm): said once under Configuration instead;
    a setting that varies keeps its column."""
    t = pd.DataFrame({"key": ["a", "b"], "T": [3.0, 10.0], "m": [2, 2], "n": [100, 100], "sparsity": [0.9, 0.9],
                      "weight_decay": [0.01, 0.1], "steps": [300, 300], "loss_norm": ["mean", "mean"],
                      "data_seed": [0, 0], "train_loss": [0.1, 0.2], "test_loss": [1.0, 1.1]})
    cols = [c for c, _ in report.run_columns(t)]
    assert cols[:2] == ["key", "T"] and "weight_decay" in cols and "train_loss" in cols
    assert not {"m", "n", "sparsity", "steps", "loss_norm"} & set(cols)
    assert "m" in [c for c, _ in report.run_columns(t.iloc[:1])]  # one run: nothing to compare, all shown


def test_vector_captions_name_the_model_they_read():
    """The vector plots draw one model per T; their caption quoted its numbers without saying which (a browser
    review): it names the data seed."""
    from report_fixtures import t_sweep_runs

    runs = t_sweep_runs(Ts=(3, 10), seeds=(1,))
    assert findings.find_vectors(runs).startswith("One model per T (data seed 1): the longest feature vector is at T=")
