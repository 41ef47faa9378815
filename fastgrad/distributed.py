"""Data-parallel training over MPI (mpi4py): P processes step as one on the global batch.

Every process (rank) holds a whole replica of the parameters and the optimizer
state. A step on a global batch of B rows, split into shards that the ranks hold
(shard r is rows [lo_r, lo_r + n_r) of the batch, the shards in rank order):

1. every rank validates its own input and the ranks agree, in one small
   allgather, that every rank's input is good (and that they all make the same
   call: shapes, optimizer, dropout, l2): a bad index on one rank raises the same
   error on every rank, before anything is written or exchanged, so no rank is
   ever left waiting in a collective for one that failed;
2. each rank runs forward and backward on its shard, the sums divided by B (not
   n_r), so the shards' gradients add up to the gradient of the global mean;
3. the dense gradients (W, b1, U, b2: one flat buffer) are summed by one
   Allreduce; the embedding gradient's rows by whichever exchange moves fewer
   bytes (see choose_exchange): an allgather of every rank's (rows, values)
   merged in rank order by a kernel, an allreduce over the union of the touched
   rows, or an allreduce of the whole |V| x d table when the vocabulary is small;
4. every rank applies the identical update (fastgrad._kernels.apply_update: the
   same update rules as the fused single-process step, rows of L touched by any
   shard updated once, lazily, with their own state rows).

MPI gives every rank the same bits from a reduction (MPI-4.0 §6.9.1), and the
rest is the same code on the same bytes, so the replicas stay bit-identical;
check_replicas audits that. Results equal one process stepping on the whole
batch up to the order of floating-point sums (float64: ~1e-15 relative).

Dropout: the mask of global row i is the one a single process would draw for
row i (the step's (B, Dh) uniforms are drawn on every rank from the same
generator and each rank keeps its rows), so a distributed step with dropout
equals the single-process step too.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import NamedTuple

import numpy as np

from fastgrad import _kernels
from fastgrad._evaluate import evaluate as local_evaluate
from fastgrad._io import _named_arrays
from fastgrad._optim import Optimizer, _check_optimizer
from fastgrad._row_exchange import (  # noqa: F401  (choose_exchange, EXCHANGES are public here)
    EXCHANGES, buffers_for, choose_exchange, exchange_rows,
)
from fastgrad._step import fill_uniform, prepare, run_kernel
from fastgrad._threads import _ParamsWriteLock, threads_for_step
from fastgrad._types import Params, Shape
from fastgrad._validate import (
    as_generator, as_index_array, check_dropout, check_params, check_path, check_real,
)

__all__ = ["broadcast", "train_step", "check_replicas", "evaluate", "shard_bounds",
           "choose_exchange", "EXCHANGES", "ReplicaMismatch", "StepReport", "last_step"]

class ReplicaMismatch(RuntimeError):
    """The ranks' parameters or optimizer states differ (check_replicas)."""


class StepReport(NamedTuple):
    """What the last distributed step of this process did (for benchmarks and logs)."""

    global_rows: int          # B
    rows: int                 # this rank's n_r
    exchange: str             # how the embedding gradient travelled
    touched_rows: int         # rows of L updated (the union over ranks)
    bytes_dense: int          # size of the dense gradient buffer allreduced
    bytes_embedding: int      # bytes this rank sent for the embedding gradient (model)
    seconds_compute: float    # forward and backward on the shard
    seconds_exchange: float   # every collective of the step after the compute
    correct: int              # rows of the global batch the model got right before the update
    phases: dict = {}         # seconds of each part of the step (STEP_PHASES), in order


_last: list[StepReport | None] = [None]


def last_step() -> StepReport | None:
    """The StepReport of this process's last distributed step (None before the first)."""
    return _last[0]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fastgrad.distributed needs mpi4py and an MPI library: "
                          "pip install 'fastgrad[mpi]'") from err
    return MPI


_abort_installed = False


