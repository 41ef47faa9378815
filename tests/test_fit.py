"""fit() and evaluate(): the training loop users call instead of writing one."""

import numpy as np
import pytest

import fastgrad

from fastgrad.testing import copy_params, make_problem


def learnable(n=600, seed=0):
    p, idx, _ = make_problem(np.float32, n=n, m=3, n_vocab=30, n_classes=5, hidden=16, seed=seed)
    return p, idx, idx[:, 0] % 5   # the class is a function of the first word


def test_fit_learns_and_reports(capsys):
    p, idx, y = learnable()
    opt = fastgrad.AdaGrad(p, lr=0.1)
    hist = fastgrad.fit(p, idx[:500], y[:500], opt, epochs=8, batch_size=64, dropout=0.1,
                        validation=(idx[500:], y[500:]), progress=False)
    assert [h.epoch for h in hist] == list(range(1, 9))
    assert hist[-1].loss < hist[0].loss
    assert hist[-1].val_accuracy > 0.9 and hist[-1].accuracy > hist[0].accuracy
    assert opt.steps == 8 * 8                         # 500 rows / 64 = 8 batches an epoch
    loss_v, acc_v = fastgrad.evaluate(p, idx[500:], y[500:])
    assert loss_v == pytest.approx(hist[-1].val_loss) and acc_v == hist[-1].val_accuracy
    assert capsys.readouterr().err == ""              # progress=False: silent


def test_fit_same_seed_same_run():
    p, idx, y = learnable()
    q = copy_params(p)
    runs = [fastgrad.fit(r, idx, y, fastgrad.Adam(r, 1e-2), epochs=2, batch_size=100,
                         dropout=0.5, shuffle_seed=3, progress=False) for r in (p, q)]
    assert [h.loss for h in runs[0]] == [h.loss for h in runs[1]]
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def test_fit_progress_bar_on_request(capsys):
    p, idx, y = learnable(n=100)
    fastgrad.fit(p, idx, y, fastgrad.SGD(p, 0.1), epochs=1, batch_size=50, progress=True)
    assert "2/2" in capsys.readouterr().err


def test_evaluate_matches_loss_and_predict(dtype):
    p, idx, y = make_problem(dtype, n=300, n_classes=4)
    loss_v, acc = fastgrad.evaluate(p, idx, y, batch_size=128)
    assert loss_v == pytest.approx(fastgrad.loss(p, idx, y), rel=1e-5)
    assert acc == np.mean(fastgrad.predict(p, idx) == y)


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"dropout": 1.5}, "dropout"),
    ({"validation": 3}, "validation"), ({"opt": None}, "opt"),
])
def test_fit_bad_arguments(kwargs, match):
    p, idx, y = learnable(n=50)
    opt = kwargs.pop("opt", fastgrad.SGD(p, 0.1))
    with pytest.raises((TypeError, ValueError), match=match):
        fastgrad.fit(p, idx, y, opt, **kwargs)


@pytest.mark.parametrize("where", ["idx", "y", "validation[0]", "validation[1]", "columns"])
def test_fit_refuses_a_bad_row_anywhere_before_its_first_step(dtype, where):
    # a bad entry in the last batch (or in the validation set, first used after an
    # epoch) is refused before any step: parameters, optimizer and its steps as they
    # were, and the error names the caller's row, not the row inside a batch
    p, idx, _ = make_problem(dtype, n=200, m=3, n_vocab=30, n_classes=5, hidden=16, seed=1)
    y = idx[:, 0] % 5
    idx_v, y_v = idx[:40].copy(), y[:40].copy()
    idx, y = idx.copy(), y.copy()
    if where == "idx":
        idx[197, 2] = 30
    elif where == "y":
        y[190] = -1
    elif where == "validation[0]":
        idx_v[33, 1] = 99
    elif where == "validation[1]":
        y_v[39] = 5
    else:
        idx_v = idx_v[:, :2]
    opt = fastgrad.Adam(p, 1e-2)
    before, state = copy_params(p), [a.copy() for a in opt.state1 + opt.state2]
    expected = {"idx": r"idx\[197, 2\] = 30 is outside the vocabulary",
                "y": r"y\[190\] = -1 is outside the classes",
                "validation[0]": r"validation\[0\]\[33, 1\] = 99 is outside the vocabulary",
                "validation[1]": r"validation\[1\]\[39\] = 5 is outside the classes",
                "columns": r"validation\[0\] must have 3 columns"}[where]
    with pytest.raises(ValueError, match=expected):
        fastgrad.fit(p, idx, y, opt, epochs=2, batch_size=16, shuffle_seed=0,
                     validation=(idx_v, y_v), progress=False)
    assert opt.steps == 0
    for a, b in zip(list(p) + list(opt.state1 + opt.state2), list(before) + state):
        np.testing.assert_array_equal(a, b)
