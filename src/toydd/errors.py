"""User-facing errors.

Anything the user can get wrong (a negative size, a malformed file, an unknown
preset) raises :class:`ToyddError`. The CLI turns it into one line
``error: ...`` on stderr and exit status 2, never a traceback.
"""


import os


class ToyddError(ValueError):
    """Bad input from the user: reported as ``error: <message>``, exit 2."""


def one_line(text: object) -> str:
    """``text`` (a message, an exception) with its whitespace and newlines collapsed: for one-line messages."""
    return " ".join(str(text).split())


def os_reason(e: OSError) -> str:
    """An OSError's reason in words ("No space left on device"), for one-line messages."""
    return os.strerror(e.errno) if e.errno else str(e)
