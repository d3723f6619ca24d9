"""The ``toydd`` command.

Every subcommand is a thin layer over the Python API. Bad input raises
:class:`ToyddError` (or a usage error from the parser) and becomes one line
``error: ...`` on stderr with exit status 2 -- never a traceback. Anything
else is one line too (status 1, the traceback in a log file); a training
that diverged is status 3 (see ``main`` and docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

try:  # typer >= 0.24 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from .config import TrainConfig, checkpoint_seconds, parse_T
from .experiments import experiment_names
from .errors import ToyddError, one_line

class _ConventionalHelp:
    """Conventional help: flags without a ``<bool>`` type, arguments as ``RUN_DIR``.

    Typer's rich help prints a ``<bool>`` type beside every flag (``--json``,
    even ``--help``) though a flag takes no value, and writes a required
    argument as ``{run_dir}`` in the usage line. An empty metavar hides the
    former; :class:`_Command` rebuilds the usage line click-style
    (``[OPTIONS] RUN_DIR``).
    """

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if isinstance(p, typer.core.TyperOption) and p.is_flag and p.metavar is None:
                p.metavar = ""
            elif isinstance(p, typer.core.TyperArgument) and p.metavar is None:
                p.metavar = p.name.upper()
        return params


class _Group(_ConventionalHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Superposition, memorization and double descent in toy models.")


class _Command(_ConventionalHelp, typer.core.TyperCommand):
    """A subcommand with conventional help and the usage line ``toydd show [OPTIONS] RUN_DIR``."""

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if isinstance(p, typer.core.TyperArgument):
                pieces.append(p.metavar if p.required else f"[{p.metavar}]")
        return pieces


# Exit statuses (docs/RELIABILITY.md). Each non-zero one comes with one line `error: ...` on stderr.
EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug or an environment failure: the full traceback goes to a log file named on the line
EXIT_BAD_INPUT = 2  # ToyddError or a usage error: the line names the problem
EXIT_TRAIN_FAILED = 3  # `train` ran, but every init seed hit a non-finite loss (the run is still saved, marked failed)
EXIT_INTERRUPTED = 130  # Ctrl-C


@app.command()
def train(
    n: Optional[int] = typer.Option(None, "--n", help="features (default 10,000, or the data file's)"),
    m: int = typer.Option(2, "--m", help="hidden dimensions"),
    T: Optional[str] = typer.Option(None, "--T", help="training points, or 'inf' (default 1,000, or the data file's)"),
    sparsity: float = typer.Option(0.999, "--sparsity", "-S", help="P(feature = 0)"),
    steps: int = typer.Option(50_000, "--steps", help="full-batch AdamW steps"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="warm-up steps (default 5% of steps)"),
    lr: float = typer.Option(1e-3, "--lr", help="peak learning rate (warm-up, then half-cosine to 0)"),
    weight_decay: float = typer.Option(1e-2, "--weight-decay", help="decoupled (AdamW) weight decay on W and b"),
    eps: float = typer.Option(1e-8, "--eps", help="Adam eps (in float32: eps, x n for --loss-norm mean, at least 1.2e-38)"),
    loss_norm: str = typer.Option("mean", "--loss-norm", help="mean (over T*n, torch MSELoss: the paper's figures; default) | sum (over features, the paper's text: Jermyn's replication)"),
    init_scale: float = typer.Option(1.0, "--init-scale", help="multiplies the Xavier std (Xavier init only)"),
    bias_init: float = typer.Option(0.0, "--bias-init", help="initial value of every b_i (Xavier init only)"),
    warmup_from_zero: bool = typer.Option(False, "--warmup-from-zero", help="warm-up lr*s/W (first step lr 0)"),
    init_method: str = typer.Option("xavier", "--init-method", help="xavier | construction (the explicit T-gon solution)"),
    data_seed: int = typer.Option(0, "--data-seed", help="which synthetic training set"),
    init_seeds: int = typer.Option(1, "--init-seeds", help="best-of-k init seeds"),
    init_seed: int = typer.Option(0, "--init-seed", help="first init seed"),
    test_size: int = typer.Option(10_000, "--test-size", help="fresh test points (shared by every model of one n, S)"),
    importance_decay: float = typer.Option(1.0, "--importance-decay", help="I_i = decay**i"),
    untied: bool = typer.Option(False, "--untied", help="untie W_up from W^T"),
    data: Optional[Path] = typer.Option(None, "--data", help=".npz with X (dense) or CSR arrays [, X_test]"),
    init: Optional[Path] = typer.Option(None, "--init", help="start from W, b[, W_up] in .safetensors/.npz"),
    snapshots: int = typer.Option(32, "--snapshots", help="log-spaced parameter snapshots to keep"),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | auto"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the run directory here (a killed training resumes where it was: run the same command again)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the toydd run already at --out"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Train one model (best of --init-seeds) and report its metrics."""
    from . import data as data_mod
    from .storage import (beside_run, check_run_target, load_params, remove_checkpoint, save_run_making_room,
                          to_jsonable, write_error)
    from .store import JobLock
    from .training import check_params, train as train_fn

    if data is not None:
        X, _ = data_mod.load_npz(data)
        if n is not None and n != X.n:
            raise ToyddError(f"{data}: data has {X.n} features but --n is {n}")
        if T is not None and parse_T(T) != X.T:
            raise ToyddError(f"{data}: data has {X.T} points but --T is {T}")
        n, Tv = X.n, X.T
    else:
        Tv = parse_T(T) if T is not None else 1_000
    n = 10_000 if n is None else n
    cfg = TrainConfig(n=n, m=m, T=Tv, sparsity=sparsity, steps=steps, warmup=warmup, lr=lr,
                      weight_decay=weight_decay, data_seed=data_seed, init_seeds=init_seeds,
                      init_seed_base=init_seed, test_size=test_size, importance_decay=importance_decay,
                      tied=not untied, data_path=str(data) if data else None,
                      init_path=str(init) if init else None, snapshots=snapshots, device=device, eps=eps,
                      loss_norm=loss_norm, init_scale=init_scale, bias_init=bias_init,
                      warmup_from_zero=warmup_from_zero, init_method=init_method)
    if init is not None:  # fail before training, not after
        check_params(load_params(init), m, n, cfg.tied, str(init))
    lock = target = None
    if out is not None:  # before training: not writable, not ours to replace, ...
        target = check_run_target(out, overwrite)  # absolute and normalized (an --out of x/.. is x's parent)
        checkpoint_seconds()
        # One training at a time writes a given --out (else the later save would silently replace the other's).
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(e, target) from None
        lock = JobLock(beside_run(target, "lock"), f"--out {out}")
        if not lock.acquire(blocking=False):
            raise ToyddError(f"--out {out}: another toydd train is writing it right now; wait for it to finish "
                             "or name another directory")
    from .progress import ProgressBar

    # With --out, the training's state is saved beside it every ~5 minutes: the same command after a kill
    # resumes there (and ends with the same run, bit for bit); removed once the run is saved.
    state = beside_run(target, "resume.safetensors") if target is not None else None
    try:
        with ProgressBar(True, f"train n={n} m={m} T={Tv}", cfg.steps, unit="steps") as bar:
            result = train_fn(cfg, progress=bar.advance, checkpoint=state)
        if target is not None:
            save_run_making_room(target, result, state)
            remove_checkpoint(state)
    finally:
        if lock is not None:
            lock.release(remove=True)
    if as_json:
        mt = result.metrics
        obj = {k: mt[k] for k in ("train_loss", "test_loss", "test_loss_se", "weight_norm", "bias_norm",
                                  "feature_dims_top", "max_feature_dim", "represented_features", "regime",
                                  "steps", "seconds", "failed_step", "best_init_seed", "instances")}
        obj["data_dims"] = result.arrays["data_dims"].astype(float).tolist()
        obj["tgon_dim"] = mt["tgon_dim"]
        obj["config"] = cfg.to_dict()
        if out is not None:
            obj["run_dir"] = str(out)
        sys.stdout.write(json.dumps(to_jsonable(obj)) + "\n")
    else:
        _print_summary(result)
    failed = result.metrics.get("failed_step")
    if failed is not None:  # every init seed diverged: a result, but not a trained model
        kept = f"saved, marked failed, with its last finite parameters in {out}" if out is not None else "not saved"
        typer.echo(f"error: training failed: non-finite loss or parameters at step {failed} "
                   f"(every init seed; try a smaller --lr or --weight-decay); the run is {kept}", err=True)
        raise typer.Exit(EXIT_TRAIN_FAILED)


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory (DIR/runs/<key> of a results directory)")) -> None:
    """Print a readable summary of a run directory (a toy model's or an MNIST MLP's)."""
    from .jobs import MNIST, kind_of_run

    _check_not_a_store(Path(run_dir))
    kind = kind_of_run(run_dir)
    result = kind.load_run(run_dir, arrays=True, history=False)  # verifies first: names a missing or bad file
    if kind is MNIST:
        _print_mnist_summary(result)
    else:
        _print_summary(result)


