"""Bad input raises a clear exception naming the argument, and writes nothing."""

import numpy as np
import pytest

import fastgrad

from fastgrad.testing import make_problem


def snapshot(p):
    return [np.array(a, copy=True) for a in p]


def assert_unchanged(p, snap):
    for name, a, b in zip(fastgrad.Params._fields, p, snap):
        assert np.asarray(a).tobytes() == b.tobytes(), f"p.{name} was modified"


CALLS = {
    "sgd_step": lambda p, idx, y: fastgrad.sgd_step(p, idx, y, 0.1),
    "loss_and_grad": lambda p, idx, y: fastgrad.loss_and_grad(p, idx, y),
    "loss": lambda p, idx, y: fastgrad.loss(p, idx, y),
    "train_step": lambda p, idx, y: fastgrad.train_step(p, idx, y, _AdamLike(p), dropout=0.5,
                                                        rng=0),
    "evaluate": lambda p, idx, y: fastgrad.evaluate(p, idx, y),
}


def _AdamLike(p):
    """An optimizer for p when p is valid; for an invalid p, one for a valid stand-in, so
    that train_step itself meets the bad p (the optimizer would refuse it first)."""
    try:
        return fastgrad.Adam(p)
    except (TypeError, ValueError):
        return fastgrad.Adam(make_problem()[0])


def bad_param_cases():
    def replace(name, make):
        def mutate(p):
            return p._replace(**{name: make(getattr(p, name))})
        return mutate

    return {
        "mixed_dtypes": (replace("W", lambda a: a.astype(np.float32)), TypeError, "p.W"),
        "float16": (replace("U", lambda a: a.astype(np.float16)), TypeError, "p.U"),
        "int_param": (replace("b1", lambda a: a.astype(np.int64)), TypeError, "p.b1"),
        "complex": (replace("L", lambda a: a.astype(np.complex128)), TypeError, "p.L"),
        "object": (replace("b2", lambda a: a.astype(object)), TypeError, "p.b2"),
        "list": (replace("b2", lambda a: a.tolist()), TypeError, "p.b2"),
        "fortran": (replace("W", np.asfortranarray), ValueError, "p.W"),
        "strided": (replace("L", lambda a: np.repeat(a, 2, axis=1)[:, ::2]), ValueError,
                    "p.L"),
        "W_rows": (replace("W", lambda a: np.ascontiguousarray(a[:-1])), ValueError, "p.W"),
        "b1_shape": (replace("b1", lambda a: a[:-1].copy()), ValueError, "p.b1"),
        "U_shape": (replace("U", lambda a: a[:-1].copy()), ValueError, "p.U"),
        "b2_shape": (replace("b2", lambda a: np.append(a, 0)), ValueError, "p.b2"),
        "b1_2d": (replace("b1", lambda a: a[None, :].copy()), ValueError, "p.b1"),
        "empty_L": (replace("L", lambda a: a[:0].copy()), ValueError, "p.L"),
        "zero_embed_dim": (replace("L", lambda a: a[:, :0].copy()), ValueError, "p.L"),
        "zero_hidden": (lambda p: p._replace(W=p.W[:, :0].copy(), b1=p.b1[:0].copy(),
                                             U=p.U[:0].copy()), ValueError, "p.W"),
        "zero_classes": (lambda p: p._replace(U=p.U[:, :0].copy(), b2=p.b2[:0].copy()),
                         ValueError, "p.U"),
        "L_1d": (replace("L", lambda a: a.ravel().copy()), ValueError, "p.L"),
    }


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("case", bad_param_cases())
def test_bad_params(call, case):
    p, idx, y = make_problem()
    mutate, exc, name = bad_param_cases()[case]
    bad = mutate(p)
    snap = snapshot(bad)
    with pytest.raises(exc, match=name.replace(".", r"\.")):
        CALLS[call](bad, idx, y)
    assert_unchanged(bad, snap)


