"""How the numba kernels use threads: the threading layer, all threads or one, and serial twins.

Results never depend on any of this: every kernel splits its work into a fixed number of pieces (a function of
the problem's shape) and sums them in a fixed order, so one thread and many give the same bits, and a kernel's
serial twin (the same loops compiled without a parallel region) gives the same bits as the kernel itself
(tests/test_kernels.py).
"""

from __future__ import annotations

import os
import sys
import types

import numba
from numba import njit

# Threading layer. numba's OpenMP layer by default spin-waits ~300,000 rounds after each parallel region: on a
# busy machine (another process running) a T = 1,000 step then ran 5-11x slower than on one thread. Its sleeping
# `workqueue` layer avoids that, but pays the wake-up of sleeping threads at every region, ~50-100 us on a 2-vCPU
# VM (an empty kernel: 52-118 us, against 1.5-3 us for OpenMP with its threads still spinning) -- 7 regions a
# training step, 4-8% of a T = 10^5 tree step. So on Linux toydd takes OpenMP (libgomp) with a short spin,
# GOMP_SPINCOUNT = GOMP_SPIN rounds (~microseconds: enough to bridge the Python glue between a step's kernels,
# too short to starve a neighbour), and falls back to workqueue when libgomp is missing, or when numba's libgomp
# was loaded before (it reads the variable once, when loaded, so the spin would be the default's). Measured on
# machine A (BENCHMARKS.md, "Threading layer"): idle, T = 10^5 tree steps 5-10% faster, T = 1,000 and 10,000 steps
# 10-20%; with a CPU hog on one or both cores, within 5% of workqueue; beside a second toydd process, 10% slower
# (the default spin made that T = 10^4 step 8x slower). The variable is set only while numba's libgomp loads, so
# torch's own copy of libgomp (it bundles one) keeps its defaults. NUMBA_THREADING_LAYER, if set, decides
# instead, and a GOMP_SPINCOUNT set by the user is kept; results never depend on any of it.
GOMP_SPIN = 3000


def _libgomps() -> set[str]:
    """The libgomp files mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            return {line.split()[-1] for line in f.read().splitlines() if "libgomp" in line}
    except OSError:
        return set()


def _choose_layer() -> str:
    """Set numba's threading layer (see above); returns it, as bench records it."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return os.environ["NUMBA_THREADING_LAYER"]
    if sys.platform.startswith("linux"):
        user = os.environ.get("GOMP_SPINCOUNT")
        before = _libgomps()
        os.environ["GOMP_SPINCOUNT"] = user or str(GOMP_SPIN)
        loaded = fresh = False
        try:
            from numba.np.ufunc import omppool  # noqa: F401  (loads numba's libgomp now: it reads the spin once)
            loaded, fresh = True, bool(_libgomps() - before)
        except ImportError:  # no libgomp on this machine
            pass
        finally:
            if user is None:
                del os.environ["GOMP_SPINCOUNT"]
        if fresh or (user is not None and loaded):
            numba.config.THREADING_LAYER = "omp"
            return f"omp (GOMP_SPINCOUNT={user or GOMP_SPIN})"
    numba.config.THREADING_LAYER = "workqueue"
    return "workqueue"


LAYER = _choose_layer()

PARALLEL_MIN_WORK = 400_000  # (point, feature) pairs below which threads cost more than they give
MAX_THREADS = numba.config.NUMBA_NUM_THREADS


def chunks(I: int, n: int) -> int:
    """Pieces per instance of a loop over n contiguous items (points, leaves) of I instances: about 256 in all,
    so that a piece, not an item, pays the division that finds its instance (a division per point cost 15% of
    the first per-non-zero pass at T = 10^5 .. 10^6), with enough pieces to spread over any core count. The
    kernels that use it give the same bits whatever the count (per-item outputs, maxima, per-leaf sorts)."""
    return max(1, min(n, 256 // max(I, 1)))


def use_threads(work: int) -> bool:
    """Threads for the next kernels: all of them from PARALLEL_MIN_WORK on, else one. Returns which.

    Small problems (the whole memorization regime) run on one thread: waking a
    thread pool costs more than the work, and under a loaded machine (or
    several sweep workers) spinning threads collapse throughput."""
    parallel = work >= PARALLEL_MIN_WORK
    numba.set_num_threads(MAX_THREADS if parallel else 1)
    return parallel


_SERIAL: dict = {}


def serial(kernel):
    """``kernel`` (a ``parallel=True`` numba function) compiled without a parallel region: the same loops
    (``prange`` runs as ``range``), the same arithmetic in the same order, so the same bits.

    Why: entering a parallel region cost ~0.14 ms on machine T even on one thread (workqueue layer; OpenMP with
    its threads asleep pays a like wake-up), more than the whole work of a
    kernel at small T (a T = 5 step of 4 models launched four of them: 0.65 ms, 0.20 with serial twins)."""
    twin = _SERIAL.get(kernel)
    if twin is None:
        f = kernel.py_func
        g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
        g.__qualname__ = f.__qualname__ + "_serial"  # its own on-disk cache entry
        g.__module__ = f.__module__
        g.__doc__ = f.__doc__
        options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
        twin = _SERIAL[kernel] = njit(cache=True, **options)(g)
    return twin


def threaded(kernel, work: int):
    """``kernel`` with threads from PARALLEL_MIN_WORK on (see use_threads), else its serial twin."""
    return kernel if use_threads(work) else serial(kernel)


def set_threads(n: int | None = None) -> None:
    """Most threads the numba kernels may use (default: all cores). Results do not depend on it."""
    global MAX_THREADS
    MAX_THREADS = max(1, min(n or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(MAX_THREADS)


if os.environ.get("TOYDD_THREADS"):
    set_threads(int(os.environ["TOYDD_THREADS"]))
