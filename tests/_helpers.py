"""Shared helpers of the test suite."""

import numpy as np
import fastgrad

# (rtol, atol) for comparing the kernels with the NumPy reference
TOL = {np.float64: (1e-10, 1e-12), np.float32: (2e-4, 2e-6)}


def make_problem(dtype=np.float64, n=32, m=4, d=5, hidden=7, n_classes=6, n_vocab=40,
                 seed=0, index_dtype=np.int64, vocab_used=None):
    """Random parameters and a batch; vocab_used < n_vocab makes indices repeat."""
    rng = np.random.default_rng(seed)
    p = fastgrad.init_params(n_vocab, m, d, hidden, n_classes, dtype=dtype, seed=seed)
    # nonzero biases so every term of the derivation is exercised
    p.b1[:] = rng.uniform(-0.3, 0.3, hidden)
    p.b2[:] = rng.uniform(-0.3, 0.3, n_classes)
    high = n_vocab if vocab_used is None else vocab_used
    idx = rng.integers(0, high, size=(n, m)).astype(index_dtype)
    y = rng.integers(0, n_classes, size=n).astype(index_dtype)
    return p, idx, y


def copy_params(p):
    return fastgrad.Params(*(a.copy() for a in p))


def assert_close(actual, desired, dtype, what=""):
    rtol, atol = TOL[np.dtype(dtype).type]
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def assert_grads_close(g, g_ref, dtype):
    np.testing.assert_array_equal(g.L.rows, g_ref.L.rows)
    assert_close(g.L.values, g_ref.L.values, dtype, "L")
    for name in ("W", "b1", "U", "b2"):
        assert_close(getattr(g, name), getattr(g_ref, name), dtype, name)