def bad_index_cases(p, idx, y):
    n_vocab, n_classes = p.L.shape[0], p.U.shape[1]
    neg, big = idx.copy(), idx.copy()
    neg[3, 1] = -1
    big[5, 2] = n_vocab
    huge = idx.copy()
    huge[0, 0] = 2**31
    y_neg, y_big = y.copy(), y.copy()
    y_neg[2] = -1
    y_big[4] = n_classes
    return {
        "idx_negative": (neg, y, ValueError, r"idx\[3, 1\] = -1"),
        "idx_vocab_size": (big, y, ValueError, rf"idx\[5, 2\] = {n_vocab}"),
        "idx_2_31": (huge, y, ValueError, "idx"),
        "idx_float": (idx.astype(np.float64), y, TypeError, "idx"),
        "idx_bool": (idx > 0, y, TypeError, "idx"),
        "idx_1d": (idx[:, 0], y, ValueError, "idx"),
        "idx_columns": (idx[:, :-1], y, ValueError, "idx"),
        "idx_empty": (idx[:0], y[:0], ValueError, "idx"),
        "y_negative": (idx, y_neg, ValueError, r"y\[2\] = -1"),
        "y_classes": (idx, y_big, ValueError, rf"y\[4\] = {n_classes}"),
        "y_length": (idx, y[:-1], ValueError, "y"),
        "y_2d": (idx, y[:, None], ValueError, "y"),
        "y_float": (idx, y.astype(np.float32), TypeError, "y"),
    }


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("case", bad_index_cases(*make_problem()))
def test_bad_indices(call, case):
    p, idx, y = make_problem()
    bad_idx, bad_y, exc, pattern = bad_index_cases(p, idx, y)[case]
    snap = snapshot(p)
    with pytest.raises(exc, match=pattern):
        CALLS[call](p, bad_idx, bad_y)
    assert_unchanged(p, snap)


def test_out_of_range_index_in_predict():
    p, idx, _ = make_problem()
    idx[0, 0] = p.L.shape[0] + 3
    with pytest.raises(ValueError, match="idx"):
        fastgrad.predict_proba(p, idx)


def test_blocked_calls_name_the_callers_row(monkeypatch):
    # predict_proba past PREDICT_BLOCK_ROWS and evaluate take blocks; the error
    # still names the row of the caller's array
    p, idx, y = make_problem(n=40)
    idx[33, 2] = p.L.shape[0] + 3
    monkeypatch.setattr(fastgrad._api, "PREDICT_BLOCK_ROWS", 8)
    with pytest.raises(ValueError, match=r"idx\[33, 2\] = "):
        fastgrad.predict_proba(p, idx)
    with pytest.raises(ValueError, match=r"idx\[33, 2\] = "):
        fastgrad.evaluate(p, idx, y, batch_size=8)
    idx[33, 2] = 0
    y[21] = p.U.shape[1]
    with pytest.raises(ValueError, match=r"y\[21\] = "):
        fastgrad.evaluate(p, idx, y, batch_size=8)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1, "0.1", None, True])
def test_bad_learning_rate(lr):
    p, idx, y = make_problem()
    snap = snapshot(p)
    with pytest.raises((TypeError, ValueError), match="lr"):
        fastgrad.sgd_step(p, idx, y, lr)
    for make in (fastgrad.SGD, fastgrad.AdaGrad, fastgrad.Adam):
        with pytest.raises((TypeError, ValueError), match="lr"):
            make(p, lr=lr)
    assert_unchanged(p, snap)


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan")])
@pytest.mark.parametrize("where", ["L", "W", "b1", "U", "b2"])
def test_non_finite_params_refuse_train_step_and_leave_everything(where, value):
    p, idx, y = make_problem()
    opt = fastgrad.AdaGrad(p)
    fastgrad.train_step(p, idx, y, opt)
    target = getattr(p, where)
    target.flat[idx[0, 0] * p.L.shape[1] if where == "L" else 0] = value
    snap = snapshot(p) + snapshot(opt.state1)
    if where == "b1" and value == -float("inf"):
        # relu(z - inf) = 0: a dead hidden unit, a finite network; the step goes on
        assert np.isfinite(fastgrad.train_step(p, idx, y, opt, l2=0.1))
        state = opt.state1
        assert all(np.isfinite(a).all() for a in (p.L, p.W, p.U, p.b2, state.L, state.W,
                                                  state.U, state.b2))
        return
    with pytest.raises(FloatingPointError):
        fastgrad.train_step(p, idx, y, opt, l2=0.1)
    for a, b in zip(list(p) + list(opt.state1), snap):
        assert a.tobytes() == b.tobytes()
    assert opt.steps == 1


