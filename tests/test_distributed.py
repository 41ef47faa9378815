"""Data-parallel training over MPI (fastgrad.distributed).

Run under MPI: ``mpiexec -n 2 pytest tests/test_distributed.py`` (CI does,
under a timeout). Under plain pytest the same tests run on a one-rank communicator
(the distributed step must then equal the single-process step too). Every rank
computes the single-process reference on the concatenated global batch itself,
so each assertion compares data that every rank holds, and no rank can leave the
others waiting in a collective.
"""

import numpy as np
import pytest

MPI = pytest.importorskip("mpi4py.MPI")

import fastgrad                                  # noqa: E402
import fastgrad.distributed as fd               # noqa: E402

from fastgrad.testing import copy_params, make_problem  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
# float64: equal to rounding; float32: AdaGrad and Adam amplify the rounding of
# g where |g| is near eps, as any float32 reduction order would
TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-4, atol=2e-5)}


def make_optimizer(kind, p):
    return {"sgd": lambda: fastgrad.SGD(p, lr=0.1),
            "momentum": lambda: fastgrad.SGD(p, lr=0.1, momentum=0.9),
            "adagrad": lambda: fastgrad.AdaGrad(p, lr=0.05),
            "adam": lambda: fastgrad.Adam(p, lr=0.01)}[kind]()


def shard_sizes(n, uneven):
    """Every rank's shard size: uneven ones give the last rank none (and rank 0 the most)."""
    if SIZE == 1 or not uneven:
        return [fd.shard_bounds(n, r, SIZE)[1] - fd.shard_bounds(n, r, SIZE)[0]
                for r in range(SIZE)]
    sizes = [0] * SIZE
    rest = n
    for r in range(SIZE - 1):
        sizes[r] = rest * 2 // 3 if r < SIZE - 2 else rest
        rest -= sizes[r]
    return sizes


def my_shard(idx, y, sizes):
    lo = sum(sizes[:RANK])
    return idx[lo:lo + sizes[RANK]], y[lo:lo + sizes[RANK]]


def assert_models_close(p, opt, q, opt_q, dtype):
    for a, b in zip(p, q):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    for state in ("state1", "state2"):
        if getattr(opt, state) is not None:
            for a, b in zip(getattr(opt, state), getattr(opt_q, state)):
                np.testing.assert_allclose(a, b, **TOL[dtype])
    assert opt.steps == opt_q.steps


@pytest.mark.parametrize("exchange", ["allgather", "union", "dense"])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adagrad", "adam"])
@pytest.mark.parametrize("dropout,l2", [(0.0, 0.0), (0.3, 1e-3)])
@pytest.mark.parametrize("uneven", [False, True])
def test_equals_one_process_on_the_global_batch(dtype, kind, dropout, l2, exchange, uneven):
    p, idx, y = make_problem(dtype, n=45, m=4, d=5, hidden=9, n_classes=6, n_vocab=60,
                             vocab_used=30, seed=1)
    q = copy_params(p)
    opt, opt_q = make_optimizer(kind, p), make_optimizer(kind, q)
    fd.broadcast(p, opt, COMM)
    sizes = shard_sizes(len(idx), uneven)
    mine = my_shard(idx, y, sizes)
    for step in range(3):
        J = fd.train_step(p, *mine, opt, COMM, dropout=dropout, l2=l2, rng=100 + step,
                          exchange=exchange)
        J_ref = fastgrad.train_step(q, idx, y, opt_q, dropout=dropout, l2=l2, rng=100 + step)
        assert J == pytest.approx(J_ref, rel=1e-12 if dtype == np.float64 else 1e-6)
    assert_models_close(p, opt, q, opt_q, dtype)
    fd.check_replicas(p, opt, COMM)
    assert fd.last_step().exchange == exchange
    assert fd.last_step().global_rows == len(idx)


