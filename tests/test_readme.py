"""The README's Python snippets run as pasted, and the package docstring's quick start too (issue 17, row 3).

Each ```python block is executed top to bottom in a fresh process whose working directory is a temporary
folder, as a reader would paste them into a new notebook: a name a block uses without defining it (``cfg``,
``activations``) fails here. The blocks are kept small by the README itself (a 3,000-step model, the smoke
preset), so this test takes seconds.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)]


def run_as_notebook(blocks: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the blocks as cells of one session; each cell's last expression is displayed as a notebook would."""
    driver = textwrap.dedent('''
        import ast, sys
        cells = %r
        ns = {"__name__": "__main__"}
        shown = []
        for cell in cells:
            tree = ast.parse(cell)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<cell>", "exec"), ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns)
                png = getattr(value, "_repr_png_", None)
                shown.append(type(value).__name__ + (" png %%d bytes" %% len(png()) if png else ""))
        print("SHOWN", shown)
    ''') % (blocks,)
    import toydd

    # The toydd under test, whatever the working directory (PYTHONPATH=src is relative).
    src = str(Path(toydd.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", driver], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def test_readme_python_blocks_run_as_pasted(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 2, "the README lost its Python examples"
    assert any("toydd.plots.fig_main" in b for b in blocks) and any("fig_vector_plots" in b for b in blocks)
    p = run_as_notebook(blocks, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    # The figure cells end in Figures that render as PNG: what a notebook shows inline.
    shown = p.stdout.split("SHOWN", 1)[1]
    assert len(re.findall(r"Figure png \d{4,} bytes", shown)) == 2, shown
    assert (tmp_path / "runs" / "x" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "smoke" / "main.png").stat().st_size > 10_000


def test_package_docstring_quick_start_runs(tmp_path):
    import toydd

    doc = toydd.__doc__
    code = textwrap.dedent(doc.split("::", 1)[1].split("\n\n", 2)[1])
    assert "toydd.train(" in code
    p = run_as_notebook([code], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
