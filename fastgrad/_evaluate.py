"""Evaluation in batches, and the data-set checks that fit shares."""

from __future__ import annotations

import numpy as np

from fastgrad import _kernels
from fastgrad._step import prepare, run_kernel
from fastgrad._threads import threads_for_step
from fastgrad._validate import as_index_array, check_columns, check_range

__all__ = ["evaluate"]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_dataset(idx, y, names=("idx", "y")) -> tuple[np.ndarray, np.ndarray]:
    """idx (N, m) and y (N,) as index arrays of one non-zero length, else an error
    (names: what it calls idx and y)."""
    idx = as_index_array(idx, names[0], 2)
    y = as_index_array(y, names[1], 1)
    if y.shape[0] != idx.shape[0]:
        raise ValueError(f"{names[1]} must have length {idx.shape[0]} (the rows of "
                         f"{names[0]}), got {y.shape[0]}")
    if idx.shape[0] == 0:
        raise ValueError(f"{names[0]} is an empty data set (0 rows)")
    return idx, y


def _check_dataset(shape, idx, y, names=("idx", "y")) -> None:
    """A whole data set checked against the model's shape before any step uses it:
    fit must refuse bad rows before its first update, not at the batch that holds
    them. names: what the errors call idx and y."""
    check_columns(idx, shape, names[0])
    n_threads = threads_for_step()
    check_range(idx, shape.n_vocab, names[0], "the vocabulary", n_threads)
    check_range(y, shape.n_classes, names[1], "the classes", n_threads)


def evaluate(p, idx, y, *, batch_size: int = 4096, path: str = "auto") -> tuple[float, float]:
    """The mean loss and accuracy over a data set, in batches of one forward pass each.

    Parameters
    ----------
    p : Params
    idx : int array (N, m)
    y : int array (N,)
    batch_size : int >= 1
        Rows per forward pass (memory, not results, depends on it).
    path : {"auto", "dense", "factored"}

    Returns
    -------
    loss : float
        Mean cross-entropy over the N rows.
    accuracy : float
        The share of rows whose label's logit is the largest.
    """
    batch_size = _check_count(batch_size, "batch_size")
    idx, y = _as_dataset(idx, y)
    total_loss, n_correct = 0.0, 0
    for start in range(0, idx.shape[0], batch_size):
        prepared = prepare(p, idx[start:start + batch_size], y[start:start + batch_size],
                            path, writeable=False, backward=False, first_row=start)
        total_loss += float(run_kernel(_kernels.MODE_LOSS, prepared)[0]) * prepared.n
        n_correct += int(np.count_nonzero(prepared.ws.row_correct[:prepared.n]))
    return total_loss / idx.shape[0], n_correct / idx.shape[0]
