"""Optimizers and train_step against the reference formulas, PyTorch, and themselves."""

import numpy as np
import pytest

import fastgrad
from fastgrad import reference

from fastgrad.testing import (
    OPTIMIZERS, STEPS_TOL, TOL, batches, copy_params, make_problem, max_dev, torch_twin_run,
)

@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dropout,l2", [(0.0, 0.0), (0.3, 1e-3)])
def test_train_step_matches_reference_over_ten_steps(dtype, path, name, dropout, l2):
    p, idx, y = make_problem(dtype, n=64, vocab_used=12)   # rows repeat within and across batches
    q = copy_params(p)
    opt, opt_ref = OPTIMIZERS[name][0](fastgrad, p), OPTIMIZERS[name][0](reference, q)
    for step, bi, by in batches(idx, y):
        J = fastgrad.train_step(p, bi, by, opt, dropout=dropout, l2=l2, rng=step, path=path)
        J_ref = reference.train_step(q, bi, by, opt_ref, dropout=dropout, l2=l2, rng=step)
        np.testing.assert_allclose(J, J_ref, rtol=TOL[dtype][0], atol=TOL[dtype][1])
    assert opt.steps == 10
    assert max_dev(p, q) < STEPS_TOL[dtype]
    assert max_dev(p, make_problem(dtype, n=64, vocab_used=12)[0]) > 1e-3   # it trained


def test_untouched_rows_and_their_state_stay_put(dtype):
    p, idx, y = make_problem(dtype, n_vocab=40, vocab_used=10)
    before = p.L[10:].copy()
    opt = fastgrad.Adam(p, 1e-2)
    for step, bi, by in batches(idx, y, n_steps=3, size=8):
        fastgrad.train_step(p, bi, by, opt, l2=0.1)
    np.testing.assert_array_equal(p.L[10:], before)
    assert not opt.state1.L[10:].any() and not opt.state2.L[10:].any()
    assert opt.state2.L[:10].any()


def test_sgd_train_step_is_sgd_step_bit_for_bit(dtype, path):
    p, idx, y = make_problem(dtype)
    q = copy_params(p)
    J = fastgrad.train_step(p, idx, y, fastgrad.SGD(p, 0.1), path=path)
    assert J == fastgrad.sgd_step(q, idx, y, 0.1, path=path)
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def test_dropout_same_seed_same_step_bit_for_bit(dtype, path):
    p, idx, y = make_problem(dtype, n=64)
    runs = []
    for rng in (7, 7, np.random.default_rng(7), 8):
        q = copy_params(p)
        J = fastgrad.train_step(q, idx, y, fastgrad.Adam(q, 1e-2), dropout=0.5, rng=rng,
                                path=path)
        runs.append((J, q))
    for J, q in runs[1:3]:
        assert J == runs[0][0]
        for a, b in zip(q, runs[0][1]):
            np.testing.assert_array_equal(a, b)
    assert runs[3][0] != runs[0][0]   # another seed, another mask


def test_dropout_drops_the_expected_fraction(dtype):
    p, idx, y = make_problem(dtype, n=400, hidden=50)
    u = np.random.default_rng(3).random((400, 50), dtype=dtype)
    mask = reference.dropout_mask((400, 50), np.dtype(dtype), 0.5, 3)
    np.testing.assert_array_equal(mask != 0, u < 0.5)
    assert 0.45 < np.mean(mask == 0) < 0.55
    J_drop = fastgrad.loss(p, idx, y, dropout=0.5, rng=3)
    assert J_drop == pytest.approx(reference.loss(p, idx, y, dropout=0.5, rng=3),
                                   rel=TOL[dtype][0], abs=TOL[dtype][1])
    assert J_drop != fastgrad.loss(p, idx, y)


def test_gradients_under_dropout(dtype, path):
    p, idx, y = make_problem(dtype, n=40, vocab_used=15)
    J, g = fastgrad.loss_and_grad(p, idx, y, dropout=0.4, rng=11, path=path)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y, dropout=0.4, rng=11)
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(g.L.values, g_ref.L.values, rtol=rtol, atol=atol)
    np.testing.assert_allclose(g.W, g_ref.W, rtol=rtol, atol=atol)
    np.testing.assert_allclose(g.b1, g_ref.b1, rtol=rtol, atol=atol)


def test_gradcheck_with_replayed_dropout_mask(path):
    p, idx, y = make_problem(np.float64, n=16, vocab_used=10)
    worst = fastgrad.gradcheck(p, idx, y, path=path, dropout=0.5, dropout_seed=4)
    assert max(worst.values()) < 1e-6, worst


def test_refused_step_writes_nothing(dtype):
    p, idx, y = make_problem(dtype)
    opt = fastgrad.Adam(p, 1e-2)
    fastgrad.train_step(p, idx, y, opt)
    p.W[0, 0] = np.nan
    saved = [a.copy() for a in (*p, *opt.state1, *opt.state2)]
    with pytest.raises(FloatingPointError):
        fastgrad.train_step(p, idx, y, opt, dropout=0.2, rng=0)
    for a, b in zip(saved, (*p, *opt.state1, *opt.state2)):
        np.testing.assert_array_equal(a, b)
    assert opt.steps == 1


@pytest.mark.parametrize("kwargs,match", [
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
    ({"dropout": float("nan")}, "dropout"), ({"l2": -1.0}, "l2"),
    ({"l2": float("inf")}, "l2"), ({"rng": "seed"}, "rng"),
])
def test_train_step_bad_arguments(kwargs, match):
    p, idx, y = make_problem()
    q = copy_params(p)
    opt = fastgrad.AdaGrad(p)
    with pytest.raises((ValueError, TypeError), match=match):
        fastgrad.train_step(p, idx, y, opt, **{"dropout": 0.1, **kwargs})
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def test_optimizer_bad_arguments():
    p, idx, y = make_problem()
    with pytest.raises(ValueError, match="lr"):
        fastgrad.SGD(p, -1.0)
    with pytest.raises(ValueError, match="momentum"):
        fastgrad.SGD(p, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="eps"):
        fastgrad.AdaGrad(p, eps=0.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        fastgrad.Adam(p, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="betas"):
        fastgrad.Adam(p, betas=0.9)
    with pytest.raises(TypeError, match="opt"):
        fastgrad.train_step(p, idx, y, "adam")
    other, _, _ = make_problem(hidden=9)
    with pytest.raises(ValueError, match="opt was made for"):
        fastgrad.train_step(other, idx, y, fastgrad.Adam(p))


# --- PyTorch, when installed: the optimizers users compare against ---------------------

@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "adam"])
def test_train_step_matches_torch_over_ten_steps(dtype, name):
    p, idx, y = make_problem(dtype, n=64, n_vocab=12)
    idx[:3].flat[:12] = np.arange(12)   # every batch below touches every row of L, so torch's
    steps = [(s, np.concatenate([idx[:3], bi]), np.concatenate([y[:3], by]))   # dense momentum
             for s, bi, by in batches(idx[3:], y[3:])]                       # equals lazy rows
    pytest.importorskip("torch")
    losses, final = torch_twin_run(p, steps, name, 0.3)
    opt = OPTIMIZERS[name][0](fastgrad, p)
    ours = [fastgrad.train_step(p, bi, by, opt, dropout=0.3, rng=s) for s, bi, by in steps]
    np.testing.assert_allclose(ours, losses, rtol=TOL[dtype][0] * 10, atol=TOL[dtype][1] * 10)
    assert max_dev(p, final) < STEPS_TOL[dtype]
