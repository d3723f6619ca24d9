"""Tree-pruned exact dense pass: a training step whose cost grows ~sqrt(T), not T.

The dense part of the loss (see kernels.py) sums ``I_i ReLU(z_ti)^2`` over every
(point, active feature) pair, with ``z_ti = U_i . h_t + b_i`` linear in the
hidden vector ``h_t`` (m-dim). ReLU is linear on each side of 0, so a set of
points whose bounding box lies entirely on one side of feature i's hyperplane
``z = 0`` needs no per-point work for that feature:

* the box is dead for i (``max_box z <= 0``): it adds nothing;
* the box is linear for i (``min_box z > 0``): its contribution is a closed form
  of the node's moments ``M0 = |N|, M1 = sum h_t, M2 = sum h_t h_t^T``:
  ``dL/dU_i += c I_i (M2 U_i + b_i M1)``, ``dL/db_i += c I_i (U_i . M1 + b_i M0)``
  (``c = 2/T``), and every point of the node gets ``dL/dh_t += c (A h_t + c_v)``
  and a per-point loss ``h_t^T A h_t + 2 c_v . h_t + d`` with
  ``A += I_i U_i U_i^T, c_v += I_i b_i U_i, d += I_i b_i^2`` accumulated on the
  node and pushed down to its points once per step. Per-point losses stay exact.

Points are put in a tree each step: ordered by the Morton code of ``h`` (so every
node is a contiguous range of the order), cut into leaves of ``LEAF`` points (within
a leaf, by their number of non-zeros: see build), and a binary tree over the leaves
(heap numbering: node k has children 2k, 2k+1) carries each node's bounding box and
float64 moments, computed from the current points every step. The order is that
of the last sort while the leaves' boxes have not grown by more than RESORT_GROWTH
since (points move little between steps); then the points are sorted again. The points themselves stay in that
order (the caller reorders its copy of them with H at each sort: see build), so
every pass runs over them in order. A depth-first
walk carries the list of still-undecided features down the tree; only features
that straddle a leaf touch its points, with the same per-point arithmetic as the
dense kernel.

Certified decisions: the box bounds are computed in float64 (products of float32
values are exact there) and a node is called dead or linear only beyond a margin
that covers the float32 rounding of ``z`` in the dense kernel, so a pair is
active here iff it is active there (``z = 0`` counts as inactive, as there).

Determinism: the tree's shape, the leaf size, the K top-level subtrees (one task
each) and the reduction order over subtrees depend on T alone, and the order of
the points on that instance's own earlier steps, never on the thread count or on
the other instances of a batch; the dense-or-tree choice
(``kernels._choose_tree`` with :func:`worth_building` and :func:`estimate`, per
instance) is a function of counts (T, m, active features, pairs in straddling
nodes of a coarse walk), never of wall-clock time.

Shapes: ``I`` instances, ``m`` hidden dims, ``n`` features, ``T`` points,
``NN`` heap slots of the tree (a power of two, < 4 T / LEAF + 2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .threads import chunks, serial

LEAF = 128  # points per leaf: straddling leaves are processed point by point (measured: 128 and 256
# beat 32 and 64 by 10-50% for m = 2..8 at T = 10^4..10^6: a straddling (leaf, feature) has a fixed cost;
# re-measured after the per-non-zero passes got faster: 64, 128, 256 within 5% of each other at T = 10^5, m = 2)
MAX_TASKS = 16  # top-level subtrees walked in parallel (fixed: results never depend on threads)
# Points per task at least: each task pays O(active features) to start (its root classifies every active
# feature, sums the closed forms of those linear there, and zeroes and hands over a gradient row per feature).
# 16,384 rather than 4,096 made whole T = 10^5 tree steps 3.5-4% faster on 2 cores (4 tasks, not 16; in
# turns, machine A, BENCHMARKS.md); from T = 8,192 on there are at least 2 (the walk runs on 2 cores).
TASK_POINTS = 16_384
MIN_TASKS_T = 8_192
RADIX_BITS = 11  # LSD radix sort digit (2,048 buckets stay in L1)
TREE_MAX_M = 16  # Morton codes need m * bits <= 62; beyond this the dense kernel is used
# Relative margin for certified decisions: the dense kernel's float32 z = b + sum_k h_k u_k is within
# (m + 1) 2^-24 (|b| + sum_k |h_k u_k|) of the exact value; (m + 2) 2^-22 leaves a 4x safety factor.
MARGIN_ULP = 2.0 ** -22


# ---------------------------------------------------------------------------
# Tree topology: a function of T only (shared by every instance and every step)
# ---------------------------------------------------------------------------

class Topology:
    """Halving tree over ``nl = ceil(T / LEAF)`` leaves in heap numbering (root 1)."""

    def __init__(self, T: int, leaf_size: int = LEAF):
        self.T = T
        self.leaf_size = leaf_size
        self.nl = nl = max(1, -(-T // leaf_size))
        self.depth_max = int(math.ceil(math.log2(nl))) if nl > 1 else 0
        self.NN = 2 << self.depth_max  # heap slots: indices 1 .. NN - 1
        self.s0, self.s1, self.leaf, self.depth = _topology(T, nl, self.NN, leaf_size)
        # K subtrees at depth log2(K) are the parallel tasks; every heap node there exists when nl >= K.
        self.K = self.tasks(T)
        self.task_depth = self.K.bit_length() - 1

    @staticmethod
    def tasks(T: int) -> int:
        """Subtree tasks: a power of two, at most MAX_TASKS, about TASK_POINTS points each, 2 at least from
        T = MIN_TASKS_T on."""
        k = min(MAX_TASKS, 1 << (max(1, T // TASK_POINTS).bit_length() - 1))
        return max(k, 2 if T >= MIN_TASKS_T else 1)


@njit(cache=True)
def _topology(T, nl, NN, leaf_size):
    l0 = np.full(NN, -1, np.int64)
    l1 = np.full(NN, -1, np.int64)
    depth = np.zeros(NN, np.int64)
    l0[1], l1[1] = 0, nl
    for k in range(1, NN):
        if l0[k] < 0 or l1[k] - l0[k] <= 1:
            continue
        mid = (l0[k] + l1[k]) // 2
        l0[2 * k], l1[2 * k] = l0[k], mid
        l0[2 * k + 1], l1[2 * k + 1] = mid, l1[k]
        depth[2 * k] = depth[2 * k + 1] = depth[k] + 1
    s0 = np.zeros(NN, np.int64)
    s1 = np.zeros(NN, np.int64)  # s1 == s0: unused heap slot
    leaf = np.zeros(NN, np.bool_)
    for k in range(1, NN):
        if l0[k] >= 0:
            s0[k] = l0[k] * leaf_size
            s1[k] = min(l1[k] * leaf_size, T)
            leaf[k] = l1[k] - l0[k] == 1
    return s0, s1, leaf, depth


# ---------------------------------------------------------------------------
# Build: Morton sort, leaf moments, internal nodes (per instance, every step)
# ---------------------------------------------------------------------------

def morton_bits(m: int, T: int) -> int:
    """Bits per hidden dimension: at least ~4x more cells than points (so cells separate leaves),
    filling whole radix passes (a partly used pass costs nearly as much as a full one: at
    T = 10^6, m = 2, one thread, timed in turns, the sort took 37.5 ms for 24 bits in 3 passes and
    30.7 ms for 22 bits in 2, while the walk's straddling pairs grew by 1.4%), at most 62 bits."""
    passes = int(math.ceil((math.log2(max(T, 2)) + 2) / RADIX_BITS))
    return max(1, min(16, 62 // m, passes * RADIX_BITS // m))


@njit(cache=True)
def _spread_table(m):
    """spread[v]: the 8 bits of v placed m bits apart (bit j -> bit j*m)."""
    tab = np.zeros(256, np.uint64)
    for v in range(256):
        s = np.uint64(0)
        for j in range(8):
            if (v >> j) & 1:
                s |= np.uint64(1) << np.uint64(j * m)
        tab[v] = s
    return tab


@njit(cache=True, parallel=True)
def _morton(H, use, bits, codes):
    """codes[i, t]: Morton code of H[i, t] quantized to ``bits`` per dim on instance i's box."""
    I, T, m = H.shape
    tab = _spread_table(m)
    lo = np.empty((I, m))
    scale = np.empty((I, m))
    for i in range(I):
        for k in range(m):
            a, c = np.inf, -np.inf
            for t in range(T):
                v = H[i, t, k]
                a = min(a, v)
                c = max(c, v)
            lo[i, k] = a
            w = c - a
            scale[i, k] = ((1 << bits) - 1) / w if w > 0 and np.isfinite(w) else 0.0
    qmax = (1 << bits) - 1
    for r in prange(I * T):
        i = r // T
        t = r - i * T
        if not use[i]:
            continue
        code = np.uint64(0)
        for k in range(m):
            x = (H[i, t, k] - lo[i, k]) * scale[i, k]
            q = 0  # NaN -> 0
            if x >= qmax:
                q = qmax
            elif x >= 0.0:
                q = int(x)
            part = tab[q & 255]
            if bits > 8:
                part |= tab[(q >> 8) & 255] << np.uint64(8 * m)
            code |= part << np.uint64(k)
        codes[i, t] = code


@njit(cache=True, parallel=True)
def _radix_argsort(codes, use, nbits, perm):
    """perm[i]: stable argsort of codes[i] (LSD radix, RADIX_BITS per pass; keys travel with
    their indices so every pass streams through memory)."""
    I, T = codes.shape
    nb = 1 << RADIX_BITS
    mask = np.uint64(nb - 1)
    for i in prange(I):
        if not use[i]:
            continue
        a = np.arange(T)
        key = codes[i].copy()
        a2 = np.empty(T, np.int64)
        key2 = np.empty(T, np.uint64)
        cnt = np.empty(nb + 1, np.int64)
        shift = 0
        while shift < nbits:
            sh = np.uint64(shift)
            cnt[:] = 0
            for t in range(T):
                cnt[np.int64((key[t] >> sh) & mask) + 1] += 1
            for dg in range(nb):
                cnt[dg + 1] += cnt[dg]
            for t in range(T):
                dg = np.int64((key[t] >> sh) & mask)
                c = cnt[dg]
                a2[c] = a[t]
                key2[c] = key[t]
                cnt[dg] = c + 1
            a, a2 = a2, a
            key, key2 = key2, key
            shift += RADIX_BITS
        perm[i, :] = a


@njit(cache=True, parallel=True)
def _order_leaves(perm, use, key, leaf_size, C):
    """Within each leaf of a new order (perm (I, T): blocks of leaf_size), order the points by key (I, T, per
    point of the current order; keys above KEY_CAP count as KEY_CAP), stably: ties keep their Morton order.
    A leaf's points stay the same set. A counting sort (a general sort per leaf cost as much as the Morton
    sort at T = 10^6). C: chunks of leaves per instance (threads.chunks; scratch allocated per chunk)."""
    I, T = perm.shape
    nl = (T + leaf_size - 1) // leaf_size
    for w in prange(I * C):
        i = w // C
        if not use[i]:
            continue
        c = w - i * C
        block = np.empty(leaf_size, np.int64)
        k = np.empty(leaf_size, np.int64)
        cnt = np.empty(KEY_CAP + 2, np.int64)
        for leaf in range(c * nl // C, (c + 1) * nl // C):
            a = leaf * leaf_size
            L = min(T, a + leaf_size) - a
            cnt[:] = 0
            for s in range(L):
                p = perm[i, a + s]
                block[s] = p
                k[s] = min(key[i, p], KEY_CAP)
                cnt[k[s] + 1] += 1
            for v in range(KEY_CAP + 1):
                cnt[v + 1] += cnt[v]
            for s in range(L):
                perm[i, a + cnt[k[s]]] = block[s]
                cnt[k[s]] += 1


KEY_CAP = 63  # _order_leaves: points with this many non-zeros or more keep their Morton order among themselves


@njit(cache=True, parallel=True)
def _leaves(H, use, s0, s1, leaf_nodes, lo, hi, M1, M2):
    """Each leaf's box and float64 moments (H is already in tree order: see build)."""
    I, T, m = H.shape
    nl = leaf_nodes.shape[0]
    for r in prange(I * nl):
        i = r // nl
        if not use[i]:
            continue
        k = leaf_nodes[r - i * nl]
        if m == 2:  # the paper's case: the sums in registers (the loop below updates memory at each point)
            l0 = l1 = np.inf
            g0 = g1 = -np.inf
            s0_ = s1_ = s00 = s01 = s11 = 0.0
            for s in range(s0[k], s1[k]):
                v0 = np.float64(H[i, s, 0])
                v1 = np.float64(H[i, s, 1])
                l0 = min(l0, v0)
                l1 = min(l1, v1)
                g0 = max(g0, v0)
                g1 = max(g1, v1)
                s0_ += v0
                s1_ += v1
                s00 += v0 * v0
                s01 += v1 * v0
                s11 += v1 * v1
            lo[i, k, 0] = l0
            lo[i, k, 1] = l1
            hi[i, k, 0] = g0
            hi[i, k, 1] = g1
            M1[i, k, 0] = s0_
            M1[i, k, 1] = s1_
            M2[i, k, 0, 0] = s00
            M2[i, k, 1, 0] = M2[i, k, 0, 1] = s01
            M2[i, k, 1, 1] = s11
            continue
        for a in range(m):
            lo[i, k, a] = np.inf
            hi[i, k, a] = -np.inf
            M1[i, k, a] = 0.0
            for c in range(m):
                M2[i, k, a, c] = 0.0
        for s in range(s0[k], s1[k]):
            for a in range(m):
                va = np.float64(H[i, s, a])
                lo[i, k, a] = min(lo[i, k, a], va)
                hi[i, k, a] = max(hi[i, k, a], va)
                M1[i, k, a] += va
                for c in range(a + 1):
                    M2[i, k, a, c] += va * np.float64(H[i, s, c])
        for a in range(m):
            for c in range(a):
                M2[i, k, c, a] = M2[i, k, a, c]


@njit(cache=True, parallel=True)
def _internal(use, s0, s1, leaf, lo, hi, M1, M2):
    """Internal nodes bottom-up (children have larger heap indices than parents)."""
    I, NN, m = lo.shape
    for i in prange(I):
        if not use[i]:
            continue
        for k in range(NN - 1, 0, -1):
            if s1[k] <= s0[k] or leaf[k]:
                continue
            l, r = 2 * k, 2 * k + 1
            for a in range(m):
                lo[i, k, a] = min(lo[i, l, a], lo[i, r, a])
                hi[i, k, a] = max(hi[i, l, a], hi[i, r, a])
                M1[i, k, a] = M1[i, l, a] + M1[i, r, a]
                for c in range(m):
                    M2[i, k, a, c] = M2[i, l, a, c] + M2[i, r, a, c]


# ---------------------------------------------------------------------------
# Walk: one task per (instance, top-level subtree)
# ---------------------------------------------------------------------------

@njit(cache=True, fastmath=True)
def _leaf_pairs(Ht, s0, s1, lst, nout, ua32, ba32, ia32, two_c, g, pdH, ploss, Uc, bc, ic, zz, gg, dU32, db32):
    """Straddling features x points of one leaf, with the dense kernel's loop structure.

    Points outer, the leaf's straddling features inner in contiguous float32 copies (the
    loop vectorizes over features, like kernels._dense_pass). fastmath only vectorizes the
    sums: every dead/linear decision was made (certified) by the caller.
    Ht (m, T): the instance's hidden vectors (a transposed view of H[i]); g (n_active, m + 1): this
    task's gradient partials; pdH (m, T), ploss (T): per point.
    """
    m = Ht.shape[0]
    for q in range(nout):
        a = lst[q]
        bc[q] = ba32[a]
        ic[q] = ia32[a]
        db32[q] = 0.0
        for k in range(m):
            Uc[k, q] = ua32[a, k]
            dU32[k, q] = 0.0
    zero = np.float32(0.0)
    if m == 2:  # the paper's case: one fused pass per point (the loop vectorizes over features)
        u0 = Uc[0]
        d0 = dU32[0]
        u1 = Uc[1]
        d1 = dU32[1]
        for s in range(s0, s1):
            h0 = Ht[0, s]
            h1 = Ht[1, s]
            lt = zero
            e0 = zero
            e1 = zero
            for q in range(nout):
                y = max(bc[q] + h0 * u0[q] + h1 * u1[q], zero)
                wy = ic[q] * y
                lt += wy * y
                gq = two_c * wy
                db32[q] += gq
                d0[q] += gq * h0
                e0 += gq * u0[q]
                d1[q] += gq * h1
                e1 += gq * u1[q]
            ploss[s] += lt
            pdH[0, s] += e0
            pdH[1, s] += e1
    elif m <= 4:
        # m <= 4: one fused pass per point; rows m..3 of Uc (and h) are zero padding
        u0 = Uc[0]
        d0 = dU32[0]
        u1 = Uc[1]
        d1 = dU32[1]
        u2 = Uc[2]
        d2 = dU32[2]
        u3 = Uc[3]
        d3 = dU32[3]
        for s in range(s0, s1):
            h0 = Ht[0, s]
            h1 = Ht[1, s] if 1 < m else zero
            h2 = Ht[2, s] if 2 < m else zero
            h3 = Ht[3, s] if 3 < m else zero
            lt = zero
            e0 = zero
            e1 = zero
            e2 = zero
            e3 = zero
            for q in range(nout):
                y = max(bc[q] + h0 * u0[q] + h1 * u1[q] + h2 * u2[q] + h3 * u3[q], zero)
                wy = ic[q] * y
                lt += wy * y
                gq = two_c * wy
                db32[q] += gq
                d0[q] += gq * h0
                e0 += gq * u0[q]
                d1[q] += gq * h1
                e1 += gq * u1[q]
                d2[q] += gq * h2
                e2 += gq * u2[q]
                d3[q] += gq * h3
                e3 += gq * u3[q]
            ploss[s] += lt
            pdH[0, s] += e0
            if 1 < m:
                pdH[1, s] += e1
            if 2 < m:
                pdH[2, s] += e2
            if 3 < m:
                pdH[3, s] += e3
    elif m <= 8:
        # m <= 8: one fused pass per point; rows m..7 of Uc (and h) are zero padding
        u0 = Uc[0]
        d0 = dU32[0]
        u1 = Uc[1]
        d1 = dU32[1]
        u2 = Uc[2]
        d2 = dU32[2]
        u3 = Uc[3]
        d3 = dU32[3]
        u4 = Uc[4]
        d4 = dU32[4]
        u5 = Uc[5]
        d5 = dU32[5]
        u6 = Uc[6]
        d6 = dU32[6]
        u7 = Uc[7]
        d7 = dU32[7]
        for s in range(s0, s1):
            h0 = Ht[0, s]
            h1 = Ht[1, s] if 1 < m else zero
            h2 = Ht[2, s] if 2 < m else zero
            h3 = Ht[3, s] if 3 < m else zero
            h4 = Ht[4, s] if 4 < m else zero
            h5 = Ht[5, s] if 5 < m else zero
            h6 = Ht[6, s] if 6 < m else zero
            h7 = Ht[7, s] if 7 < m else zero
            lt = zero
            e0 = zero
            e1 = zero
            e2 = zero
            e3 = zero
            e4 = zero
            e5 = zero
            e6 = zero
            e7 = zero
            for q in range(nout):
                y = max(bc[q] + h0 * u0[q] + h1 * u1[q] + h2 * u2[q] + h3 * u3[q] + h4 * u4[q] + h5 * u5[q] + h6 * u6[q] + h7 * u7[q], zero)
                wy = ic[q] * y
                lt += wy * y
                gq = two_c * wy
                db32[q] += gq
                d0[q] += gq * h0
                e0 += gq * u0[q]
                d1[q] += gq * h1
                e1 += gq * u1[q]
                d2[q] += gq * h2
                e2 += gq * u2[q]
                d3[q] += gq * h3
                e3 += gq * u3[q]
                d4[q] += gq * h4
                e4 += gq * u4[q]
                d5[q] += gq * h5
                e5 += gq * u5[q]
                d6[q] += gq * h6
                e6 += gq * u6[q]
                d7[q] += gq * h7
                e7 += gq * u7[q]
            ploss[s] += lt
            pdH[0, s] += e0
            if 1 < m:
                pdH[1, s] += e1
            if 2 < m:
                pdH[2, s] += e2
            if 3 < m:
                pdH[3, s] += e3
            if 4 < m:
                pdH[4, s] += e4
            if 5 < m:
                pdH[5, s] += e5
            if 6 < m:
                pdH[6, s] += e6
            if 7 < m:
                pdH[7, s] += e7
    else:
        for s in range(s0, s1):
            for q in range(nout):
                zz[q] = bc[q]
            for k in range(m):
                hk = Ht[k, s]
                for q in range(nout):
                    zz[q] += hk * Uc[k, q]
            lt = zero
            for q in range(nout):
                y = max(zz[q], zero)
                wy = ic[q] * y
                lt += wy * y
                gq = two_c * wy
                gg[q] = gq
                db32[q] += gq
            ploss[s] += lt
            for k in range(m):
                hk = Ht[k, s]
                e = zero
                for q in range(nout):
                    dU32[k, q] += gg[q] * hk
                    e += gg[q] * Uc[k, q]
                pdH[k, s] += e
    for q in range(nout):
        a = lst[q]
        g[a, m] += db32[q]
        for k in range(m):
            g[a, k] += dU32[k, q]


@njit(cache=True, fastmath=True)
def _leaf_pairs_m2(Ht, s0, s1, lst, nout, ua32, ba32, ia32, two_c, g, pdH, ploss, hc, acc):
    """_leaf_pairs for m = 2 (the paper's case), blocked: four features at a time over the leaf's points.

    The point loop is innermost and vectorizes over points; the four features' numbers and their
    gradient sums stay in registers, and each point's dH and loss are read and written once per four
    features (the feature-inner loop of _leaf_pairs loads and stores each feature's sums at every point).
    hc (2, leaf size): the leaf's hidden vectors, contiguous; acc (3, leaf size): its points' dH and loss sums.
    """
    L = s1 - s0
    h0c = hc[0]
    h1c = hc[1]
    e0 = acc[0]
    e1 = acc[1]
    lt = acc[2]
    zero = np.float32(0.0)
    for s in range(L):
        h0c[s] = Ht[0, s0 + s]
        h1c[s] = Ht[1, s0 + s]
        e0[s] = zero
        e1[s] = zero
        lt[s] = zero
    q = 0
    while q + 4 <= nout:
        a0 = lst[q]
        a1 = lst[q + 1]
        a2 = lst[q + 2]
        a3 = lst[q + 3]
        # Each feature's numbers scaled by r = sqrt(2c I): y' = max(r b + h . r u, 0) = r y, so y'^2 = 2c I y^2,
        # y' r u = 2c I y u and r y' = 2c I y: no product g = 2c I y per pair (9 operations a pair, not 10).
        r0 = np.float32(np.sqrt(two_c * ia32[a0]))
        r1 = np.float32(np.sqrt(two_c * ia32[a1]))
        r2 = np.float32(np.sqrt(two_c * ia32[a2]))
        r3 = np.float32(np.sqrt(two_c * ia32[a3]))
        u00, u01, b0 = r0 * ua32[a0, 0], r0 * ua32[a0, 1], r0 * ba32[a0]
        u10, u11, b1 = r1 * ua32[a1, 0], r1 * ua32[a1, 1], r1 * ba32[a1]
        u20, u21, b2 = r2 * ua32[a2, 0], r2 * ua32[a2, 1], r2 * ba32[a2]
        u30, u31, b3 = r3 * ua32[a3, 0], r3 * ua32[a3, 1], r3 * ba32[a3]
        sb0 = sb1 = sb2 = sb3 = zero
        sx0 = sx1 = sx2 = sx3 = zero
        sy0 = sy1 = sy2 = sy3 = zero
        for s in range(L):
            h0 = h0c[s]
            h1 = h1c[s]
            y0 = max(b0 + h0 * u00 + h1 * u01, zero)
            y1 = max(b1 + h0 * u10 + h1 * u11, zero)
            y2 = max(b2 + h0 * u20 + h1 * u21, zero)
            y3 = max(b3 + h0 * u30 + h1 * u31, zero)
            lt[s] += y0 * y0 + y1 * y1 + y2 * y2 + y3 * y3
            e0[s] += y0 * u00 + y1 * u10 + y2 * u20 + y3 * u30
            e1[s] += y0 * u01 + y1 * u11 + y2 * u21 + y3 * u31
            sb0 += y0
            sb1 += y1
            sb2 += y2
            sb3 += y3
            sx0 += y0 * h0
            sx1 += y1 * h0
            sx2 += y2 * h0
            sx3 += y3 * h0
            sy0 += y0 * h1
            sy1 += y1 * h1
            sy2 += y2 * h1
            sy3 += y3 * h1
        g[a0, 0] += np.float64(r0) * sx0
        g[a0, 1] += np.float64(r0) * sy0
        g[a0, 2] += np.float64(r0) * sb0
        g[a1, 0] += np.float64(r1) * sx1
        g[a1, 1] += np.float64(r1) * sy1
        g[a1, 2] += np.float64(r1) * sb1
        g[a2, 0] += np.float64(r2) * sx2
        g[a2, 1] += np.float64(r2) * sy2
        g[a2, 2] += np.float64(r2) * sb2
        g[a3, 0] += np.float64(r3) * sx3
        g[a3, 1] += np.float64(r3) * sy3
        g[a3, 2] += np.float64(r3) * sb3
        q += 4
    while q < nout:  # the last 0-3 features, one at a time
        a = lst[q]
        rq = np.float32(np.sqrt(two_c * ia32[a]))
        u0, u1, bb = rq * ua32[a, 0], rq * ua32[a, 1], rq * ba32[a]
        sb = sx = sy = zero
        for s in range(L):
            h0 = h0c[s]
            h1 = h1c[s]
            y = max(bb + h0 * u0 + h1 * u1, zero)
            lt[s] += y * y
            e0[s] += y * u0
            e1[s] += y * u1
            sb += y
            sx += y * h0
            sy += y * h1
        g[a, 0] += np.float64(rq) * sx
        g[a, 1] += np.float64(rq) * sy
        g[a, 2] += np.float64(rq) * sb
        q += 1
    inv = 1.0 / np.float64(two_c)  # lt summed y'^2 = 2c I y^2 (the scaled numbers above); ploss is I y^2
    for s in range(L):
        ploss[s0 + s] += lt[s] * inv
        pdH[0, s0 + s] += e0[s]
        pdH[1, s0 + s] += e1[s]


@njit(cache=True)
def _classify_m2(f, nin, blo, bhi, margin_c, cls):
    """m = 2: cls[q] = 0 dead (z <= 0 on the whole box [blo, bhi]), 1 straddling, 2 linear (z > 0 on it) for the
    first nin features of a level list f (3, n): their b, u0, u1. Certified in float64 (see MARGIN_ULP); NaN
    bounds straddle. No branches or stores that depend on earlier iterations: the loop vectorizes."""
    lo0, lo1, hi0, hi1 = blo[0], blo[1], bhi[0], bhi[1]
    fb = f[0]
    fu0 = f[1]
    fu1 = f[2]
    for q in range(nin):
        bb = np.float64(fb[q])
        u0 = np.float64(fu0[q])
        u1 = np.float64(fu1[q])
        p0 = u0 * lo0
        r0 = u0 * hi0
        p1 = u1 * lo1
        r1 = u1 * hi1
        zmax = bb + max(p0, r0) + max(p1, r1)
        zmin = bb + min(p0, r0) + min(p1, r1)
        marg = margin_c * (abs(bb) + max(abs(p0), abs(r0)) + max(abs(p1), abs(r1))) + 1e-37
        cls[q] = 1 - np.int8(zmax <= -marg) + np.int8(zmin > marg)


@njit(cache=True, parallel=True)
def _gather(U, b, imp, active, n_active, use, ua, ba, ia, fl0):
    """Each instance's active features, contiguous, once per step for all its tasks:
    ua (I, n, m), ba, ia (I, n) in float32 (widened to float64 for the decisions); m = 2: also fl0 (I, 3, n),
    the (b, u0, u1) rows every task's walk starts from (see _walk's level lists)."""
    I, m, n = U.shape
    for i in prange(I):
        if not use[i]:
            continue
        for a in range(n_active[i]):
            j = active[i, a]
            ba[i, a] = b[i, j]
            ia[i, a] = imp[j]
            for k in range(m):
                ua[i, a, k] = U[i, k, j]
            if m == 2:
                fl0[i, 0, a] = b[i, j]
                fl0[i, 1, a] = U[i, 0, j]
                fl0[i, 2, a] = U[i, 1, j]


@njit(cache=True, parallel=True)
def _walk(ua32_all, ba32_all, ia32_all, list0, fl0, n_active, use, s0, s1, leaf, leaf_size, depth, task_depth, K,
          max_depth, count_only,
          lo, hi, M1, M2, H, two_c, A, cv, d, pdH, ploss, gU, counts, dHout, lossout):
    """Depth-first walk of each (instance, subtree) carrying the undecided features.

    count_only: stop at ``max_depth`` and only count (node, feature) visits and the
    (point, feature) pairs in straddling nodes there -> counts[i, task] (the cost model).
    Otherwise: linear nodes accumulate into gU (I, K, n_active positions, m + 1) and
    A/cv/d, straddling leaves into pdH (I, m, T) / ploss (I, T) in sorted order, and each task
    then pushes its subtree's node terms down to its points (_push_task: dHout, lossout) in the
    same parallel region, while they are in cache (a separate parallel push cost one more region
    start a step: ~50-100 us on a 2-vCPU VM under numba's workqueue layer, BENCHMARKS.md).
    """
    I, n, m = ua32_all.shape
    levels = int(depth.max()) - task_depth + 2
    margin_c = (m + 2) * MARGIN_ULP
    for w in prange(I * K):
        i = w // K
        task = w - i * K
        if not use[i]:
            continue
        na = n_active[i]
        # This instance's active features (see _gather); float32 values widen exactly to float64.
        ua32 = ua32_all[i]
        ba32 = ba32_all[i]
        ia32 = ia32_all[i]
        g = gU[i, task]
        if not count_only:
            for a in range(na):
                for k in range(m + 1):
                    g[a, k] = 0.0
        # Scratch of the leaf loop (contiguous copies of a leaf's straddling features).
        # (rows m .. pad - 1 stay zero: the fused leaf loops run m = 3, 4 as 4 and m = 5 .. 8 as 8)
        pad = m if m == 2 or m > 8 else (4 if m <= 4 else 8)
        nu_ = 1 if m == 2 else na  # (m = 2 runs _leaf_pairs_m2, which needs none of these: no zeroing per task)
        Uc = np.zeros((pad, nu_), np.float32)
        dU32 = np.zeros((pad, nu_), np.float32)
        bc = np.empty(na, np.float32)
        ic = np.empty(na, np.float32)
        zz = np.empty(na, np.float32)
        gg = np.empty(na, np.float32)
        db32 = np.empty(na, np.float32)
        # scratch of _leaf_pairs_m2, one buffer: its 5 rows start at distinct offsets modulo 4 KiB (a leaf's row is
        # 512 bytes), so the loop's stores to acc never alias its loads from hc (see kernels.row_skew)
        lbuf = np.empty((5, leaf_size), np.float32)
        hc = lbuf[0:2]
        acc = lbuf[2:5]
        # flist[lv]: the features still undecided on entering a node at level lv below the task root.
        # Level 0 (the task root: all active features) is shared by the tasks (list0, fl0: made once per
        # step by _gather instead of copied by each of the K tasks).
        flist = np.empty((levels, na), np.int32)
        flen = np.zeros(levels, np.int64)
        lin = np.empty(na, np.int32)
        cls = np.empty(na, np.int8)
        flen[0] = na
        # m = 2: each level's list also carries its features' numbers, contiguous (b, u0, u1), so the
        # classification reads them in order and vectorizes (gathering them by index made a visit ~6x
        # dearer in a micro-benchmark); the compaction copies them along with the indices.
        fl = np.empty((levels, 3, na if m == 2 else 1), np.float32)
        fl0i = fl0[i]
        stack = np.empty(2 * levels + 2, np.int64)
        slev = np.empty(2 * levels + 2, np.int64)
        top = 1
        stack[0] = K + task
        slev[0] = 0
        blo = np.empty(m)
        bhi = np.empty(m)
        Aloc = np.empty((m, m))
        cloc = np.empty(m)
        visits = 0
        pairs = 0
        while top > 0:
            top -= 1
            k = stack[top]
            lv = slev[top]
            cnt = s1[k] - s0[k]
            for kk in range(m):
                blo[kk] = lo[i, k, kk]
                bhi[kk] = hi[i, k, kk]
            src = list0 if lv == 0 else flist[lv]
            fcur = fl0i if lv == 0 else fl[lv]
            dst = flist[lv + 1]
            nin = flen[lv]
            if m == 2 and leaf[k] and not count_only:
                # A leaf drops the features dead on its box and runs the per-point loop on the rest, linear
                # ones included (exact for them too): the full classification, its compaction and the
                # linear closed form cost more there than the pairs they saved (T = 10^5, BENCHMARKS.md).
                _classify_m2(fcur, nin, blo, bhi, margin_c, cls)
                nu = np.uint64(0)  # unsigned counters: no negative-index wraparound code in the compactions
                for q in range(nin):
                    dst[nu] = src[q]
                    nu += np.uint64(cls[q] != 0)
                nout = np.int64(nu)
                pairs += nout * cnt
                _leaf_pairs_m2(H[i].T, s0[k], s1[k], dst, nout, ua32, ba32, ia32, np.float32(two_c),
                               g, pdH[i], ploss[i], hc, acc)
                continue
            visits += nin
            # Classify: cls = 0 dead (z <= 0 on the whole box), 1 straddling, 2 linear (z > 0 on it);
            # NaN bounds (a diverged model) straddle, so the per-point code shows the NaN as dense does.
            # A loop without branches or stores that depend on earlier iterations (it vectorizes);
            # the compaction below is a second, cheap loop.
            if m == 2:
                _classify_m2(fcur, nin, blo, bhi, margin_c, cls)
            else:
                for q in range(nin):
                    a = src[q]
                    bb = np.float64(ba32[a])
                    zmax = bb
                    zmin = bb
                    scale = abs(bb)
                    for kk in range(m):
                        u = np.float64(ua32[a, kk])
                        p = u * blo[kk]
                        r = u * bhi[kk]
                        zmax += max(p, r)
                        zmin += min(p, r)
                        scale += max(abs(p), abs(r))
                    marg = margin_c * scale + 1e-37
                    cls[q] = 1 - np.int8(zmax <= -marg) + np.int8(zmin > marg)
            nu = np.uint64(0)
            nl = np.uint64(0)
            if m == 2:
                fb = fcur[0]
                fu0 = fcur[1]
                fu1 = fcur[2]
                gb = fl[lv + 1, 0]
                gu0 = fl[lv + 1, 1]
                gu1 = fl[lv + 1, 2]
                for q in range(nin):
                    c = cls[q]
                    a = src[q]
                    dst[nu] = a
                    gb[nu] = fb[q]
                    gu0[nu] = fu0[q]
                    gu1[nu] = fu1[q]
                    nu += np.uint64(c == 1)
                    lin[nl] = a
                    nl += np.uint64(c == 2)
            else:
                for q in range(nin):
                    c = cls[q]
                    a = src[q]
                    dst[nu] = a
                    nu += np.uint64(c == 1)
                    lin[nl] = a
                    nl += np.uint64(c == 2)
            nout = np.int64(nu)
            nlin = np.int64(nl)
            if not count_only and nlin > 0 and m == 2:
                # The same closed form for m = 2 with the node's moments and sums in registers (the loop
                # below keeps Aloc and cloc in memory: it took a quarter of the walk at T = 10^5).
                m10 = M1[i, k, 0]
                m11 = M1[i, k, 1]
                m00 = M2[i, k, 0, 0]
                m01 = M2[i, k, 0, 1]
                m11b = M2[i, k, 1, 1]
                a00 = a01 = a11 = c0 = c1 = dloc = 0.0
                for q in range(nlin):
                    a = np.uint64(lin[q])  # (unsigned: no wraparound code at its 7 uses)
                    wgt = np.float64(ia32[a])
                    cw = two_c * wgt
                    bb = np.float64(ba32[a])
                    u0 = np.float64(ua32[a, 0])
                    u1 = np.float64(ua32[a, 1])
                    g[a, 0] += cw * (bb * m10 + m00 * u0 + m01 * u1)
                    g[a, 1] += cw * (bb * m11 + m01 * u0 + m11b * u1)
                    g[a, 2] += cw * (bb * cnt + u0 * m10 + u1 * m11)
                    wu0 = wgt * u0
                    wu1 = wgt * u1
                    a00 += wu0 * u0
                    a01 += wu0 * u1
                    a11 += wu1 * u1
                    c0 += wu0 * bb
                    c1 += wu1 * bb
                    dloc += wgt * bb * bb
                A[i, k, 0, 0] += a00
                A[i, k, 0, 1] += a01
                A[i, k, 1, 0] += a01
                A[i, k, 1, 1] += a11
                cv[i, k, 0] += c0
                cv[i, k, 1] += c1
                d[i, k] += dloc
            elif not count_only and nlin > 0:
                # Linear features: closed form of the node's moments; point terms pushed down later.
                Aloc[:] = 0.0
                cloc[:] = 0.0
                dloc = 0.0
                for q in range(nlin):
                    a = lin[q]
                    wgt = np.float64(ia32[a])
                    cw = two_c * wgt
                    bb = np.float64(ba32[a])
                    sb = bb * cnt
                    for kk in range(m):
                        uk = np.float64(ua32[a, kk])
                        sb += uk * M1[i, k, kk]
                        t2 = bb * M1[i, k, kk]
                        for jj in range(m):
                            uj = np.float64(ua32[a, jj])
                            t2 += M2[i, k, kk, jj] * uj
                            Aloc[kk, jj] += wgt * uk * uj
                        g[a, kk] += cw * t2
                        cloc[kk] += wgt * bb * uk
                    g[a, m] += cw * sb
                    dloc += wgt * bb * bb
                for kk in range(m):
                    cv[i, k, kk] += cloc[kk]
                    for jj in range(m):
                        A[i, k, kk, jj] += Aloc[kk, jj]
                d[i, k] += dloc
            if nout == 0:
                continue
            if leaf[k] or (count_only and depth[k] >= max_depth):
                pairs += nout * cnt
                if count_only:
                    pass
                elif m == 2:
                    _leaf_pairs_m2(H[i].T, s0[k], s1[k], dst, nout, ua32, ba32, ia32, np.float32(two_c),
                                   g, pdH[i], ploss[i], hc, acc)
                else:
                    _leaf_pairs(H[i].T, s0[k], s1[k], dst, nout, ua32, ba32, ia32, np.float32(two_c),
                                g, pdH[i], ploss[i], Uc, bc, ic, zz, gg, dU32, db32)
                continue
            flen[lv + 1] = nout
            stack[top] = 2 * k + 1
            slev[top] = lv + 1
            stack[top + 1] = 2 * k
            slev[top + 1] = lv + 1
            top += 2
        counts[i, task, 0] = visits
        counts[i, task, 1] = pairs
        if not count_only:  # this subtree's node terms down to its points, while they are in cache
            _push_task(i, task, K, s0, s1, leaf, H, two_c, A, cv, d, pdH, ploss, dHout, lossout)


@njit(cache=True)
def _push_task(i, task, K, s0, s1, leaf, H, two_c, A, cv, d, pdH, ploss, dHout, lossout):
    """Push node terms down to the points of subtree task (instance i); write dH / per-point loss (in tree
    order, like H). Consumes and clears that subtree's A, cv, d, pdH, ploss (zero for the next step).
    dHout (I, T, m) and lossout (I, T) are kernels.py's block-0 partials (float32)."""
    m = cv.shape[2]
    stack = np.empty(2 * 64 + 2, np.int64)
    top = 1
    stack[0] = K + task
    h = np.empty(m)
    while top > 0:
        top -= 1
        k = stack[top]
        if not leaf[k]:
            for c in (2 * k, 2 * k + 1):
                for a in range(m):
                    cv[i, c, a] += cv[i, k, a]
                    for e in range(m):
                        A[i, c, a, e] += A[i, k, a, e]
                d[i, c] += d[i, k]
            stack[top] = 2 * k + 1
            stack[top + 1] = 2 * k
            top += 2
        elif m == 2:  # the paper's case, with the leaf's terms in registers
            a00, a01, a10, a11 = A[i, k, 0, 0], A[i, k, 0, 1], A[i, k, 1, 0], A[i, k, 1, 1]
            c0, c1, dk = cv[i, k, 0], cv[i, k, 1], d[i, k]
            for s in range(np.uint64(s0[k]), np.uint64(s1[k])):  # unsigned: no wraparound code
                h0 = np.float64(H[i, s, 0])
                h1 = np.float64(H[i, s, 1])
                ah0 = c0 + a00 * h0 + a01 * h1
                ah1 = c1 + a10 * h0 + a11 * h1
                lt = dk + ploss[i, s] + h0 * (ah0 + c0) + h1 * (ah1 + c1)
                dHout[i, s, 0] = two_c * ah0 + pdH[i, 0, s]
                dHout[i, s, 1] = two_c * ah1 + pdH[i, 1, s]
                pdH[i, 0, s] = 0.0
                pdH[i, 1, s] = 0.0
                lossout[i, s] = max(lt, 0.0)
                ploss[i, s] = 0.0
        else:
            for s in range(s0[k], s1[k]):
                for a in range(m):
                    h[a] = H[i, s, a]
                lt = d[i, k] + ploss[i, s]
                for a in range(m):
                    Ah = cv[i, k, a]
                    for e in range(m):
                        Ah += A[i, k, a, e] * h[e]
                    lt += h[a] * (Ah + cv[i, k, a])
                    dHout[i, s, a] = two_c * Ah + pdH[i, a, s]
                    pdH[i, a, s] = 0.0
                lossout[i, s] = max(lt, 0.0)
                ploss[i, s] = 0.0
        for a in range(m):
            cv[i, k, a] = 0.0
            for e in range(m):
                A[i, k, a, e] = 0.0
        d[i, k] = 0.0


@njit(cache=True, parallel=True)
def _reduce(use, active, n_active, K, gU, dU, db):
    """Sum the K subtrees' gradient partials in a fixed order into dU (I, m, n), db (I, n)."""
    I, m, n = dU.shape
    for r in prange(I * n):
        i = r // n
        a = r - i * n
        if use[i] and a < n_active[i]:
            j = active[i, a]
            for k in range(m + 1):
                s = 0.0
                for task in range(K):
                    s += gU[i, task, a, k]
                if k < m:
                    dU[i, k, j] = s
                else:
                    db[i, j] = s


# ---------------------------------------------------------------------------
# Driver and cost model
# ---------------------------------------------------------------------------

class TreeWorkspace:
    """Per-(I, m, n, T) buffers of the tree path, reused across steps."""

    def __init__(self, I: int, m: int, n: int, T: int, leaf_size: int = LEAF):
        self.shape = (I, m, n, T)
        self.topo = tp = Topology(T, leaf_size)
        self.leaf_nodes = np.flatnonzero(tp.leaf).astype(np.int64)
        self.bits = morton_bits(m, T)
        self.codes = np.zeros((I, T), np.uint64)
        self.perm = np.zeros((I, T), np.int64)  # a new sort's order, handed to build's reorder
        self.lo = np.zeros((I, tp.NN, m))
        self.hi = np.zeros((I, tp.NN, m))
        self.M1 = np.zeros((I, tp.NN, m))
        self.M2 = np.zeros((I, tp.NN, m, m))
        # Accumulators consumed and cleared by _push_task: zero between steps.
        self.A = np.zeros((I, tp.NN, m, m))
        self.cv = np.zeros((I, tp.NN, m))
        self.d = np.zeros((I, tp.NN))
        self.pdH = np.zeros((I, m, T))
        self.ploss = np.zeros((I, T))
        self.gU = np.zeros((I, tp.K, n, m + 1))  # per feature its (dU, db) row
        self.ua = np.zeros((I, n, m), np.float32)
        self.ba = np.zeros((I, n), np.float32)
        self.ia = np.zeros((I, n), np.float32)
        self.list0 = np.arange(n, dtype=np.int32)  # every task's level-0 list (all active features)
        self.fl0 = np.zeros((I, 3, n if m == 2 else 1), np.float32)  # m = 2: their (b, u0, u1)
        self.counts = np.zeros((I, tp.K, 2), np.int64)
        self.counts_depth = np.full(I, -1)  # per instance, the depth its last walk counted to (see estimate)
        # Per instance: the last whole walk's straddling pairs over what its coarse walk had extrapolated for
        # the same step (1 until both ran on one step); scales later coarse estimates, so that a coarse
        # estimate and the exact count of the next step agree instead of flipping the choice every step.
        self.pair_scale = np.ones(I)
        self.coarse_fine = np.zeros(I)  # this step's coarse extrapolation of the fine pairs (0: none)
        # The order of the last sort, kept while it stays good (see build): per instance, whether there is
        # one, and the leaves' box size it gave right after sorting (relative to the root's).
        self.sorted = np.zeros(I, np.bool_)
        self.spread_at_sort = np.zeros(I)
        self.sorts = 0  # instance sorts so far (tests and benchmarks read it)


# Points move little from one training step to the next, so the order of the last Morton sort still
# groups them well: a build first refreshes boxes and moments in that order (exact whatever the order:
# they are computed from the current points) and sorts again only when the leaves' boxes have grown
# by more than this factor since that sort, relative to the root box (a fresh data set, as with online
# batches, always sorts again). Measured at T = 10^6, m = 2: the sort is ~37 of a ~154 ms step.
RESORT_GROWTH = 1.25


@njit(cache=True)
def _leaf_spread(use, leaf_nodes, lo, hi):
    """Per instance: the sum over leaves of their boxes' widths (all dims), over the root box's; NaN if any is."""
    I, NN, m = lo.shape
    out = np.zeros(I)
    for i in range(I):
        if not use[i]:
            continue
        root = 0.0
        for a in range(m):
            root += hi[i, 1, a] - lo[i, 1, a]
        s = 0.0
        for k in leaf_nodes:
            for a in range(m):
                s += hi[i, k, a] - lo[i, k, a]
        out[i] = s / root if root > 0.0 else (0.0 if root == 0.0 else np.nan)
    return out


def _threads(kernel, tw: TreeWorkspace):
    """A per-point tree kernel threaded from PARALLEL_POINTS points on, else its serial twin (threads.serial:
    the same bits; entering a parallel region costs ~0.14 ms here, a sizeable part of a T = 5,000 step)."""
    I, T = tw.codes.shape
    return kernel if I * T >= PARALLEL_POINTS else serial(kernel)


PARALLEL_POINTS = 65_536


def build(H: np.ndarray, use: np.ndarray, tw: TreeWorkspace, reorder, sizes=None) -> None:
    """Boxes and moments of the points of instances ``use``, in their current order while that order
    stays good (RESORT_GROWTH), else sorted again.

    The points stay in the order of their last sort (Morton; within a leaf, by ``sizes``): ``H`` (I, T, m)
    comes in that order, and a new sort calls ``reorder(which, perm)``, which must put ``H[i]`` (and
    whatever the caller keeps aligned with it: the training points themselves) into the order
    ``H[i, perm[i]]`` for the instances ``which``. Everything after the build (walk, push, the
    per-non-zero passes) then runs over points in tree order, with no gather or scatter.

    The tree is exact in any order; the order only decides how tight the boxes are. Which order a step
    uses depends on that instance's own earlier steps alone (never on threads or the batch).

    ``sizes``: optional, a callable giving each point's number of non-zeros (I, T) in the current order,
    called at a sort only. A sort then orders each leaf's points by it, counts from KEY_CAP on as one
    (the same points per leaf, so the same boxes): the per-non-zero loops, which run point by point in
    this order, then meet runs of equal trip counts and predict their loops' exits (measured 10-22% off
    both passes at T = 10^5 .. 10^6)."""
    tp = tw.topo
    m = H.shape[2]

    def boxes(which: np.ndarray) -> np.ndarray:
        """Boxes and moments of instances ``which`` in the current order; their leaves' spread."""
        _threads(_leaves, tw)(H, which, tp.s0, tp.s1, tw.leaf_nodes, tw.lo, tw.hi, tw.M1, tw.M2)
        serial(_internal)(which, tp.s0, tp.s1, tp.leaf, tw.lo, tw.hi, tw.M1, tw.M2)
        return _leaf_spread(which, tw.leaf_nodes, tw.lo, tw.hi)

    fresh = use & ~tw.sorted
    kept = use & tw.sorted
    if kept.any():
        # not (<=): a NaN spread (a diverged model) sorts again
        fresh |= kept & ~(boxes(kept) <= RESORT_GROWTH * tw.spread_at_sort)
    if fresh.any():
        _morton(H, fresh, tw.bits, tw.codes)
        _radix_argsort(tw.codes, fresh, tw.bits * m, tw.perm)
        if sizes is not None:
            _threads(_order_leaves, tw)(tw.perm, fresh, sizes(), tp.leaf_size, chunks(len(fresh), tp.nl))
        reorder(fresh, tw.perm)
        tw.spread_at_sort[fresh] = boxes(fresh)[fresh]
        tw.sorted |= fresh
        tw.sorts += int(fresh.sum())


def walk(U, b, imp, active, n_active, use, H, tw: TreeWorkspace, two_c: float,
         count_depth: int | None = None, dHout=None, lossout=None) -> None:
    tp = tw.topo
    count_only = count_depth is not None
    if dHout is None:  # (a walk that only counts writes no point terms)
        dHout = np.zeros((H.shape[0], 0, H.shape[2]), np.float32)
        lossout = np.zeros((H.shape[0], 0), np.float32)
    serial(_gather)(U, b, imp, active, n_active, use, tw.ua, tw.ba, tw.ia, tw.fl0)
    depth = tp.depth_max if count_depth is None else count_depth
    (_walk if use.sum() * tp.K > 1 else serial(_walk))(
        tw.ua, tw.ba, tw.ia, tw.list0, tw.fl0, n_active, use, tp.s0, tp.s1, tp.leaf, tp.leaf_size, tp.depth,
        tp.task_depth, tp.K, depth, count_only, tw.lo, tw.hi, tw.M1, tw.M2, H, two_c, tw.A, tw.cv, tw.d, tw.pdH,
        tw.ploss, tw.gU, tw.counts, dHout, lossout)
    tw.counts_depth[use] = depth


def tree_pass(U, b, imp, active, n_active, use, H, tw: TreeWorkspace, two_c: float, dU, db, dHout, lossout) -> None:
    """The dense part for instances ``use`` (tree already built on ``H``, in tree order): gradients into
    dU/db (their active features), dH and per-point loss into dHout (I, T, m) / lossout (I, T), in the
    order of H."""
    tp = tw.topo
    walk(U, b, imp, active, n_active, use, H, tw, two_c, dHout=dHout, lossout=lossout)  # (pushes too)
    # calibrate the coarse estimate of instances that had one this step (see TreeWorkspace.pair_scale)
    both = use & (tw.coarse_fine > 0)
    tw.pair_scale[both] = tw.counts[both, :, 1].sum(1) / tw.coarse_fine[both]
    tw.coarse_fine[:] = 0.0
    _threads(_reduce, tw)(use, active, n_active, tp.K, tw.gU, dU, db)


# --- cost model (deterministic: counts, never clocks) ------------------------------
# ns per unit of work, wall clock with 2 threads, fitted on real training states at m = 1, 2, 3,
# 5, 8 and T = 10^4, 10^5 (BENCHMARKS.md, "Tree-pruned exact step"). Only their ratios matter, and
# only near the break-even point; TREE_GAIN keeps the choice on the safe side of it.
# m = 2 re-fitted after the blocked leaf loop (BENCHMARKS.md): 0.13-0.16 ns per dense pair at T = 2,500 .. 10^5,
# 0.23-0.25 per pair in the leaves (walk included) with one subtree task, 0.14-0.16 with several.
DENSE_PAIR_NS = (0.0, 0.15, 0.14, 0.3, 0.35, 0.42, 0.6, 0.8, 0.95)  # [m]: dense kernel, per (point, feature)
LEAF_PAIR_NS = (0.0, 1.0, 0.24, 0.75, 0.85, 0.95, 1.05, 1.15, 1.2)  # [m]: per straddling-leaf pair, walk included
TASK_FEATURE_NS = 12.0  # per (subtree task, active feature): gathers, zeroing, the task root's visit
AUTO_MAX_M = 8  # beyond the fused leaf loops the tree is never chosen automatically
TREE_MIN_T = 2_048  # below this the dense kernel always wins (a handful of leaves)
COARSE_POINTS = 4_096  # the cost model walks the tree down to nodes of about this many points
VISIT_NS = 4.0  # one (node, feature) test of the coarse walk
TREE_GAIN = 0.8  # choose the tree only if its estimate is below this fraction of the dense estimate
SHAPE_FACTOR = 1.5  # straddled leaves over the ideal cube count (measured ratios at m = 2..8, T = 10^4..10^6)
MAX_WASTE = 0.08  # build a tree only if building it and the coarse walk cost <= 8% of a dense step


def build_point_ns(m: int) -> float:
    """Tree build and push-down per point (Morton code, radix sort, moments, scatter back)."""
    return 30.0 + 8.0 * m


def min_T(m: int) -> float:
    """Smallest T at which the tree can pay, whatever the state.

    A hyperplane crosses ~(T / LEAF)^((m-1)/m) of the T / LEAF leaves if they were cubes, so
    the tree keeps a fraction >= ~(LEAF / T)^(1/m) of the pairs (x SHAPE_FACTOR: Morton leaves
    are not cubes), each LEAF_PAIR_NS / DENSE_PAIR_NS times dearer than a dense pair: below
    this T it does not win, and auto does not build it.
    """
    return max(TREE_MIN_T, LEAF * (SHAPE_FACTOR * LEAF_PAIR_NS[m] / (TREE_GAIN * DENSE_PAIR_NS[m])) ** m)


def worth_trying(T: int, m: int) -> bool:
    return m <= AUTO_MAX_M and T >= min_T(m)


def worth_building(T: int, m: int, n_active: int) -> bool:
    """Cheap first test, before any tree exists: could the tree pay for its build?

    If the coarse walk then picks the dense kernel, the build and the walk were wasted:
    allowed only when they cost at most MAX_WASTE of the dense step.
    """
    if not worth_trying(T, m):
        return False
    K = Topology.tasks(T)
    coarse_visits = n_active * 2 * max(1, T // COARSE_POINTS)
    overhead = build_point_ns(m) * T + VISIT_NS * coarse_visits + TASK_FEATURE_NS * K * n_active
    return overhead <= MAX_WASTE * DENSE_PAIR_NS[m] * T * n_active


def estimate(tw: TreeWorkspace, m: int, T: int, n_active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tree, dense) cost estimates (ns) per instance from the counts of its last walk.

    A whole walk (the tree ran) counted the pairs in straddling leaves themselves. A coarse walk stops
    at nodes of ~COARSE_POINTS points; below them the straddling pairs shrink as
    (LEAF / node size)^(1/m) (a hyperplane crosses ~N^((m-1)/m) of N cells).
    """
    tp = tw.topo
    size = T / (1 << np.maximum(tw.counts_depth, 0))
    coarse = size > tp.leaf_size
    pairs = tw.counts[:, :, 1].sum(1).astype(np.float64)
    fine_pairs = np.where(coarse, pairs * (tp.leaf_size / size) ** (1.0 / m) * tw.pair_scale, pairs)
    tw.coarse_fine[:] = np.where(coarse, fine_pairs / tw.pair_scale, 0.0)
    na = n_active.astype(np.float64)
    tree = build_point_ns(m) * T + LEAF_PAIR_NS[m] * fine_pairs + TASK_FEATURE_NS * tp.K * na
    dense = DENSE_PAIR_NS[m] * T * na
    return tree, dense


def coarse_depth(tp: Topology) -> int:
    return max(tp.task_depth, tp.depth_max - max(0, int(round(math.log2(COARSE_POINTS / LEAF)))))
