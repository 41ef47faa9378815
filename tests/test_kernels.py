"""The compiled kernels against the NumPy reference and finite differences."""

import numpy as np
import pytest

import fastgrad
from fastgrad import _threads, _workspace, reference
from fastgrad._validate import check_params

from fastgrad.testing import assert_close, assert_grads_close, copy_params, make_problem


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_loss_and_grad_match_reference(dtype, path, index_dtype):
    p, idx, y = make_problem(dtype, index_dtype=index_dtype)
    J, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y)
    assert_close(J, J_ref, dtype, "loss")
    assert_grads_close(g, g_ref, dtype)
    for name, grad, param in zip(fastgrad.Params._fields, g[1:], p[1:]):
        assert grad.dtype == dtype and grad.shape == param.shape, name
    assert g.L.rows.dtype == np.int64 and g.L.values.dtype == dtype


def test_loss_and_predictions_match_reference(dtype, path):
    p, idx, y = make_problem(dtype, n_classes=9)
    assert_close(fastgrad.loss(p, idx, y, path=path), reference.loss(p, idx, y), dtype)
    proba = fastgrad.predict_proba(p, idx, path=path)
    assert proba.dtype == dtype and proba.shape == (idx.shape[0], 9)
    assert_close(proba, reference.predict_proba(p, idx), dtype)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(fastgrad.predict(p, idx, path=path), proba.argmax(axis=1))


@pytest.mark.parametrize("n", [7, 8, 30, 64])
def test_predict_proba_in_blocks(dtype, path, n, monkeypatch):
    # past PREDICT_BLOCK_ROWS rows: equal blocks, the last overlapping the one before
    p, idx, y = make_problem(dtype, n=n, n_classes=9, vocab_used=12)
    whole = fastgrad.predict_proba(p, idx, path=path)
    monkeypatch.setattr(fastgrad._api, "PREDICT_BLOCK_ROWS", 7)
    _workspace._local.cache.clear()
    blocked = fastgrad.predict_proba(p, idx, path=path)
    assert blocked.shape == (n, 9) and blocked.dtype == dtype
    assert_close(blocked, reference.predict_proba(p, idx), dtype)
    assert_close(blocked, whole, dtype)
    np.testing.assert_array_equal(fastgrad.predict(p, idx, path=path), blocked.argmax(axis=1))
    # memory bounded by the block, whatever n: no workspace for more rows than it
    assert max(ws.n for ws in _workspace._local.cache.values()) <= 7


def test_forward_calls_share_one_workspace_with_room(dtype, path):
    # predict_proba with a falling row count (a parse's steps) reuses one workspace
    # with room for the most rows; only its first n rows are read
    p, idx, _ = make_problem(dtype, n=40, n_classes=9, vocab_used=12)
    _workspace._local.cache.clear()
    for n in (40, 33, 17, 5, 1, 40):
        assert_close(fastgrad.predict_proba(p, idx[:n], path=path),
                     reference.predict_proba(p, idx[:n]), dtype)
    assert [ws.n for ws in _workspace._local.cache.values()] == [40]
    fastgrad.predict_proba(p, np.concatenate([idx, idx[:5]]), path=path)   # grown by a quarter
    assert [ws.n for ws in _workspace._local.cache.values()] == [50]


def test_repeated_indices_accumulate(dtype, path):
    # few distinct words: the same row appears in one example and across examples
    p, idx, y = make_problem(dtype, n=50, m=6, vocab_used=3)
    idx[0] = 2  # one word in every slot of one example
    _, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    _, g_ref = reference.loss_and_grad(p, idx, y)
    assert len(g.L.rows) == len(np.unique(idx))
    assert_grads_close(g, g_ref, dtype)
    # the dense form of the sparse gradient is the full gradient
    dense = g.L.to_dense(p.L.shape[0])
    assert dense.shape == p.L.shape
    assert np.all(dense[3:] == 0)
    assert_close(dense[g.L.rows], g_ref.L.values, dtype)