def test_auto_exchange_and_path_equal_one_process():
    p, idx, y = make_problem(np.float64, n=200, m=6, d=8, hidden=16, n_classes=5,
                             n_vocab=500, vocab_used=80, seed=2)
    q = copy_params(p)
    opt, opt_q = fastgrad.AdaGrad(p, lr=0.05), fastgrad.AdaGrad(q, lr=0.05)
    mine = my_shard(idx, y, shard_sizes(len(idx), False))
    for step in range(4):
        fd.train_step(p, *mine, opt, COMM, dropout=0.5, rng=step)
        fastgrad.train_step(q, idx, y, opt_q, dropout=0.5, rng=step)
    assert_models_close(p, opt, q, opt_q, np.float64)
    assert fd.last_step().exchange in fd.EXCHANGES


def test_choose_exchange_by_bytes():
    # big vocabulary, few rows touched: allgather; small vocabulary: the whole table
    assert fd.choose_exchange(2, 100_000, 50, 4, [7000, 7000]) == "allgather"
    assert fd.choose_exchange(16, 100_000, 50, 4, [17000] * 16) == "union"
    assert fd.choose_exchange(16, 500, 50, 4, [400] * 16) == "dense"
    assert fd.choose_exchange(1, 500, 50, 4, [400]) == "allgather"


def test_fit_with_comm_equals_fit():
    p, idx, y = make_problem(np.float64, n=130, m=4, d=5, hidden=8, n_classes=4, n_vocab=40,
                             vocab_used=25, seed=3)
    q = copy_params(p)
    opt, opt_q = fastgrad.Adam(p, lr=0.01), fastgrad.Adam(q, lr=0.01)
    val = (idx[:33], y[:33])
    hist = fastgrad.fit(p, idx, y, opt, epochs=2, batch_size=32, dropout=0.2, l2=1e-4,
                        validation=val, progress=False, comm=COMM)
    ref = fastgrad.fit(q, idx, y, opt_q, epochs=2, batch_size=32, dropout=0.2, l2=1e-4,
                       validation=val, progress=False)
    assert_models_close(p, opt, q, opt_q, np.float64)
    for a, b in zip(hist, ref):
        assert a.loss == pytest.approx(b.loss, rel=1e-12)
        assert a.accuracy == b.accuracy
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-12)
        assert a.val_accuracy == b.val_accuracy


def test_broadcast_makes_replicas_equal():
    p, _, _ = make_problem(np.float32, seed=10 + RANK)     # a different model on every rank
    opt = fastgrad.Adam(p, lr=0.001 * (RANK + 1))
    opt.steps = RANK
    root, _, _ = make_problem(np.float32, seed=10)
    fd.broadcast(p, opt, COMM)
    for a, b in zip(p, root):
        np.testing.assert_array_equal(a, b)
    assert opt.lr == 0.001 and opt.steps == 0
    fd.check_replicas(p, opt, COMM)


def test_check_replicas_names_what_differs():
    p, _, _ = make_problem(np.float64, seed=4)
    opt = fastgrad.AdaGrad(p)
    if SIZE == 1:
        fd.check_replicas(p, opt, COMM)
        return
    if RANK == SIZE - 1:
        opt.state1.U[0, 0] += 1.0
    with pytest.raises(fd.ReplicaMismatch, match=rf"rank {SIZE - 1} \(opt.state1.U\)"):
        fd.check_replicas(p, opt, COMM)


def test_bad_index_on_one_rank_raises_everywhere_and_writes_nothing():
    p, idx, y = make_problem(np.float64, n=20, n_vocab=40, seed=5)
    opt = fastgrad.Adam(p)
    before = copy_params(p)
    idx_mine, y_mine = my_shard(idx, y, shard_sizes(len(idx), False))
    idx_mine = idx_mine.copy()
    if RANK == SIZE - 1:
        idx_mine[1, 2] = 40
    with pytest.raises(ValueError, match=rf"rank {SIZE - 1}: idx\[1, 2\] = 40 is outside"):
        fd.train_step(p, idx_mine, y_mine, opt, COMM)
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)
    assert opt.steps == 0 and not opt.state1.W.any()


