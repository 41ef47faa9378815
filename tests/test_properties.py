"""Property-based tests (hypothesis): any shape, any index multiset, both dtypes, both index
dtypes, both paths — the kernels agree with the NumPy reference."""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastgrad
from fastgrad import reference

from fastgrad.testing import copy_params

# looser than the fixed-shape tests: sums over up to a few hundred terms in float32
RTOL = {np.float32: 2e-3, np.float64: 1e-9}
ATOL = {np.float32: 2e-5, np.float64: 1e-11}


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    n = draw(st.integers(1, 300))
    m = draw(st.integers(1, 12))
    d = draw(st.integers(1, 24))
    hidden = draw(st.integers(1, 64))
    n_classes = draw(st.integers(1, 40))
    n_vocab = draw(st.integers(1, 400))
    # heavy repetition: often only a handful of distinct rows are used
    used = draw(st.sampled_from([1, 2, 3, 8, n_vocab]))
    used = min(used, n_vocab)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = fastgrad.init_params(n_vocab, m, d, hidden, n_classes, dtype=dtype, seed=seed)
    p.b1[:] = rng.uniform(-0.5, 0.5, hidden)
    p.b2[:] = rng.uniform(-0.5, 0.5, n_classes)
    rows = rng.choice(n_vocab, size=used, replace=False)
    idx = rows[rng.integers(0, used, size=(n, m))].astype(index_dtype)
    y = rng.integers(0, n_classes, size=n).astype(index_dtype)
    path = draw(st.sampled_from(["dense", "factored", "auto"]))
    return p, idx, y, path


def close(actual, desired, dtype, what):
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)


# FASTGRAD_HYPOTHESIS_EXAMPLES=2000 pytest tests/test_properties.py for a longer search
EXAMPLES = int(os.environ.get("FASTGRAD_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(problems())
def test_loss_and_gradients_agree_with_reference(problem):
    p, idx, y, path = problem
    dtype = p.L.dtype.type
    J, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y)
    close(J, J_ref, dtype, "loss")
    np.testing.assert_array_equal(g.L.rows, g_ref.L.rows)
    close(g.L.values, g_ref.L.values, dtype, "L")
    for name in ("W", "b1", "U", "b2"):
        close(getattr(g, name), getattr(g_ref, name), dtype, name)
    close(fastgrad.loss(p, idx, y, path=path), J_ref, dtype, "loss()")
    close(fastgrad.predict_proba(p, idx, path=path), reference.predict_proba(p, idx), dtype,
          "proba")


@SETTINGS
@given(problems(), st.floats(0.0, 1.0))
def test_sgd_step_agrees_with_reference(problem, lr):
    p, idx, y, path = problem
    dtype = p.L.dtype.type
    q = copy_params(p)
    J = fastgrad.sgd_step(p, idx, y, lr, path=path)
    J_ref = reference.sgd_step(q, idx, y, lr)
    close(J, J_ref, dtype, "loss")
    for name, a, b in zip(fastgrad.Params._fields, p, q):
        close(a, b, dtype, name)


@settings(max_examples=max(EXAMPLES // 3, 1), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.sampled_from(["momentum", "adagrad", "adam"]),
       st.sampled_from([0.0, 0.5]), st.sampled_from([0.0, 1e-2]))
def test_train_step_agrees_with_reference(problem, name, dropout, l2):
    p, idx, y, path = problem
    dtype = p.L.dtype.type
    q = copy_params(p)
    make = {"momentum": lambda m, r: m.SGD(r, 0.05, momentum=0.9),
            "adagrad": lambda m, r: m.AdaGrad(r, 0.05),
            "adam": lambda m, r: m.Adam(r, 1e-2)}[name]
    opt, opt_ref = make(fastgrad, p), make(reference, q)
    for step in range(2):
        J = fastgrad.train_step(p, idx, y, opt, dropout=dropout, l2=l2, rng=step, path=path)
        J_ref = reference.train_step(q, idx, y, opt_ref, dropout=dropout, l2=l2, rng=step)
        close(J, J_ref, dtype, "loss")
    # AdaGrad and Adam normalise by |g|: where a gradient entry is ~0 a rounding
    # difference moves the update by up to lr, so compare with lr-sized slack in float32
    slack = 0.0 if dtype == np.float64 else 0.05
    for field, a, b in zip(fastgrad.Params._fields, p, q):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=ATOL[dtype] + slack * 2,
                                   err_msg=field)
