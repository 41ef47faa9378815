"""Which BLAS the kernels call (fastgrad/_blas_library.py): the one show_config names."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import fastgrad
from fastgrad import _kernels, _threads, reference

PROBE = """
import sys, json, numpy as np, fastgrad
from fastgrad import _kernels, reference
p = fastgrad.init_params(50, 4, 6, 16, 3, dtype=np.float64, seed=0)
idx = np.random.default_rng(0).integers(0, 50, (40, 4)); y = np.arange(40) % 3
J, g = fastgrad.loss_and_grad(p, idx, y)
Jr, gr = reference.loss_and_grad(p, idx, y)
ok = abs(J - Jr) < 1e-12 and np.allclose(g.W, gr.W, rtol=1e-10, atol=1e-12)
info = fastgrad.show_config()
print(json.dumps({"name": _kernels.BLAS.name, "ok": bool(ok), "shown": info["kernels_blas"],
                  "same": list(_kernels.gemm_addresses()) == [_kernels.BLAS.sgemm,
                                                              _kernels.BLAS.dgemm]}))
"""


def run_probe(env=None, prelude=""):
    out = subprocess.run([sys.executable, "-c", prelude + PROBE], capture_output=True,
                         text=True, cwd="/", env=dict(os.environ, PYTHONPATH="", **(env or {})))
    assert out.returncode == 0, out.stderr
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_kernels_call_the_blas_show_config_names():
    blas = _kernels.BLAS
    assert _kernels.gemm_addresses() == (blas.sgemm, blas.dgemm)
    assert fastgrad.show_config()["kernels_blas"].startswith(blas.name)
    try:
        import scipy_openblas32  # noqa: F401
    except ImportError:
        assert blas.name.startswith("scipy.linalg.cython_blas")
        return
    assert blas.name == "scipy-openblas32" and os.environ.get("FASTGRAD_BLAS") in (None, "")
    lib = ctypes.CDLL(blas.path)                 # the very functions of the library named
    assert ctypes.cast(lib.scipy_sgemm_, ctypes.c_void_p).value == blas.sgemm
    assert ctypes.cast(lib.scipy_dgemm_, ctypes.c_void_p).value == blas.dgemm


def test_the_kernels_hold_their_own_blas_at_one_thread():
    blas = _kernels.BLAS
    if blas.get_threads is None:
        pytest.skip("the fallback's threads go through threadpoolctl (tested in test_threads)")
    blas.set_threads(2)
    try:
        with _threads._single_threaded_blas:
            assert blas.get_threads() == 1
        assert blas.get_threads() == 2
    finally:
        blas.set_threads(1)


def test_the_kernels_blas_starts_no_workers_and_leaves_the_environment_alone():
    if _kernels.BLAS.get_threads is None:
        pytest.skip("the fallback's BLAS is scipy's, loaded as scipy loads it")
    code = ("import os, fastgrad; from fastgrad import _kernels; b = _kernels.BLAS\n"
            "before = b.get_threads(); b.set_threads(2)\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], before, b.get_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", env=dict(os.environ, PYTHONPATH="", OPENBLAS_NUM_THREADS="3"))
    assert out.returncode == 0, out.stderr
    # the user's setting still reaches numpy and others; the kernels' library started at
    # one thread, and a count set later is obeyed
    assert out.stdout.split() == ["3", "1", "2"]


def test_the_fallback_when_forced():
    got = run_probe({"FASTGRAD_BLAS": "scipy"})
    assert got["name"].startswith("scipy.linalg.cython_blas") and got["ok"] and got["same"]
    assert got["shown"].startswith("scipy.linalg.cython_blas")


def test_the_fallback_without_the_wheel():
    got = run_probe(prelude="import sys; sys.modules['scipy_openblas32'] = None\n")
    assert got["name"].startswith("scipy.linalg.cython_blas") and got["ok"] and got["same"]


def test_a_bad_choice_is_refused_by_name():
    out = subprocess.run([sys.executable, "-c", "import fastgrad"], capture_output=True,
                         text=True, cwd="/",
                         env=dict(os.environ, PYTHONPATH="", FASTGRAD_BLAS="mkl"))
    assert out.returncode != 0 and "FASTGRAD_BLAS='mkl': choose scipy-openblas32 or scipy" \
        in out.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_agree_with_the_reference_on_the_chosen_blas(dtype):
    p = fastgrad.init_params(300, 6, 8, 24, 5, dtype=dtype, seed=1)
    idx = np.random.default_rng(1).integers(0, 30, (257, 6))   # repeated rows in the batch
    y = np.arange(257) % 5
    J, g = fastgrad.loss_and_grad(p, idx, y)
    Jr, gr = reference.loss_and_grad(p, idx, y)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    assert abs(J - Jr) <= tol * abs(Jr)
    for a, b in ((g.W, gr.W), (g.U, gr.U), (g.b1, gr.b1)):
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol)
