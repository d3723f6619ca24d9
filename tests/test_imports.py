"""The package's import graph: no cycles, and no module reaches into another's private names.

Walks every module of ``src/toydd`` with the stdlib ``ast`` (imports inside functions count too: a lazy
import still ties two modules together), resolves relative imports, and fails on a cycle, naming it.
And import cost: the CLI, the experiments registry and the light commands (``--help``, ``status``, a sweep's
plan) import none of matplotlib, pandas, plotly, numba or torch (checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "toydd"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of a toydd module in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in known:
                continue
            names = [a.name for a in node.names]
            # `from . import x` imports the submodule x when there is one
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            out += [(s, []) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in known]
            if rest or not subs:
                out.append((target, rest))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    g: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {t for t, _ in _imports(name, path, known) if t != name}
        # a package's __init__ is imported with any of its submodules: not an edge back to the importer
        g[name] = deps
    return g


def _find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in g}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for d in sorted(g.get(n, ())):
            # importing a submodule runs its package's __init__ first; a package's own __init__ importing
            # its submodules is the normal shape of a package, not a cycle
            if n.startswith(d + "."):
                continue
            if color.get(d) == GREY:
                return stack[stack.index(d):] + [d]
            if color.get(d) == WHITE:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(g):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    g = _graph()
    assert "toydd.experiments.t_sweep" in g and "toydd.jobs" in g  # the walk sees the package
    cycle = _find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    mods = _modules()
    known = set(mods)
    bad = []
    for name, path in mods.items():
        for target, names in _imports(name, path, known):
            bad += [f"{name} imports {target}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, bad


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


# --- import cost: what the CLI's light commands pull in ----------------------------------------------------------

# Every `toydd` command imports the CLI and the experiments registry; drawing and training libraries cost most of a
# second to import, so they are imported where they are used (docs/ARCHITECTURE.md, "Import cost").
HEAVY = ("matplotlib", "pandas", "plotly", "numba", "torch")


def _heavy_imported(code: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_the_experiments_imports_no_drawing_or_training_library():
    assert _heavy_imported("import toydd.experiments\nimport toydd.cli") == []


def test_help_status_and_plan_import_no_drawing_or_training_library(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(FIXTURES / "store-0.1.0", store)
    code = f"""
import contextlib, io
from toydd import cli, costmodel
from toydd.experiments import experiment_names, named_experiment
for argv in (["--help"], ["status", "--help"], ["status", {str(store)!r}]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        cli.main(argv)
# the plan of every registered experiment (`sweep NAME --plan`), with a given cost model (no calibration)
model = costmodel.CostModel(a=1e-4, b=1e-8, overhead=0.1, mnist_b=1e-6, machine="m", calibrated_at=0.0, threads=1)
costmodel.format_plan(costmodel.plan([named_experiment(n, "smoke") for n in experiment_names()], {str(store)!r},
                                     model=model))
"""
    assert _heavy_imported(code) == []
