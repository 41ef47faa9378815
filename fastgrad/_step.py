"""A validated call into the kernels: the batch copied into a workspace, the path
chosen, and run_step invoked with BLAS held to one thread.

Layers: fastgrad._api (public functions) → here → fastgrad._kernels.run_step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from fastgrad import _grouping, _kernels, _uniform
from fastgrad._threads import _single_threaded_blas, threads_for_step
from fastgrad._types import Params, Shape
from fastgrad._validate import (
    as_generator, as_index_array, check_columns, check_params, check_path, check_sizes,
    copy_checked,
)
from fastgrad._workspace import Workspace, workspace_for


# ---------------------------------------------------------------------------
# Path choice: dense products over N*m occurrences, or factored over K keys
# ---------------------------------------------------------------------------

# The factored path replaces the big products' N*m rows by K rows, but sums
# K-row products back into N rows (forward) and δ2 rows into K keys (backward):
# N*m*Dh additions each. Those gather rows from a K x Dh table that rarely fits
# in cache, so each costs about as much as ADD_COST of GEMM's multiply-adds.
# Fitted on the bench configs at 1 thread (python -m fastgrad bench --methods
# fastgrad-dense,fastgrad-factored): with d = 50 the paths break even near
# K/(N*m) = 1 - 2*ADD_COST/(3d) ≈ 0.67.
ADD_COST = 25.0


def choose_path(n: int, n_features: int, embed_dim: int, hidden: int, n_keys: int,
                backward: bool = True) -> str:
    """'dense' or 'factored': the cheaper by the cost model, given K = n_keys."""
    occurrences = n * n_features
    products = 3 if backward else 1
    adds = 2 if backward else 1
    dense = products * occurrences * embed_dim * hidden
    factored = products * n_keys * embed_dim * hidden + adds * ADD_COST * occurrences * hidden
    return "factored" if factored < dense else "dense"


MIN_ROWS_TO_FACTOR = 16


class Prepared(NamedTuple):
    """A validated call, ready for the kernel: what prepare hands to run_kernel."""

    p: Params
    ws: Workspace
    n: int
    path: str
    n_threads: int


def prepare_batch(p, idx, y, *, writeable: bool, n_threads: int = 1,
                  first_row: int = 0) -> tuple[Shape, Workspace, int]:
    """Validate p, idx and y, and copy idx and y into the workspace's buffers
    (first_row: where this batch starts in the caller's rows, for error messages).
    Without y (forward only: probabilities) the workspace may have room for more
    than n rows (workspace_for's at_least): read only its first n."""
    shape = check_params(p, writeable=writeable)
    idx = as_index_array(idx, "idx", 2)
    n = idx.shape[0]
    if n == 0:
        raise ValueError("idx is an empty batch (0 rows)")
    check_columns(idx, shape)
    if y is not None:
        y = as_index_array(y, "y", 1)
        if y.shape[0] != n:
            raise ValueError(f"y must have length {n} (the rows of idx), got {y.shape[0]}")
    check_sizes(shape, n)
    ws = workspace_for(shape, n, at_least=y is None)
    copy_checked(idx, ws.idx, shape.n_vocab, "idx", "the vocabulary", n_threads, first_row)
    if y is not None:
        copy_checked(y, ws.y, shape.n_classes, "y", "the classes", 1, first_row)
    return shape, ws, n


def prepare(p, idx, y, path, *, writeable: bool, backward: bool,
            first_row: int = 0) -> Prepared:
    """Validate everything, fill the workspace's index buffers, pick the path
    (first_row as in prepare_batch)."""
    path = check_path(path)
    # read once: the per-thread scratch rows are sized for this count, whatever
    # another Python thread passes to set_num_threads meanwhile
    n_threads = threads_for_step()
    shape, ws, n = prepare_batch(p, idx, y, writeable=writeable, n_threads=n_threads,
                                 first_row=first_row)
    return _choose_path(Params(*p), shape, ws, n, path, n_threads, backward)


def prepare_rows(p: Params, shape: Shape, idx, y_column, rows, path: str) -> Prepared:
    """prepare() for fit's steps: rows (int64) of a data set (idx, and y as an
    (N, 1) column) that _check_dataset checked whole against p, gathered straight
    into the workspace, with no check or copy per batch. p, shape and path were
    checked by the caller."""
    n_threads = threads_for_step()
    n = rows.shape[0]
    ws = workspace_for(shape, n)
    _grouping.gather_indices(idx, rows, ws.idx, n_threads)
    _grouping.gather_indices(y_column, rows, ws.y, n_threads)
    return _choose_path(p, shape, ws, n, path, n_threads, True)


def _choose_path(p: Params, shape: Shape, ws: Workspace, n: int, path: str, n_threads: int,
                 backward: bool) -> Prepared:
    """The path of a filled workspace ('auto' by the cost model), its buffers made ready."""
    if path == "auto":
        path = "dense"
        if n >= MIN_ROWS_TO_FACTOR:
            n_keys = ws.group_slots(n_threads, n)
            path = choose_path(n, shape.n_features, shape.embed_dim, shape.hidden, n_keys,
                               backward)
    elif path == "factored":
        n_keys = ws.group_slots(n_threads, n)
    if path == "dense":
        ws.need_dense()
    else:
        ws.need_keys(n_keys)
    if backward:
        ws.need_backward(n_threads)
    return Prepared(p, ws, n, path, n_threads)


def draw_dropout(prepared: Prepared, dropout: float, rng) -> float:
    """Fill the workspace's dropout draws; returns the keep probability (1: no dropout)."""
    if dropout == 0.0:
        return 1.0
    fill_uniform(as_generator(rng), prepared.ws.dropout_draws(), prepared.n_threads)
    return 1.0 - dropout


def fill_uniform(generator, out, n_threads: int) -> None:
    """out filled as generator.random(out=out, dtype=out.dtype) would: on the
    kernels' threads for numpy's PCG64 (fastgrad._uniform: the same bits), else
    by numpy."""
    if not _uniform.fill_uniform(generator, out, n_threads):
        generator.random(out=out, dtype=out.dtype)


def run_kernel(mode: int, prepared: Prepared, rule=None, state1=None, state2=None,
               keep: float = 1.0, mean_over: int = 0):
    """run_step on a prepared call (see its docstring for the arguments), with BLAS
    on one thread: OpenMP is the only thread pool while a kernel runs."""
    p, ws, n, path, n_threads = prepared
    kernel_path = _kernels.PATH_DENSE if path == "dense" else _kernels.PATH_FACTORED
    with _single_threaded_blas:
        return _kernels.run_step(mode, kernel_path, p.L, p.W, p.b1, p.U, p.b2, ws, n,
                                 n_threads, rule, state1, state2, keep, mean_over)


class UpdateRule(NamedTuple):
    """How MODE_UPDATE turns gradients into updates: the fields of the kernels'
    fastgrad_rule (_constants.h; the rules are update_row_* in _row_loops.h);
    unused fields stay 0."""

    kind: int
    lr: float
    l2: float = 0.0
    momentum: float = 0.0
    eps: float = 0.0
    eps_inside_sqrt: bool = False
    beta1: float = 0.0
    beta2: float = 0.0
    dense_step: float = 0.0          # Adam's lr / (1 - β1ᵗ)
    dense_denom_scale: float = 0.0   # Adam's 1 / √(1 - β2ᵗ)
    sparse_step: float = 0.0         # SparseAdam's lr √(1 - β2ᵗ) / (1 - β1ᵗ)


def refuse_nonfinite_step(value: float, untouched: str) -> None:
    """The error of an update step whose loss is not finite (the kernel wrote nothing)."""
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value}: p holds NaN or Inf where this batch "
                                 f"reads it; no {untouched} was updated")
