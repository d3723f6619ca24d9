"""Training: many toy models as one batch of instances, full-batch AdamW.

``train(config)`` trains one configuration (its ``init_seeds`` best-of-k seeds
as instances of one batch); ``train_batch(configs)`` trains several
configurations that share a shape (same n, m, T, steps, ...; different data
seeds, init seeds or weight decays) together. Instances never interact: every
kernel keeps them in separate slices, so a model trained in a batch is
bit-identical to the same model trained alone.

Schedule (paper): linear warm-up ``lr * (s + 1) / warmup`` over the first 5% of
steps, then a half-cosine ``lr * 0.5 * (1 + cos(pi p))`` from p = 0 to 1 over
the remaining steps. AdamW is torch's algorithm (decoupled weight decay on
W, b and W_up), written as one fused loop.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors
import safetensors.numpy
from numba import njit, prange

from . import data as data_mod
from . import kernels as kernels_mod
from . import metrics as M
from .config import ADAM_G_TINY, ADAM_M_TINY, ADAM_V_TINY, TrainConfig, checkpoint_seconds
from .errors import ToyddError, one_line
from .evaluation import evaluate
from .kernels import BatchData, CpuWorkspace, loss_and_grads_cpu
from .threads import threaded
from .storage import (CHECKPOINT_FORMAT, RunResult, StoreWriteError, arrays_digest, atomic_write_bytes,
                      checkpoint_info, load_params, remove_stale_temps)

ProgressFn = Callable[[int], None]

# Resuming an interrupted training (train_batch's ``checkpoint``). The CPU step keeps state from one step to the
# next that shapes how its sums round: the tree's kept point order, the cost model's last counts (kernels.
# CpuWorkspace). Every training, interrupted or not, starts that state afresh every RESET_EVERY steps, and a
# checkpoint is only ever written at such a step: a resumed training is then, bit for bit, the one that never
# stopped. A checkpoint is written at the first such step after config.checkpoint_seconds() since the last one (or
# since the start), so at most about that much work (plus RESET_EVERY steps) is lost to an interruption.
RESET_EVERY = 1_000


# --- schedule and optimizer ------------------------------------------------------

def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based ``step``: linear warm-up, then half-cosine to 0.

    The warm-up is ``lr * (s + 1) / W`` (the first step already moves), or
    ``lr * s / W`` with ``warmup_from_zero`` (torch ``LambdaLR(lambda s: s / W)``
    style: the first update has lr 0).
    """
    w = cfg.warmup_steps
    if step < w:
        return cfg.lr * (step if cfg.warmup_from_zero else step + 1) / w
    rest = cfg.steps - w
    p = (step - w) / rest if rest > 0 else 1.0
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * p))


ADAM_CHUNKS = 8  # parallel chunks per instance; elementwise, so any split gives identical results



