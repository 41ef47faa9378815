"""Helpers shared by the test suite, the tools and anyone checking fastgrad.

Small random problems, tolerances for comparing the kernels with the NumPy
reference, and the optimizer settings the comparisons use. Importable from the
installed package, so tools need no ``sys.path`` tricks.
"""

from __future__ import annotations

import os

import numpy as np

import fastgrad

__all__ = ["TOL", "STEPS_TOL", "OPTIMIZERS", "make_problem", "copy_params", "assert_close",
           "mpiexec",
           "assert_grads_close", "batches", "max_dev"]

# (rtol, atol) for comparing the kernels with the NumPy reference
TOL = {np.float64: (1e-10, 1e-12), np.float32: (2e-4, 2e-6)}

# over 10 steps rounding differences compound; AdaGrad's first step is lr·g/|g|,
# which amplifies float32 rounding of tiny gradients
STEPS_TOL = {np.float64: 1e-10, np.float32: 2e-5}

# name -> (make(module, p): the optimizer in fastgrad or fastgrad.reference,
#          the TorchTwin arguments of the same optimizer, or None where torch has none)
OPTIMIZERS = {
    "sgd": (lambda m, p: m.SGD(p, 0.1), dict(optimizer="sgd", lr=0.1)),
    "momentum": (lambda m, p: m.SGD(p, 0.05, momentum=0.9),
                 dict(optimizer="momentum", lr=0.05, momentum=0.9)),
    "adagrad": (lambda m, p: m.AdaGrad(p, 0.05, eps=1e-6),
                dict(optimizer="adagrad", lr=0.05, eps=1e-6)),
    "adagrad-corenlp": (lambda m, p: m.AdaGrad(p, 0.05, eps=1e-6, eps_inside_sqrt=True), None),
    "adam": (lambda m, p: m.Adam(p, 1e-2), dict(optimizer="adam", lr=1e-2)),
}


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
    """A deep copy of the parameters."""
    return fastgrad.Params(*(a.copy() for a in p))


def assert_close(actual, desired, dtype, what=""):
    """assert_allclose at the tolerance of dtype (TOL)."""
    rtol, atol = TOL[np.dtype(dtype).type]
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def assert_grads_close(g, g_ref, dtype):
    """Two Gradients equal: the same rows of L, every value close."""
    np.testing.assert_array_equal(g.L.rows, g_ref.L.rows)
    assert_close(g.L.values, g_ref.L.values, dtype, "L")
    for name in ("W", "b1", "U", "b2"):
        assert_close(getattr(g, name), getattr(g_ref, name), dtype, name)


def batches(idx, y, n_steps=10, size=24):
    """(step, idx batch, y batch) for n_steps overlapping windows of the data."""
    for step in range(n_steps):
        start = (step * 7) % (len(idx) - size)
        yield step, idx[start:start + size], y[start:start + size]


def max_dev(p, q):
    """The largest absolute difference of any entry of two parameter sets."""
    return max(float(np.max(np.abs(a - b))) for a, b in zip(p, q))


def torch_twin_run(p, steps, name, dropout):
    """The optimizer OPTIMIZERS[name] in PyTorch (fastgrad.torch_twin) over steps of
    (step, idx, y), with fastgrad.reference's dropout masks replayed: returns the
    losses and the final parameters. Needs torch."""
    from fastgrad import reference
    from fastgrad.torch_twin import TorchTwin

    dtype = p.L.dtype
    twin = TorchTwin(p, **OPTIMIZERS[name][1], dropout=dropout,
                     masks=lambda step, shape: reference.dropout_mask(shape, dtype, dropout,
                                                                      step))
    losses = []
    for step, bi, by in steps:
        assert twin.steps == step, "steps must count up from 0: the masks follow them"
        losses.append(twin.step(bi, by))
    return losses, twin.params()


def mpiexec() -> str | None:
    """The mpiexec beside this Python (the mpich wheel's) or on PATH, when mpi4py is
    installed too; else None (tests that launch ranks are skipped)."""
    import shutil
    import sys

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
