"""Which BLAS library the kernels call, chosen once at import.

The kernels' products are small (a slot's K distinct rows by a d x Dh block), where
OpenBLAS builds differ most: scipy's bundled OpenBLAS 0.3.30 ran the slot shapes at
31-70 GFLOP/s on the 2-core EPYC where the ``scipy-openblas32`` wheel's 0.3.34 (the
build numpy and scipy themselves are made from) ran them at 58-81
(bench/results/blas-2core.md). So:

1. ``scipy-openblas32`` when it is installed (a dependency of fastgrad): its
   ``scipy_sgemm_``/``scipy_dgemm_`` are looked up in the library it ships;
2. else ``scipy.linalg.cython_blas`` (whatever BLAS scipy links: its bundled
   OpenBLAS, MKL, a system BLAS), through the function pointers scipy exports.

``FASTGRAD_BLAS=scipy-openblas32`` or ``FASTGRAD_BLAS=scipy`` forces one (the
first is an error when the wheel is missing). Neither is linked at build time:
the kernels call through two function pointers set here (``_kernels.set_gemm``),
so a wheel carries no BLAS of its own and the choice is made where it runs.
Only this module and ``fastgrad/_blas.pxd`` know which BLAS the kernels call.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass

__all__ = ["BlasLibrary", "choose", "ENVIRONMENT_VARIABLE"]

ENVIRONMENT_VARIABLE = "FASTGRAD_BLAS"
CHOICES = ("scipy-openblas32", "scipy")


@dataclass(frozen=True)
class BlasLibrary:
    """The BLAS the kernels call: its name, version, core type and file, the
    addresses of its sgemm and dgemm, and its thread-count functions (or None:
    threadpoolctl then finds them)."""

    name: str
    version: str
    corename: str
    path: str
    sgemm: int
    dgemm: int
    get_threads: object = None
    set_threads: object = None


def _address(function) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value


def _scipy_openblas32() -> BlasLibrary:
    # the package loads its library on import (else CDLL below is the first load)
    with _no_openblas_workers():
        import scipy_openblas32

        folder = scipy_openblas32.get_lib_dir()
        stem = scipy_openblas32.get_library()
        names = [f for f in os.listdir(folder)
                 if f.startswith(("lib" + stem, stem)) and f.endswith((".so", ".dylib", ".dll"))]
        if not names:
            raise ImportError(f"scipy-openblas32 has no {stem} library in {folder}")
        path = os.path.join(folder, sorted(names)[0])
        lib = ctypes.CDLL(path)
    prefix = scipy_openblas32.get_symbol_prefix() if hasattr(
        scipy_openblas32, "get_symbol_prefix") else "scipy_"
    for name in ("openblas_get_config", "openblas_get_corename"):
        getattr(lib, prefix + name).restype = ctypes.c_char_p
    get_threads = getattr(lib, prefix + "openblas_get_num_threads")
    set_threads = getattr(lib, prefix + "openblas_set_num_threads")
    set_threads.argtypes = [ctypes.c_int]
    config = getattr(lib, prefix + "openblas_get_config")().decode(errors="replace")
    version = next((w for w in config.split() if w[:1].isdigit()), scipy_openblas32.__version__)
    corename = getattr(lib, prefix + "openblas_get_corename")().decode(errors="replace")
    return BlasLibrary("scipy-openblas32", version, corename, os.path.realpath(path),
                       _address(getattr(lib, prefix + "sgemm_")),
                       _address(getattr(lib, prefix + "dgemm_")), get_threads, set_threads)


@contextlib.contextmanager
def _no_openblas_workers():
    """While an OpenBLAS loads (the scipy_openblas32 package loads its library on
    import): start no worker threads. The kernels call it at one thread (their
    OpenMP threads split the work), and workers started at load spin for ~0.1 s
    beside whatever runs next, on the 2-core machine a core (3.6% of a parse's
    perf samples; bench/results/parser-pipeline-2core.md). A count set later
    (threadpoolctl, openblas_set_num_threads) starts them then."""
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"   # read once, by the library's constructor
    try:
        yield
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def _capsule_address(capsule) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


def _scipy() -> BlasLibrary:
    import scipy
    from scipy.linalg import cython_blas
    from threadpoolctl import threadpool_info

    capi = cython_blas.__pyx_capi__
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    # the BLAS scipy links, where threadpoolctl finds it inside scipy's tree
    own = [i for i in threadpool_info() if i.get("user_api") == "blas"
           and os.path.realpath(i["filepath"]).startswith((root + ".libs", root + os.sep))]
    found = own[0] if own else {}
    return BlasLibrary(f"scipy.linalg.cython_blas (scipy {scipy.__version__})",
                       f"{found.get('internal_api', 'BLAS')} {found.get('version', '')}".strip(),
                       found.get("architecture") or "unknown",
                       found.get("filepath") or os.path.realpath(cython_blas.__file__),
                       _capsule_address(capi["sgemm"]), _capsule_address(capi["dgemm"]))


def choose() -> BlasLibrary:
    """The BLAS for the kernels (see the module's rules)."""
    wanted = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise ImportError(f"{ENVIRONMENT_VARIABLE}={wanted!r}: choose {' or '.join(CHOICES)}, "
                          "or leave it unset")
    if wanted == "scipy":
        return _scipy()
    try:
        return _scipy_openblas32()
    except (ImportError, OSError, AttributeError) as err:
        if wanted:
            raise ImportError(f"{ENVIRONMENT_VARIABLE}=scipy-openblas32, but it cannot be "
                              f"used: {err} (pip install scipy-openblas32)") from None
        return _scipy()
