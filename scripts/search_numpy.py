#!/usr/bin/env python3
"""Brute-force nearest-neighbour search in numpy, the peer of `cargo bench --bench search`.

1,000 queries against galleries of 10,000 and 100,000 random unit vectors (D = 128, float32),
k = 10: squared distances from one matrix product (|q|^2 + |g|^2 - 2 q.g^T), np.argpartition for
the k smallest, then a sort of those k. Prints queries/s (median of a few runs) and CPU seconds
per search (all threads) per gallery size.
numpy's BLAS uses every core unless told otherwise (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS).

    pip install numpy && python3 scripts/search_numpy.py [--reps 5]
"""

import argparse
import os
import time

import numpy as np


def unit_vectors(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def search(queries, gallery, gallery_sq, k):
    d2 = (queries * queries).sum(1)[:, None] + gallery_sq[None, :] - 2.0 * (queries @ gallery.T)
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    rows = np.arange(len(queries))[:, None]
    order = np.argsort(d2[rows, part], axis=1, kind="stable")
    idx = part[rows, order]
    return idx, np.sqrt(np.maximum(d2[rows, idx], 1e-12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "all cores"
    print(f"numpy {np.__version__}, BLAS threads: {threads}, load average {os.getloadavg()[0]:.2f}")
    for g in (10_000, 100_000):
        gallery = unit_vectors(rng, g, a.dim)
        queries = unit_vectors(rng, a.queries, a.dim)
        gallery_sq = (gallery * gallery).sum(1)
        idx, _ = search(queries, gallery, gallery_sq, a.k)  # warm-up
        # A check: the first query's nearest by a plain float64 scan.
        d = np.linalg.norm(gallery.astype(np.float64) - queries[0].astype(np.float64), axis=1)
        assert idx[0, 0] == np.argmin(d), "numpy search disagrees with the float64 scan"
        times = []
        cpu0 = time.process_time()
        for _ in range(a.reps):
            t = time.perf_counter()
            search(queries, gallery, gallery_sq, a.k)
            times.append(time.perf_counter() - t)
        cpu = (time.process_time() - cpu0) / a.reps
        med = float(np.median(times))
        print(
            f"{a.queries} queries x {g} gallery, D={a.dim}, k={a.k}: {med * 1e3:.1f} ms median of {a.reps} "
            f"({a.queries / med:.0f} queries/s; min {min(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms), "
            f"{cpu:.2f} CPU-s per search"
        )


if __name__ == "__main__":
    main()
