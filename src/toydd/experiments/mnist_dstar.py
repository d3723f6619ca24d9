"""``mnist-dstar``: D* of every training digit of a one-hidden-layer MLP on real MNIST (Olah's comment; Hobbahn).

Its jobs are :class:`toydd.mnist.MnistConfig` (job kind ``mnist``): a
784-512-10 ReLU MLP trained on T digits, with D* of every training and
held-out digit at checkpoints, and 1% flipped labels at some T. Figures and
their data-computed captions are :mod:`toydd.plots_mnist`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ToyddError
from ..mnist import NAME, MnistConfig, data_available, data_id
from .base import Experiment, ExperimentDef, Preset, unique_jobs

DESCRIPTION = ("D* (maximal data dimensionality) of every training digit in a one-hidden-layer MNIST MLP "
               "(Olah's comment; Hobbahn).")


@dataclass(frozen=True)
class MnistPreset:
    """The jobs of one preset: every T x seed without label noise, plus label-noise jobs at ``noise_T``."""

    name: str
    description: str
    source: str  # where the digits come from ("sample" ships with toydd; "auto" needs the extra or TOYDD_MNIST)
    Ts: tuple[int, ...]
    seeds: tuple[int, ...]
    noise_T: tuple[int, ...]  # T values that also get a label-noise job
    noise_fraction: float
    base: dict[str, Any]

    def configs(self, data: str) -> list[MnistConfig]:
        out = [MnistConfig(T=T, seed=s, data=data, **self.base) for T in self.Ts for s in self.seeds]
        out += [MnistConfig(T=T, seed=s, label_noise=max(1, round(self.noise_fraction * T)), data=data, **self.base)
                for T in self.noise_T for s in self.seeds]
        return out


PRESETS: dict[str, MnistPreset] = {
    "smoke": MnistPreset(
        name="smoke", description="the 1,000 digits shipped with toydd, a 64-unit MLP, 4 epochs: seconds, for CI",
        source="sample", Ts=(300, 1_000), seeds=(0,), noise_T=(1_000,), noise_fraction=0.02,
        base=dict(hidden=64, epochs=4, batch_size=64, checkpoints=(0, 1, 4), held_out=200, top_images=16),
    ),
    "quick": MnistPreset(
        # Measured (`toydd sweep mnist-dstar --preset quick`, machine A of BENCHMARKS.md, 2 cores *shared* with
        # other work at load ~10): 7 min 20 s wall clock, 58 s of CPU, peak RSS 1.2 GB. Shows max/median D* of
        # 2x, 11x, 43x at T = 1k, 5k, 20k: each time the T/rank ceiling, reached by one digit that alone fires a
        # hidden unit; robust D* (without such units) 1.6-4.1x. ~100x needs T ~ 60,000: the paper preset.
        name="quick", description=("784-512-10 MLP on real MNIST, T = 1,000 / 5,000 / 20,000, 15 epochs, "
                                   "1% flipped labels at T = 5,000; 7 min on 2 shared CPU cores (58 s of CPU)"),
        source="auto", Ts=(1_000, 5_000, 20_000), seeds=(0,), noise_T=(5_000,), noise_fraction=0.01,
        base=dict(hidden=512, epochs=15, batch_size=128, checkpoints=(0, 1, 5, 15), held_out=5_000),
    ),
    "paper": MnistPreset(
        # Not measured as a whole: ~35 min of CPU on one core by extrapolation from the quick preset (12 ms a
        # step) and the T = 60,000 job of BENCHMARKS.md.
        name="paper", description=("784-512-10 MLP on all of MNIST: T = 1,000 ... 60,000, 2 seeds, 50 epochs, "
                                   "1% flipped labels at every T"),
        source="auto", Ts=(1_000, 5_000, 20_000, 60_000), seeds=(0, 1), noise_T=(1_000, 5_000, 20_000, 60_000),
        noise_fraction=0.01,
        base=dict(hidden=512, epochs=50, batch_size=128, checkpoints=(0, 1, 3, 10, 30, 50), held_out=10_000),
    ),
}


def get_preset(name: str | None) -> MnistPreset:
    """The mnist-dstar jobs of a preset (None: paper)."""
    name = "paper" if name is None else name
    try:
        return PRESETS[name]
    except KeyError:
        raise ToyddError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None




def experiment(preset: str | None = None, source: str | os.PathLike | None = None,
               configs: list[MnistConfig] | None = None) -> Experiment:
    """The mnist-dstar experiment at a preset, on ``source``'s digits (default: the preset's), or with ``configs``.

    Resolving the source names a missing extra or a missing file before anything is written.
    """
    p = get_preset(preset)
    src = str(source) if source is not None else p.source
    did = data_id(src)  # fails fast, naming the extra, if the data is missing
    jobs = configs if configs is not None else p.configs(did)
    return Experiment(name=NAME, description=f"{DESCRIPTION} {p.description}", preset=p.name,
                      configs=unique_jobs(jobs), kind="mnist",
                      params={"data": did, "source": src, "Ts": list(p.Ts), "noise_fraction": p.noise_fraction})


def build(p: Preset) -> tuple[list[MnistConfig], dict[str, Any]]:
    e = experiment(p.name)
    return e.configs, e.params


def report(ctx, exp) -> None:
    ctx.attempt(f"{exp.name}: D* of MNIST digits", lambda: draw(ctx, exp))


def draw(ctx, exp) -> None:
    from .. import plots_mnist  # lazy: drawing stays out of CLI start-up (experiments/__init__)
    from ..sections import Section

    name = exp.name
    runs = ctx.results.runs(name)
    planned = exp.n_keys
    if not runs:
        ctx.notes.append(f"{name}: no complete run yet ({planned} planned); nothing to draw.")
        return
    ctx.log(f"report: {name} ({len(runs)} MNIST runs)")
    P = plots_mnist
    clean, noisy = P.clean_runs(runs), P.noisy_runs(runs)
    main = clean or runs
    ctx.add(Section(f"{name}-hist", f"{name}: D* of every training digit, per T and checkpoint",
                    [ctx.png(P.fig_histograms(main), f"{name}-hist.png")], P.PAPER["hist"], P.find_outliers(main)))
    ctx.add(Section(f"{name}-top", f"{name}: highest-D* digits beside typical ones",
                    [ctx.png(P.fig_top_digits(main + noisy), f"{name}-top.png")], P.PAPER["top"],
                    P.find_top_digits(main + noisy)))
    ctx.add(Section(f"{name}-step", f"{name}: D* against training step",
                    [ctx.png(P.fig_vs_step(main), f"{name}-step.png")], P.PAPER["step"], P.find_vs_step(main)))
    if any(len(r.arrays["held_out_dstar"][-1]) for r in main):
        ctx.add(Section(f"{name}-held-out", f"{name}: training vs held-out digits",
                        [ctx.png(P.fig_train_vs_held_out(main), f"{name}-held-out.png")], P.PAPER["held"],
                        P.find_held_out(main)))
    if noisy:
        ctx.add(Section(f"{name}-label-noise", f"{name}: does D* single out flipped labels?",
                        [ctx.png(P.fig_label_noise(noisy), f"{name}-label-noise.png")], P.PAPER["noise"],
                        P.find_label_noise(noisy)))
    if len(runs) < planned:
        ctx.notes.append(f"{name}: {len(runs)} of {planned} runs complete; the figures show those.")


def _in_reproduce(p: Preset) -> bool:
    # smoke: the digits shipped with toydd; paper: only where the full MNIST is installed; quick: t-sweep only.
    return p.name != "quick" and data_available(get_preset(p.name).source)


DEF = ExperimentDef(NAME, DESCRIPTION, build, report, kind="mnist", paper_order=90, in_reproduce=_in_reproduce,
                    reproduce_rank=80)

