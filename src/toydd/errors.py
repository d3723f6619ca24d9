"""User-facing errors.

Anything the user can get wrong (a negative size, a malformed file, an unknown
preset) raises :class:`ToyddError`. The CLI turns it into one line
``error: ...`` on stderr and exit status 2, never a traceback.
"""


class ToyddError(ValueError):
    """Bad input from the user: reported as ``error: <message>``, exit 2."""


def one_line(text: object) -> str:
    """``text`` (a message, an exception) with its whitespace and newlines collapsed: for one-line messages."""
    return " ".join(str(text).split())