def _abort_on_uncaught_exception(comm) -> None:
    """Make an exception that nobody catches on one rank end the whole job.

    Plain ``python script.py`` under mpiexec would print the traceback and leave
    MPI finalizing while the other ranks wait in a collective for ever (``python -m
    mpi4py`` avoids this; users rarely type it). Once a communicator of several
    ranks reaches fastgrad, sys.excepthook prints the traceback as before and then
    aborts the job through MPI, as a rank killed outright would."""
    global _abort_installed
    if _abort_installed or comm.Get_size() < 2:
        return
    import sys

    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            previous(kind, value, tb)
            sys.stderr.flush()
            time.sleep(0.2)   # the launcher forwards the traceback before the abort kills it
        finally:
            _mpi().COMM_WORLD.Abort(130 if issubclass(kind, KeyboardInterrupt) else 1)

    sys.excepthook = hook
    _abort_installed = True


def _check_comm(comm):
    if not all(hasattr(comm, name) for name in ("Get_rank", "Get_size", "Allreduce",
                                                 "allgather")):
        raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), "
                        f"got {type(comm).__name__}")
    _abort_on_uncaught_exception(comm)
    return comm.Get_rank(), comm.Get_size()


def _agree(comm, error: BaseException | None, signature) -> list:
    """Share every rank's verdict and call signature; raise the same error everywhere.

    Returns the list of every rank's signature when all ranks are good and agree.
    """
    verdict = None if error is None else (type(error).__name__, str(error))
    everyone = comm.allgather((verdict, signature))
    for rank, (bad, _) in enumerate(everyone):
        if bad is not None:
            kind, message = bad
            cls = {"TypeError": TypeError, "FloatingPointError": FloatingPointError}.get(
                kind, ValueError)
            if error is not None and comm.Get_rank() == rank:
                raise cls(f"rank {rank}: {message}") from error
            raise cls(f"rank {rank}: {message}")
    return [sig for _, sig in everyone]


def _agree_on_call(comm, error, n_rows: int, common) -> list[int]:
    """train_step's agreement: every rank's shard size, once every rank is good and
    all make the same call. The usual case is one fixed-size numeric allgather (a
    verdict, the shard's rows and a 64-bit digest of the call) rather than pickled
    Python objects; when a rank failed or the digests differ, every rank (seeing the
    same gathered numbers) goes on to the pickled agreement, which raises the same
    error, naming the rank and what differs, everywhere."""
    digest = int.from_bytes(hashlib.blake2b(repr(common).encode(), digest_size=8).digest(),
                            "little", signed=True)
    mine = np.array([error is not None, n_rows, digest], np.int64)
    everyone = np.empty((comm.Get_size(), 3), np.int64)
    comm.Allgather(mine, everyone)
    if everyone[:, 0].any() or (everyone[:, 2] != everyone[0, 2]).any():
        signatures = _agree(comm, error, (n_rows, common))
        _same_everywhere([sig[1] for sig in signatures], "the call (model shape, optimizer "
                         "and its steps, dropout, l2, rng, exchange)")
        raise RuntimeError("the ranks' calls differ in a way the agreement cannot name")
    return [int(k) for k in everyone[:, 1]]


def _same_everywhere(signatures: list, what: str) -> None:
    first = signatures[0]
    for rank, sig in enumerate(signatures):
        if sig != first:
            raise ValueError(f"{what} differs between ranks: rank 0 has {first}, "
                             f"rank {rank} has {sig}")


def _opt_signature(opt: Optimizer | None):
    if opt is None:
        return None
    hyper = opt.hyperparameters()
    return type(opt).__name__, opt.steps, tuple(sorted((k, repr(v)) for k, v in hyper.items()))


def _check_opt(opt, shape: Shape) -> None:
    if opt is None:
        return
    if not isinstance(opt, Optimizer):
        raise TypeError(f"opt must be a fastgrad optimizer (SGD, AdaGrad, Adam) or None, "
                        f"got {type(opt).__name__}")
    opt._check_for(shape)