def _print_mnist_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    c, mt = result.config, result.metrics
    con = Console()
    con.print(f"[bold]toydd mnist-dstar run[/bold]  {c.label()}, hidden={c.hidden}, {c.epochs} epochs, "
              f"batch {c.batch_size}, lr {c.lr:g}, data {c.data}" + (f"  ({result.path})" if result.path else ""))
    t = Table(show_header=False, box=None)
    for label, key, spec in (("train accuracy", "train_acc", ".4f"), ("held-out accuracy", "held_out_acc", ".4f"),
                             ("rank of H", "rank", "d"), ("dead units", "dead_units", "d"),
                             ("D* median", "dstar_median", ".4g"), ("D* p99 / median", "dstar_p99_ratio", ".3g"),
                             ("D* max / median", "dstar_max_ratio", ".3g"),
                             ("robust D* max / median", "dstar_robust_max_ratio", ".3g"),
                             ("flipped-label AUC", "flip_auc", ".3f"), ("time", "seconds", ".1f")):
        if key in mt:
            t.add_row(label, _num(mt[key], spec))
    con.print(t)


def _check_not_a_run(path: Path) -> None:
    """The converse of _check_not_a_store: a run directory given where a results directory belongs."""
    if (path / "metrics.json").is_file() and (path / "config.json").is_file() and not (path / "runs").is_dir():
        raise ToyddError(f"{path} is a run directory (one trained model), not a results directory: "
                         f"see it with toydd show {path}")


