"""The paper preset's t-sweep (same jobs, same keys as `toydd sweep t-sweep --preset paper`) for one data seed,
every T up to 100,000 and T = inf, smallest T first: the main figure at paper scale on a CPU (docs/PAPER_SCALE.md).

    python examples/paper_tsweep_subset.py runs/paper-tsweep            # run, or resume (finished jobs are kept)
    python examples/paper_tsweep_subset.py runs/paper-tsweep --plan     # what is left and how long, here

`toydd sweep` starts with the costliest batch; this grows the subset one T at a time instead, so the left of the
figure is there early and an interruption loses at most the job in flight. The store is an ordinary toydd results
directory: `toydd status`, `toydd table`, `toydd report` read it, and `toydd sweep t-sweep --preset paper` on it
later trains only the jobs this left out (the other data seeds, T = 200,000 and 500,000).
"""

import argparse
import math
import sys

from toydd import costmodel, sweep
from toydd.errors import ToyddError
from toydd.experiments import Experiment, named_experiment
from toydd.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--max-T", type=float, default=100_000)
    ap.add_argument("--data-seeds", type=int, default=1)
    ap.add_argument("--plan", action="store_true")
    ap.add_argument("--preset", default="paper", help="the t-sweep preset to take the subset of (tests use smoke)")
    a = ap.parse_args()
    if not (a.max_T >= 1):  # (NaN too)
        ap.error(f"--max-T must be a number of points >= 1, got {a.max_T}")
    if a.data_seeds < 1:
        ap.error(f"--data-seeds must be at least 1, got {a.data_seeds}")
    try:
        run(a)
    except ToyddError as e:  # bad input: one line and status 2, like the toydd command
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run(a: argparse.Namespace) -> None:
    e = named_experiment("t-sweep", a.preset)
    keep = [c for c in e.configs if c.data_seed < a.data_seeds and (math.isinf(c.T) or c.T <= a.max_T)]
    desc = e.description + f" (subset: {a.data_seeds} data seed(s), T <= {a.max_T:,.0f} and inf)"

    def subset(configs):
        return Experiment(name="t-sweep", description=desc, preset=a.preset, configs=configs, params=e.params,
                          kind="toy")

    if a.plan:
        print(costmodel.format_plan(costmodel.plan([subset(keep)], a.out)))
        return
    Ts = sorted({c.T for c in keep}, key=lambda t: 8_192 if math.isinf(t) else t)  # T = inf costs like 8,192 points
    # Each pass writes the experiment's manifest with the jobs it names, and the report reads only those: so every
    # pass also names the jobs already finished in the store (a second data seed grown from small T must not drop
    # the first seed's large T from the manifest, as it once did).
    store = Store(a.out)
    finished = [c for c in e.configs if store.is_done(c.key())]  # any T, any data seed: this pass's subset or not
    for i, T in enumerate(Ts):
        part = [c for c in keep if c.T in Ts[: i + 1]]
        named = {c.key() for c in part}
        part += [c for c in finished if c.key() not in named]
        print(f"T = {T}:", sweep.run_sweep(subset(part), a.out, progress=False), flush=True)


if __name__ == "__main__":
    main()