def broadcast(p, opt, comm, root: int = 0) -> None:
    """Copy root's parameters and optimizer (state, step count, hyperparameters) to every rank.

    Parameters
    ----------
    p : Params
        Updated in place on every rank but root; shapes and dtype must agree.
    opt : Optimizer or None
        The same kind of optimizer on every rank (or None everywhere).
    comm : mpi4py communicator
    root : int
        The rank whose model is copied.
    """
    rank, size = _check_comm(comm)
    error, shape = None, None
    try:
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < size:
            raise ValueError(f"root must be a rank in [0, {size}), got {root!r}")
        shape = check_params(p, writeable=True)
        _check_opt(opt, shape)
    except (TypeError, ValueError) as err:
        error = err
    kinds = None if opt is None else type(opt).__name__
    signatures = _agree(comm, error, (shape, kinds))
    _same_everywhere(signatures, "the model (shapes, dtype, optimizer kind)")
    p = Params(*p)
    with _ParamsWriteLock(p):
        for _, a in _named_arrays(p, opt).items():
            comm.Bcast(a, root=root)
        if opt is not None:
            hyper = comm.bcast((opt.hyperparameters(), opt.steps), root=root)
            vars(opt).update(hyper[0])
            opt.steps = hyper[1]


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(a)).cast("B")).hexdigest()


def check_replicas(p, opt, comm) -> None:
    """Raise ReplicaMismatch on every rank if any rank's parameters or optimizer differ.

    Compares a SHA-256 digest of every array (and the optimizer's step count and
    hyperparameters) with rank 0's; the message names the arrays and ranks.

    Parameters
    ----------
    p : Params
    opt : SGD, AdaGrad, Adam or None
    comm : mpi4py communicator
        Every rank of it must call.

    Returns
    -------
    None
        When every replica equals rank 0's; otherwise ReplicaMismatch on every rank.
    """
    _check_comm(comm)
    error, digests = None, None
    try:
        shape = check_params(p, writeable=False)
        _check_opt(opt, shape)
        digests = [(name, _digest(a)) for name, a in _named_arrays(Params(*p), opt).items()]
        digests.append(("opt", repr(_opt_signature(opt))))
    except (TypeError, ValueError) as err:
        error = err
    everyone = _agree(comm, error, digests)
    differ = []
    for rank, theirs in enumerate(everyone[1:], start=1):
        if theirs != everyone[0]:
            ours = dict(everyone[0])
            names = [name for name, dig in theirs if ours.get(name) != dig]
            differ.append(f"rank {rank} ({', '.join(names) or 'array set'})")
    if differ:
        raise ReplicaMismatch("replicas differ from rank 0: " + "; ".join(differ))


