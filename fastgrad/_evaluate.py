"""Evaluation in batches, and the data-set checks that fit shares."""

from __future__ import annotations

import numpy as np

from fastgrad import _kernels
from fastgrad._step import prepare, run_kernel
from fastgrad._validate import as_index_array

__all__ = ["evaluate"]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_dataset(idx, y) -> tuple[np.ndarray, np.ndarray]:
    """idx (N, m) and y (N,) as index arrays of one non-zero length, else an error."""
    idx = as_index_array(idx, "idx", 2)
    y = as_index_array(y, "y", 1)
    if y.shape[0] != idx.shape[0]:
        raise ValueError(f"y must have length {idx.shape[0]} (the rows of idx), got {y.shape[0]}")
    if idx.shape[0] == 0:
        raise ValueError("idx is an empty data set (0 rows)")
    return idx, y


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
        n_correct += int(prepared.ws.row_correct[:prepared.n].sum())
    return total_loss / idx.shape[0], n_correct / idx.shape[0]
