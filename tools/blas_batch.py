"""One phase's slot products in one cblas_sgemm_batch call, against the kernels'
task layout (one sgemm per slot, the slots shared out among threads, BLAS on one
thread), on the slot shapes of real batches (#24: "consider cblas_sgemm_batch").

The forward products of the factored path, S_j = A_j W_j for every slot j (A_j: the
K_j distinct rows of slot j in the batch, K_j x d; W_j: d x Dh), with the K_j of
batches drawn from an index file (an .npz with idx (N, m), e.g. a parser's
training states), or from Zipf-skewed ids. Both take the scipy-openblas32 wheel's
library, the one the kernels call by default.

    python tools/blas_batch.py [--idx states.npz] [--rows 1024] [--d 50] [--hidden 200]
                               [--threads 1,2]

Layouts timed, median of 7 rounds of 20 batches each:
  loop:    one scipy_cblas_sgemm per slot from an OpenMP loop over the slots
           (schedule dynamic), BLAS held at one thread: the kernels' task layout,
           in a few lines of C compiled here (gcc -fopenmp), so that neither side
           pays Python per product;
  batch:   one scipy_cblas_sgemm_batch call for all slots (group j = slot j),
           OpenBLAS on the given thread count.
"""

import argparse
import ctypes
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

from fastgrad import _blas_library

ROW_MAJOR, NO_TRANS = 101, 111
INT, FLOAT, PTR = ctypes.c_int, ctypes.c_float, ctypes.c_void_p


LOOP_C = r"""
typedef void (*gemm_t)(int, int, int, int, int, int, float, const float *, int,
                       const float *, int, float, float *, int);
void slot_loop(void *gemm, int g, const int *k, int n, int d, const float **a,
               const float **w, float **s, int threads) {
    gemm_t f = (gemm_t)gemm;
    #pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int j = 0; j < g; ++j)
        f(101, 111, 111, k[j], n, d, 1.0f, a[j], d, w[j], n, 0.0f, s[j], n);
}
"""


def library():
    lib = _blas_library._scipy_openblas32()
    cdll = ctypes.CDLL(lib.path)
    cdll.scipy_cblas_sgemm_batch.restype = None
    folder = tempfile.mkdtemp()
    source, shared = os.path.join(folder, "loop.c"), os.path.join(folder, "loop.so")
    with open(source, "w") as f:
        f.write(LOOP_C)
    subprocess.run(["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", source, "-o", shared],
                   check=True)
    loop = ctypes.CDLL(shared).slot_loop
    loop.restype = None
    return lib, cdll, loop, ctypes.cast(cdll.scipy_cblas_sgemm, PTR).value


def slot_sizes(args, rng):
    """K_j (distinct rows of slot j) of several batches of args.rows rows."""
    if args.idx:
        idx = np.load(args.idx)["idx"]
    else:   # Zipf-skewed ids over a 20,000-word vocabulary, 48 slots
        idx = np.minimum(rng.zipf(1.3, size=(200_000, 48)), 20_000) - 1
    batches = []
    for _ in range(20):
        rows = idx[rng.choice(len(idx), args.rows, replace=False)]
        batches.append([len(np.unique(rows[:, j])) for j in range(idx.shape[1])])
    return batches


class Phase:
    """Buffers of one batch's forward products: A_j, W_j, S_j per slot."""

    def __init__(self, ks, d, hidden, rng):
        self.ks, self.d, self.h = ks, d, hidden
        self.A = [rng.standard_normal((k, d), dtype=np.float32) for k in ks]
        self.W = [rng.standard_normal((d, hidden), dtype=np.float32) for _ in ks]
        self.S = [np.empty((k, hidden), np.float32) for k in ks]
        g = len(ks)
        arr = lambda t, v: (t * g)(*v)   # noqa: E731
        self.k = arr(INT, ks)
        self.a_ptrs = arr(PTR, [a.ctypes.data for a in self.A])
        self.w_ptrs = arr(PTR, [w.ctypes.data for w in self.W])
        self.s_ptrs = arr(PTR, [s.ctypes.data for s in self.S])
        self.batch_args = (ROW_MAJOR, arr(INT, [NO_TRANS] * g), arr(INT, [NO_TRANS] * g),
                           self.k, arr(INT, [hidden] * g), arr(INT, [d] * g),
                           arr(FLOAT, [1.0] * g), self.a_ptrs, arr(INT, [d] * g), self.w_ptrs,
                           arr(INT, [hidden] * g), arr(FLOAT, [0.0] * g), self.s_ptrs,
                           arr(INT, [hidden] * g), INT(g), arr(INT, [1] * g))

    def loop(self, slot_loop, gemm, threads):
        slot_loop(PTR(gemm), INT(len(self.ks)), self.k, INT(self.h), INT(self.d), self.a_ptrs,
                  self.w_ptrs, self.s_ptrs, INT(threads))

    def batch(self, cdll):
        cdll.scipy_cblas_sgemm_batch(*self.batch_args)


def timed(fn, rounds=7):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idx")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lib, cdll, slot_loop, gemm = library()
    phases = [Phase(ks, args.d, args.hidden, rng) for ks in slot_sizes(args, rng)]
    flops = sum(2 * k * args.d * args.hidden for ph in phases for k in ph.ks)
    ks = [k for ph in phases for k in ph.ks]
    print(f"{lib.name} {lib.version} ({lib.corename}); {len(phases)} batches of {args.rows} "
          f"rows, {len(phases[0].ks)} slots, K per slot: median {int(np.median(ks))}, "
          f"{min(ks)}-{max(ks)}; d {args.d}, Dh {args.hidden}")
    print("| threads | loop (kernels' layout) ms / batch | GFLOP/s | batch call ms / batch "
          "| GFLOP/s | batch / loop time |")
    print("|---|---|---|---|---|---|")
    for n in map(int, args.threads.split(",")):
        def loop():
            lib.set_threads(1)
            for ph in phases:
                ph.loop(slot_loop, gemm, n)

        def batch():
            lib.set_threads(n)
            for ph in phases:
                ph.batch(cdll)

        loop(), batch()   # warm
        t_loop, t_batch = timed(loop), timed(batch)
        expected = [s.copy() for s in phases[0].S]
        phases[0].loop(slot_loop, gemm, 1)
        same = all(np.array_equal(a, b) for a, b in zip(expected, phases[0].S))
        print(f"| {n} | {1e3 * t_loop / len(phases):.3f} | {flops / t_loop / 1e9:.1f} | "
              f"{1e3 * t_batch / len(phases):.3f} | {flops / t_batch / 1e9:.1f} | "
              f"{t_batch / t_loop:.2f}{'' if same else ' (results differ in bits)'} |")
    lib.set_threads(1)


if __name__ == "__main__":
    main()