# fastmath without nnan/ninf: vectorizes sqrt and division but keeps NaN/inf detectable.
@njit(cache=True, parallel=True, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
def _adamw(P, G, Mo, V, live, wd, lr, beta1, beta2, eps, step):
    """In-place AdamW on (I, N) float32 arrays; instances with live[i] == False are frozen.

    float32 arithmetic, like torch's AdamW on float32 parameters.
    """
    I, N = P.shape
    f32 = np.float32
    b2 = f32(beta2)
    one_m_b1 = f32(1.0 - beta1)
    one_m_b2 = f32(1.0 - beta2)
    bc2s = f32(math.sqrt(1.0 - beta2 ** step))
    step_size = f32(lr / (1.0 - beta1 ** step))
    epsf = f32(eps)
    inv_bc2s = f32(1.0) / bc2s
    m_tiny, v_tiny, g_tiny = f32(ADAM_M_TINY), f32(ADAM_V_TINY), f32(ADAM_G_TINY)
    for w in prange(I * ADAM_CHUNKS):
        i = w // ADAM_CHUNKS
        c = w - i * ADAM_CHUNKS
        if not live[i]:
            continue
        decay = f32(1.0 - lr * wd[i])
        lo = c * N // ADAM_CHUNKS
        hi = (c + 1) * N // ADAM_CHUNKS
        # 1-D slices: measured 5x faster than 2-D indexing (the loop vectorizes).
        p_, g_, m_, v_ = P[i, lo:hi], G[i, lo:hi], Mo[i, lo:hi], V[i, lo:hi]
        for q in range(hi - lo):
            g = g_[q]
            mo = m_[q] + one_m_b1 * (g - m_[q])  # torch: exp_avg.lerp_(grad, 1 - beta1)
            # Flush to zero before the subnormal range (see ADAM_M_TINY); selects, so the loop still vectorizes.
            # Written "zero if below" so that a NaN (every comparison False) is kept and still stops the training.
            gv = f32(0.0) if abs(g) < g_tiny else g  # (not g * g in a select: both sides get computed)
            v = b2 * v_[q] + one_m_b2 * gv * gv
            mo = f32(0.0) if abs(mo) < m_tiny else mo
            v = f32(0.0) if v < v_tiny else v
            m_[q] = mo
            v_[q] = v
            p_[q] = p_[q] * decay - step_size * mo / (math.sqrt(v) * inv_bc2s + epsf)


# --- parameters ------------------------------------------------------------------

def xavier_normal(m: int, n: int, seed: int, tied: bool, scale: float = 1.0,
                  bias: float = 0.0) -> dict[str, np.ndarray]:
    """Xavier-normal init of ONE model: std = scale * sqrt(2 / (n + m)) whatever the batch size.

    Untied models draw W_up (n x m, same fan-in/out, same std) from the same stream.
    ``b`` starts at the constant ``bias`` (the paper: 0).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A17]))
    std = scale * math.sqrt(2.0 / (n + m))
    p = {"W": (rng.standard_normal((m, n)) * std).astype(np.float32), "b": np.full(n, bias, np.float32)}
    if not tied:
        p["W_up"] = (rng.standard_normal((n, m)) * std).astype(np.float32)
    return p


def check_params(p: dict[str, np.ndarray], m: int, n: int, tied: bool, source: str) -> dict[str, np.ndarray]:
    """Validate loaded parameters (ToyddError naming the problem): real dtype, shape, finite, within float32."""
    for k in ("W", "b", "W_up"):
        if k in p and (k != "W_up" or not tied):
            data_mod.check_real_values(np.asarray(p[k]), source, k)
    W, b = np.asarray(p["W"]), np.asarray(p["b"])
    if W.shape != (m, n):
        raise ToyddError(f"{source}: W has shape {W.shape}, expected (m, n) = ({m}, {n})")
    if b.shape != (n,):
        raise ToyddError(f"{source}: b has shape {b.shape}, expected (n,) = ({n},)")
    out = {"W": W.astype(np.float32), "b": b.astype(np.float32)}
    if not tied:
        if "W_up" not in p:
            raise ToyddError(f"{source}: an untied model needs W_up (n x m)")
        Wu = np.asarray(p["W_up"])
        if Wu.shape != (n, m):
            raise ToyddError(f"{source}: W_up has shape {Wu.shape}, expected (n, m) = ({n}, {m})")
        out["W_up"] = Wu.astype(np.float32)
    return out  # finite: real values within float32 were checked before the cast


def _initial_params(c: TrainConfig, init_seed: int, train_set,
                    given: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One instance's starting point: given parameters, a file, the memorizing construction, or Xavier-normal."""
    if given is not None:  # init_from_run: the sweep read that run's parameters
        return check_params(given, c.m, c.n, c.tied, f"the parameters of run {c.init_from_run}")
    if c.init_from_run is not None:
        raise ToyddError(f"init_from_run={c.init_from_run}: this run starts from another run's parameters; "
                         "train it in a sweep (toydd sweep), which reads them from its results store")
    if c.init_path:
        return check_params(load_params(c.init_path), c.m, c.n, c.tied, c.init_path)
    if c.init_method == "construction":
        from .analysis import memorizing_construction

        # Every init seed of this config starts at the same point: the explicit
        # T-gon solution for its training set. Does the paper's recipe keep it?
        con = memorizing_construction(train_set, c.m)
        return {"W": con.W.copy(), "b": con.b.copy()}
    return xavier_normal(c.m, c.n, init_seed, c.tied, c.init_scale, c.bias_init)


@dataclass
class _Instance:
    cfg_index: int
    init_seed: int


class ParamBatch:
    """Parameters of I instances in one flat float32 buffer (I, N) with named views.

    One buffer lets a single fused AdamW loop update W, b and W_up together.
    """

    def __init__(self, I: int, m: int, n: int, tied: bool, flat: np.ndarray | None = None):
        self.I, self.m, self.n, self.tied = I, m, n, tied
        self.N = m * n + n + (0 if tied else m * n)
        self.flat = np.zeros((I, self.N), np.float32) if flat is None else flat
        self.W = self.flat[:, : m * n].reshape(I, m, n)
        self.b = self.flat[:, m * n: m * n + n]
        # U = W_up^T (m x n), so the kernel reads output weights with the same layout as W.
        self.U = None if tied else self.flat[:, m * n + n:].reshape(I, m, n)

    def set(self, i: int, p: dict[str, np.ndarray]) -> None:
        self.W[i] = p["W"]
        self.b[i] = p["b"]
        if not self.tied:
            self.U[i] = p["W_up"].T

    def get(self, i: int) -> dict[str, np.ndarray]:
        p = {"W": self.W[i].copy(), "b": self.b[i].copy()}
        if not self.tied:
            p["W_up"] = np.ascontiguousarray(self.U[i].T)
        return p


# --- training ----------------------------------------------------------------------

def _load_data(cfg: TrainConfig):
    """(training set or None for infinite data, test set) for one config."""
    if cfg.data_path:
        train_set, test = data_mod.load_npz(cfg.data_path, cfg.n)
        if not cfg.infinite and train_set.T != cfg.T:
            raise ToyddError(f"{cfg.data_path}: holds {train_set.T} points but T = {int(cfg.T)}")
    else:
        train_set = None if cfg.infinite else data_mod.training_set(
            cfg.n, cfg.sparsity, int(cfg.T), cfg.data_seed, cfg.repeated_points, cfg.repeats, nested=cfg.nested_data)
        test = None
    if test is None:
        test = _cached_test_set(cfg.n, cfg.sparsity, cfg.test_size, cfg.test_seed)
    return train_set, test


_TEST_CACHE: dict[tuple, data_mod.SparseData] = {}


def _cached_test_set(n: int, S: float, size: int, seed: int) -> data_mod.SparseData:
    key = (n, S, size, seed)
    if key not in _TEST_CACHE:
        if len(_TEST_CACHE) > 8:
            _TEST_CACHE.clear()
        _TEST_CACHE[key] = data_mod.test_set(n, S, size, seed)
    return _TEST_CACHE[key]


def snapshot_steps(steps: int, count: int) -> np.ndarray:
    """``count`` log-spaced steps in [0, steps], always including 0 and ``steps``."""
    if count <= 0:
        return np.zeros(0, np.int64)
    if count == 1:
        return np.array([steps], np.int64)
    s = np.unique(np.round(np.logspace(0, math.log10(max(steps, 1)), count - 1)).astype(np.int64))
    return np.unique(np.concatenate([[0], s, [steps]]))


def train(config: TrainConfig, progress: ProgressFn | None = None, engine: str = "auto",
          kernel: str | None = None, checkpoint: str | os.PathLike | None = None) -> RunResult:
    """Train one configuration (best of ``config.init_seeds`` init seeds); ``checkpoint``: see train_batch."""
    return train_batch([config], progress, engine, kernel, checkpoint=checkpoint)[0]


class NumbaBackend:
    """Parameters, gradients and AdamW state in numpy; the numba kernel computes loss and gradients."""

    def __init__(self, P: ParamBatch, imp: np.ndarray, wd: np.ndarray, cfg: TrainConfig, kernel: str | None = None):
        self.P, self.imp, self.wd, self.cfg = P, imp, wd, cfg
        self.kernel = kernel  # dense part: auto | dense | tree (None: kernels.DEFAULT_KERNEL)
        self.tag = f"numba/{kernel or kernels_mod.DEFAULT_KERNEL}"  # what trains: a saved state resumes only on this
        self.G = ParamBatch(P.I, P.m, P.n, P.tied)  # gradients, same layout as P
        self.Mo = np.zeros_like(P.flat)
        self.V = np.zeros_like(P.flat)
        self.last_good = P.flat.copy()
        self.ws: CpuWorkspace | None = None

    def loss_and_grads(self, batch: BatchData) -> np.ndarray:
        P, G = self.P, self.G
        loss, _, grads, self.ws = loss_and_grads_cpu(P.W, P.b, batch, P.U, self.imp, self.ws, kernel=self.kernel,
                                                     point_loss=False)
        G.W[:] = grads.W
        G.b[:] = grads.b
        if not P.tied:
            G.U[:] = grads.U
        return loss

    def adamw(self, live: np.ndarray, lr: float, step: int) -> None:
        c = self.cfg
        threaded(_adamw, self.P.flat.size)(self.P.flat, self.G.flat, self.Mo, self.V, live, self.wd, lr, c.beta1, c.beta2, c.adam_eps, step)

    def keep_good(self, live: np.ndarray) -> None:
        self.last_good[live] = self.P.flat[live]

    def restore_good(self, mask: np.ndarray) -> None:
        self.P.flat[mask] = self.last_good[mask]

    def finite(self) -> np.ndarray:
        return np.isfinite(self.P.flat).all(1)

    def params(self) -> np.ndarray:
        return self.P.flat

    def reset(self) -> None:
        """Forget the kernels' step-to-step state (see RESET_EVERY)."""
        self.ws = None

    def state(self) -> dict[str, np.ndarray]:
        """What the next step depends on, besides the data: parameters, AdamW's moments, the last good ones."""
        return {"flat": self.P.flat, "Mo": self.Mo, "V": self.V, "last_good": self.last_good}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.P.flat[:] = st["flat"]
        self.Mo[:] = st["Mo"]
        self.V[:] = st["V"]
        self.last_good[:] = st["last_good"]


def train_batch(configs: list[TrainConfig], progress: ProgressFn | None = None,
                engine: str = "auto", kernel: str | None = None,
                inits: list[dict[str, np.ndarray] | None] | None = None,
                checkpoint: str | os.PathLike | None = None) -> list[RunResult]:
    """Train configurations sharing ``shape_key()`` as one batch; one RunResult per config.

    ``checkpoint``: a file where the training's state is saved now and then (see RESET_EVERY,
    CHECKPOINT_SECONDS) and from which it resumes if the file holds this very batch (the same
    configs in the same order); anything else there is ignored and replaced. The file is left in
    place at the end: removing it is the caller's business (the sweep removes it once the runs are
    saved). Results do not depend on whether, or where, a training was interrupted.

    ``engine``: ``numba`` (CPU kernel), ``torch`` (the torch path on the configs'
    device, CPU included: how the CUDA path is checked without a GPU), or
    ``auto`` (torch on a GPU, numba otherwise). ``kernel``: the numba engine's dense part,
    ``auto`` (per step and instance, a deterministic cost model), ``dense`` or ``tree``
    (see kernels.loss_and_grads_cpu); None: ``kernels.DEFAULT_KERNEL`` (``auto``, or the
    ``TOYDD_KERNEL`` environment variable). All give the same losses up to float32 rounding.
    """
    if not configs:
        return []
    c0 = configs[0]
    for c in configs[1:]:
        if c.shape_key() != c0.shape_key():
            raise ValueError("train_batch needs configs with the same shape_key(); group them first")
    device = _pick_device(c0.device)

    t_start = time.perf_counter()
    n, m, tied, steps = c0.n, c0.m, c0.tied, c0.steps
    inst = [_Instance(ci, s) for ci, c in enumerate(configs) for s in c.init_seed_list]
    I = len(inst)
    loaded = [_load_data(c) for c in configs]
    train_sets = [d[0] for d in loaded]

    P = ParamBatch(I, m, n, tied)
    for i, ins in enumerate(inst):
        c = configs[ins.cfg_index]
        P.set(i, _initial_params(c, ins.init_seed, train_sets[ins.cfg_index],
                                 None if inits is None else inits[ins.cfg_index]))
    imp = (c0.importance_decay ** np.arange(n)).astype(np.float32)
    wd = np.array([configs[x.cfg_index].weight_decay for x in inst], np.float64)
    if engine not in ("auto", "numba", "torch"):
        raise ToyddError(f"engine must be auto, numba or torch, got {engine!r}")
    if engine == "numba" or (engine == "auto" and device == "cpu"):
        backend = NumbaBackend(P, imp, wd, c0, kernel)
    else:
        from .training_torch import TorchBackend

        backend = TorchBackend(P, imp, wd, c0, device)

    streams = None
    if c0.infinite:
        streams = [data_mod.OnlineStream(n, c.sparsity, c.online_batch, c.data_seed) for c in configs]
        batch = None
    else:
        batch = BatchData.stack([train_sets[x.cfg_index] for x in inst])

    live = np.ones(I, np.bool_)
    failed_step = np.full(I, -1, np.int64)
    last_loss = np.full(I, np.nan, np.float64)  # each instance's latest finite loss: its frozen value if it fails
    stride = c0.history_stride
    hist_steps = np.arange(0, steps, stride, dtype=np.int64)
    hist_loss = np.full((I, len(hist_steps)), np.nan, np.float64)
    snaps = snapshot_steps(steps, c0.snapshots)
    snap_index = {int(s): k for k, s in enumerate(snaps)}
    snap_flat = np.zeros((len(snaps), I, P.N), np.float32)
    if 0 in snap_index:
        snap_flat[snap_index[0]] = P.flat

    report_every = max(1, min(1000, steps // 100))
    pending = 0
    start, elapsed = 0, 0.0  # where this call starts, and the training time of earlier calls (a resumed run)
    keys = [c.key() for c in configs]
    if checkpoint is not None:
        # What this training starts from and what trains it: a saved state resumes only a training with the same
        # of both (the same keys can hide another --data file's contents; another kernel, other bits).
        inputs = arrays_digest({"init": P.flat, "importance": imp,
                                **{f"{k}{ci}": getattr(d, k) for ci, d in enumerate(train_sets) if d is not None
                                   for k in ("indptr", "indices", "values")}})
        st = _read_checkpoint(checkpoint, keys, inputs, backend.tag,
                              {"flat": P.flat, "Mo": P.flat, "V": P.flat, "last_good": P.flat, "live": live.astype(np.uint8),
                               "failed_step": failed_step, "last_loss": last_loss, "hist_loss": hist_loss,
                               "snap_flat": snap_flat})
        if st is not None:
            start, elapsed = st["step"], st["elapsed"]
            backend.load_state(st["arrays"])
            live[:] = st["arrays"]["live"].astype(bool)
            failed_step[:] = st["arrays"]["failed_step"]
            last_loss[:] = st["arrays"]["last_loss"]
            hist_loss[:] = st["arrays"]["hist_loss"]
            snap_flat[:] = st["arrays"]["snap_flat"]
            for stream, state in zip(streams or [], st["streams"]):
                stream.rng.bit_generator.state = state
            if progress is not None and start:
                progress(start)
    every = checkpoint_seconds() if checkpoint is not None else math.inf
    last_save = time.perf_counter()
    for s in range(start, steps):
        if s % RESET_EVERY == 0 and s > 0:
            backend.reset()
            if time.perf_counter() - last_save >= every:
                _write_checkpoint(checkpoint, keys, inputs, backend.tag, s, elapsed + time.perf_counter() - t_start,
                                  backend.state(), live, failed_step, last_loss, hist_loss, snap_flat, streams)
                last_save = time.perf_counter()
        if streams is not None:
            fresh = [s_.next() for s_ in streams]  # one fresh batch per config, shared by its init seeds
            batch = BatchData.stack([fresh[x.cfg_index] for x in inst])
        loss = backend.loss_and_grads(batch)
        # Parameters too: a loss can stay finite while they overflow (all-zero data, a huge weight decay),
        # and last_good must only ever hold finite parameters.
        bad = (~np.isfinite(loss) | ~backend.finite()) & live
        if s == 0 and bad.any():
            # Before any update: nothing the optimizer did, so the input is at fault (xavier init on
            # finite float32 data never overflows). Bad input, not a failed training.
            src = c0.init_path or c0.data_path or "the data"
            raise ToyddError(f"{src}: the loss is not finite at the initial parameters (step 0, before any update): "
                             f"the parameters or the data are too large for float32")
        last_loss[~bad & live] = loss[~bad & live]
        if bad.any():
            failed_step[bad] = s
            live &= ~bad
            backend.restore_good(bad)  # never keep non-finite parameters
        if s % stride == 0:
            hist_loss[:, s // stride] = np.where(live, loss, np.nan)
        if not live.any():
            break
        backend.keep_good(live)
        backend.adamw(live, lr_at(s, c0), s + 1)
        k = snap_index.get(s + 1)
        if k is not None:
            snap_flat[k] = backend.params()
        pending += 1
        if progress is not None and pending >= report_every:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)
    # Non-finite parameters after the last step count as a failure too.
    bad = live & ~backend.finite()
    if bad.any():
        failed_step[bad] = steps
        live &= ~bad
        backend.restore_good(bad)
    P.flat[:] = backend.params()
    # A stopped instance is frozen at its last finite parameters: its loss curve stays at their loss
    # (never NaN in a saved history; history["failed_step"] says where it stopped).
    for i in np.flatnonzero(failed_step >= 0):
        hist_loss[i, hist_steps >= failed_step[i]] = last_loss[i]
    seconds = elapsed + time.perf_counter() - t_start
    return [_finish(ci, c, inst, P, loaded[ci], imp, failed_step, hist_steps, hist_loss, snaps, snap_flat, seconds)
            for ci, c in enumerate(configs)]


def _write_checkpoint(path, keys: list[str], inputs: str, engine: str, step: int, elapsed: float,
                      state: dict[str, np.ndarray], live, failed_step, last_loss, hist_loss, snap_flat, streams) -> None:
    """The training's state at the start of ``step`` (a RESET_EVERY boundary), written atomically."""
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    arrays.update(live=live.astype(np.uint8), failed_step=failed_step, last_loss=last_loss, hist_loss=hist_loss,
                  snap_flat=snap_flat)
    meta = {"format": CHECKPOINT_FORMAT, "keys": json.dumps(keys), "step": str(step), "elapsed": repr(elapsed),
            "streams": json.dumps([s.rng.bit_generator.state for s in streams or []]), "inputs": inputs,
            "engine": engine, "sha256": arrays_digest(arrays)}
    where = Path(path)
    remove_stale_temps(where.parent, where.name)  # what earlier writes, killed, left
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, safetensors.numpy.save(arrays, metadata=meta))
    except (OSError, StoreWriteError) as e:
        # A checkpoint only saves time after a kill: failing to write one must not stop the training
        # (a full disk then fails the run's own save, with its own error).
        warnings.warn(f"toydd: could not save the training state to {path}: {one_line(e)}", stacklevel=2)


def _read_checkpoint(path, keys: list[str], inputs: str, engine: str, like: dict[str, np.ndarray]) -> dict | None:
    """The state saved in ``path`` if it is a checkpoint of this very training (same job keys, inputs and
    engine; a RESET_EVERY step; every array of ``like``'s shape and dtype; its arrays' sha256 as written), else
    None: the training then starts from step 0 and the state is overwritten at the first save."""
    info = checkpoint_info(path)
    if (info is None or info["keys"] != keys or info["inputs"] != inputs or info["engine"] != engine
            or info["step"] <= 0 or info["step"] % RESET_EVERY):
        return None
    try:
        with safetensors.safe_open(os.fspath(path), framework="numpy") as f:
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, safetensors.SafetensorError):
        return None  # unreadable after all: start from the beginning
    if any(k not in arrays or arrays[k].shape != v.shape or arrays[k].dtype != v.dtype for k, v in like.items()):
        return None
    if arrays_digest(arrays) != info["sha256"]:
        return None  # damaged on disk (a flipped bit would change the run without a word)
    return {**info, "arrays": arrays}


def _pick_device(device: str) -> str:
    if device == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if device == "cuda" and not has_cuda:
        raise ToyddError("device cuda requested but no CUDA GPU is available")
    return "cuda" if has_cuda else "cpu"


def _finish(ci, cfg, inst, P, loaded, imp, failed_step, hist_steps, hist_loss, snaps, snap_flat, seconds) -> RunResult:
    """Best-of-k selection and metrics for config ``ci``."""
    train_set, test = loaded
    mine = [i for i, x in enumerate(inst) if x.cfg_index == ci]
    # No fixed training set with infinite data: the "training loss" is the loss on
    # one batch of fresh points (the same batch for every init seed).
    train_eval = train_set if train_set is not None else \
        data_mod.OnlineStream(cfg.n, cfg.sparsity, cfg.online_batch, cfg.data_seed + 10**6).next()
    rows = []
    for i in mine:
        p = P.get(i)
        tr = evaluate(p, train_eval, imp)
        te = evaluate(p, test, imp)
        tl, _ = M.loss_summary(tr)
        sl, se = M.loss_summary(te)
        rows.append({"init_seed": inst[i].init_seed, "train_loss": tl, "test_loss": sl, "test_loss_se": se,
                     "failed_step": None if failed_step[i] < 0 else int(failed_step[i])})
    ok = [k for k, r in enumerate(rows) if r["failed_step"] is None and math.isfinite(r["train_loss"])]
    best = min(ok, key=lambda k: rows[k]["train_loss"]) if ok else 0
    i = mine[best]
    p = P.get(i)
    W = p["W"]
    W64 = W.astype(np.float64)  # norms and dimensionalities in float64: squares of a huge float32 W overflow
    fd = M.feature_dimensionality(W64)
    arrays: dict[str, np.ndarray] = {"feature_dims": fd.astype(np.float32),
                                     "feature_norms": np.linalg.norm(W64, axis=0).astype(np.float32)}
    if train_set is not None:
        H = data_mod.hidden_vectors(train_set, W).astype(np.float32)
        dd = M.data_dimensionality(H.astype(np.float64))
        arrays.update(H=H, data_dims=dd.astype(np.float32))
        hn = np.linalg.norm(H.astype(np.float64), axis=1)
    else:
        dd, hn = np.zeros(0), np.zeros(0)
        arrays["data_dims"] = np.zeros(0, np.float32)
    r = rows[best]
    T = cfg.T
    construction = None
    if train_set is not None and cfg.m >= 2 and cfg.tied:
        from .analysis import memorizing_construction

        # An achievable memorizing loss for this very training set: training far
        # above it is an optimization failure, not a property of the data.
        construction = memorizing_construction(train_set, cfg.m).train_loss
    repeated = {}
    if cfg.repeated_points and len(dd):
        # Jermyn's criterion: a repeated point is memorized if its D_X is in the top 0.1% of the training set.
        first = np.arange(cfg.repeated_points) * cfg.repeats
        pct = np.array([(dd < dd[i]).mean() for i in first])
        repeated = {"repeated_dx_percentile": pct.tolist(),
                    "repeated_memorized_fraction": float((pct >= 0.999).mean())}
    metrics = {
        "train_loss": r["train_loss"],
        "test_loss": r["test_loss"],
        "test_loss_se": r["test_loss_se"],
        "weight_norm": float(np.linalg.norm(W64)),
        "bias_norm": float(np.linalg.norm(p["b"].astype(np.float64))),
        "up_weight_norm": float(np.linalg.norm(p["W_up"].astype(np.float64))) if "W_up" in p else None,
        "max_feature_dim": float(fd.max()),
        "feature_dims_top": np.sort(fd)[::-1][:10].tolist(),
        "represented_features": M.represented_features(W),
        "feature_norm_max": float(arrays["feature_norms"].max()),
        "mean_data_dim": float(dd.mean()) if len(dd) else None,
        "median_data_dim": float(np.median(dd)) if len(dd) else None,
        "max_data_dim": float(dd.max()) if len(dd) else None,
        "tgon_dim": (cfg.m / T) if not cfg.infinite else None,
        "hidden_norm_mean": float(hn.mean()) if len(hn) else None,
        "hidden_norm_max": float(hn.max()) if len(hn) else None,
        "regime": M.regime(fd, dd, cfg.m, T),
        "steps": cfg.steps,
        "seconds": seconds,  # wall time of the whole train_batch call, shared by every model of the batch
        "batch_size": len({x.cfg_index for x in inst}),  # models trained together in that time
        "failed_step": r["failed_step"],
        "best_init_seed": r["init_seed"],
        "instances": rows,
        "construction_train_loss": construction,
        "optimization_gap": (r["train_loss"] - construction) if construction is not None else None,
        **repeated,
    }
    # Snapshots of a failed model stop before its failure step: later ones hold the diverged
    # (non-finite) parameters, or zeros where training stopped early.
    keep = np.ones(len(snaps), bool) if failed_step[i] < 0 else snaps < failed_step[i]
    snaps_i, snap_i = snaps[keep], snap_flat[keep, i]
    history = {
        "loss_steps": hist_steps,
        "train_loss": hist_loss[mine],
        "init_seeds": np.array([x["init_seed"] for x in rows], np.int64),
        "failed_step": failed_step[mine],  # per init seed, -1: did not fail
        "snapshot_steps": snaps_i,
    }
    if len(snaps_i):
        mn = cfg.m * cfg.n
        history["snapshot_W"] = snap_i[:, :mn].reshape(len(snaps_i), cfg.m, cfg.n)
        history["snapshot_b"] = snap_i[:, mn: mn + cfg.n]
        if not cfg.tied:
            history["snapshot_W_up"] = snap_i[:, mn + cfg.n:].reshape(len(snaps_i), cfg.m, cfg.n).transpose(0, 2, 1)
    return RunResult(config=cfg, metrics=metrics, params=p, arrays=arrays, history=history)
