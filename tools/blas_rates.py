"""Small-GEMM rates of the BLAS builds fastgrad can call, through the very sgemm
pointers fastgrad/_blas_library.py installs (scipy-openblas32's and
scipy.linalg.cython_blas's), on the slot products' shapes: forward S = A·W
(K x d by d x Dh), dW = Aᵀ·D, dL = D·Wᵀ. One thread (BLAS held at 1).

    python tools/blas_rates.py [--d 50] [--hidden 200] [--ks 16,32,64,128,1000]
"""

import argparse
import ctypes
import time

import numpy as np

from fastgrad import _blas_library

P = ctypes.POINTER
SGEMM = ctypes.CFUNCTYPE(None, *([ctypes.c_char_p] * 2), *([P(ctypes.c_int)] * 3),
                         P(ctypes.c_float), ctypes.c_void_p, P(ctypes.c_int),
                         ctypes.c_void_p, P(ctypes.c_int), P(ctypes.c_float),
                         ctypes.c_void_p, P(ctypes.c_int))


def row_major(fn, ta, tb, a, b, c):
    """C = op(A) op(B) for C-ordered arrays, as fastgrad's _blas.pxd calls it."""
    m, n = c.shape
    k = a.shape[0] if ta else a.shape[1]
    i = lambda v: ctypes.byref(ctypes.c_int(v))   # noqa: E731
    one, zero = ctypes.c_float(1), ctypes.c_float(0)
    fn(b"T" if tb else b"N", b"T" if ta else b"N", i(n), i(m), i(k), ctypes.byref(one),
       b.ctypes.data, i(b.shape[1]), a.ctypes.data, i(a.shape[1]), ctypes.byref(zero),
       c.ctypes.data, i(n))


def rate(fn, ta, tb, a, b, c, seconds=0.3):
    flops = 2 * c.shape[0] * c.shape[1] * (a.shape[0] if ta else a.shape[1])
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        row_major(fn, ta, tb, a, b, c)
        reps += 1
    return flops * reps / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--ks", default="16,32,64,128,1000")
    args = ap.parse_args()
    libraries = []
    for build in (_blas_library._scipy, _blas_library._scipy_openblas32):
        try:
            lib = build()
        except ImportError as err:
            print(f"({build.__name__}: {err})")
            continue
        if lib.set_threads is not None:
            lib.set_threads(1)
        libraries.append(lib)
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    d, h = args.d, args.hidden
    print("| K | " + " | ".join(f"{lib.name} {lib.version} (fwd / dW / dL)"
                                 for lib in libraries) + " |")
    print("|---|" + "---|" * len(libraries))
    with threadpool_limits(1):
        for k in map(int, args.ks.split(",")):
            A = rng.standard_normal((k, d), dtype=np.float32)
            W = rng.standard_normal((d, h), dtype=np.float32)
            D = rng.standard_normal((k, h), dtype=np.float32)
            cells = []
            for lib in libraries:
                fn = SGEMM(lib.sgemm)
                fwd = rate(fn, False, False, A, W, np.empty((k, h), np.float32))
                dw = rate(fn, True, False, A, D, np.empty((d, h), np.float32))
                dl = rate(fn, False, True, D, W, np.empty((k, d), np.float32))
                cells.append(f"{fwd:.1f} / {dw:.1f} / {dl:.1f}")
            print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