def shard_bounds(n_rows: int, rank: int, size: int) -> tuple[int, int]:
    """[lo, hi) of rank's contiguous shard when n_rows rows are split over size ranks.

    Parameters
    ----------
    n_rows, rank, size : int
        Rows in all, this rank, ranks in all.

    Returns
    -------
    (lo, hi) : tuple of int
        Shard sizes differ by at most one, the larger shards first.
    """
    base, extra = divmod(n_rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def _check_shard(p, idx, y, opt, dropout, l2, rng, path, exchange):
    """Everything train_step checks on one rank; returns what the step needs."""
    _check_optimizer(opt)
    dropout = check_dropout(dropout)
    l2 = check_real(l2, "l2")
    check_path(path)
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
    generator = as_generator(rng) if dropout > 0 and rng is not None else None
    if dropout > 0 and rng is None:
        raise ValueError("rng must be given (an int seed, the same on every rank, or equal "
                         "Generators) when dropout > 0: the masks must agree across ranks")
    shape = check_params(p, writeable=True)
    opt._check_for(shape)
    idx = as_index_array(idx, "idx", 2)
    y = as_index_array(y, "y", 1)
    if idx.shape[0] == 0:   # an empty shard: only the shapes to check
        if idx.shape[1] != shape.n_features:
            raise ValueError(f"idx must have {shape.n_features} columns, got shape {idx.shape}")
        if y.shape[0] != 0:
            raise ValueError(f"y must have length 0 (the rows of idx), got {y.shape[0]}")
        prepared = None
    else:
        prepared = prepare(p, idx, y, path, writeable=True, backward=True)
    return shape, prepared, dropout, l2, generator


def train_step(p, idx, y, opt: Optimizer, comm, *, dropout: float = 0.0, l2: float = 0.0,
               rng=None, path: str = "auto", exchange: str = "auto") -> float:
    """One data-parallel training step: every rank's p and opt updated identically.

    Parameters
    ----------
    p, opt : the rank's replica (made equal on every rank by ``broadcast``)
    idx, y : this rank's shard of the global batch, (n_r, m) and (n_r,); shards may
        differ in size and one may be empty; the global batch is the shards in rank order
    comm : mpi4py communicator
    dropout, l2 : as in fastgrad.train_step; the dropout mask of a global row is the
        one a single process would draw for it
    rng : int seed or numpy Generator, needed when dropout > 0, equal on every rank
    path : "auto", "dense" or "factored", per rank
    exchange : "auto" (fewest bytes, see choose_exchange), "allgather", "union", "dense"

    Returns
    -------
    float
        The global batch's mean loss before the update, the same on every rank.
        Bad input on any rank raises the same error on every rank, and a non-finite
        loss raises FloatingPointError everywhere; then nothing is written anywhere.
    """
    started = time.perf_counter()
    _mpi()
    _check_comm(comm)
    error, shape, prepared, generator = None, None, None, None
    n_rows = 0
    try:
        shape, prepared, dropout, l2, generator = _check_shard(p, idx, y, opt, dropout, l2,
                                                               rng, path, exchange)
        n_rows = 0 if prepared is None else prepared.n
    except (TypeError, ValueError) as err:
        error = err
    rng_state = None if generator is None else \
        hashlib.sha256(repr(generator.bit_generator.state).encode()).hexdigest()[:16]
    common = (shape, _opt_signature(opt) if isinstance(opt, Optimizer) else None,
              dropout, l2, rng_state, exchange)
    counts = _agree_on_call(comm, error, n_rows, common)
    if sum(counts) == 0:
        raise ValueError("the global batch is empty (every rank's shard has 0 rows)")
    assert shape is not None
    return _agreed_step(comm, Params(*p), shape, prepared, counts, opt, dropout, l2,
                        generator, exchange, started)


def _agreed_step(comm, p: Params, shape: Shape, prepared, counts: list, opt, dropout: float,
                 l2: float, generator, exchange: str, started: float) -> float:
    """train_step once every rank's call is known good and the same: the rank's
    prepared shard (None when empty) and every rank's shard size (counts, rank
    order, a non-empty global batch). fit calls it directly: it checked the data
    set and agreed on its arguments once, before its first step, and its shards'
    sizes follow from the batch's."""
    MPI = _mpi()
    rank, size = comm.Get_rank(), comm.Get_size()
    n_rows = 0 if prepared is None else prepared.n
    global_rows = sum(counts)
    buf = buffers_for(shape)
    lo = sum(counts[:rank])
    clock = _Clock(started)
    clock.lap("check and agree")

    keep = 1.0
    if dropout > 0:
        keep = 1.0 - dropout
        buf.draws = draws = buf.grown(buf.draws, global_rows)
        fill_uniform(generator, draws[:global_rows], threads_for_step())
        if prepared is not None:
            np.copyto(prepared.ws.dropout_draws(), draws[lo:lo + n_rows])
    clock.lap("dropout draws")

    # ---- forward and backward on the shard ----
    k_rows, loss, correct = 0, 0.0, 0
    if prepared is not None:
        ws = prepared.ws
        buf.values = ws.values_into = buf.grown(buf.values, n_rows * shape.n_features)
        try:
            loss, k_rows, _ = run_kernel(_kernels.MODE_GRAD, prepared, keep=keep,
                                   mean_over=global_rows)
        finally:
            ws.values_into = None
        dense, views = ws.dense_grads, (ws.dW, ws.db1, ws.dU, ws.db2)
        my_rows, my_values = ws.grad_rows[:k_rows], buf.values[:k_rows]
        correct = int(np.count_nonzero(ws.row_correct[:n_rows]))
    else:
        dense, views = buf.zero_dense, buf.zero_views
        my_rows, my_values = buf.merged_rows[:0], buf.values[:0]
    clock.lap("compute")

    # ---- the loss, and how many rows each rank touched ----
    stats = buf.stats
    stats[:] = (loss, k_rows, correct)
    everyone = np.empty((size, 3), np.float64)
    comm.Allgather(stats, everyone)
    global_loss = float(np.sum(everyone[:, 0]))
    if not math.isfinite(global_loss):
        raise FloatingPointError(f"the global loss is {global_loss}: some rank's parameters "
                                 "hold NaN or Inf where its shard reads them; nothing was "
                                 "updated on any rank")
    touched = [int(k) for k in everyone[:, 1]]
    if exchange == "auto":
        exchange = choose_exchange(size, shape.n_vocab, shape.embed_dim,
                                   shape.dtype.itemsize, touched)
    clock.lap("loss and counts")

    # ---- sum the gradients over the ranks ----
    comm.Allreduce(MPI.IN_PLACE, dense, op=MPI.SUM)
    clock.lap("dense allreduce")
    rows, values, sent = exchange_rows(comm, MPI, exchange, buf, my_rows, my_values, touched)
    clock.lap("row exchange")

    # ---- the same update on every rank ----
    with _ParamsWriteLock(p):
        _kernels.apply_update(opt._rule(l2), p.L, p.W, p.b1, p.U, p.b2, rows, values, *views,
                              opt.state1, opt.state2, threads_for_step())
        opt.steps += 1
    if prepared is None:
        buf.zero_dense.fill(0)   # the allreduce wrote the sums into it
    clock.lap("update")
    sec = clock.seconds
    _last[0] = StepReport(global_rows, n_rows, exchange, len(rows),
                          dense.nbytes, sent, sec["compute"],
                          sec["loss and counts"] + sec["dense allreduce"] + sec["row exchange"],
                          int(np.sum(everyone[:, 2])), dict(sec))
    return global_loss


# The parts of a distributed step, in order (StepReport.phases; fastgrad bench
# --distributed prints their medians).
STEP_PHASES = ("check and agree", "dropout draws", "compute", "loss and counts",
               "dense allreduce", "row exchange", "update")


class _Clock:
    """Seconds of a step billed to its parts, for the StepReport."""

    def __init__(self, start: float):
        self._now = time.perf_counter
        self._t = start
        self.seconds = dict.fromkeys(STEP_PHASES, 0.0)

    def lap(self, what: str) -> None:
        t = self._now()
        self.seconds[what] += t - self._t
        self._t = t


def evaluate(p, idx, y, comm, *, batch_size: int = 4096, path: str = "auto"):
    """The mean loss and accuracy of the data set made of every rank's (idx, y).

    Each rank evaluates its own rows; the sums are allreduced (a rank may hold none).

    Parameters
    ----------
    p : Params
        The same on every rank.
    idx, y : int arrays (N_rank, m), (N_rank,)
        This rank's rows.
    comm : mpi4py communicator
    batch_size : int
    path : {"auto", "dense", "factored"}

    Returns
    -------
    (loss, accuracy) : tuple of float
        The same on every rank.
    """
    _check_comm(comm)
    error, stats = None, np.zeros(3, np.float64)
    try:
        idx = as_index_array(idx, "idx", 2)
        y = as_index_array(y, "y", 1)
        if len(idx):
            value, accuracy = local_evaluate(p, idx, y, batch_size=batch_size, path=path)
            stats[:] = (value * len(idx), accuracy * len(idx), len(idx))
        else:
            check_params(p, writeable=False)
    except (TypeError, ValueError) as err:
        error = err
    _agree(comm, error, None)
    total = np.empty_like(stats)
    MPI = _mpi()
    comm.Allreduce(stats, total, op=MPI.SUM)
    if total[2] == 0:
        raise ValueError("the data set is empty on every rank")
    return float(total[0] / total[2]), float(total[1] / total[2])
