"""fastgrad._uniform: numpy's PCG64 uniform draws made by several threads, with
numpy's bits and numpy's state left behind."""

import numpy as np
import pytest

from fastgrad import _step, _uniform

pytestmark = pytest.mark.skipif(not _uniform.HAS_PCG64,
                                reason="this compiler has no 128-bit integers")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("before", [0, 1, 2])   # float32 draws first: a half kept or not
@pytest.mark.parametrize("n", [0, 1, 2, 3, 8191, 8192, 40001])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_same_draws_and_state_as_numpy(dtype, before, n, n_threads):
    ours, numpys = np.random.default_rng(7), np.random.default_rng(7)
    ours.random(before, dtype=np.float32)
    numpys.random(before, dtype=np.float32)
    got, want = np.full(n, -1, dtype), np.full(n, -2, dtype)
    assert _uniform.fill_uniform(ours, got, n_threads)
    numpys.random(out=want, dtype=dtype)
    np.testing.assert_array_equal(got, want)
    assert ours.bit_generator.state == numpys.bit_generator.state
    np.testing.assert_array_equal(ours.random(3, dtype=np.float32),
                                  numpys.random(3, dtype=np.float32))
    assert ours.random() == numpys.random()


def test_two_dimensional_out():
    ours, numpys = np.random.default_rng(3), np.random.default_rng(3)
    got, want = np.empty((256, 200), np.float32), np.empty((256, 200), np.float32)
    assert _uniform.fill_uniform(ours, got, 2)
    numpys.random(out=want, dtype=np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bit_generator, out", [
    (np.random.MT19937, np.empty(100, np.float32)),
    (np.random.Philox, np.empty(100)),
    (np.random.PCG64, np.empty((10, 20))[:, ::2]),    # not contiguous
    (np.random.PCG64, np.empty(100, np.float16)),
])
def test_declines_what_it_cannot_draw(bit_generator, out):
    generator, twin = np.random.Generator(bit_generator(5)), np.random.Generator(bit_generator(5))
    assert not _uniform.fill_uniform(generator, out, 2)
    assert generator.random() == twin.random()          # nothing was drawn


@pytest.mark.parametrize("bit_generator", [np.random.MT19937, np.random.PCG64])
def test_fill_uniform_draws_as_numpy_either_way(bit_generator):
    generator, twin = np.random.Generator(bit_generator(5)), np.random.Generator(bit_generator(5))
    got, want = np.empty((33, 7), np.float32), np.empty((33, 7), np.float32)
    _step.fill_uniform(generator, got, 2)
    twin.random(out=want, dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    assert generator.random() == twin.random()


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_drop_below_replaces_where_the_draw_is_below_the_ids_probability(n_threads):
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 40, (501, 30)).astype(np.int32)
    p_drop, draws = rng.random(40), rng.random((500, 18))
    want = rows.copy()
    words = want[:500, :18]
    words[draws < p_drop[words]] = -5
    got = rows.copy()
    assert _uniform.drop_below(got, draws, p_drop, -5, n_threads)
    assert np.array_equal(got, want) and (got != rows).any()


def test_drop_below_changes_nothing_when_an_id_has_no_probability():
    rows = np.arange(60, dtype=np.int32).reshape(3, 20)
    before = rows.copy()
    assert not _uniform.drop_below(rows, np.zeros((3, 18)), np.ones(50), -1, 2)
    assert np.array_equal(rows, before)
    with pytest.raises(ValueError, match="larger"):
        _uniform.drop_below(rows, np.zeros((4, 18)), np.ones(60), -1)
