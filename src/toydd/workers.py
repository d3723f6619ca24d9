"""What a spawned sweep worker does first: die with its parent, and share the cores.

Kept apart from :mod:`toydd.sweep` on purpose, and light: a spawned worker
imports the module of its initializer before running it, and the thread
counts set here must be in the environment before numba (or torch) is first
imported in that process. :mod:`toydd.sweep` imports the experiments and the
job kinds, which train with numba (imported on first use today, but a worker
must not rely on that); this module imports nothing of toydd.
"""

from __future__ import annotations

import os
import sys
import time

QUEUE = None  # the progress queue of this worker (set by init)


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the sweep that started it dies, however it dies (even ``kill -9``).

    Linux: the kernel sends SIGKILL when the parent exits (``PR_SET_PDEATHSIG``).
    Everywhere: a daemon thread polls ``os.getppid()`` and exits once the parent
    is gone (re-parented). A worker killed mid-job leaves no half-written run
    (``save_run`` is atomic) and its lock dies with it, so the next sweep resumes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - the watchdog still covers it
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    import threading

    threading.Thread(target=watchdog, name="toydd-parent-watchdog", daemon=True).start()


def init(queue, threads: int, parent_pid: int | None = None) -> None:
    """The process pool's initializer."""
    global QUEUE
    if parent_pid is not None:
        die_with_parent(parent_pid)
    QUEUE = queue
    # Share the cores between the workers instead of each one spawning a
    # thread per core (2 workers x 2 threads on 2 cores is slower than 2 x 1).
    for var in ("TOYDD_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except Exception:
        pass