def test_read_only_params_work_for_reading_and_refuse_writing():
    p, idx, y = make_problem()
    for a in p:
        a.flags.writeable = False
    J = fastgrad.loss(p, idx, y)
    fastgrad.loss_and_grad(p, idx, y, dropout=0.3, rng=1)
    fastgrad.predict_proba(p, idx)
    fastgrad.evaluate(p, idx, y)
    fastgrad.precompute(p).predict_proba(idx)
    fastgrad.gradcheck(p, idx[:4], y[:4], n_samples=2)
    assert np.isfinite(J)
    with pytest.raises(ValueError, match="read-only"):
        fastgrad.sgd_step(p, idx, y, 0.1)
    with pytest.raises(ValueError, match="read-only"):
        fastgrad.Adam(p)
    for a in p:
        a.flags.writeable = True
    opt = fastgrad.Adam(p)
    p.W.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastgrad.train_step(p, idx, y, opt)


def test_overlapping_params_refused_for_update():
    p, idx, y = make_problem(hidden=6, n_classes=6)
    shared = np.zeros(6)
    p = p._replace(b1=shared, b2=shared)
    with pytest.raises(ValueError, match="share memory"):
        fastgrad.sgd_step(p, idx, y, 0.1)


@pytest.mark.parametrize("where", ["W", "L"])
def test_nan_in_params_refuses_the_update(where, path):
    p, idx, y = make_problem()
    if where == "L":
        p.L[idx[0, 0], 0] = np.nan
    else:
        p.W[0, 0] = np.nan
    snap = snapshot(p)
    assert np.isnan(fastgrad.loss(p, idx, y, path=path))
    with pytest.raises(FloatingPointError, match="no parameter was updated"):
        fastgrad.sgd_step(p, idx, y, 0.1, path=path)
    assert_unchanged(p, snap)


def test_bad_path():
    p, idx, y = make_problem()
    with pytest.raises(ValueError, match="path"):
        fastgrad.loss(p, idx, y, path="sparse")


def test_sizes_beyond_32bit_blas_refused():
    # W with m*d*Dh > 2**31 - 1 entries is never allocated: a broadcast view
    # has the shape without the memory (and is refused before any kernel runs)
    p, idx, y = make_problem(m=1, d=1, hidden=1, n_classes=2)
    big_n = 2**31
    idx_big = np.broadcast_to(np.zeros((1, 1), np.int64), (big_n, 1))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        fastgrad.loss(p, idx_big, np.broadcast_to(np.zeros(1, np.int64), (big_n,)))


def test_init_params_arguments():
    with pytest.raises(ValueError, match="hidden"):
        fastgrad.init_params(10, 2, 3, 0, 4)
    with pytest.raises(TypeError, match="dtype"):
        fastgrad.init_params(10, 2, 3, 4, 5, dtype=np.float16)
    with pytest.raises(ValueError, match="n_threads"):
        fastgrad.set_num_threads(0)


def test_params_of_wrong_kind():
    _, idx, y = make_problem()
    with pytest.raises(TypeError, match="Params"):
        fastgrad.loss({"L": 1}, idx, y)