def _check_not_a_store(path: Path) -> None:
    """A results directory given where a run directory belongs: say what it is and where its runs are."""
    if (path / "metrics.json").exists() or not ((path / "runs").is_dir() or (path / "experiments").is_dir()):
        return
    from .store import Store

    try:
        keys = sorted(p.name for p in (path / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        keys = []
    good = next((k for k in keys if Store(path).is_done(k)), None)  # an example that shows (not a corrupt run)
    example = f" (e.g. {path / 'runs' / good})" if good else ""
    raise ToyddError(f"{path} is a results directory, not a run directory: show one of its runs with "
                     f"toydd show {path}/runs/<key>{example}; list them with toydd table {path}, "
                     f"or see its progress with toydd status {path}")


def _num(v, spec: str) -> str:
    """A metric for display: metrics.json stores non-finite floats as "nan"/"inf" strings, and None for n/a."""
    if v is None:
        return "-"
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


_SHOWN_METRICS = ("regime", "train_loss", "test_loss", "test_loss_se", "weight_norm", "bias_norm",
                  "represented_features", "feature_dims_top", "best_init_seed", "instances", "seconds")


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    import numpy as np

    c, mt = result.config, result.metrics
    # Every field the summary reads, checked before anything is printed: a metrics.json edited without them
    # (its checksum dropped too, so it reads as an old run) is one error line, not half a summary and a KeyError.
    missing = [k for k in _SHOWN_METRICS if k not in mt]
    if missing:
        raise ToyddError(f"{result.path or 'the run'}/metrics.json lacks {', '.join(missing)}: edited, or not "
                         "written by toydd, so it cannot be shown")
    con = Console()
    T = "inf" if c.infinite else str(int(c.T))
    con.print(f"[bold]toydd run[/bold]  n={c.n} m={c.m} T={T} S={c.sparsity} steps={c.steps} "
              f"wd={c.weight_decay} {'tied' if c.tied else 'untied'}"
              + (f"  ({result.path})" if result.path else ""))
    recipe = ("mean over T·n (the paper's figures)" if c.loss_norm == "mean" else "summed (the paper's text)")
    con.print(f"recipe: loss_norm={c.loss_norm}, {recipe}; Adam eps {c.eps:g} (effective on the summed loss "
              f"{c.adam_eps:g}), lr {c.lr:g}" + (f", init {c.init_method}" if c.init_method != "xavier" else ""))
    if mt.get("failed_step") is not None:
        con.print(f"[red]FAILED: non-finite loss or parameters at step {mt['failed_step']}[/red]")
    t = Table(show_header=False, box=None)
    t.add_row("regime", f"[bold]{mt['regime']}[/bold]")
    t.add_row("train loss", _num(mt['train_loss'], '.6g'))
    t.add_row("test loss", f"{_num(mt['test_loss'], '.6g')} ± {_num(mt['test_loss_se'], '.2g')}  (all-zeros model: 1.0)")
    t.add_row("||W||_F, ||b||", f"{_num(mt['weight_norm'], '.4g')}, {_num(mt['bias_norm'], '.4g')}")
    t.add_row("represented features", f"{mt['represented_features']} with ||W_i|| > 0.5")
    t.add_row("top D_f", ", ".join(_num(v, '.3f') for v in mt["feature_dims_top"][:6]))
    dd = result.arrays.get("data_dims")
    if dd is not None and len(dd):
        t.add_row("D_X", f"mean {np.mean(dd):.4g}, median {np.median(dd):.4g}, min {np.min(dd):.3g}, "
                  f"max {np.max(dd):.3g}  (T-gon m/T = {c.m / c.T:.4g})")
        if len(dd) <= 12:
            t.add_row("D_X per point", ", ".join(f"{v:.3f}" for v in dd))
    if mt.get("construction_train_loss") is not None:
        t.add_row("explicit T-gon", f"train loss {_num(mt['construction_train_loss'], '.4g')} "
                  f"(gap {_num(mt['optimization_gap'], '+.3g')}: > 0 means training missed a better memorizing solution)")
    t.add_row("best init seed", f"{mt['best_init_seed']} of {len(mt['instances'])}")
    batch = mt.get("batch_size") or 1  # runs written before batch_size was recorded trained alone or did not say
    shared = f" (for a batch of {batch} models trained together)" if batch > 1 else ""
    t.add_row("training time", f"{_num(mt['seconds'], '.1f')} s{shared}")
    con.print(t)
    if len(mt["instances"]) > 1:
        it = Table("init seed", "train loss", "test loss", "failed at")
        for r in mt["instances"]:
            it.add_row(str(r["init_seed"]), _num(r['train_loss'], '.6g'), _num(r['test_loss'], '.6g'),
                       "-" if r["failed_step"] is None else str(r["failed_step"]))
        con.print(it)


@app.command()
def sweep(
    name: str = typer.Argument(..., metavar="EXPERIMENT", help=f"an experiment ({', '.join(experiment_names())}) "
                                         "or a TOML/YAML experiment file"),
    out: Path = typer.Option(..., "--out", help="results directory (created; resumed if it exists)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="smoke | quick | paper"),
    executor: str = typer.Option("local", "--executor", help="local | process | ray"),
    jobs: int = typer.Option(1, "--jobs", help="worker processes (process) or tasks in flight (ray)"),
    plan: bool = typer.Option(False, "--plan", help="list what would run and how long it would take here; train nothing"),
    as_json: bool = typer.Option(False, "--json", help="with --plan: one JSON object on stdout"),
) -> None:
    """Run (or resume) an experiment as a sweep into the results directory --out."""
    from . import sweep as sweep_mod

    if plan:
        _print_plan([sweep_mod.get_experiment(name, preset)], out, executor, jobs, as_json)
        return

    summary = sweep_mod.run_sweep(name, out, preset=preset, executor=executor, jobs=jobs, progress=True)
    typer.echo(str(summary), err=True)
    if summary.failed:
        typer.echo(f"error: {len(summary.failed)} job(s) failed (see {out}/failed/); re-run to retry them", err=True)
        raise typer.Exit(1)


def _print_plan(exps: list, out: Path, executor: str, jobs: int, as_json: bool) -> None:
    from . import costmodel
    from . import sweep as sweep_mod

    sweep_mod.check_executor(executor, jobs)
    sweep_mod.check_sweep_target(out)  # a plan for an --out the sweep would refuse would promise work it won't do
    p = costmodel.plan(exps, out, executor, jobs, model=costmodel.load(log=lambda m: typer.echo(m, err=True)))
    typer.echo(json.dumps(p, indent=2) if as_json else costmodel.format_plan(p))


@app.command()
def status(out: Path = typer.Argument(..., help="results directory"),
           as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """Show done / running / failed / pending jobs of a results directory."""
    from . import sweep as sweep_mod

    _check_not_a_run(Path(out))
    st = sweep_mod.status(out)
    typer.echo(json.dumps(st, indent=2, default=str) if as_json else sweep_mod.format_status(st))


@app.command()
def table(out: Path = typer.Argument(..., help="results directory"),
          experiment: Optional[str] = typer.Option(None, "--experiment",
                                                   help="only the runs of this experiment (default: all)")) -> None:
    """One CSV row per trained model (config + metrics) on stdout."""
    from . import sweep as sweep_mod

    _check_not_a_run(Path(out))
    sys.stdout.write(csv_text(sweep_mod.load_table(out, experiment)))


def csv_text(df) -> str:
    """A run table as CSV with integers written as integers.

    ``load_table`` keeps ``T`` a float (``inf`` for infinite data), and pandas
    turns an integer column with a missing value (``warmup``, ``failed_step``
    unset for some runs) into floats: written as-is they read ``300.0``. ``T``
    becomes an integer or ``inf``; a float column whose values are all whole
    numbers and that has gaps (the mark of such an upcast) becomes an integer
    column with empty cells.
    """
    import math

    import pandas as pd

    df = df.copy()
    if "T" in df.columns:
        df["T"] = pd.Series([int(v) if isinstance(v, float) and math.isfinite(v) and v == int(v) else v
                             for v in df["T"]], index=df.index, dtype=object)  # object: ints beside inf
    for col in df.columns:
        if col == "T" or df[col].dtype.kind != "f":
            continue
        vals = df[col].dropna()
        if len(vals) < len(df[col]) and len(vals) and ((vals == vals.round()) & vals.abs().lt(2**53)).all():
            df[col] = df[col].astype("Int64")
    return df.to_csv(index=False)


@app.command()
def report(out: Path = typer.Argument(..., help="results directory"),
           movies: int = typer.Option(3, "--movies", min=0, help="training movies (GIF) per t-sweep; 0 for none"),
           dpi: int = typer.Option(150, "--dpi", min=1, max=1200, help="PNG resolution")) -> None:
    """Write OUT/report/index.html (self-contained) and one PNG per figure."""
    from . import report as report_mod

    if not Path(out).is_dir():
        raise ToyddError(f"results directory not found: {out}")
    _check_not_a_run(Path(out))
    path = report_mod.build_report(out, movies=movies, dpi=dpi)
    typer.echo(str(path))


@app.command()
def reproduce(
    preset: str = typer.Option("quick", "--preset", help="smoke | quick | paper"),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", help="results directory"),
    executor: str = typer.Option("local", "--executor", help="local | process | ray"),
    jobs: int = typer.Option(1, "--jobs", help="worker processes (process) or tasks in flight (ray)"),
    movies: int = typer.Option(3, "--movies", min=0, help="training movies (GIF) per t-sweep in the report"),
    show_plan: bool = typer.Option(False, "--plan", help="list what would run and how long it would take here; "
                                                         "train nothing"),
    as_json: bool = typer.Option(False, "--json", help="with --plan: one JSON object on stdout"),
) -> None:
    """Run every sweep of a preset (resuming if partly done), then the report."""
    from . import experiments
    from . import report as report_mod
    from . import sweep as sweep_mod

    plan = experiments.reproduce_plan(preset)
    if show_plan:
        _print_plan([experiments.named_experiment(name, preset) for name in plan], out, executor, jobs, as_json)
        return
    sweep_mod.check_sweep_target(out)  # before hours of sweeps: --out writable, ours,
    report_mod.check_report_dir(out)  # and a report/ there that the report may replace
    failed = 0
    for name in plan:
        typer.echo(f"== {name} ({preset})", err=True)
        summary = sweep_mod.run_sweep(name, out, preset=preset, executor=executor, jobs=jobs, progress=True)
        typer.echo(str(summary), err=True)
        failed += len(summary.failed)
    path = report_mod.build_report(out, movies=movies)
    typer.echo(str(path))
    if failed:
        typer.echo(f"error: {failed} job(s) failed (see {out}/failed/); re-run to retry them", err=True)
        raise typer.Exit(1)


@app.command()
def bench(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    T: Optional[list[str]] = typer.Option(None, "--T", help="T values (default 100, 1000, 10000)"),
    n: Optional[int] = typer.Option(None, "--n", help="features (default 10,000; with --states: the file's)"),
    m: Optional[int] = typer.Option(None, "--m", help="hidden dimensions (default 2; with --states: the file's)"),
    reference_max_T: Optional[int] = typer.Option(None, "--reference-max-T", help="without --kernel: skip the "
                                                  "dense reference above this T (default 10,000)"),
    seconds: float = typer.Option(2.0, "--seconds", help="time budget per measurement"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="dense-part kernels to compare instead of the "
                                         "reference, comma-separated: auto, dense, tree (e.g. dense,tree)"),
    states: Optional[str] = typer.Option(None, "--states", help="with --kernel: time the snapshots of a saved run "
                                         "(benchmarks/tree_states.py .npz or a run's history.safetensors)"),
    state_steps: Optional[str] = typer.Option(None, "--state-steps", help="with --states: snapshot steps, "
                                              "comma-separated (default: all)"),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="peak memory per row (a child process each)"),
) -> None:
    """Time one training step against the dense-autograd reference, in this process."""
    from . import bench as bench_mod

    def values(option: str, given: str | list[str] | None) -> list[str] | None:
        """A comma list (or repeated option) as its values; None if not given; given but empty is an error."""
        if given is None:
            return None
        out = [x.strip() for v in ([given] if isinstance(given, str) else given) for x in v.split(",") if x.strip()]
        if not out:
            raise ToyddError(f"{option}: no value given")
        return out

    T = values("--T", T) if T else None  # --T 1000,10000 or --T 1000 --T 10000
    kernels = values("--kernel", kernel)
    # An option that cannot apply is a mistake to point out, not something to ignore.
    if states is not None and kernels is None:
        raise ToyddError("--states applies only with --kernel (the kernel scan)")
    if state_steps is not None and states is None:
        raise ToyddError("--state-steps applies only with --states")
    if reference_max_T is not None and kernels is not None:
        raise ToyddError("--reference-max-T applies only without --kernel (the kernel scan times no reference)")
    _check_bench_sizes(n or 0, m or 0, [parse_T(t) for t in T] if T else [], seconds)
    if kernels is not None:
        Ts = [parse_T(t) for t in T] if T else [1_000, 10_000, 100_000]
        given = None if state_steps is None else values("--state-steps", state_steps)
        try:
            steps = None if given is None else [int(x) for x in given]
        except ValueError:
            raise ToyddError(f"--state-steps must be comma-separated integers, got {state_steps!r}") from None
        res = bench_mod.run_kernels(n=n, m=m, Ts=Ts, kernels=kernels, states=states,
                                    state_steps=steps, seconds=seconds, memory=memory)
        if as_json:
            sys.stdout.write(json.dumps(res) + "\n")
        else:
            bench_mod.print_kernel_table(res)
        return
    Ts = [parse_T(t) for t in T] if T else [100, 1_000, 10_000]  # bench.run rejects inf
    given = {k: v for k, v in (("n", n), ("m", m), ("reference_max_T", reference_max_T)) if v is not None}
    res = bench_mod.run(Ts=Ts, seconds=seconds, memory=memory, **given)  # (bench.run's defaults for the rest)
    if as_json:
        sys.stdout.write(json.dumps(res) + "\n")
    else:
        bench_mod.print_table(res)


BENCH_LIMITS = {"n": 10**8, "m": 1024, "T": 10**8}  # beyond these one step does not fit in any machine's memory


def _check_bench_sizes(n: int, m: int, Ts: list, seconds: float) -> None:
    """Sizes too large for any machine are one error line (exit 2), never an OverflowError from numpy.

    (Zero, negative, infinite and NaN values are refused by ``bench.run`` itself, with its own words.)
    """
    for name, v in (("--n", n), ("--m", m)):
        if v > BENCH_LIMITS[name[2:]]:
            raise ToyddError(f"{name} must be at most {BENCH_LIMITS[name[2:]]:,}, got {v}")
    for T in Ts:
        if T > BENCH_LIMITS["T"] and T != float("inf"):
            raise ToyddError(f"--T must be at most {BENCH_LIMITS['T']:,} points, got {T}")


# Every subcommand, whoever declares it, gets the conventional help (typer has no app-wide command class).
for _info in app.registered_commands:
    if _info.cls in (None, typer.core.TyperCommand):
        _info.cls = _Command


def _log_dir_candidates() -> list[Path]:
    import os
    import tempfile

    out = []
    if os.environ.get("TOYDD_LOG_DIR"):
        out.append(Path(os.environ["TOYDD_LOG_DIR"]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    out += [Path(cache) / "toydd", Path(tempfile.gettempdir()) / "toydd-logs"]
    return out


def _write_crash_log(exc: BaseException, argv: list[str] | None, caught_warnings: list) -> Path | None:
    """The full traceback (and the warnings seen before it) in a log file; None if nowhere is writable."""
    import datetime
    import os
    import platform
    import traceback

    from . import __version__

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [f"toydd {__version__}, python {platform.python_version()}, {platform.platform()}",
             f"argv: {sys.argv[1:] if argv is None else list(argv)}", ""]
    lines += [f"warning: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught_warnings]
    text = "\n".join(lines) + "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for d in _log_dir_candidates():
        try:
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"error-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> None:
    """The console script: every failure is one ``error: ...`` line on stderr, never a traceback.

    Exit statuses: 0 ok, 1 unexpected error (the line names a log file with the
    traceback), 2 bad input, 3 trained but failed, 130 interrupted.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        # Warnings are held back: on success they are shown after the command's
        # output; on failure the one error line stands alone (they go to the log).
        code, message = _run_app(argv, caught)
    if code == EXIT_OK:  # outside the block: inside it, showwarning is the recorder
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if message:
        try:
            print(message, file=sys.stderr)
        except Exception:  # stderr closed: nothing more to say
            pass
    sys.exit(code)


def _run_app(argv: list[str] | None, caught: list) -> tuple[int, str | None]:
    """Run the typer app; (exit status, the error line or None)."""
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="toydd")
    except ToyddError as e:
        return EXIT_BAD_INPUT, f"error: {one_line(e)}"
    except click_exc.NoArgsIsHelpError:  # help was printed
        return EXIT_BAD_INPUT, "error: missing command (see the list above)"
    except click_exc.UsageError as e:
        return EXIT_BAD_INPUT, f"error: {one_line(e.format_message())}"
    except click_exc.ClickException as e:
        return EXIT_BAD_INPUT, f"error: {one_line(e.format_message())}"
    except typer.Abort:  # EOF at a prompt
        return EXIT_INTERRUPTED, "error: aborted"
    except typer.Exit as e:
        return e.exit_code, None
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED, "error: interrupted"
    except SystemExit:
        raise
    except BaseException as e:  # a bug, or the machine (out of memory, disk, ...): never a traceback
        path = _write_crash_log(e, argv, caught)
        where = f"full traceback in {path}" if path else "no log file could be written"
        what = one_line(e)[:300] or "(no message)"
        if isinstance(e, MemoryError):
            return EXIT_UNEXPECTED, f"error: out of memory (try a smaller n, T or test size; {where})"
        return EXIT_UNEXPECTED, (f"error: unexpected {type(e).__name__}: {what} "
                                 f"(please report this at the toydd issue tracker; {where})")
    # Non-standalone typer returns the status of an Exit raised inside a command, and turns Ctrl-C into 130.
    if isinstance(rc, int) and not isinstance(rc, bool) and rc:
        return rc, ("error: interrupted" if rc == EXIT_INTERRUPTED else None)
    return EXIT_OK, None


if __name__ == "__main__":
    main()