def test_first_and_last_rows_of_vocabulary(dtype, path):
    p, idx, y = make_problem(dtype, n_vocab=10)
    idx[:, 0] = 0
    idx[:, -1] = 9
    _, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    _, g_ref = reference.loss_and_grad(p, idx, y)
    assert g.L.rows[0] == 0 and g.L.rows[-1] == 9
    assert_grads_close(g, g_ref, dtype)


def test_sgd_step_matches_reference_step(dtype, path):
    p, idx, y = make_problem(dtype, vocab_used=15)
    q = copy_params(p)
    J = fastgrad.sgd_step(p, idx, y, 0.3, path=path)
    J_ref = reference.sgd_step(q, idx, y, 0.3)
    assert_close(J, J_ref, dtype, "loss")
    for name, a, b in zip(fastgrad.Params._fields, p, q):
        assert_close(a, b, dtype, name)


def test_sgd_step_equals_applying_loss_and_grad(dtype, path):
    p, idx, y = make_problem(dtype, vocab_used=20)
    q = copy_params(p)
    _, g = fastgrad.loss_and_grad(q, idx, y, path=path)
    fastgrad.sgd_step(p, idx, y, 0.1, path=path)
    q.L[g.L.rows] -= np.asarray(0.1, dtype) * g.L.values
    for a, grad in zip(q[1:], g[1:]):
        a -= np.asarray(0.1, dtype) * grad
    for name, a, b in zip(fastgrad.Params._fields, p, q):
        assert_close(a, b, dtype, name)


def test_untouched_rows_of_L_are_not_written(path):
    p, idx, y = make_problem(np.float32, vocab_used=10)
    before = p.L.copy()
    fastgrad.sgd_step(p, idx, y, 0.5, path=path)
    np.testing.assert_array_equal(p.L[10:], before[10:])
    assert not np.array_equal(p.L[:10], before[:10])


def test_paths_agree(dtype):
    p, idx, y = make_problem(dtype, n=64, m=5, vocab_used=8)
    J_d, g_d = fastgrad.loss_and_grad(p, idx, y, path="dense")
    J_f, g_f = fastgrad.loss_and_grad(p, idx, y, path="factored")
    assert_close(J_f, J_d, dtype)
    assert_grads_close(g_f, g_d, dtype)


@pytest.mark.parametrize("shape", [
    dict(n=1), dict(m=1), dict(n_classes=2), dict(n_classes=1), dict(d=1, hidden=1),
    dict(n=3, n_classes=1000, hidden=20), dict(n=200, m=3, hidden=70),
], ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_edge_shapes(dtype, path, shape):
    p, idx, y = make_problem(dtype, **shape)
    J, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y)
    assert_close(J, J_ref, dtype)
    assert_grads_close(g, g_ref, dtype)


def test_gradcheck_float64(path):
    p, idx, y = make_problem(np.float64, n=12, vocab_used=10)
    errors = fastgrad.gradcheck(p, idx, y, path=path)
    assert set(errors) == set(fastgrad.Params._fields)
    assert max(errors.values()) < 1e-6, errors


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    p, idx, y = make_problem(np.float64, n=12)
    import fastgrad._gradcheck as gc

    real = gc.loss_and_grad

    def broken(*args, **kwargs):
        J, g = real(*args, **kwargs)
        return J, g._replace(b1=g.b1 * 1.1)

    monkeypatch.setattr(gc, "loss_and_grad", broken)
    errors = fastgrad.gradcheck(p, idx, y)
    assert errors["b1"] > 1e-4 and errors["W"] < 1e-6


def test_gradcheck_of_float32_params_runs_in_float64():
    p, idx, y = make_problem(np.float32, n=12)
    before = copy_params(p)
    errors = fastgrad.gradcheck(p, idx, y)
    assert max(errors.values()) < 1e-6, errors
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)


