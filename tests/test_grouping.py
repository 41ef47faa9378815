"""The groupings (fastgrad/_grouping.pyx), through their def test hooks."""

import numpy as np
import pytest

from fastgrad import _grouping


def _skewed_indices(rng, n, m, n_vocab):
    """Zipf-like indices: a few rows in most occurrences, as parser features are."""
    weights = 1.0 / np.arange(1, n_vocab + 1)
    return rng.choice(n_vocab, size=(n, m), p=weights / weights.sum()).astype(np.int64)


@pytest.mark.parametrize("n_threads", [1, 2, 5, 9])
def test_slot_grouping_invariants(n_threads):
    # the factored path's (slot, row) keys, from the grouping's own test hook
    rng = np.random.default_rng(5)
    n, m, n_vocab = 700, 8, 500
    idx = _skewed_indices(rng, n, m, n_vocab)
    out = _grouping.group_slots_py(idx, n_vocab, n_threads, n_tables=min(n_threads, 3))
    offsets, key_row, pos = out["slot_offsets"], out["key_row"], out["pos"]
    n_keys = offsets[m]
    assert n_keys == len(key_row) == sum(len(np.unique(idx[:, j])) for j in range(m))
    np.testing.assert_array_equal(key_row[pos], idx)          # each occurrence's key holds its row
    for j in range(m):
        keys = pos[:, j]
        assert np.all((keys >= offsets[j]) & (keys < offsets[j + 1]))
        rows_of_slot = key_row[offsets[j]:offsets[j + 1]]
        assert len(np.unique(rows_of_slot)) == len(rows_of_slot)   # one key per distinct row
        # numbered in order of first occurrence: the segment sums rely on it (a key
        # is new at an example exactly when it is the slot's next number)
        _, first_seen = np.unique(keys, return_index=True)
        np.testing.assert_array_equal(np.sort(first_seen), first_seen)
        np.testing.assert_array_equal(keys[np.sort(first_seen)],
                                      np.arange(offsets[j], offsets[j + 1]))
    assert np.all(out["tables"] == -1)                              # tables left clean
    one = _grouping.group_slots_py(idx, n_vocab, 1)                 # same keys at any count
    for name in ("key_row", "pos", "slot_offsets"):
        np.testing.assert_array_equal(out[name], one[name])


# 300: a counting sort; 20,000 and 100,000: a radix sort of 2 and 3 passes, on one
# chunk of items; 70,000 items of a million rows: a radix sort on up to 4 chunks
@pytest.mark.parametrize("n_items,n_values", [(5000, 300), (5000, 20_000), (5000, 100_000),
                                              (70_000, 1_000_000)])
@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_row_grouping_matches_numpy(n_items, n_values, n_threads):
    rng = np.random.default_rng(11)
    values = _skewed_indices(rng, n_items, 1, n_values).ravel()
    uniq, group_ptr, members = _grouping.group_rows_py(values, n_values, n_threads)
    np.testing.assert_array_equal(uniq, np.unique(values))
    # members grouped by value, ascending within a group (a stable sort by value)
    np.testing.assert_array_equal(members, np.argsort(values, kind="stable"))
    np.testing.assert_array_equal(np.diff(group_ptr), np.bincount(values)[uniq])


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_gather_and_count_outside_match_numpy(dtype, n_threads):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 50, (300, 7)).astype(dtype)[:, ::2]     # strided columns
    rows = rng.permutation(300)[:77]                                # repeats none; any order
    rows = np.concatenate([rows, rows[:5]]).astype(np.int64)         # and some repeated
    dst = np.full(rows.size * data.shape[1] + 3, -7, np.int64)
    _grouping.gather_indices(data, rows, dst, n_threads)
    np.testing.assert_array_equal(dst[:-3].reshape(-1, data.shape[1]), data[rows])
    assert (dst[-3:] == -7).all()                                    # nothing past the batch
    with pytest.raises(ValueError, match="too small"):
        _grouping.gather_indices(data, rows, dst[:10], n_threads)
    assert _grouping.count_outside(data, 50, n_threads) == (0, -1)
    bad = data.copy()
    bad[200, 1], bad[250, 3], bad[0, 0] = 50, -1, 49
    assert _grouping.count_outside(bad, 50, n_threads) == (2, 200 * bad.shape[1] + 1)
