"""Markdown tables from `toydd bench --json --kernel ...` results (BENCHMARKS.md, tree-pruned step).

    python benchmarks/tree_table.py benchmarks/results/bench_tree_m2.json [...]
"""

import json
import sys


def table(path: str) -> str:
    res = json.load(open(path))
    rows = res["rows"]
    out = [f"n = {rows[0]['n']}, m = {rows[0]['m']}; states: `{res['states']}`", "",
           "| T | state | active features | dense ms | tree ms | auto ms (ran) | speed-up tree | speed-up auto "
           "| T·n_active / tree work | peak MiB dense / tree / auto |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    key = lambda r: (r["T"], r["state"])  # noqa: E731
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), {})[r["kernel"]] = r
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    for (T, state), g in groups.items():
        d, t, a = g.get("dense"), g.get("tree"), g.get("auto")
        work = (t or {}).get("dense_pairs_over_tree_work")
        mem = " / ".join(f(x.get("peak_mib") if x else None, ".0f") for x in (d, t, a))
        out.append(f"| {T:,} | {state} | {(d or t)['n_active']:,} | {f(d and d['ms'], '.2f')} | {f(t and t['ms'], '.2f')} "
                   f"| {f(a and a['ms'], '.2f')} ({'tree' if a and a['ran_tree'] else 'dense'}) "
                   f"| {f(d and t and d['ms'] / t['ms'], '.2f')}x | {f(d and a and d['ms'] / a['ms'], '.2f')}x "
                   f"| {f(work, '.1f')} | {mem} |")
    return "\n".join(out)


if __name__ == "__main__":
    print("\n\n".join(table(p) for p in sys.argv[1:]))
