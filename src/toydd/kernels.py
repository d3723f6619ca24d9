"""The hot path: loss and gradients of a batch of ReLU-output models.

For one model with hidden vectors ``h_t = W x_t`` (``x_t`` sparse) the output
pre-activations are ``z_ti = h_t . U_i + b_i`` where ``U = W`` when tied (the
default) and ``U = W_up^T`` when untied, and the loss is

    L = (1/T) sum_t sum_i I_i (x_ti - ReLU(z_ti))^2.

Because ``x`` is sparse the loss splits into a *dense* part over every
(point, feature) pair and a *sparse* correction over the non-zeros::

    sum_ti I_i (x - y)^2 = sum_ti I_i y^2  +  sum_{nz} I_i (x^2 - 2 x y),   y = ReLU(z)

and so does the gradient ``G = dL/dz = (2/T) I_i (y - x) 1[z > 0]``. The dense
part needs only ``h_t``, ``U_i`` and ``b_i``; nothing of size ``T x n`` is ever
stored: the CPU kernel streams over points for a block of features (memory
O(T m) per block, independent of the T x n product).

Exact skipping: if ``b_i + max_t h_t . U_i <= 0`` then feature ``i`` outputs 0
for every point and contributes nothing to the dense part or the gradient. We
bound ``max_t h_t . U_i`` from above by the smaller of the bounding-box bound
``sum_k max(U_ki max_t h_tk, U_ki min_t h_tk)`` and ``||U_i|| max_t ||h_t||``
(a safety margin covers float rounding). A trained model leaves almost all of
its 10,000 features dead (negative bias, tiny weights), so late in training the
dense part shrinks from n to a few dozen features.

Why numba for the CPU kernel (measured, see BENCHMARKS.md): the dense part is
~12 flops per (point, feature) pair with m = 2, far too thin for BLAS (an
inner dimension of 2) and memory-bound in any unfused torch formulation (each
elementwise op re-reads a T x n temporary). A fused loop that keeps a feature
block in L1 and streams points is compute-bound; numba gives that loop with
SIMD and threads, compiles in seconds, caches to disk, and needs no compiler
at install time. torch.compile would need a C++ toolchain at run time and
recompiles per shape; a C++ extension needs a build step on install.

Large T: the dense part can also run on a tree of the points (tree_kernels.py):
nodes whose box lies on one side of a feature's hyperplane z = 0 are skipped or
summed in closed form from their moments, so its cost grows ~sqrt(T) for m = 2.
``loss_and_grads_cpu(kernel=...)`` chooses per instance and step ("auto": a
deterministic cost model; "dense"; "tree"); every choice gives the same values up
to float32 rounding.

The torch path (``loss_and_grads_torch``) computes the same thing chunked over
points with dense matmuls. It is what runs on CUDA (where bandwidth is plenty)
and it is tested against the same reference on CPU.

Shapes: ``I`` instances (models trained together), ``m`` hidden dims, ``n``
features, ``T`` points. Parameters are float32.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from .data import SparseData
from .threads import chunks, serial, use_threads
from ._dense_kernels import DENSE_KERNELS
from ._sparse_kernels import HIDDEN_KERNELS, SPARSE_KERNELS

# Feature blocks per instance in the CPU dense pass. Fixed (not the thread
# count) so results are bit-identical on machines with different core counts.
MAX_BLOCKS = 16
MIN_BLOCK = 256  # features per block below which more blocks only add overhead
T_TILE = 256  # points accumulated in float32 before flushing to float64 sums


@dataclass
class BatchData:
    """The training points of ``I`` instances, all with the same ``T``, in one CSR.

    ``indptr[i, t]`` .. ``indptr[i, t+1]`` index ``indices``/``values`` for point
    ``t`` of instance ``i`` (offsets are global into the flat arrays).
    """

    indptr: np.ndarray  # (I, T + 1) int64
    indices: np.ndarray  # (nnz_total,) int64
    values: np.ndarray  # (nnz_total,) float32
    n: int
    _device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def I(self) -> int:  # noqa: E743
        return self.indptr.shape[0]

    @property
    def T(self) -> int:
        return self.indptr.shape[1] - 1

    @staticmethod
    def stack(datasets: list[SparseData]) -> "BatchData":
        T = datasets[0].T
        n = datasets[0].n
        if any(d.T != T or d.n != n for d in datasets):
            raise ValueError("all instances of a batch need the same T and n")
        offs = np.cumsum([0] + [d.nnz for d in datasets])
        indptr = np.stack([d.indptr + o for d, o in zip(datasets, offs[:-1])]).astype(np.int64)
        out = BatchData(indptr, np.concatenate([d.indices for d in datasets]).astype(np.int64),
                        np.concatenate([d.values for d in datasets]).astype(np.float32), n)
        for a in (out.indptr, out.indices, out.values):
            a.flags.writeable = False  # workspaces and device caches keep copies keyed on the object
        return out

    def instance(self, i: int) -> SparseData:
        lo, hi = self.indptr[i, 0], self.indptr[i, -1]
        return SparseData(self.indptr[i] - lo, self.indices[lo:hi], self.values[lo:hi], self.n)

    def to_dense(self) -> np.ndarray:
        return np.stack([self.instance(i).to_dense() for i in range(self.I)])


# ---------------------------------------------------------------------------
# numba CPU kernels
# ---------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _hidden(W, U, b, imp, indptr, indices, values, two_c, H, gs, dHs, ls, pmax, pmin, pn2):
    """The first per-non-zero pass: H[i, t, :] = W[i] @ x_t (sparse x), and at once each point's sparse
    corrections (the terms at its non-zeros x_tj, which need only h_t and feature j), while feature j's
    numbers are in cache from the sum:

      gs[p] (one per non-zero p = (t, j)): -2c I_j x_tj [z_tj > 0], its gradient factor (z_tj = U_j h_t + b_j);
      dHs[i, t] = sum_p gs[p] U_j: the corrections' part of dL/dh_t;
      ls[i, t] = sum_p I_j (x_tj^2 - 2 x_tj ReLU(z_tj)): their part of the point's loss (float64).

    The second pass (_sparse_pass) adds them to the dense part and runs the input path. h sums in float32,
    like torch's float32 product (a float64 sum made the unrolled m = 2 pass 1.4x slower at T = 10^5).

    The points run in C = pmax.shape[1] chunks of contiguous points per instance (threads.chunks), and each
    chunk leaves its points' bounds, for _active_features: per hidden dim the max and min of h, pmax[i, c]
    and pmin[i, c], and the max of |h|^2, pn2[i, c] (a NaN h left out), from h while it is in registers
    (a separate pass over H cost 3-4 ms a step at T = 10^6).
    The generic version (any m); _sparse_kernels.hidden_m1..8 are the same arithmetic, unrolled."""
    I, m, _ = W.shape
    T = H.shape[1]
    C = pmax.shape[1]
    for w in prange(I * C):
        i = w // C
        c = w - i * C
        for k in range(m):
            pmax[i, c, k] = -np.inf
            pmin[i, c, k] = np.inf
        n2 = 0.0
        for t in range(c * T // C, (c + 1) * T // C):
            p0 = np.uint64(indptr[i, t])  # unsigned: no negative-index wraparound code in the loops (1.2x)
            p1 = np.uint64(indptr[i, t + 1])
            q = 0.0
            for k in range(m):
                s = np.float32(0.0)
                for p in range(p0, p1):
                    s += values[p] * W[i, k, np.uint64(indices[p])]
                H[i, t, k] = s
                dHs[i, t, k] = 0.0
                q += np.float64(s) * np.float64(s)  # (in float64: a float32 square overflows from |h| ~ 2e19)
                if s > pmax[i, c, k]:
                    pmax[i, c, k] = s
                if s < pmin[i, c, k]:
                    pmin[i, c, k] = s
            if q > n2:
                n2 = q
            lt = 0.0
            for p in range(p0, p1):
                j = np.uint64(indices[p])
                x = values[p]
                zz = b[i, j]
                for k in range(m):
                    zz += H[i, t, k] * U[i, k, j]
                # float32 term (its x * x was float32 already), summed in float64 (1.1x faster than mixed)
                y = max(zz, np.float32(0.0))
                lt += imp[j] * (x * x - np.float32(2.0) * x * y)
                # Branch-free (adds exact zeros when inactive): 1.5x faster than an if, whose
                # outcome is a coin flip at the non-zeros.
                g = -two_c * imp[j] * x if zz > 0.0 else np.float32(0.0)
                gs[p] = g
                for k in range(m):
                    dHs[i, t, k] += g * U[i, k, j]
            ls[i, t] = lt
        pn2[i, c] = n2


@njit(cache=True, parallel=True)
def _reorder_points(indptr, indices, values, H, which, perm, out_indptr, out_indices, out_values, Hout,
                    gs, out_gs, dHs, Dout, ls, Lout):
    """For instances ``which``: point s of the output is point perm[i, s] of the input: its CSR row with its
    non-zeros' gs (into the out_ arrays), and its hidden vector H, dHs and ls (rewritten in place through
    Hout, Dout, Lout); other instances are copied as they are. Every instance keeps its own span of the flat
    arrays (out_indptr[i, 0] = indptr[i, 0])."""
    I, T, m = H.shape
    for i in prange(I):
        out_indptr[i, 0] = indptr[i, 0]
        for s in range(T):
            t = perm[i, s] if which[i] else s
            out_indptr[i, s + 1] = out_indptr[i, s] + indptr[i, t + 1] - indptr[i, t]
    for r in prange(I * T):
        i = r // T
        s = r - i * T
        t = perm[i, s] if which[i] else s
        src = indptr[i, t]
        dst = out_indptr[i, s]
        for p in range(indptr[i, t + 1] - src):
            out_indices[dst + p] = indices[src + p]
            out_values[dst + p] = values[src + p]
            out_gs[dst + p] = gs[src + p]
        if which[i]:
            for k in range(m):
                Hout[i, s, k] = H[i, t, k]
                Dout[i, s, k] = dHs[i, t, k]
            Lout[i, s] = ls[i, t]
    for r in prange(I * T):
        i = r // T
        if which[i]:
            s = r - i * T
            for k in range(m):
                H[i, s, k] = Hout[i, s, k]
                dHs[i, s, k] = Dout[i, s, k]
            ls[i, s] = Lout[i, s]


@njit(cache=True, fastmath=True)
def _active_features(U, b, pmax, pmin, pn2, active, n_active):
    """Features whose output can be non-zero for some point (exact upper bound from the points' bounds,
    left by the first per-non-zero pass (_hidden): (I, chunks, m), (I, chunks, m), (I, chunks))."""
    I, m, n = U.shape
    for i in range(I):
        hmax = np.full(m, -np.inf)
        hmin = np.full(m, np.inf)
        hn2 = 0.0
        for c in range(pmax.shape[1]):
            hn2 = max(hn2, pn2[i, c])
            for k in range(m):
                hmax[k] = max(hmax[k], pmax[i, c, k])
                hmin[k] = min(hmin[k], pmin[i, c, k])
        hn = np.float32(math.sqrt(hn2))
        # Bounds per feature in passes over contiguous rows (these vectorize).
        # (|U_j|^2 in float64: in float32 it underflows to 0 for |U_j| < ~1e-19, and a zero ball would call a
        # feature with a tiny column dead while a huge h keeps it alive)
        box = np.zeros(n, np.float32)
        un2 = np.zeros(n)
        for k in range(m):
            u = U[i, k]
            hx = np.float32(hmax[k])
            hm = np.float32(hmin[k])
            for j in range(n):
                uj = u[j]
                box[j] += max(uj * hx, uj * hm)
                un2[j] += np.float64(uj) * np.float64(uj)
        bi = b[i]
        c = 0
        for j in range(n):
            ball = math.sqrt(un2[j]) * hn
            ub = bi[j] + min(box[j], ball)
            # Margin far above float32 rounding of z = b + h.u (and of these
            # bounds), so a skipped feature is certainly dead.
            margin = np.float32(1e-5) * (abs(bi[j]) + ball) + np.float32(1e-30)
            if ub + margin > 0.0:
                active[i, c] = j
                c += 1
        n_active[i] = c


@njit(cache=True)
def row_skew(rows):
    """Floats per row, modulo 1,024 (4 KiB), for ``rows`` float32 rows of a kernel's scratch kept in one buffer:
    their starts spread evenly over 4 KiB in 64-byte steps. Rows allocated one by one can start at the same offset
    modulo 4 KiB, where a store to one row and a load from another alias and stall: at m = 2, T = 10^5, 4 of 10
    processes ran the dense step at 109-137 ms instead of 96-99 (by where their arrays landed), 0 of 28 with the
    rows skewed (BENCHMARKS.md). tools/gen_kernels.py writes the same numbers into the unrolled kernels."""
    return (4096 // rows) // 64 * 64 // 4


@njit(cache=True, parallel=True, fastmath=True)
def _dense_pass(U, b, imp, H, active, n_active, nblk, two_c, dU, db, dHpart, losspart):
    """Dense part over (point, active feature) pairs, one (instance, block) per task.

    ``nblk[i]`` blocks split instance i's active features (a function of that
    instance alone, so batching never changes an instance's summation order).

    Writes dU/db for its features (disjoint across blocks), and per-block partial
    sums of dH (I, nblk, T, m) and of the per-point loss (I, nblk, T).
    """
    I, m, n = U.shape
    T = H.shape[1]
    B = dHpart.shape[1]
    for w in prange(I * B):
        i = w // B
        blk = w - i * B
        nb = nblk[i]
        if blk >= nb:
            continue
        na = n_active[i]
        a0 = blk * na // nb
        a1 = (blk + 1) * na // nb
        L = a1 - a0
        if L == 0:
            for t in range(T):
                losspart[i, blk, t] = 0.0
                for k in range(m):
                    dHpart[i, blk, t, k] = 0.0
            continue
        # The loop's float32 rows in one buffer, their starts skewed modulo 4 KiB (see row_skew).
        R = 2 * m + 5
        Lp = L + (row_skew(R) - L) % 1024
        buf = np.zeros(R * Lp, np.float32)
        Uc = buf[:m * Lp].reshape((m, Lp))[:, :L]
        dU32 = buf[m * Lp:2 * m * Lp].reshape((m, Lp))[:, :L]
        bc = buf[2 * m * Lp:2 * m * Lp + L]
        ic = buf[(2 * m + 1) * Lp:(2 * m + 1) * Lp + L]
        z = buf[(2 * m + 2) * Lp:(2 * m + 2) * Lp + L]
        g = buf[(2 * m + 3) * Lp:(2 * m + 3) * Lp + L]
        db32 = buf[(2 * m + 4) * Lp:(2 * m + 4) * Lp + L]
        for a in range(L):
            j = active[i, a0 + a]
            bc[a] = b[i, j]
            ic[a] = imp[j]
            for k in range(m):
                Uc[k, a] = U[i, k, j]
        dU64 = np.zeros((m, L), np.float64)
        db64 = np.zeros(L, np.float64)
        hl = np.empty(m, np.float32)
        for t in range(T):
            for k in range(m):
                hl[k] = H[i, t, k]
            for a in range(L):
                z[a] = bc[a]
            for k in range(m):
                hk = hl[k]
                for a in range(L):
                    z[a] += hk * Uc[k, a]
            lt = np.float32(0.0)
            for a in range(L):
                y = max(z[a], np.float32(0.0))
                wy = ic[a] * y
                lt += wy * y
                gg = two_c * wy
                g[a] = gg
                db32[a] += gg
            losspart[i, blk, t] = lt
            for k in range(m):
                hk = hl[k]
                s = np.float32(0.0)
                for a in range(L):
                    dU32[k, a] += g[a] * hk
                    s += g[a] * Uc[k, a]
                dHpart[i, blk, t, k] = s
            if (t + 1) % 256 == 0 or t == T - 1:
                # Flush float32 tile sums into float64 so long T stays accurate.
                for a in range(L):
                    db64[a] += db32[a]
                    db32[a] = 0.0
                for k in range(m):
                    for a in range(L):
                        dU64[k, a] += dU32[k, a]
                        dU32[k, a] = 0.0
        for a in range(L):
            j = active[i, a0 + a]
            db[i, j] = db64[a]
            for k in range(m):
                dU[i, k, j] = dU64[k, a]


@njit(cache=True, parallel=True)
def _sparse_pass(U, H, indptr, indices, values, nblk, tied, dHpart, losspart, gs, dHs, ls,
                 dW, dU, db, dH, point_loss, loss, partU, partb, partW, closs):
    """The second per-non-zero pass: each point's dL/dh and loss (the dense part's blocks plus the sparse
    corrections that _hidden left in dHs and ls), and the gradients at its non-zeros, in one scatter:
    the corrections' gs[p] h_t into dU_j and gs[p] into db_j, and the input path x_tj dL/dh_t into dW_j
    (tied: into dU_j, in the same addition).

    The generic version (any m); _sparse_kernels.sparse_m1..8 are the same arithmetic in the
    same order, unrolled (tests check they agree bit for bit). One task per (instance, chunk
    of points); ``partU.shape[1]`` chunks (a function of T alone, see sparse_chunks). With one
    chunk the task adds straight into dU/db/dW; with more, each chunk sums into its own
    partials (I, C, ...), added in chunk order afterwards, so results never depend on threads.
    ``dW`` receives the gradient through ``h = W x``; when tied it is added into ``dU`` (= dL/dW).
    """
    I, m, n = U.shape
    T = H.shape[1]
    C = partU.shape[1]
    for w in prange(I * C):
        i = w // C
        c = w - i * C
        t0 = c * T // C
        t1 = (c + 1) * T // C
        if C == 1:
            tU, tb, tW = dU[i], db[i], dW[i]
        else:
            tU, tb, tW = partU[i, c], partb[i, c], partW[i, c]
            tU[:] = 0.0
            tb[:] = 0.0
        if not tied:
            tW[:] = 0.0
        total = 0.0
        for t in range(t0, t1):
            lt = ls[i, t]
            for blk in range(nblk[i]):
                lt += losspart[i, blk, t]
            for k in range(m):
                s = dHs[i, t, k]
                for blk in range(nblk[i]):
                    s += dHpart[i, blk, t, k]
                dH[i, t, k] = s
            for p in range(np.uint64(indptr[i, t]), np.uint64(indptr[i, t + 1])):  # unsigned: see _hidden
                j = np.uint64(indices[p])
                x = values[p]
                g = gs[p]
                tb[j] += g
                for k in range(m):
                    if tied:
                        tU[k, j] += g * H[i, t, k] + x * dH[i, t, k]
                    else:
                        tU[k, j] += g * H[i, t, k]
                        tW[k, j] += x * dH[i, t, k]
            # Exact value is >= 0; the split y^2 - 2xy + x^2 can round a hair below.
            lt = max(lt, 0.0)
            point_loss[i, t] = lt
            total += lt
        closs[i, c] = total
    for i in range(I):
        total = 0.0
        for c in range(C):
            total += closs[i, c]
        loss[i] = total / T
    if C > 1:
        for r in prange(I * n):
            i = r // n
            j = r - i * n
            for c in range(C):
                db[i, j] += partb[i, c, j]
                for k in range(m):
                    dU[i, k, j] += partU[i, c, k, j]
            if not tied:
                for k in range(m):
                    s = np.float32(0.0)
                    for c in range(C):
                        s += partW[i, c, k, j]
                    dW[i, k, j] = s


SPARSE_CHUNK_T = 65_536  # from this T on the sparse pass runs in SPARSE_CHUNKS chunks of points
SPARSE_CHUNKS = 16


def sparse_chunks(T: int) -> int:
    """Chunks of points of the sparse pass: a function of T alone (bit-identical on any core count)."""
    return SPARSE_CHUNKS if T >= SPARSE_CHUNK_T else 1


@njit(cache=True)
def _pack_rows(U, b, imp, W, tied, FT, WT):
    """FT[i, j] = (U[i, :, j], b[i, j], imp[j]); untied, WT[i, j] = W[i, :, j] (one numba call: three numpy
    assignments cost ~30 us, 7% of a T = 100 step at n = 10,000)."""
    I, m, n = U.shape
    for i in range(I):
        for j in range(n):
            for k in range(m):
                FT[i, j, k] = U[i, k, j]
            FT[i, j, m] = b[i, j]
            FT[i, j, m + 1] = imp[j]
            if not tied:
                for k in range(m):
                    WT[i, j, k] = W[i, k, j]


@njit(cache=True)
def _zero_dense_grads(dU, db):
    I, m, n = dU.shape
    for i in range(I):
        for j in range(n):
            db[i, j] = 0.0
            for k in range(m):
                dU[i, k, j] = 0.0


@dataclass
class Grads:
    """Gradients of the mean-over-points loss, one slice per instance."""

    W: np.ndarray  # (I, m, n): dL/dW (total, tied or not)
    b: np.ndarray  # (I, n)
    U: np.ndarray | None  # (I, m, n): dL/dU (U = W_up^T), untied only


_ONES: dict[int, np.ndarray] = {}


def _ones(n: int) -> np.ndarray:
    if n not in _ONES:
        _ONES[n] = np.ones(n, np.float32)
    return _ONES[n]


class CpuWorkspace:
    """Scratch buffers reused across steps (allocation would dominate at small T)."""

    def __init__(self, I: int, m: int, n: int, T: int, tied: bool):
        self.shape = (I, m, n, T, tied)
        self.H = np.empty((I, T, m), np.float32)
        self.active = np.empty((I, n), np.int64)
        self.n_active = np.full(I, n, np.int64)  # (the next step's work estimate reads the last step's)
        C = chunks(I, T)  # chunks of points of the first per-non-zero pass, and their points' bounds
        self.pmax, self.pmin, self.pn2 = np.empty((I, C, m)), np.empty((I, C, m)), np.empty((I, C))
        self.dHpart = np.empty((I, MAX_BLOCKS, T, m), np.float32)
        self.losspart = np.empty((I, MAX_BLOCKS, T), np.float32)
        self.dH = np.empty((I, T, m), np.float32)
        # the sparse corrections of the first per-non-zero pass (_hidden), in the order of `points`
        self.dHs = np.empty((I, T, m), np.float32)
        self.ls = np.empty((I, T), np.float64)
        self.gs = np.empty(0, np.float32)  # one per non-zero of `points` (see nonzero_buffer)
        self.point_loss = np.empty((I, T), np.float64)
        self.loss = np.empty(I, np.float64)
        self.dWin = np.empty((I, m, n), np.float32)
        self.dU = np.empty((I, m, n), np.float32)
        self.db = np.empty((I, n), np.float32)
        self.closs = np.empty((I, sparse_chunks(T)), np.float64)
        self.packed_buffers = None  # (FT, WT, G) of the unrolled per-non-zero kernels, made on first use
        self.generic_buffers = None  # (partU, partb, partW) of the generic ones
        self.tree = None  # tree_kernels.TreeWorkspace, made on the first step that tries the tree
        self.use_tree = np.zeros(I, np.bool_)  # which instances the last step ran on the tree
        # The points in the order a step runs over them (every kernel sees only this): the caller's data
        # itself until the tree sorts an instance, then a copy in which each instance's points are in its
        # tree order (tree_kernels.build), so the tree needs no gather or scatter. Sums over points run in
        # that order; it depends on the instance's own earlier steps only.
        self.source: BatchData | None = None  # the caller's data that `points` orders
        self.points: BatchData | None = None
        self.rows: np.ndarray | None = None  # (I, T): points[i, s] is source[i, rows[i, s]]; None: same order
        self.spare = None  # (indptr, indices, values, gs, and H, dHs, ls scratch): the next reorder's buffers

    def take(self, data: BatchData) -> BatchData:
        """The points of ``data`` in this workspace's order (a new data set starts in its own order).

        The order (and the reordered copy) is kept from one call to the next only for a BatchData whose arrays
        are read-only, as BatchData.stack makes them: one built on writable arrays could change in place
        between calls, so it starts from its own order every call (correct, and a tree sort every step)."""
        frozen = not (data.indptr.flags.writeable or data.indices.flags.writeable or data.values.flags.writeable)
        if self.source is not data or not frozen:
            self.source, self.points, self.rows = data, data, None
            if self.tree is not None:
                self.tree.sorted[:] = False  # its last order was of other points
        return self.points

    def nonzero_buffer(self, nnz: int) -> np.ndarray:
        """gs: one float32 per non-zero of ``points`` (_hidden writes it, _sparse_pass reads it)."""
        if self.gs.size != nnz:
            self.gs = np.empty(nnz, np.float32)
        return self.gs

    def reorder(self, which: np.ndarray, perm: np.ndarray) -> None:
        """Instances ``which``: point s becomes point perm[i, s] (the CSR rows, H and what _hidden left per point
        and per non-zero). Called by the tree build, between the two per-non-zero passes."""
        src = self.points
        I, T = src.indptr.shape[0], src.indptr.shape[1] - 1
        if self.spare is None or self.spare[1].shape != src.indices.shape:
            self.spare = (np.empty_like(src.indptr), np.empty_like(src.indices), np.empty_like(src.values),
                          np.empty_like(self.gs), np.empty_like(self.H), np.empty_like(self.dHs),
                          np.empty_like(self.ls))
        indptr, indices, values, gs, Hout, Dout, Lout = self.spare
        _reorder_points(src.indptr, src.indices, src.values, self.H, which, perm, indptr, indices, values, Hout,
                        self.gs, gs, self.dHs, Dout, self.ls, Lout)
        if self.rows is None:
            self.rows = np.tile(np.arange(T, dtype=np.int64), (I, 1))
        self.rows[which] = np.take_along_axis(self.rows[which], perm[which], axis=1)
        self.points = BatchData(indptr, indices, values, src.n)
        old_gs, self.gs = self.gs, gs
        # the old copy is the next reorder's output (never the caller's own arrays)
        self.spare = None if src is self.source else (src.indptr, src.indices, src.values, old_gs, Hout, Dout, Lout)

    def point_sizes(self) -> np.ndarray:
        """(I, T) each point's number of non-zeros, in the order of ``points`` (the tree sorts each leaf by it)."""
        return np.diff(self.points.indptr, axis=1)

    def in_source_order(self, per_point: np.ndarray) -> np.ndarray:
        """(I, T) values per point of ``points``, in the caller's order (a new array when the orders differ)."""
        if self.rows is None:
            return per_point
        out = np.empty_like(per_point)
        for i in range(out.shape[0]):
            out[i, self.rows[i]] = per_point[i]
        return out

    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FT (I, n, m + 2): each feature's numbers in one row (U_j, b_j, I_j); WT (I, n, m): the untied
        W's columns (FT itself when tied); G: per-chunk gradient partials (dU_j, db_j[, dW_j untied]) in rows."""
        if self.packed_buffers is None:
            I, m, n, T, tied = self.shape
            C = sparse_chunks(T)
            FT = np.empty((I, n, m + 2), np.float32)
            WT = FT if tied else np.empty((I, n, m), np.float32)
            G = np.empty((I, C, n, (m + 1) if tied else (2 * m + 1)) if C > 1 else (I, 1, 1, 1), np.float32)
            self.packed_buffers = (FT, WT, G)
        return self.packed_buffers

    def generic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-chunk partials of the generic sparse pass (dummies with one chunk)."""
        if self.generic_buffers is None:
            I, m, n, T, tied = self.shape
            C = sparse_chunks(T)
            big = C > 1
            self.generic_buffers = (np.empty((I, C, m, n) if big else (I, 1, 1, 1), np.float32),
                                    np.empty((I, C, n) if big else (I, 1, 1), np.float32),
                                    np.empty((I, C, m, n) if big and not tied else (I, C, 1, 1), np.float32))
        return self.generic_buffers


NZ_WORK = 5  # one non-zero's work in the per-non-zero passes, in dense (point, feature) pairs (roughly)


def n_blocks(n_active_max: int) -> int:
    return int(min(MAX_BLOCKS, max(1, -(-n_active_max // MIN_BLOCK))))


# Dense part of the CPU step: "dense" (every point), "tree" (tree-pruned, tree_kernels.py) or
# "auto" (per instance and step, by a deterministic cost model). TOYDD_KERNEL sets it from outside.
KERNELS = ("auto", "dense", "tree")
DEFAULT_KERNEL = os.environ.get("TOYDD_KERNEL", "auto")


def loss_and_grads_cpu(W: np.ndarray, b: np.ndarray, data: BatchData, U: np.ndarray | None = None,
                       importance: np.ndarray | None = None, ws: CpuWorkspace | None = None,
                       skip: bool = True, kernel: str | None = None, point_loss: bool = True
                       ) -> tuple[np.ndarray, np.ndarray | None, Grads, CpuWorkspace]:
    """Loss (I,), per-point loss (I, T) and gradients, numba CPU kernel.

    ``kernel``: how the dense part is computed (see KERNELS; None: DEFAULT_KERNEL). Every
    choice gives the same values up to float32 rounding. ``point_loss=False`` returns None for
    the per-point losses (training does not need them: it saves putting them back in the data's
    order after the tree reordered the points). Returned arrays live in the workspace ``ws`` and
    are overwritten by the next call.
    """
    kernel = DEFAULT_KERNEL if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    I, m, n = W.shape
    T = data.T
    tied = U is None
    Uo = W if tied else U
    if ws is None or ws.shape != (I, m, n, T, tied):
        ws = CpuWorkspace(I, m, n, T, tied)
    imp = _ones(n) if importance is None else np.asarray(importance, np.float32)
    data = ws.take(data)  # in the workspace's order (the tree's, once it sorted)
    # One decision per step, threads or not, for all its kernels: waking the thread pool costs ~0.14 ms, paid
    # again after any serial stretch long enough for the workers to fall asleep (a serial h = W x before a
    # threaded dense pass made that pass 0.5 ms slower at T = 1,000), so a step is either all threaded or all
    # serial twins (the same bits). The dense work is estimated from the last step's active features.
    par = use_threads(T * int(ws.n_active.sum()) + NZ_WORK * data.indices.size)
    run = (lambda k: k) if par else serial
    # The unrolled per-non-zero kernels read packed rows, which cost O(I n m) to fill each step: worth it once
    # there are at least as many non-zeros as features (at T = 5, n = 10,000 the packing alone made the step
    # 15% slower). Both give the same bits (tests/test_kernels.py), so this choice never changes a result.
    packed = m in SPARSE_KERNELS and data.indices.size >= I * n
    two_c = np.float32(2.0 / T)
    gs = ws.nonzero_buffer(data.indices.size)
    if packed:
        FT, WT, G = ws.packed()
        _pack_rows(Uo, b, imp, W, tied, FT, WT)
        run(HIDDEN_KERNELS[m])(WT, FT, data.indptr, data.indices, data.values, two_c, ws.H, gs, ws.dHs, ws.ls,
                               ws.pmax, ws.pmin, ws.pn2)
    else:
        run(_hidden)(W, Uo, b, imp, data.indptr, data.indices, data.values, two_c, ws.H, gs, ws.dHs, ws.ls,
                     ws.pmax, ws.pmin, ws.pn2)
    if skip:  # (the first pass left the points' bounds)
        _active_features(Uo, b, ws.pmax, ws.pmin, ws.pn2, ws.active, ws.n_active)
    else:
        ws.active[:] = np.arange(n)
        ws.n_active[:] = n
    use_tree = _choose_tree(kernel, Uo, b, imp, ws, float(two_c))
    data = ws.points  # a new tree sort reorders the points (and H, dHs, ls, gs)
    gs = ws.gs
    # Blocks per instance depend on that instance alone, so batching never changes its sums. Tree instances
    # have one block, block 0, which the tree's push writes whole; the dense kernel skips them (0 blocks).
    nblk = np.array([1 if t else n_blocks(int(a)) for t, a in zip(use_tree, ws.n_active)], np.int64)
    _zero_dense_grads(ws.dU, ws.db)
    if not use_tree.all():  # (a call with nothing to do still wakes the threads: 0.15 ms at T = 10^5)
        dense = DENSE_KERNELS.get(m, _dense_pass)  # unrolled for m <= 8, generic beyond
        run(dense)(Uo, b, imp, ws.H, ws.active, ws.n_active, np.where(use_tree, 0, nblk), two_c, ws.dU, ws.db,
              ws.dHpart, ws.losspart)
    if use_tree.any():
        from . import tree_kernels as TK

        TK.tree_pass(Uo, b, imp, ws.active, ws.n_active, use_tree, ws.H, ws.tree, float(two_c), ws.dU, ws.db,
                     ws.dHpart[:, 0], ws.losspart[:, 0])
    if packed:
        run(SPARSE_KERNELS[m])(ws.H, data.indptr, data.indices, data.values, nblk, tied, ws.dHpart, ws.losspart,
                               gs, ws.dHs, ws.ls, ws.dWin, ws.dU, ws.db, ws.dH, ws.point_loss, ws.loss, G,
                               ws.closs)
    else:
        partU, partb, partW = ws.generic()
        run(_sparse_pass)(Uo, ws.H, data.indptr, data.indices, data.values, nblk, tied, ws.dHpart, ws.losspart,
                          gs, ws.dHs, ws.ls, ws.dWin, ws.dU, ws.db, ws.dH, ws.point_loss, ws.loss,
                          partU, partb, partW, ws.closs)
    grads = Grads(W=ws.dU, b=ws.db, U=None) if tied else Grads(W=ws.dWin, b=ws.db, U=ws.dU)
    return ws.loss, ws.in_source_order(ws.point_loss) if point_loss else None, grads, ws


def _choose_tree(kernel: str, Uo, b, imp, ws: CpuWorkspace, two_c: float) -> np.ndarray:
    """Which instances run the dense part on the tree this step (I,) bool; builds their trees.

    "auto" decides per instance from that instance's counts alone (T, active features, and
    the nodes a coarse walk of its tree visits): deterministic, never timed, and batching
    never changes an instance's choice. Small T and few active features skip the build.
    """
    from . import tree_kernels as TK

    I, m, n = Uo.shape
    T = ws.H.shape[1]
    if kernel == "dense" or (kernel == "auto" and not TK.worth_trying(T, m)):
        use = np.zeros(I, np.bool_)
    elif kernel == "tree":
        if m > TK.TREE_MAX_M:
            raise ValueError(f"kernel='tree' supports m <= {TK.TREE_MAX_M}, got m = {m}")
        use = np.ones(I, np.bool_)
    else:
        use = np.array([TK.worth_building(T, m, int(a)) for a in ws.n_active], np.bool_)
    if use.any():
        if ws.tree is None:
            ws.tree = TK.TreeWorkspace(I, m, n, T)
        TK.build(ws.H, use, ws.tree, ws.reorder, ws.point_sizes)
        if kernel == "auto":
            # An instance that ran on the tree last step has that walk's exact counts (the state moved
            # little since); the others walk the tree coarsely to count.
            coarse = use & ~ws.use_tree
            if coarse.any():
                TK.walk(Uo, b, imp, ws.active, ws.n_active, coarse, ws.H, ws.tree, two_c,
                        TK.coarse_depth(ws.tree.topo))
            tree, dense = TK.estimate(ws.tree, m, T, ws.n_active)
            use &= tree < TK.TREE_GAIN * dense
    ws.use_tree[:] = use
    return use


# ---------------------------------------------------------------------------
# Torch path (CUDA, or CPU for tests): chunked over points, dense matmuls
# ---------------------------------------------------------------------------

def loss_and_grads_torch(W, b, data: BatchData, U=None, importance=None, chunk_bytes: int | None = None,
                          skip: bool = True):
    """Same contract as :func:`loss_and_grads_cpu`, with torch tensors (any device).

    Memory is bounded by ``chunk_bytes`` for the (I, chunk, n_active) temporaries.
    """
    import torch

    dev = W.device
    if chunk_bytes is None:
        # Temporaries per chunk: a fraction of free GPU memory (fewer, larger
        # matmuls), or 256 MiB on the CPU.
        chunk_bytes = 256 << 20
        if dev.type == "cuda":
            chunk_bytes = int(min(4 << 30, torch.cuda.mem_get_info(dev)[0] // 8))
    I, m, n = W.shape
    T = data.T
    tied = U is None
    Uo = W if tied else U
    imp = torch.ones(n, device=dev) if importance is None else torch.as_tensor(importance, dtype=torch.float32, device=dev)
    key = (str(dev),)
    if key not in data._device_cache:  # index tensors live on the device across steps
        with warnings.catch_warnings():  # BatchData's arrays are read-only; these tensors are only read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            indptr = torch.as_tensor(data.indptr, device=dev)
            indices = torch.as_tensor(data.indices, device=dev)
            values = torch.as_tensor(data.values, device=dev)
        counts = indptr[:, 1:] - indptr[:, :-1]  # (I, T)
        inst = torch.repeat_interleave(torch.arange(I, device=dev).repeat_interleave(T), counts.reshape(-1))
        row = torch.repeat_interleave(torch.arange(T, device=dev).repeat(I), counts.reshape(-1))
        data._device_cache.clear()
        data._device_cache[key] = (indices, values, inst, row)
    indices, values, inst, row = data._device_cache[key]
    flat_col = inst * n + indices  # column in the flattened (I*n) feature space
    # h = W x
    Wflat = W.permute(0, 2, 1).reshape(I * n, m)
    H = torch.zeros(I * T, m, device=dev, dtype=torch.float32)
    H.index_add_(0, inst * T + row, values[:, None] * Wflat[flat_col])
    H = H.view(I, T, m)
    # Exact skipping: one shared active set (union over instances) keeps the batch rectangular.
    if skip:
        hmax, hmin = H.amax(1), H.amin(1)  # (I, m)
        box = torch.maximum(Uo * hmax[:, :, None], Uo * hmin[:, :, None]).sum(1)
        ball = Uo.norm(dim=1) * H.norm(dim=2).amax(1)[:, None]
        ub = b + torch.minimum(box, ball) + 1e-5 * (b.abs() + ball) + 1e-30
        act = torch.nonzero((ub > 0).any(0)).flatten()
    else:
        act = torch.arange(n, device=dev)
    Ua, ba, ia = Uo[:, :, act], b[:, act], imp[act]
    na = len(act)
    dUa = torch.zeros(I, m, na, device=dev, dtype=torch.float64)
    dba = torch.zeros(I, na, device=dev, dtype=torch.float64)
    dH = torch.zeros(I, T, m, device=dev, dtype=torch.float32)
    point_loss = torch.zeros(I, T, device=dev, dtype=torch.float64)
    two_c = 2.0 / T
    step = max(1, int(chunk_bytes // (4 * 3 * max(1, I * na))))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        Hc = H[:, t0:t1]  # (I, c, m)
        Z = torch.baddbmm(ba[:, None, :], Hc, Ua)  # (I, c, na)
        Y = torch.relu(Z)
        IY = Y * ia
        point_loss[:, t0:t1] += (IY * Y).sum(2, dtype=torch.float64)
        Gc = IY.mul_(two_c)  # (I, c, na): dense part of dL/dz
        dUa += torch.bmm(Hc.transpose(1, 2), Gc).double()
        dba += Gc.sum(1, dtype=torch.float64)
        dH[:, t0:t1] = torch.bmm(Gc, Ua.transpose(1, 2))
        del Z, Y, IY, Gc
    dU = torch.zeros(I, m, n, device=dev, dtype=torch.float64)
    db = torch.zeros(I, n, device=dev, dtype=torch.float64)
    dU[:, :, act] = dUa
    db[:, act] = dba
    # Sparse corrections at the non-zeros.
    Ufl = Uo.permute(0, 2, 1).reshape(I * n, m)
    Hrow = H.reshape(I * T, m)[inst * T + row]  # (nnz, m)
    zz = b.reshape(-1)[flat_col] + (Hrow * Ufl[flat_col]).sum(1)
    yy = torch.relu(zz)
    impnz = imp[indices]
    corr = impnz.double() * (values.double() ** 2 - 2.0 * values.double() * yy.double())
    point_loss.view(-1).index_add_(0, inst * T + row, corr)
    gs = torch.where(zz > 0, -two_c * impnz * values, torch.zeros_like(values))
    db.view(-1).index_add_(0, flat_col, gs.double())
    dUflat = torch.zeros(I * n, m, device=dev, dtype=torch.float64)
    dUflat.index_add_(0, flat_col, (gs[:, None] * Hrow).double())
    dU += dUflat.view(I, n, m).permute(0, 2, 1)
    dH.view(I * T, m).index_add_(0, inst * T + row, gs[:, None] * Ufl[flat_col])
    # Input path.
    dWin = torch.zeros(I * n, m, device=dev, dtype=torch.float64)
    dWin.index_add_(0, flat_col, (values[:, None] * dH.reshape(I * T, m)[inst * T + row]).double())
    dWin = dWin.view(I, n, m).permute(0, 2, 1)
    loss = point_loss.sum(1) / T
    if tied:
        grads = Grads(W=(dU + dWin).float(), b=db.float(), U=None)
    else:
        grads = Grads(W=dWin.float().contiguous(), b=db.float(), U=dU.float())
    return loss, point_loss, grads


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------

def loss_and_grads(W, b, data: BatchData, U=None, importance=None):
    """Loss (I,), per-point loss (I, T) and :class:`Grads` of a batch of models.

    ``W``: (I, m, n); ``b``: (I, n); ``U``: (I, m, n) untied output weights
    (``W_up^T``) or None for tied. numpy arrays run the numba CPU kernel; torch
    tensors run the torch path on their device.
    """
    if isinstance(W, np.ndarray):
        loss, pl, g, _ = loss_and_grads_cpu(W, b, data, U, importance)
        return loss.copy(), pl.copy(), Grads(g.W.copy(), g.b.copy(), None if g.U is None else g.U.copy())
    return loss_and_grads_torch(W, b, data, U, importance)


def reference_loss_and_grads(W, b, X, U=None, importance=None):
    """Plain dense autograd: the definition the fast paths are tested against.

    ``X``: dense (I, T, n). Computed in float64. Returns numpy (loss (I,),
    per-point loss (I, T), Grads) for the mean-over-points, sum-over-features loss.
    """
    import torch

    Wt = torch.tensor(np.asarray(W), dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(np.asarray(b), dtype=torch.float64, requires_grad=True)
    Xt = torch.tensor(np.asarray(X), dtype=torch.float64)
    Ut = None if U is None else torch.tensor(np.asarray(U), dtype=torch.float64, requires_grad=True)
    n = Wt.shape[2]
    It = torch.ones(n, dtype=torch.float64) if importance is None else torch.tensor(np.asarray(importance), dtype=torch.float64)
    Hh = torch.einsum("imn,itn->itm", Wt, Xt)
    out_w = Wt if Ut is None else Ut
    Xp = torch.relu(torch.einsum("itm,imn->itn", Hh, out_w) + bt[:, None, :])
    point = ((Xt - Xp) ** 2 * It).sum(2)  # (I, T)
    loss = point.mean(1)
    loss.sum().backward()  # instances are independent: d(sum)/dθ_i = dL_i/dθ_i
    g = Grads(W=Wt.grad.numpy(), b=bt.grad.numpy(), U=None if Ut is None else Ut.grad.numpy())
    return loss.detach().numpy(), point.detach().numpy(), g
