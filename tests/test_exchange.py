"""The kernels behind data-parallel training: apply_update and merge_rows (one process)."""

import numpy as np
import pytest

import fastgrad
from fastgrad import _kernels
from fastgrad._api import get_num_threads

from fastgrad.testing import copy_params, make_problem


def _optimizers(p):
    return {
        "sgd": fastgrad.SGD(p, lr=0.1),
        "momentum": fastgrad.SGD(p, lr=0.1, momentum=0.9),
        "adagrad": fastgrad.AdaGrad(p, lr=0.1),
        "adam": fastgrad.Adam(p, lr=0.01),
    }


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adagrad", "adam"])
def test_apply_update_is_the_fused_steps_update(dtype, kind):
    """loss_and_grad + apply_update gives the bits of train_step (same gradients, same rule)."""
    p, idx, y = make_problem(dtype, n=40, vocab_used=12)
    q = copy_params(p)
    opt_p, opt_q = _optimizers(p)[kind], _optimizers(q)[kind]
    for step in range(3):
        fastgrad.train_step(p, idx, y, opt_p, l2=1e-3, path="dense")
        _, g = fastgrad.loss_and_grad(q, idx, y, path="dense")
        _kernels.apply_update(opt_q._rule(1e-3), *q, g.L.rows, g.L.values, g.W, g.b1, g.U, g.b2,
                              opt_q.state1, opt_q.state2, get_num_threads())
        opt_q.steps += 1
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)
    for state in ("state1", "state2"):
        if getattr(opt_p, state) is not None:
            for a, b in zip(getattr(opt_p, state), getattr(opt_q, state)):
                np.testing.assert_array_equal(a, b)


def test_apply_update_with_no_rows_moves_only_dense(dtype):
    p, idx, y = make_problem(dtype, n=8)
    L0 = p.L.copy()
    _, g = fastgrad.loss_and_grad(p, idx, y)
    opt = fastgrad.SGD(p, lr=0.1)
    _kernels.apply_update(opt._rule(0.0), *p, np.empty(0, np.int64),
                          np.empty((0, p.L.shape[1]), dtype), g.W, g.b1, g.U, g.b2, None, None, 1)
    np.testing.assert_array_equal(p.L, L0)


def test_merge_rows_sums_in_input_order(dtype):
    rng = np.random.default_rng(3)
    n_vocab, d = 50, 6
    # three "ranks", each with distinct rows, overlapping between ranks
    parts = [np.sort(rng.choice(n_vocab, size=k, replace=False)) for k in (20, 0, 35)]
    rows = np.concatenate(parts).astype(np.int64)
    values = rng.standard_normal((len(rows), d)).astype(dtype)
    table = np.full(n_vocab, -1, np.int32)
    out_rows = np.empty(len(rows), np.int64)
    out_values = np.empty((len(rows), d), dtype)
    k = _kernels.merge_rows(rows, values, table, out_rows, out_values)
    assert (table == -1).all()
    uniq = np.unique(rows)
    assert k == len(uniq)
    assert len(set(out_rows[:k].tolist())) == k
    dense = np.zeros((n_vocab, d), dtype)
    for r, v in zip(rows, values):   # in input order, as the kernel promises
        dense[r] += v
    np.testing.assert_array_equal(out_values[:k], dense[out_rows[:k]])
