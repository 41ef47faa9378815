"""A minibatch training loop (single process, or data-parallel over MPI)."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np

from fastgrad import _checkpoint
from fastgrad._evaluate import _as_dataset, _check_count, _check_dataset, evaluate
from fastgrad._optim import Optimizer, _check_optimizer, _update
from fastgrad._progress import ProgressBar
from fastgrad._step import prepare_rows
from fastgrad._threads import _ParamsWriteLock
from fastgrad._types import Params
from fastgrad._validate import check_dropout, check_params, check_path, check_real, check_sizes

__all__ = ["EpochStats", "fit"]


class EpochStats(NamedTuple):
    """One epoch of fit(): training loss and accuracy are the running means over the
    epoch's batches (under dropout, before each batch's update); validation ones are
    measured after the epoch, without dropout (None without validation data)."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    examples_per_s: float


def fit(p, idx, y, opt: Optimizer, *, epochs: int = 1, batch_size: int = 1024,
        dropout: float = 0.0, l2: float = 0.0, shuffle_seed=0, validation=None,
        progress: bool | None = None, path: str = "auto", comm=None, checkpoint=None,
        checkpoint_every: int | None = None, resume=None) -> list[EpochStats]:
    """Train p in place with opt over minibatches; returns one EpochStats per epoch.

    Each epoch visits the rows of (idx, y) once, in an order drawn from
    shuffle_seed (which also seeds the dropout masks: the same seed, the same
    run). validation=(idx_v, y_v) is evaluated after every epoch. progress:
    a bar on stderr (default: only when stderr is a terminal). A step whose
    loss is not finite raises FloatingPointError with nothing of it written.

    comm: an mpi4py communicator for data-parallel training (fastgrad.distributed).
    Every rank then passes the same data set and the same arguments; each global
    batch of batch_size rows is split into contiguous shards, one per rank (no data
    moves), and every rank ends with the same parameters as one process running
    this fit alone, up to the order of floating-point sums. Validation is shared
    out the same way. Only rank 0 shows a progress bar.

    checkpoint: a file that fit saves (atomically, through fastgrad.save) at the end
    of every epoch and, with checkpoint_every=k, after every k-th optimizer step:
    the model, the optimizer and the loop's position and random states. With comm,
    rank 0 writes it. resume: such a file; fit loads it into p and opt and goes on
    from where it was saved, ending bit for bit as the run that was never stopped
    (same data and arguments; epochs may be raised). The history returned then
    includes the epochs finished before the checkpoint.

    Parameters
    ----------
    p : Params
        Trained in place.
    idx : int array (N, m)
    y : int array (N,)
    opt : SGD, AdaGrad or Adam
    epochs, batch_size : int >= 1
    dropout : float in [0, 1)
    l2 : float >= 0
    shuffle_seed : int
    validation : (idx_v, y_v) or None
    progress : bool or None
    path : {"auto", "dense", "factored"}
    comm : mpi4py communicator or None
    checkpoint, resume : path or None
    checkpoint_every : int >= 1 or None

    Returns
    -------
    list of EpochStats
        One per epoch: training loss and accuracy, validation loss and accuracy
        (None without validation), seconds.
    """
    error, shape = None, None
    try:
        _check_optimizer(opt)
        epochs = _check_count(epochs, "epochs")
        batch_size = _check_count(batch_size, "batch_size")
        dropout = check_dropout(dropout)
        l2 = check_real(l2, "l2")
        idx, y = _as_dataset(idx, y)
        shape = check_params(p, writeable=True)
        path = check_path(path)
        _check_dataset(shape, idx, y)
        check_sizes(shape, min(batch_size, idx.shape[0]))
        opt._check_for(shape)
        if validation is not None:
            try:
                idx_v, y_v = validation
            except (TypeError, ValueError):
                raise TypeError("validation must be a pair (idx_v, y_v)") from None
            names = ("validation[0]", "validation[1]")
            idx_v, y_v = _as_dataset(idx_v, y_v, names)
            _check_dataset(shape, idx_v, y_v, names)
        if checkpoint_every is not None:
            checkpoint_every = _check_count(checkpoint_every, "checkpoint_every")
            if checkpoint is None:
                raise ValueError("checkpoint_every needs checkpoint=PATH")
        if resume is not None and not os.path.isfile(resume):
            raise FileNotFoundError(2, "no such checkpoint file", os.fspath(resume))
    except (TypeError, ValueError, OSError) as err:
        if comm is None:
            raise
        error = err
    if comm is not None:   # every rank's verdict and arguments, before any other collective
        _agree_on_arguments(comm, error, shape, opt, epochs, batch_size, dropout, l2,
                            shuffle_seed, checkpoint_every, checkpoint, resume, path,
                            validation)
    n = idx.shape[0]
    shuffle_rng, dropout_rng = (np.random.default_rng(s)
                                for s in np.random.SeedSequence(shuffle_seed).spawn(2))
    if comm is None:
        take_step = _local_steps(p, shape, idx, y, opt, dropout, l2, dropout_rng, path)
    else:
        take_step, evaluate_on = _distributed_steps(comm, p, shape, idx, y, opt, dropout, l2,
                                                    dropout_rng, path, validation)
        if comm.Get_rank() != 0:
            progress = False
    n_batches = -(-n // batch_size)
    state = _checkpoint.FitState(1, 0, shuffle_rng.bit_generator.state,
                                 dropout_rng.bit_generator.state, 0.0, 0, 0.0, [])
    if checkpoint is not None or resume is not None:
        print_ = _checkpoint.fingerprint(idx, y, batch_size, dropout, l2, shuffle_seed)
        if resume is not None:
            state, failed = None, None
            try:
                state = _checkpoint.restore(resume, p, opt, print_, EpochStats)
            except (TypeError, ValueError, OSError) as err:
                if comm is None:
                    raise
                failed = err
            if comm is not None:   # a checkpoint one rank cannot use fails every rank
                from fastgrad import distributed as fd
                fd._agree(comm, failed, None)
            shuffle_rng.bit_generator.state = state.shuffle_state
            dropout_rng.bit_generator.state = state.dropout_state
    writes = checkpoint is not None and (comm is None or comm.Get_rank() == 0)

    def save_checkpoint(position: _checkpoint.FitState) -> None:
        if writes:
            _checkpoint.write(checkpoint, p, opt, position, print_)

    history = list(state.history)
    bar = ProgressBar((epochs - state.epoch + 1) * n_batches, enabled=progress)
    try:
        for epoch in range(state.epoch, epochs + 1):
            resumed = epoch == state.epoch and state.start > 0
            epoch_shuffle_state = shuffle_rng.bit_generator.state
            order = shuffle_rng.permutation(n)
            t0 = time.perf_counter() - (state.seconds if resumed else 0.0)
            total_loss, n_correct = (state.total_loss, state.n_correct) if resumed else (0.0, 0)
            for start in range(state.start if resumed else 0, n, batch_size):
                rows = order[start:start + batch_size]
                J, correct = take_step(rows)
                total_loss += J * len(rows)
                n_correct += correct
                bar.advance(f"epoch {epoch}/{epochs} loss {total_loss / (start + len(rows)):.4f}")
                if checkpoint_every is not None and opt.steps % checkpoint_every == 0 \
                        and start + len(rows) < n:
                    save_checkpoint(_checkpoint.FitState(
                        epoch, start + len(rows), epoch_shuffle_state,
                        dropout_rng.bit_generator.state, total_loss, n_correct,
                        time.perf_counter() - t0, history))
            seconds = time.perf_counter() - t0
            val_loss = val_acc = None
            if validation is not None:
                val_loss, val_acc = (evaluate if comm is None else evaluate_on)(
                    p, idx_v, y_v, batch_size=max(batch_size, 1024), path=path)
            history.append(EpochStats(epoch, total_loss / n, n_correct / n, val_loss, val_acc,
                                      seconds, n / seconds))
            save_checkpoint(_checkpoint.FitState(epoch + 1, 0, shuffle_rng.bit_generator.state,
                                                 dropout_rng.bit_generator.state, 0.0, 0, 0.0,
                                                 history))
    finally:
        bar.close()
    return history


def _agree_on_arguments(comm, error, shape, opt, epochs, batch_size, dropout, l2,
                        shuffle_seed, checkpoint_every, checkpoint, resume, path, validation):
    """Under MPI: a rank whose arguments failed its checks fails every rank, and the
    arguments that must match (all but progress and the file names) must match,
    before fit enters any collective that could wait forever. The model's shape and
    the optimizer (kind, hyperparameters and, unless a checkpoint will set it, its
    step count) are among them: fit's steps agree on nothing more."""
    from fastgrad import distributed as fd

    fd._check_comm(comm)
    signature = None
    if error is None:
        kind, steps, hyper = fd._opt_signature(opt)
        optimizer = (kind, hyper) if resume is not None else (kind, steps, hyper)
        signature = (repr(shape), optimizer, epochs, batch_size, float(dropout), float(l2),
                     repr(shuffle_seed), checkpoint_every, checkpoint is not None,
                     resume is not None, path, validation is not None)
    signatures = fd._agree(comm, error, signature)
    fd._same_everywhere(signatures, "fit's arguments (the model's shape, the optimizer, "
                                    "epochs, batch_size, dropout, l2, shuffle_seed, "
                                    "checkpoint_every, checkpoint and resume given or not, "
                                    "path, validation given or not)")


def _local_steps(p, shape, idx, y, opt, dropout, l2, rng, path):
    """fit's step in one process: rows of (idx, y) → (loss, rows right). Everything
    was checked once (the data set, sizes, the optimizer against p), so a step gathers its
    rows straight into the workspace, unchecked, under p's write lock built here."""
    p = Params(*p)
    lock, y_column = _ParamsWriteLock(p), y.reshape(-1, 1)

    def step(rows):
        return _update(prepare_rows(p, shape, idx, y_column, rows, path), opt, dropout, l2,
                       rng, lock)
    return step


def _distributed_steps(comm, p, shape, idx, y, opt, dropout, l2, rng, path, validation):
    """fit's step and evaluation over MPI: each rank takes its shard of every batch.

    The data set was checked whole and fit's arguments agreed on before the first
    step, and every rank holds the same data (checked here by checksum), so a step
    needs no agreement of its own (train_step's first collective): each rank's
    shard and every shard's size follow from the batch, and the rank gathers its
    rows straight into the workspace, as one process does."""
    from fastgrad import distributed as fd

    rank, size = fd._check_comm(comm)
    arrays = [idx, y] + ([] if validation is None else [np.asarray(a) for a in validation])
    signatures = fd._agree(comm, None, _checkpoint.data_checksum(*arrays))
    fd._same_everywhere(signatures, "the data set (idx, y, validation) given to fit")
    p, y_column = Params(*p), y.reshape(-1, 1)

    def step(rows):
        started = time.perf_counter()
        bounds = [fd.shard_bounds(len(rows), r, size) for r in range(size)]
        lo, hi = bounds[rank]
        prepared = prepare_rows(p, shape, idx, y_column, rows[lo:hi], path) if hi > lo \
            else None
        J = fd._agreed_step(comm, p, shape, prepared, [b - a for a, b in bounds], opt,
                            dropout, l2, rng if dropout > 0 else None, "auto", started)
        return J, fd.last_step().correct

    def evaluate_on(p, idx_v, y_v, *, batch_size, path):
        idx_v, y_v = _as_dataset(idx_v, y_v)
        lo, hi = fd.shard_bounds(len(idx_v), rank, size)
        return fd.evaluate(p, idx_v[lo:hi], y_v[lo:hi], comm, batch_size=batch_size, path=path)

    return step, evaluate_on