def test_same_input_gives_bit_identical_results(dtype, path):
    # the promise is per thread count: pinned here, since without a count asked for the
    # kernels take fewer threads while other processes keep cores busy (rules 3-4 of
    # fastgrad/_threads.py), and a busy machine could then change it between two calls
    p, idx, y = make_problem(dtype, n=300, m=6, hidden=40, vocab_used=30)
    q = copy_params(p)
    saved = _threads._user_threads          # None: the default rules, restored after
    fastgrad.set_num_threads(2)
    try:
        J1, g1 = fastgrad.loss_and_grad(p, idx, y, path=path)
        J2, g2 = fastgrad.loss_and_grad(p, idx, y, path=path)
        assert J1 == J2
        for a, b in zip([g1.L.values, *g1[1:]], [g2.L.values, *g2[1:]]):
            np.testing.assert_array_equal(a, b)
        fastgrad.sgd_step(p, idx, y, 0.1, path=path)
        fastgrad.sgd_step(q, idx, y, 0.1, path=path)
        for a, b in zip(p, q):
            np.testing.assert_array_equal(a, b)
    finally:
        fastgrad.set_num_threads(saved)


def test_thread_counts_agree_and_each_is_deterministic(path):
    p, idx, y = make_problem(np.float64, n=500, m=6, hidden=64, vocab_used=40)
    saved = _threads._user_threads          # None: the default rules, restored after
    try:
        results = {}
        for n_threads in (1, 2, 3):
            fastgrad.set_num_threads(n_threads)
            runs = [fastgrad.loss_and_grad(p, idx, y, path=path) for _ in range(2)]
            np.testing.assert_array_equal(runs[0][1].W, runs[1][1].W)
            np.testing.assert_array_equal(runs[0][1].b1, runs[1][1].b1)
            np.testing.assert_array_equal(runs[0][1].b2, runs[1][1].b2)
            results[n_threads] = runs[0]
        for J, g in results.values():
            assert_close(J, results[1][0], np.float64)
            assert_grads_close(g, results[1][1], np.float64)
    finally:
        fastgrad.set_num_threads(saved)


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e30, -1e30])
def test_extreme_logits_give_finite_loss_and_gradients(dtype, path, scale):
    p, idx, y = make_problem(dtype)
    p.b2[:] = 0
    p.b2[0] = scale  # logits of ±1e4 in class 0
    J, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y)
    assert np.isfinite(J)
    assert_close(J, J_ref, dtype)
    assert all(np.all(np.isfinite(a)) for a in [g.L.values, *g[1:]])
    assert_grads_close(g, g_ref, dtype)


def test_training_reduces_the_loss(path):
    p, idx, _ = make_problem(np.float32, n=64, m=3, n_vocab=30, n_classes=4)
    y = idx[:, 0] % 4  # learnable: the class is a function of the first word
    first = fastgrad.loss(p, idx, y)
    for _ in range(200):
        fastgrad.sgd_step(p, idx, y, 0.5, path=path)
    assert fastgrad.loss(p, idx, y) < 0.1 * first
    assert np.mean(fastgrad.predict(p, idx) == y) > 0.95


def test_float32_loss_of_large_batch_close_to_float64():
    p, idx, y = make_problem(np.float64, n=4000, m=8, d=16, hidden=64, n_classes=20,
                             n_vocab=500)
    p32 = fastgrad.Params(*(a.astype(np.float32) for a in p))
    assert abs(fastgrad.loss(p32, idx, y) - fastgrad.loss(p, idx, y)) < 1e-5


def test_choose_path_cost_model():
    # every example shares its rows: factored; every occurrence distinct: dense
    assert fastgrad.choose_path(1024, 36, 50, 200, n_keys=36 * 40) == "factored"
    assert fastgrad.choose_path(1024, 36, 50, 200, n_keys=36 * 1024) == "dense"


def test_threads_on_independent_params_match_serial_results():
    """The kernels release the GIL and keep per-thread workspaces: concurrent calls on
    independent parameter sets give exactly the results of running them one by one."""
    from concurrent.futures import ThreadPoolExecutor

    problems = [make_problem(np.float64, n=256, m=5, hidden=32, vocab_used=25, seed=s)
                for s in range(4)]

    def train(problem):
        p, idx, y = problem
        q = copy_params(p)
        return [fastgrad.sgd_step(q, idx, y, 0.1) for _ in range(20)], q

    saved = _threads._user_threads      # the same count in both phases, however busy the
    fastgrad.set_num_threads(2)         # machine is (the default count adapts to it)
    try:
        serial = [train(problem) for problem in problems]
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(train, problems))
    finally:
        fastgrad.set_num_threads(saved)
    for (losses_a, qa), (losses_b, qb) in zip(serial, concurrent):
        assert losses_a == losses_b
        for a, b in zip(qa, qb):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("update", ["sgd_step", "adam"])
