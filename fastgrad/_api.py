"""The public functions of the network: make parameters, predict, loss, gradients,
one SGD step.

Each checks all of its arguments (fastgrad._validate, through fastgrad._step)
before any kernel runs, so an exception leaves the parameters as they were.
Layers, top to bottom: here → fastgrad._step (the validated call) →
fastgrad._kernels.run_step (the compiled step). ARCHITECTURE.md has the map.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastgrad import _kernels
from fastgrad._step import (  # noqa: F401  (choose_path is public)
    UpdateRule, choose_path, draw_dropout, prepare, refuse_nonfinite_step, run_kernel,
)
from fastgrad._threads import (  # noqa: F401  (re-exported: the API's thread controls)
    _ParamsWriteLock, get_num_threads, set_num_threads,
)
from fastgrad._types import FLOAT_DTYPES, Gradients, Params, SparseRows
from fastgrad._validate import as_index_array, check_dropout, check_lr

__all__ = [
    "Params", "Gradients", "SparseRows", "init_params", "predict_proba", "predict", "loss",
    "loss_and_grad", "sgd_step", "set_num_threads", "get_num_threads", "choose_path",
]


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------

# predict_proba takes larger inputs in blocks of at most this many rows: the
# kernels' buffers (the dense path gathers rows x m*d inputs: 12,544 parser rows
# of m*d = 4,200 took 216 MB) then stay bounded whatever N
# (bench/results/parser-memory-2core.md).
PREDICT_BLOCK_ROWS = 4096


def init_params(n_vocab: int, n_features: int, embed_dim: int, hidden: int, n_classes: int,
                dtype=np.float32, seed=None) -> Params:
    """Fresh parameters for the network.

    Initialisation: L uniform in ±sqrt(3/d), so each embedding has an expected
    squared norm of 1; W and U Glorot-uniform (±sqrt(6/(fan_in + fan_out)));
    b1 and b2 zero.

    Parameters
    ----------
    n_vocab, n_features, embed_dim, hidden, n_classes : int
        |V| (rows of L), m (feature slots per example), d, Dh and Nc; each >= 1.
    dtype : float32 or float64
    seed : int, None or numpy.random.Generator

    Returns
    -------
    Params
        L (n_vocab, d), W (m*d, Dh), b1 (Dh,), U (Dh, Nc), b2 (Nc,), C-contiguous.
    """
    sizes = {"n_vocab": n_vocab, "n_features": n_features, "embed_dim": embed_dim,
             "hidden": hidden, "n_classes": n_classes}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    width = n_features * embed_dim

    def uniform(limit, shape):
        return rng.uniform(-limit, limit, size=shape).astype(dtype)

    return Params(
        L=uniform(math.sqrt(3.0 / embed_dim), (n_vocab, embed_dim)),
        W=uniform(math.sqrt(6.0 / (width + hidden)), (width, hidden)),
        b1=np.zeros(hidden, dtype),
        U=uniform(math.sqrt(6.0 / (hidden + n_classes)), (hidden, n_classes)),
        b2=np.zeros(n_classes, dtype),
    )


def predict_proba(p, idx, *, path: str = "auto") -> np.ndarray:
    """Softmax probabilities of each row.

    Parameters
    ----------
    p : Params
    idx : int array (N, m)
        Rows of L for each example's m slots, each in [0, |V|).
    path : {"auto", "dense", "factored"}
        Which products to take; "auto" picks the cheaper (see choose_path).

    Returns
    -------
    ndarray (N, Nc)
        A fresh array in the parameters' dtype. Beyond PREDICT_BLOCK_ROWS rows the
        rows are taken in blocks of that many, so the memory used besides the
        result does not grow with N.
    """
    idx = as_index_array(idx, "idx", 2)
    n = idx.shape[0]
    # equal blocks (one, up to PREDICT_BLOCK_ROWS rows; an empty idx is refused by
    # prepare); the last ends at row n, overlapping the one before by < n_blocks rows
    n_blocks = max(1, -(-n // PREDICT_BLOCK_ROWS))
    size = -(-n // n_blocks)
    out = None
    for block in range(n_blocks):
        start = min(block * size, n - size)
        prepared = prepare(p, idx[start:start + size], None, path,
                           writeable=False, backward=False, first_row=start)
        run_kernel(_kernels.MODE_PROBA, prepared)
        if out is None:
            out = np.empty((n, prepared.ws.theta.shape[1]), prepared.ws.theta.dtype)
        out[start:start + size] = prepared.ws.theta[:size]
    return out


def predict(p, idx, *, path: str = "auto") -> np.ndarray:
    """The most probable class of each row.

    Parameters
    ----------
    p, idx, path
        As in predict_proba.

    Returns
    -------
    ndarray (N,) int64
    """
    return np.argmax(predict_proba(p, idx, path=path), axis=1)


def loss(p, idx, y, *, path: str = "auto", dropout: float = 0.0, rng=None) -> float:
    """Mean cross-entropy of the batch (NaN when a parameter it uses is NaN).

    Parameters
    ----------
    p : Params
    idx : int array (N, m)
        Rows of L, each in [0, |V|).
    y : int array (N,)
        Classes, each in [0, Nc).
    path : {"auto", "dense", "factored"}
    dropout : float in [0, 1)
        > 0 drops hidden units as a training step would (inverted dropout).
    rng : int, None or numpy.random.Generator
        Draws the dropout mask: the same seed, the same mask (which is how
        gradients are checked under dropout).

    Returns
    -------
    float
    """
    dropout = check_dropout(dropout)
    prepared = prepare(p, idx, y, path, writeable=False, backward=False)
    keep = draw_dropout(prepared, dropout, rng)
    return float(run_kernel(_kernels.MODE_LOSS, prepared, keep=keep)[0])


def loss_and_grad(p, idx, y, *, path: str = "auto", dropout: float = 0.0, rng=None):
    """The mean loss and its gradient with respect to every parameter.

    Parameters
    ----------
    p, idx, y, path, dropout, rng
        As in loss: with dropout, the gradient of the loss under that mask.

    Returns
    -------
    loss : float
    grads : Gradients
        grads.L is SparseRows (the touched rows of L, sorted, and their summed
        gradients); W, b1, U, b2 are dense fresh arrays.
    """
    dropout = check_dropout(dropout)
    prepared = prepare(p, idx, y, path, writeable=False, backward=True)
    ws = prepared.ws
    keep = draw_dropout(prepared, dropout, rng)
    value, k_rows, values = run_kernel(_kernels.MODE_GRAD, prepared, keep=keep)
    return float(value), Gradients(
        L=SparseRows(ws.grad_rows[:k_rows].copy(), values),
        W=ws.dW.copy(), b1=ws.db1.copy(), U=ws.dU.copy(), b2=ws.db2.copy())


def sgd_step(p, idx, y, lr, *, path: str = "auto") -> float:
    """One SGD step in place: every parameter -= lr * its gradient (L at touched rows).

    Parameters
    ----------
    p : Params
        Updated in place (C-contiguous, writeable, not overlapping).
    idx, y, path
        As in loss.
    lr : float >= 0

    Returns
    -------
    float
        The mean loss before the update. If it is not finite (a NaN or Inf in
        the parameters), nothing is written and FloatingPointError is raised.
    """
    lr = check_lr(lr)
    prepared = prepare(p, idx, y, path, writeable=True, backward=True)
    with _ParamsWriteLock(prepared.p):
        value = float(run_kernel(_kernels.MODE_UPDATE, prepared,
                           UpdateRule(_kernels.RULE_SGD, lr))[0])
    refuse_nonfinite_step(value, "parameter")
    return value
