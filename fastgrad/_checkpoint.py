"""fit's checkpoints: the model file of fastgrad.save plus the training loop's position.

A checkpoint holds what a run needs to go on exactly as if never stopped: the
parameters and optimizer (fastgrad.save's members), and in the header's ``fit``
entry the epoch and the first row of the next batch, the shuffle generator's
state at the start of that epoch (its permutation is drawn again), the dropout
generator's state, the epoch's running totals and the history of the finished
epochs. Resuming from it with the same data and arguments ends bit for bit
equal to the run that was never interrupted.
"""

from __future__ import annotations

import os
import zlib
from typing import NamedTuple

import numpy as np

from fastgrad._types import Params
from fastgrad._io import ModelFileError, _model_from, _read, save

_FINGERPRINT_KEYS = ("rows", "features", "batch_size", "dropout", "l2", "shuffle_seed",
                     "data_crc32")


class FitState(NamedTuple):
    """Where fit stands: at row `start` of epoch `epoch` (1-based)."""

    epoch: int
    start: int
    shuffle_state: dict
    dropout_state: dict
    total_loss: float
    n_correct: int
    seconds: float
    history: list


def fingerprint(idx: np.ndarray, y: np.ndarray, batch_size: int, dropout: float, l2: float,
                shuffle_seed) -> dict:
    """What a resumed run must share with the run that saved the checkpoint."""
    return {"rows": int(idx.shape[0]), "features": int(idx.shape[1]),
            "batch_size": batch_size, "dropout": dropout, "l2": l2,
            "shuffle_seed": repr(shuffle_seed), "data_crc32": data_checksum(idx, y)}


def write(path, p: Params, opt, state: FitState, print_: dict) -> None:
    """Save a checkpoint atomically (fastgrad.save's guarantees)."""
    fit = state._asdict()
    fit["history"] = [list(stats) for stats in state.history]
    save(path, p, opt, _extra={"fit": fit, "fit_fingerprint": print_})


def restore(path, p: Params, opt, print_: dict, make_stats) -> FitState:
    """Load a checkpoint into p and opt in place; returns the loop's position.

    Raises ModelFileError (naming the file) for a damaged file or one without a
    fit's position, and ValueError when the checkpoint belongs to another run
    (other data, shapes, optimizer or arguments); p and opt are then untouched.
    """
    path = os.fspath(path)
    header, arrays = _read(path)
    if "fit" not in header:
        raise ModelFileError(f"{path}: a saved model, not a checkpoint of fit (no loop position)")
    saved = header.get("fit_fingerprint", {})
    for key in _FINGERPRINT_KEYS:
        if saved.get(key) != print_[key]:
            raise ValueError(f"resume={path!r} was saved by another run: its {key} is "
                             f"{saved.get(key)!r}, this fit's is {print_[key]!r}")
    q, opt_q, _ = _model_from(path, header, arrays)
    for name, a, b in zip(Params._fields, p, q):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"resume={path!r}: p.{name} is {b.dtype}{b.shape} there, "
                             f"{a.dtype}{a.shape} here")
    if opt_q is None or type(opt_q) is not type(opt) or \
            opt_q.hyperparameters() != opt.hyperparameters():
        raise ValueError(f"resume={path!r}: its optimizer ({opt_q!r}, "
                         f"{opt_q and opt_q.hyperparameters()}) is not this fit's "
                         f"({opt!r}, {opt.hyperparameters()})")
    for a, b in zip(p, q):
        np.copyto(a, b)
    for which in ("state1", "state2"):
        if getattr(opt, which) is not None:
            for a, b in zip(getattr(opt, which), getattr(opt_q, which)):
                np.copyto(a, b)
    opt.steps = opt_q.steps
    fit = header["fit"]
    fit["history"] = [make_stats(*stats) for stats in fit["history"]]
    return FitState(**fit)


def data_checksum(*arrays: np.ndarray) -> int:
    """A CRC-32 of the arrays' bytes (and shapes): fit checks that a checkpoint belongs to
    its data, and that every MPI rank holds the same data set before it shards it."""
    crc = 0
    for a in arrays:
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(repr((a.shape, a.dtype.str)).encode(), crc)
        crc = zlib.crc32(memoryview(a).cast("B"), crc)
    return crc
