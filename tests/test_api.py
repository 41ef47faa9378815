"""The public API's records, initialisation and workspace reuse."""

import tracemalloc

import numpy as np
import pytest

import fastgrad

from fastgrad.testing import make_problem


def test_params_is_a_record_in_derivation_order():
    p = fastgrad.init_params(n_vocab=30, n_features=3, embed_dim=4, hidden=5, n_classes=6,
                             dtype=np.float32, seed=0)
    assert fastgrad.Params._fields == ("L", "W", "b1", "U", "b2")
    shapes = [a.shape for a in p]
    assert shapes == [(30, 4), (12, 5), (5,), (5, 6), (6,)]
    assert all(a.dtype == np.float32 for a in p)
    L, W, b1, U, b2 = p
    assert L is p.L and b2 is p.b2


def test_init_is_seeded_and_documented_ranges():
    a = fastgrad.init_params(50, 2, 8, 10, 3, dtype=np.float64, seed=7)
    b = fastgrad.init_params(50, 2, 8, 10, 3, dtype=np.float64, seed=7)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)
    assert np.abs(a.L).max() <= np.sqrt(3 / 8)
    assert np.abs(a.W).max() <= np.sqrt(6 / (16 + 10))
    assert not a.b1.any() and not a.b2.any()


def test_params_wrap_user_arrays_without_copying():
    p, idx, y = make_problem()
    arrays = list(p)
    wrapped = fastgrad.Params(*arrays)
    fastgrad.sgd_step(wrapped, idx, y, 0.1)
    for name, a, b in zip(fastgrad.Params._fields, wrapped, arrays):
        assert a is b, name
    keywords = fastgrad.Params(L=p.L, W=p.W, b1=p.b1, U=p.U, b2=p.b2)
    assert keywords.W is p.W
    # a plain tuple of five arrays is accepted too
    fastgrad.sgd_step(tuple(arrays), idx, y, 0.1)


def test_gradients_record():
    p, idx, y = make_problem()
    _, g = fastgrad.loss_and_grad(p, idx, y)
    assert isinstance(g, fastgrad.Gradients)
    assert isinstance(g.L, fastgrad.SparseRows)
    assert np.all(np.diff(g.L.rows) > 0)
    assert g.L.values.shape == (len(g.L.rows), p.L.shape[1])
    with pytest.raises(ValueError, match="n_vocab"):
        g.L.to_dense(int(g.L.rows[-1]))


def test_gradients_are_fresh_arrays_not_workspace_views():
    p, idx, y = make_problem()
    _, g1 = fastgrad.loss_and_grad(p, idx, y)
    W1 = g1.W.copy()
    _, g2 = fastgrad.loss_and_grad(p, idx, (y + 1) % p.U.shape[1])
    np.testing.assert_array_equal(g1.W, W1)
    assert not np.shares_memory(g1.W, g2.W)


@pytest.mark.parametrize("path", ["dense", "factored"])
def test_training_loop_allocates_nothing_per_step(path):
    p, idx, y = make_problem(np.float32, n=256, m=8, d=16, hidden=32, vocab_used=20)
    for _ in range(3):  # warm up: buffers, the BLAS thread controller
        fastgrad.sgd_step(p, idx, y, 0.01, path=path)
    tracemalloc.start()
    try:
        fastgrad.sgd_step(p, idx, y, 0.01, path=path)
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            fastgrad.sgd_step(p, idx, y, 0.01, path=path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy buffers are traced: a single (N, Dh) float32 array would add 32 KiB to
    # the peak; what is left is the API's few small Python objects per call
    assert peak - baseline < 16384, peak - baseline


def test_version_and_reference_are_exposed():
    assert isinstance(fastgrad.__version__, str) and fastgrad.__version__.count(".") == 2
    assert callable(fastgrad.reference.loss_and_grad)


def test_blas_threads_restored_after_a_kernel():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (the BLAS the kernels use)

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    p, idx, y = make_problem(np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        fastgrad.sgd_step(p, idx, y, 0.01)
        fastgrad.train_step(p, idx, y, fastgrad.Adam(p), dropout=0.5, rng=0)
        assert blas_threads() == before


def test_bench_floors_compute_the_six_products():
    """Both GEMM floors multiply what they say, into their own outputs (no silent copies)."""
    from fastgrad import bench

    cfg = bench.Config("tiny", 6, 3, 5, 4, ((2, 10),))
    for floor in ("floor", "floor-scipy"):
        for dtype in (np.float32, np.float64):
            step = bench.METHODS[floor](cfg, None, None, dtype, 0)
            step()
            out = step.arrays
            x, W, h, U, d1, d2 = (out[k] for k in ("x", "W", "h", "U", "delta1", "delta2"))
            expected = {"z": x @ W, "theta": h @ U, "dU": h.T @ d1, "d1U": d1 @ U.T,
                        "dW": x.T @ d2, "dx": d2 @ W.T}
            for name, value in expected.items():
                np.testing.assert_allclose(out[name], value, rtol=1e-4, atol=1e-4,
                                           err_msg=f"{floor} {name}")


def test_phase_clock_bills_segment_sums_apart_where_slots_are_cut():
    # at 3 threads a slot of ~500 keys is cut into blocks: the segment sums run first,
    # over whole slots, and are billed to their own phase
    from fastgrad import _kernels, _threads
    if not _kernels.OPENMP:
        pytest.skip("phase timing needs a build with OpenMP")
    p, idx, y = make_problem(np.float64, n=600, m=3, n_vocab=2000)
    saved = _threads._user_threads          # None: the default rules, restored after
    fastgrad.set_num_threads(3)
    _kernels.set_phase_timing(True)
    try:
        fastgrad.sgd_step(p, idx, y, 0.1, path="factored")
        timed = _kernels.phase_timing()
    finally:
        _kernels.set_phase_timing(False)
        fastgrad.set_num_threads(saved)
    assert timed["segment sums of δ2"] > 0
    assert timed["dW and dL products (+ sums by slot)"] > 0


def test_phase_clock_bills_each_phase_of_a_step(path):
    from fastgrad import _kernels
    p, idx, y = make_problem(np.float64, n=200)
    if not _kernels.OPENMP:
        with pytest.raises(RuntimeError, match="OpenMP"):
            _kernels.set_phase_timing(True)
        return
    J_plain = fastgrad.loss(p, idx, y, path=path)
    _kernels.set_phase_timing(True)
    try:
        fastgrad.sgd_step(fastgrad.Params(*(a.copy() for a in p)), idx, y, 0.1, path=path)
        timed = _kernels.phase_timing()
        assert fastgrad.loss(p, idx, y, path=path) == J_plain   # the clock changes no result
    finally:
        _kernels.set_phase_timing(False)
    assert list(timed) == list(_kernels.PHASES)
    assert all(t >= 0 for t in timed.values())
    for phase in ("first layer: products", "softmax and loss", "update W, b1, U, b2"):
        assert timed[phase] > 0, phase
    if path == "factored":   # one or two threads: each slot's sums with its products
        assert timed["dW and dL products (+ sums by slot)"] > 0
    # off: totals are cleared and no longer grow
    fastgrad.sgd_step(fastgrad.Params(*(a.copy() for a in p)), idx, y, 0.1, path=path)
    assert sum(_kernels.phase_timing().values()) == 0
