"""The one reader of every ``.npz`` a user hands toydd: training data (data.load_npz), parameters (``--init``,
storage.read_arrays), MNIST digits (mnist.load_npz) and benchmark states (bench.load_states), so each file that is
not what it should be is explained in the same words. NumPy only: the command's start imports it (no numba).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ToyddError, one_line, os_reason


def read_npz(path: str | os.PathLike, what: str, hint: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, or one ToyddError line naming the file (``what``: "data file",
    "MNIST file", "states file", ...) and saying what it holds instead.

    The first bytes decide, not numpy's fallbacks: ``np.load`` reads a ``.npy`` as one array (no ``.files``)
    and tries anything that is neither zip nor npy as a pickle, so a text file would come back as "pickled
    data" and a truncated zip as a bare BadZipFile. ``hint``: how to save the file right, added to the
    messages about a wrong kind of file.
    """
    path = os.fspath(path)
    hint = f"; {hint}" if hint else ""
    if os.path.isdir(path):
        raise ToyddError(f"{what} {path} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise ToyddError(f"{what} not found: {path}") from None
    except OSError as e:
        raise ToyddError(f"cannot read {what} {path}: {os_reason(e)}") from None
    if head.startswith(b"\x93NUMPY"):
        raise ToyddError(f"cannot read {what} {path}: it is a .npy file (a single array), not an .npz{hint}")
    if not head.startswith(b"PK"):
        kind = "empty" if not head else ("gzip-compressed" if head.startswith(b"\x1f\x8b") else
                                        "text" if all(32 <= c < 127 or c in b"\t\r\n" for c in head) else
                                        "something else")
        raise ToyddError(f"cannot read {what} {path}: not an .npz file (a zip archive of arrays): it is {kind}{hint}")
    key = None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {}
            for key in z.files:
                arrays[key] = z[key]
            return arrays
    except ValueError as e:
        if "pickle" in str(e).lower():
            name = f"{key} is an object array" if key is not None else "it holds object arrays"
            raise ToyddError(f"cannot read {what} {path}: {name} (pickled Python objects); "
                             f"save numeric arrays") from None
        reason = f"{type(e).__name__}: {one_line(e)[:120]}"
    except Exception as e:  # BadZipFile, zlib.error, EOFError, OSError, KeyError: a damaged archive
        reason = f"{type(e).__name__}: {one_line(e)[:120]}"
    raise ToyddError(f"cannot read {what} {path}: truncated or corrupted .npz ({reason})")