def test_threads_updating_the_same_params_are_serialized(update):
    """Two threads stepping the same Params: each step runs whole, one after the other,
    so 2 x 25 identical steps from two threads equal 50 steps from one."""
    from concurrent.futures import ThreadPoolExecutor

    p, idx, y = make_problem(np.float64, n=256, m=5, hidden=32, vocab_used=25)
    q = copy_params(p)
    opts = {id(p): fastgrad.Adam(p, 1e-3), id(q): fastgrad.Adam(q, 1e-3)}

    def steps(params, count):
        for _ in range(count):
            if update == "sgd_step":
                fastgrad.sgd_step(params, idx, y, 0.05)
            else:
                fastgrad.train_step(params, idx, y, opts[id(params)])

    steps(q, 50)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: steps(p, 25), range(2)))
    if update != "sgd_step":
        # Adam's step count decides its bias correction: 50 steps from either thread
        assert opts[id(p)].steps == 50
    for a, b in zip(p, q):
        np.testing.assert_array_equal(a, b)


def _skewed_indices(rng, n, m, n_vocab):
    """Zipf-like indices: a few rows in most occurrences, as parser features are."""
    weights = 1.0 / np.arange(1, n_vocab + 1)
    return rng.choice(n_vocab, size=(n, m), p=weights / weights.sum()).astype(np.int64)


# 300 rows: grouped by a counting sort; 20,000 and 100,000: by a radix sort of 2 and 3 passes
@pytest.mark.parametrize("n_vocab", [300, 20_000, 100_000])
def test_embedding_gradient_rows_are_the_same_at_every_thread_count(path, n_vocab):
    # 6,000 occurrences: enough for group_rows to split its radix sort over threads
    rng = np.random.default_rng(3)
    p, _, y = make_problem(np.float64, n=1000, m=6, n_vocab=n_vocab)
    idx = _skewed_indices(rng, 1000, 6, n_vocab)
    _, g_ref = reference.loss_and_grad(p, idx, y)
    saved = _threads._user_threads          # None: the default rules, restored after
    try:
        for n_threads in (1, 2, 3, 4, 7):
            fastgrad.set_num_threads(n_threads)
            _, g = fastgrad.loss_and_grad(p, idx, y, path=path)
            np.testing.assert_array_equal(g.L.rows, np.unique(idx))
            assert_grads_close(g, g_ref, np.float64)
            q = copy_params(p)
            fastgrad.sgd_step(q, idx, y, 0.1, path=path)
            expected = copy_params(p)
            reference.sgd_step(expected, idx, y, 0.1)
            for a, b in zip(q, expected):
                assert_close(a, b, np.float64)
    finally:
        fastgrad.set_num_threads(saved)


def test_huge_vocabulary_numbers_slots_on_fewer_threads(monkeypatch, path):
    # the per-thread row-number tables are capped in bytes; fewer tables, same results
    monkeypatch.setattr(_workspace, "SLOT_TABLE_BYTES", 4 * 600)   # one table of |V| = 600
    p, idx, y = make_problem(np.float64, n=300, m=5, n_vocab=600, vocab_used=50)
    saved = _threads._user_threads          # None: the default rules, restored after
    try:
        fastgrad.set_num_threads(3)
        J, g = fastgrad.loss_and_grad(p, idx, y, path=path)
    finally:
        fastgrad.set_num_threads(saved)
    J_ref, g_ref = reference.loss_and_grad(p, idx, y)
    assert_close(J, J_ref, np.float64)
    assert_grads_close(g, g_ref, np.float64)
    if path == "factored":
        ws = _workspace.workspace_for(check_params(p, writeable=False), 300)
        assert ws.slot_tables.shape == (1, 600)
