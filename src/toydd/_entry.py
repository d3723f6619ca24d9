"""The console script's entry point (``toydd``, ``python -m toydd``): Ctrl-C at any moment is one line.

The command's own imports (NumPy, typer, rich: ~0.3 s) run before ``cli.main`` can catch anything, so a
Ctrl-C in that window used to print a Python traceback. This module imports nothing but ``sys`` (and the
package's ``__init__``, which imports nothing either), so the whole command runs inside its ``try``. What
remains outside is Python's own start and pip's wrapper script (its ``import re``: ~20-30 ms).
"""

import sys


def main() -> None:
    try:
        from .cli import main as run

        run()  # ends in sys.exit(status); catches Ctrl-C itself once it runs
    except KeyboardInterrupt:  # during the imports above, or between them and cli.main's own handler
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)  # cli.EXIT_INTERRUPTED (not imported: that import may be what was interrupted)