def test_nan_on_one_shard_raises_everywhere_and_writes_nothing():
    p, idx, y = make_problem(np.float64, n=20, n_vocab=40, seed=6)
    sizes = shard_sizes(len(idx), False)
    lo = sum(sizes[:SIZE - 1])                     # the last rank's first row
    p.L[idx[lo, 0]] = np.nan
    idx[:lo] = np.where(idx[:lo] == idx[lo, 0], (idx[lo, 0] + 1) % 40, idx[:lo])
    before = copy_params(p)
    opt = fastgrad.AdaGrad(p)
    with pytest.raises(FloatingPointError, match="nothing was updated on any rank"):
        fd.train_step(p, *my_shard(idx, y, sizes), opt, COMM)
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)
    assert opt.steps == 0


def test_ranks_that_disagree_on_the_call_all_raise():
    p, idx, y = make_problem(np.float64, n=20, seed=7)
    opt = fastgrad.SGD(p, lr=0.1)
    mine = my_shard(idx, y, shard_sizes(len(idx), False))
    if SIZE == 1:
        pytest.skip("needs two ranks to disagree")
    with pytest.raises(ValueError, match="differs between ranks"):
        fd.train_step(p, *mine, opt, COMM, l2=0.1 * RANK)


def test_an_empty_global_batch_is_refused():
    p, idx, _ = make_problem(np.float64, seed=8)
    opt = fastgrad.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="global batch is empty"):
        fd.train_step(p, idx[:0], np.empty(0, np.int64), opt, COMM)


def test_dropout_without_rng_is_refused_everywhere():
    p, idx, y = make_problem(np.float64, seed=9)
    opt = fastgrad.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="rng must be given"):
        fd.train_step(p, *my_shard(idx, y, shard_sizes(len(idx), False)), opt, COMM,
                      dropout=0.5)


def test_evaluate_equals_one_process():
    p, idx, y = make_problem(np.float64, n=77, seed=11)
    mine = my_shard(idx, y, shard_sizes(len(idx), True))
    value, accuracy = fd.evaluate(p, *mine, COMM)
    ref_value, ref_accuracy = fastgrad.evaluate(p, idx, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert accuracy == ref_accuracy


def test_not_a_communicator():
    p, idx, y = make_problem(np.float64, seed=12)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        fd.train_step(p, idx, y, fastgrad.SGD(p, lr=0.1), object())


def _fit_args(seed=11):
    p, idx, y = make_problem(np.float64, n=64, seed=seed)
    return p, idx, y, fastgrad.SGD(p, lr=0.1)


@pytest.mark.parametrize("case", ["epochs", "float_indices", "batch_size", "missing_resume",
                                  "optimizer", "optimizer_steps"])
def test_fit_fails_every_rank_when_one_rank_is_wrong(case, tmp_path_factory):
    """Rank 0 alone passes a bad or different argument: every rank raises, none waits
    in a collective, nothing is written (the CI run holds this under a timeout)."""
    p, idx, y, opt = _fit_args()
    before = copy_params(p)
    kwargs = dict(epochs=1, batch_size=16, progress=False, comm=COMM)
    odd = RANK == 0
    if case == "epochs" and odd:
        kwargs["epochs"] = 0
    if case == "float_indices" and odd:
        idx = idx.astype(np.float64)
    if case == "batch_size" and odd:
        kwargs["batch_size"] = 8
    if case == "missing_resume" and odd:
        kwargs["resume"] = str(tmp_path_factory.mktemp("r") / "nope.npz")
    if case == "optimizer" and odd:          # fit's steps agree on nothing: fit checks it
        opt = fastgrad.AdaGrad(p, lr=0.1)
    if case == "optimizer_steps" and odd:
        opt.steps = 3
    if SIZE == 1 and case in ("batch_size", "optimizer", "optimizer_steps"):
        pytest.skip("needs two ranks to disagree")
    if case == "missing_resume" and not odd:   # the others have a real checkpoint
        ck = str(tmp_path_factory.mktemp(f"c{RANK}") / "ck.npz")
        q, qi, qy, qopt = _fit_args()
        fastgrad.fit(q, qi, qy, qopt, epochs=1, batch_size=16, progress=False, checkpoint=ck)
        kwargs["resume"] = ck
    with pytest.raises((ValueError, TypeError, OSError)):
        fastgrad.fit(p, idx, y, opt, **kwargs)
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)
