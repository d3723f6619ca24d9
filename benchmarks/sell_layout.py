"""A tried and rejected layout for the per-non-zero passes: SELL-C (sliced ELLPACK) against the CSR kernels.

    python benchmarks/sell_layout.py --T 100000,1000000

The per-non-zero passes (`_sparse_kernels.hidden_m2` / `sparse_m2`) loop point by point over ~10 non-zeros
each: one dependency chain per sum and a loop exit the branch predictor misses at every point. SELL-C
stores C points side by side (the k-th non-zero of C points in C consecutive slots, each chunk padded with
zeros to its longest point; points sorted by count within windows of 256 so padding stays ~2-5%), which
gives C independent chains, a trip count shared by C points, and lanes SIMD can gather across. Each point
still adds its own terms in its own order (padding adds exact zeros), so H, dL/dh and the loss are the same
bits as the CSR kernel's (checked here).

Variants, m = 2, tied, uniform importance, synthetic data (n = 10,000 features, Poisson(10) non-zeros a
point as at S = 0.999, values U(0, 1), random W, b):
  csr      the project's kernels (first pass: h = W x and the corrections; second pass: the scatter), points
           in the data's order
  csr_sorted  the same kernels with the points in SELL's slot order (by count within windows): what the
           tree's order gives them since each leaf's points are sorted by their non-zeros
           (tree_kernels._order_leaves), so the fair comparison for today's tree step
  sell4    C = 4 points interleaved in scalar code (both passes)
  vec16    C = 16 lanes written as loops over the lanes (first pass only): LLVM vectorizes them with gathers
Prints one JSON object: minimum and median ns per non-zero of each pass, in turns, on numba's threads.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np
from numba import njit, prange

WINDOW = 256


@njit(cache=True)
def build_sell(indptr, indices, values, C, win, n, slot_rows, off, sidx, sval):
    """slot_rows[s]: the point in slot s (by non-zero count, descending, within windows of `win`);
    chunk q holds slots qC .. qC + C - 1, its k-th row at off[q] + kC; padding: feature n, value 0."""
    T = indptr.shape[0] - 1
    nq = (T + C - 1) // C
    cnt = np.empty(T, np.int64)
    for t in range(T):
        cnt[t] = indptr[t + 1] - indptr[t]
    for w0 in range(0, T, win):
        w1 = min(T, w0 + win)
        o = np.argsort(-cnt[w0:w1], kind="mergesort")
        for k in range(w1 - w0):
            slot_rows[w0 + k] = w0 + o[k]
    pos = 0
    for q in range(nq):
        off[q] = pos
        K = 0
        for c in range(C):
            if q * C + c < T:
                K = max(K, cnt[slot_rows[q * C + c]])
        for k in range(K):
            for c in range(C):
                s = q * C + c
                p = pos + k * C + c
                if s < T and k < cnt[slot_rows[s]]:
                    sidx[p] = indices[indptr[slot_rows[s]] + k]
                    sval[p] = values[indptr[slot_rows[s]] + k]
                else:
                    sidx[p] = n
                    sval[p] = 0.0
        pos += K * C
    off[nq] = pos
    return pos


def _sell4_sources() -> tuple[str, str]:
    """The C = 4 kernels, unrolled over the 4 slots (generated: 4 copies of one body)."""
    C = 4
    h = ["def hidden_sell4(FT, off, sidx, sval, slot_rows, two_c, H, gs, dHs, ls):",
         "    nq = off.shape[0] - 1", "    T = H.shape[0]", "    for q in prange(nq):",
         "        base = np.uint64(off[q])", f"        K = np.uint64((off[q + 1] - off[q]) // {C})"]
    h += [f"        s{c}_0 = np.float32(0.0); s{c}_1 = np.float32(0.0)" for c in range(C)]
    h += ["        for k in range(K):", f"            p = base + np.uint64({C}) * k"]
    for c in range(C):
        h += [f"            j = np.uint64(sidx[p + {c}]); x = sval[p + {c}]",
              f"            s{c}_0 += x * FT[j, 0]; s{c}_1 += x * FT[j, 1]"]
    h += [f"        l{c} = 0.0; d{c}_0 = np.float32(0.0); d{c}_1 = np.float32(0.0)" for c in range(C)]
    h += ["        for k in range(K):", f"            p = base + np.uint64({C}) * k"]
    for c in range(C):
        h += [f"            j = np.uint64(sidx[p + {c}]); x = sval[p + {c}]",
              "            u0 = FT[j, 0]; u1 = FT[j, 1]; bj = FT[j, 2]; wj = FT[j, 3]",
              f"            zz = bj + s{c}_0 * u0 + s{c}_1 * u1",
              "            y = max(zz, np.float32(0.0))",
              f"            l{c} += wj * (x * x - np.float32(2.0) * x * y)",
              "            g = -two_c * wj * x if zz > 0.0 else np.float32(0.0)",
              f"            gs[p + {c}] = g; d{c}_0 += g * u0; d{c}_1 += g * u1"]
    h += [f"        s = q * {C}"]
    for c in range(C):
        h += [f"        if s + {c} < T:",
              f"            t = slot_rows[s + {c}]; H[t, 0] = s{c}_0; H[t, 1] = s{c}_1",
              f"            dHs[t, 0] = d{c}_0; dHs[t, 1] = d{c}_1; ls[t] = l{c}"]
    s = ["def sparse_sell4(H, off, sidx, sval, slot_rows, dHpart, losspart, gs, dHs, ls, dU, db, dH, point_loss, G):",
         "    nq = off.shape[0] - 1", "    T = H.shape[0]", "    NC = G.shape[0]", "    n = dU.shape[1]",
         "    for cc in prange(NC):", "        Gi = G[cc]", "        Gi[:] = 0.0",
         "        for q in range(cc * nq // NC, (cc + 1) * nq // NC):",
         "            base = np.uint64(off[q])", f"            K = np.uint64((off[q + 1] - off[q]) // {C})",
         f"            s = q * {C}"]
    for c in range(C):
        s += [f"            t{c} = slot_rows[min(s + {c}, T - 1)]",
              f"            d{c}_0 = dHs[t{c}, 0] + dHpart[t{c}, 0]; d{c}_1 = dHs[t{c}, 1] + dHpart[t{c}, 1]",
              f"            h{c}_0 = H[t{c}, 0]; h{c}_1 = H[t{c}, 1]"]
    s += ["            for k in range(K):", f"                p = base + np.uint64({C}) * k"]
    for c in range(C):
        s += [f"                j = np.uint64(sidx[p + {c}]); x = sval[p + {c}]; g = gs[p + {c}]",
              f"                Gi[j, 2] += g; Gi[j, 0] += g * h{c}_0 + x * d{c}_0; Gi[j, 1] += g * h{c}_1 + x * d{c}_1"]
    for c in range(C):
        s += [f"            if s + {c} < T:",
              f"                point_loss[t{c}] = max(ls[t{c}] + losspart[t{c}], 0.0)",
              f"                dH[t{c}, 0] = d{c}_0; dH[t{c}, 1] = d{c}_1"]
    s += ["    for j in prange(n):", "        for c in range(NC):", "            db[j] += G[c, j, 2]",
          "        for c in range(NC):", "            dU[0, j] += G[c, j, 0]",
          "        for c in range(NC):", "            dU[1, j] += G[c, j, 1]"]
    return "\n".join(h) + "\n", "\n".join(s) + "\n"


_ns = {"np": np, "prange": prange}
for _src in _sell4_sources():
    exec(_src, _ns)
hidden_sell4 = njit(parallel=True)(_ns["hidden_sell4"])
sparse_sell4 = njit(parallel=True)(_ns["sparse_sell4"])


@njit(parallel=True)
def hidden_vec16(FT, off, sidx, sval, slot_rows, two_c, H, gs, dHs, ls):
    """First pass over SELL-16: loops over the 16 lanes (vectorized with gathers by LLVM); lane scratch is
    allocated once per block of chunks (allocating it per chunk cost more than the pass)."""
    C = 16
    nq = off.shape[0] - 1
    T = H.shape[0]
    u0a = FT[:, 0].copy()
    u1a = FT[:, 1].copy()
    ba = FT[:, 2].copy()
    wa = FT[:, 3].copy()
    NB = 64
    for blk in prange(NB):
        s0 = np.empty(C, np.float32)
        s1 = np.empty(C, np.float32)
        lsum = np.empty(C, np.float64)
        d0 = np.empty(C, np.float32)
        d1 = np.empty(C, np.float32)
        for q in range(blk * nq // NB, (blk + 1) * nq // NB):
            base = np.uint64(off[q])
            K = np.uint64((off[q + 1] - off[q]) // C)
            s0[:] = 0
            s1[:] = 0
            for k in range(K):
                p = base + np.uint64(C) * k
                for c in range(C):
                    j = np.uint64(sidx[p + c])
                    x = sval[p + c]
                    s0[c] += x * u0a[j]
                    s1[c] += x * u1a[j]
            lsum[:] = 0
            d0[:] = 0
            d1[:] = 0
            for k in range(K):
                p = base + np.uint64(C) * k
                for c in range(C):
                    j = np.uint64(sidx[p + c])
                    x = sval[p + c]
                    u0 = u0a[j]
                    u1 = u1a[j]
                    bj = ba[j]
                    wj = wa[j]
                    zz = bj + s0[c] * u0 + s1[c] * u1
                    y = max(zz, np.float32(0.0))
                    lsum[c] += wj * (x * x - np.float32(2.0) * x * y)
                    g = -two_c * wj * x if zz > 0.0 else np.float32(0.0)
                    gs[p + c] = g
                    d0[c] += g * u0
                    d1[c] += g * u1
            for c in range(C):
                if q * C + c < T:
                    t = slot_rows[q * C + c]
                    H[t, 0] = s0[c]
                    H[t, 1] = s1[c]
                    dHs[t, 0] = d0[c]
                    dHs[t, 1] = d1[c]
                    ls[t] = lsum[c]


def run(T: int, reps: int) -> dict:
    from toydd._sparse_kernels import hidden_m2, sparse_m2
    from toydd.kernels import sparse_chunks
    from toydd.threads import chunks

    rng = np.random.default_rng(0)
    n, m = 10_000, 2
    cnt = rng.poisson(10, T)
    indptr = np.zeros(T + 1, np.int64)
    indptr[1:] = np.cumsum(cnt)
    nnz = int(indptr[-1])
    indices = rng.integers(0, n, nnz).astype(np.int32)
    values = rng.random(nnz, dtype=np.float32)
    FT = np.zeros((n + 1, 4), np.float32)  # row n: the padding's feature (all zero)
    FT[:n, :2] = rng.standard_normal((n, 2)) * 0.3
    FT[:n, 2] = rng.standard_normal(n) * 0.1
    FT[:n, 3] = 1.0
    two_c = np.float32(2.0 / T)
    C = sparse_chunks(T)
    dHpart = (rng.standard_normal((T, m)) * 1e-3).astype(np.float32)
    losspart = rng.random(T).astype(np.float32)

    # CSR (the project's kernels, one instance)
    H = np.zeros((1, T, m), np.float32)
    gs = np.zeros(nnz, np.float32)
    dHs = np.zeros((1, T, m), np.float32)
    ls = np.zeros((1, T))
    G = np.zeros((1, C, n + 1, 3), np.float32)
    dU = np.zeros((1, m, n + 1), np.float32)
    db = np.zeros((1, n + 1), np.float32)
    dH = np.zeros((1, T, m), np.float32)
    pl = np.zeros((1, T))
    args_csr2 = (H, indptr[None], indices, values, np.ones(1, np.int64), True, dHpart[None, None],
                 losspart[None, None], gs, dHs, ls, np.zeros((1, m, n + 1), np.float32), dU, db, dH, pl,
                 np.zeros(1), G, np.zeros((1, C)))

    Cb = chunks(1, T)  # the first pass's chunks, and the points' bounds it leaves per chunk
    bounds = (np.zeros((1, Cb, m)), np.zeros((1, Cb, m)), np.zeros((1, Cb)))

    # CSR with the points in SELL-4's slot order (sorted by count within windows), own outputs
    order = np.empty(T, np.int64)
    cap4 = nnz + 4 * 40 * ((T + 3) // 4)
    build_sell(indptr, indices, values, 4, WINDOW, n, order, np.empty((T + 3) // 4 + 1, np.int64),
               np.empty(cap4, np.int32), np.empty(cap4, np.float32))
    sptr = np.zeros(T + 1, np.int64)
    sptr[1:] = np.cumsum(cnt[order])
    take = np.repeat(indptr[order] - sptr[:-1], cnt[order]) + np.arange(nnz)
    sind, sval_ = indices[take], values[take]
    Hs, gss, dHss, lss = np.zeros_like(H), np.zeros_like(gs), np.zeros_like(dHs), np.zeros_like(ls)
    args_sorted2 = (Hs, sptr[None], sind, sval_, np.ones(1, np.int64), True, dHpart[None, None, order],
                    losspart[None, None, order], gss, dHss, lss, np.zeros((1, m, n + 1), np.float32),
                    np.zeros_like(dU), np.zeros_like(db), np.zeros_like(dH), np.zeros_like(pl), np.zeros(1),
                    np.zeros_like(G), np.zeros((1, C)))

    # SELL
    out = {"T": T, "nnz": nnz}
    kern = {"csr_1": lambda: hidden_m2(FT[None], FT[None], indptr[None], indices, values, two_c, H, gs, dHs, ls,
                                       *bounds),
            "csr_2": lambda: sparse_m2(*args_csr2),
            "csr_sorted_1": lambda: hidden_m2(FT[None], FT[None], sptr[None], sind, sval_, two_c, Hs, gss, dHss,
                                              lss, *bounds),
            "csr_sorted_2": lambda: sparse_m2(*args_sorted2)}
    checks = {}
    for name, width in (("sell4", 4), ("vec16", 16)):
        nq = (T + width - 1) // width
        slot_rows = np.empty(T, np.int64)
        off = np.empty(nq + 1, np.int64)
        cap = nnz + width * 40 * nq
        sidx = np.empty(cap, np.int32)
        sval = np.empty(cap, np.float32)
        t0 = time.perf_counter()
        padded = build_sell(indptr, indices, values, width, WINDOW, n, slot_rows, off, sidx, sval)
        out[f"{name}_padding"] = round(padded / nnz - 1, 4)
        H2 = np.zeros((T, m), np.float32)
        gs2 = np.zeros(cap, np.float32)
        dHs2 = np.zeros((T, m), np.float32)
        ls2 = np.zeros(T)
        first = hidden_sell4 if width == 4 else hidden_vec16
        kern[f"{name}_1"] = (lambda f=first, a=(FT, off, sidx, sval, slot_rows, two_c, H2, gs2, dHs2, ls2): f(*a))
        checks[name] = (H2, dHs2, ls2)
        if width == 4:
            G2 = np.zeros((C, n + 1, 3), np.float32)
            dU2 = np.zeros((m, n + 1), np.float32)
            db2 = np.zeros(n + 1, np.float32)
            dH2 = np.zeros((T, m), np.float32)
            pl2 = np.zeros(T)
            kern["sell4_2"] = (lambda a=(H2, off, sidx, sval, slot_rows, dHpart, losspart, gs2, dHs2, ls2, dU2, db2,
                                         dH2, pl2, G2): sparse_sell4(*a))
    for f in kern.values():
        f()
    for name, (H2, dHs2, ls2) in checks.items():
        out[f"{name}_same_bits"] = bool(np.array_equal(H[0], H2) and np.array_equal(dHs[0], dHs2)
                                        and np.array_equal(ls[0], ls2))
    out["csr_sorted_same_bits"] = bool(np.array_equal(H[0, order], Hs[0]) and np.array_equal(dHs[0, order], dHss[0])
                                       and np.array_equal(ls[0, order], lss[0]))
    times = {k: [] for k in kern}
    for _ in range(reps):
        for k, f in kern.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    for k, v in times.items():
        out[k] = {"min_ns_per_nnz": round(min(v) * 1e9 / nnz, 2), "median_ns_per_nnz": round(float(np.median(v)) * 1e9 / nnz, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="100000,1000000")
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    res = {"machine": platform.machine(), "threads": numba.get_num_threads(),
           "runs": [run(int(t), a.reps) for t in a.T.split(",")]}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
