"""Precomputed inference equals predict_proba, whatever is cached."""

import numpy as np
import pytest

import fastgrad

from fastgrad.testing import assert_close, make_problem


@pytest.mark.parametrize("rows", ["all", "one-array", "per-slot", "none-cached", "list-of-ints"])
def test_precomputed_matches_predict_proba(dtype, rows):
    p, idx, y = make_problem(dtype, n=50, m=4, n_vocab=30)
    choice = {"all": None, "one-array": np.arange(0, 30, 2),
              "per-slot": [np.arange(5 * j, 5 * j + 12) for j in range(4)],
              "none-cached": np.array([], np.int64), "list-of-ints": [1, 2, 3, 3]}[rows]
    pre = fastgrad.precompute(p, choice)
    expected = fastgrad.predict_proba(p, idx)
    assert_close(pre.predict_proba(idx), expected, dtype)
    np.testing.assert_array_equal(pre.predict(idx), expected.argmax(axis=1))
    assert_close(pre.predict_proba(idx[:1]), expected[:1], dtype)   # one parser state
    n_cached = {"all": 4 * 30, "one-array": 4 * 15, "per-slot": 4 * 12, "none-cached": 0,
                "list-of-ints": 4 * 3}[rows]
    assert pre.n_cached == n_cached
    assert pre.nbytes == n_cached * p.W.shape[1] * np.dtype(dtype).itemsize + 4 * 30 * 4


def test_precompute_bad_rows():
    p, idx, _ = make_problem(n_vocab=30)
    with pytest.raises(ValueError, match="rows"):
        fastgrad.precompute(p, np.array([0, 30]))
    with pytest.raises(ValueError, match="rows"):
        fastgrad.precompute(p, [np.arange(3)] * 3)   # 3 arrays for 4 slots
    with pytest.raises(TypeError, match=r"rows\[0\]"):
        fastgrad.precompute(p, np.array([0.5]))
    pre = fastgrad.precompute(p)
    with pytest.raises(ValueError, match="idx"):
        pre.predict_proba(idx + 30)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_misses_are_batched_and_the_cache_is_left_as_it_was(dtype, n):
    # repeated uncached pairs within a slot and across slots, some cached ones between
    rng = np.random.default_rng(n)
    p, _, _ = make_problem(dtype, n=n, m=5, n_vocab=60)
    idx = rng.integers(0, 60, size=(n, 5))
    idx[: n // 2, 1] = idx[: n // 2, 2] = 7          # the same row in two slots, many times
    pre = fastgrad.precompute(p, [np.arange(0, 60, 3)] * 5)
    before = pre.cache_pos.copy()
    for _ in range(2):                               # second call: scratch reused
        assert_close(pre.predict_proba(idx), fastgrad.predict_proba(p, idx), dtype)
        np.testing.assert_array_equal(pre.cache_pos, before)


def test_refresh_follows_the_parameters_in_place():
    import numpy as np
    import fastgrad
    p = fastgrad.init_params(60, 4, 5, 12, 3, dtype=np.float64, seed=2)
    idx = np.random.default_rng(2).integers(0, 60, (50, 4))
    y = np.arange(50) % 3
    pre = fastgrad.precompute(p, np.arange(30))
    table = pre.table
    fastgrad.sgd_step(p, idx, y, 0.5)
    stale = pre.predict_proba(idx)
    pre.refresh()
    assert pre.table is table                                   # no new table
    np.testing.assert_allclose(pre.predict_proba(idx), fastgrad.predict_proba(p, idx),
                               rtol=1e-12, atol=1e-14)
    assert not np.allclose(stale, pre.predict_proba(idx))


def test_large_batches_take_the_plain_path():
    import numpy as np
    import fastgrad
    from fastgrad._precompute import PLAIN_MIN_ROWS
    p = fastgrad.init_params(500, 4, 5, 12, 3, dtype=np.float32, seed=4)
    idx = np.random.default_rng(4).integers(0, 500, (PLAIN_MIN_ROWS, 4))
    pre = fastgrad.precompute(p, np.arange(50))
    np.testing.assert_array_equal(pre.predict_proba(idx), fastgrad.predict_proba(p, idx))
    small = pre.predict_proba(idx[:PLAIN_MIN_ROWS - 1])
    np.testing.assert_allclose(small, fastgrad.predict_proba(p, idx[:PLAIN_MIN_ROWS - 1]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="vocabulary"):
        pre.predict_proba(np.full((PLAIN_MIN_ROWS, 4), 500))
