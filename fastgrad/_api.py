"""The public API: validation, the workspace cache, and the calls into the kernels.

Every public function checks all of its arguments before any kernel runs, so an
exception always leaves the parameters exactly as they were. The kernels in
``_kernels.pyx`` trust what arrives here.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from fastgrad import _kernels
from fastgrad._threads import (  # noqa: F401  (re-exported: the API's thread controls)
    _ParamsWriteLock, _single_threaded_blas, get_num_threads, set_num_threads,
    thread_count_source,
)

__all__ = [
    "Params", "Gradients", "SparseRows", "init_params", "predict_proba", "predict", "loss",
    "loss_and_grad", "sgd_step", "set_num_threads", "get_num_threads", "choose_path",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_BLAS_INT_MAX = 2**31 - 1
_PATHS = ("auto", "dense", "factored")


class Params(NamedTuple):
    """The network's parameters, in the order of the derivation.

    L (V, d) embeddings, W (m*d, Dh), b1 (Dh,), U (Dh, Nc), b2 (Nc,). Wrapping
    arrays in Params copies nothing: training updates land in those arrays.
    All five must share one float dtype (float32 or float64) and be C-contiguous.
    """

    L: np.ndarray
    W: np.ndarray
    b1: np.ndarray
    U: np.ndarray
    b2: np.ndarray


class SparseRows(NamedTuple):
    """Gradient of the embedding table at the rows a batch touched.

    rows (k,) int64, sorted and unique; values (k, d): the summed gradient of
    each of those rows (a row used twice in a batch holds both contributions).
    """

    rows: np.ndarray
    values: np.ndarray

    def to_dense(self, n_vocab: int) -> np.ndarray:
        """The same gradient as a dense (n_vocab, d) array."""
        n_vocab = int(n_vocab)
        if self.rows.size and n_vocab <= int(self.rows[-1]):
            raise ValueError(f"n_vocab={n_vocab} is too small for row {int(self.rows[-1])}")
        dense = np.zeros((n_vocab, self.values.shape[1]), dtype=self.values.dtype)
        dense[self.rows] = self.values
        return dense


class Gradients(NamedTuple):
    """Gradients of the mean loss: L as SparseRows, the others dense, in Params' order."""

    L: SparseRows
    W: np.ndarray
    b1: np.ndarray
    U: np.ndarray
    b2: np.ndarray


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

class _Shape(NamedTuple):
    dtype: np.dtype
    n_vocab: int
    embed_dim: int
    n_features: int
    hidden: int
    n_classes: int


def _check_params(p, *, writeable: bool) -> _Shape:
    if not isinstance(p, Params):
        if isinstance(p, (tuple, list)) and len(p) == 5:
            p = Params(*p)
        else:
            raise TypeError("p must be a fastgrad.Params (L, W, b1, U, b2), "
                            f"got {type(p).__name__}")
    ndims = {"L": 2, "W": 2, "b1": 1, "U": 2, "b2": 1}
    dtype = None
    for name, arr in zip(Params._fields, p):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"p.{name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"p.{name} must be float32 or float64, got {arr.dtype}")
        if dtype is None:
            dtype = arr.dtype
        elif arr.dtype != dtype:
            raise TypeError(f"p.{name} is {arr.dtype} but p.L is {dtype}: "
                            "all parameters must share one dtype")
        if arr.ndim != ndims[name]:
            raise ValueError(f"p.{name} must be {ndims[name]}-D, got shape {arr.shape}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"p.{name} must be C-contiguous (parameters are used in place "
                             "and never copied); pass np.ascontiguousarray(...) once")
        if arr.size == 0:
            raise ValueError(f"p.{name} is empty (shape {arr.shape})")
        if writeable and not arr.flags.writeable:
            raise ValueError(f"p.{name} is read-only, but this call updates it in place")
    n_vocab, d = p.L.shape
    width, hidden = p.W.shape
    if width % d:
        raise ValueError(f"p.W has {width} rows, not a multiple of the embedding size "
                         f"d={d} (p.L is {p.L.shape})")
    if p.b1.shape != (hidden,):
        raise ValueError(f"p.b1 must have shape ({hidden},) to match p.W {p.W.shape}, "
                         f"got {p.b1.shape}")
    if p.U.shape[0] != hidden:
        raise ValueError(f"p.U must have {hidden} rows to match p.W {p.W.shape}, "
                         f"got shape {p.U.shape}")
    n_classes = p.U.shape[1]
    if p.b2.shape != (n_classes,):
        raise ValueError(f"p.b2 must have shape ({n_classes},) to match p.U {p.U.shape}, "
                         f"got {p.b2.shape}")
    if writeable:
        arrays = list(zip(Params._fields, p))
        for i, (name_a, a) in enumerate(arrays):
            for name_b, b in arrays[i + 1:]:
                if np.may_share_memory(a, b):
                    raise ValueError(f"p.{name_a} and p.{name_b} share memory; "
                                     "parameters updated in place must not overlap")
    assert dtype is not None
    return _Shape(dtype, n_vocab, d, width // d, hidden, n_classes)


def _check_sizes(shape: _Shape, n: int) -> None:
    m, d, hidden, nc = shape.n_features, shape.embed_dim, shape.hidden, shape.n_classes
    sizes = {"N": n, "N*m": n * m, "m*d": m * d, "m*d*Dh": m * d * hidden,
             "Dh*Nc": hidden * nc, "N*Nc": n * nc, "N*Dh": n * hidden,
             "|V|": shape.n_vocab}
    for what, size in sizes.items():
        if size > _BLAS_INT_MAX:
            raise ValueError(f"{what} = {size} exceeds 2**31-1, the largest size that "
                             "BLAS's 32-bit integers can hold; split the batch or "
                             "shrink the model")


def _as_index_array(arr, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        # uint64 values >= 2**63 wrap negative here, and are refused as out of range
        arr = arr.astype(np.int64)
    return arr


def _copy_checked(src: np.ndarray, dst: np.ndarray, upper: int, name: str,
                  what: str, n_threads: int = 1) -> None:
    """Copy indices into an int64 workspace buffer, refusing any outside [0, upper)."""
    n_bad, first = _kernels.copy_indices(src.reshape(src.shape[0], -1), dst, upper,
                                         n_threads)
    if n_bad:
        pos = np.unravel_index(first, src.shape)
        where = ", ".join(str(int(i)) for i in pos)
        raise ValueError(f"{name}[{where}] = {int(src[pos])} is outside {what} [0, {upper})"
                         + (f" ({n_bad} entries are)" if n_bad > 1 else ""))


def _check_real(value, name: str, low: float = 0.0, high: float = math.inf,
                high_open: bool = False) -> float:
    """A finite real number in [low, high] (or [low, high)), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be finite and in {interval}, got {value}")
    return value


def _check_lr(lr) -> float:
    return _check_real(lr, "lr")


def _check_dropout(dropout) -> float:
    return _check_real(dropout, "dropout", 0.0, 1.0, high_open=True)


def _as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, "
                    f"got {type(rng).__name__}")


def _check_path(path: str) -> str:
    if path not in _PATHS:
        raise ValueError(f"path must be one of {_PATHS}, got {path!r}")
    return path


# ---------------------------------------------------------------------------
# Workspace: every buffer a step needs, reused while the shapes stay the same
# ---------------------------------------------------------------------------

_SLOT_TABLE_BYTES = 64 << 20


def _padded(row_len: int) -> int:
    """Row length of a per-thread scratch row: each thread's row written in a hot
    loop must share no cache line with its neighbour's (false sharing made the
    2-thread embedding update slower than the 1-thread one), so rows are padded
    to whole 64-byte lines plus one line, whatever the buffer's alignment."""
    return (row_len + 15) // 16 * 16 + 16


class Workspace:
    """Buffers for one (dtype, N, m, d, Dh, Nc, |V|) shape, grown on demand.

    A training loop over same-shaped batches allocates nothing after its first
    step. Workspaces are cached per thread (see _workspace), so threads that
    work on independent parameters never share one.
    """

    def __init__(self, shape: _Shape, n: int):
        f = shape.dtype
        hidden, nc = shape.hidden, shape.n_classes
        self.shape, self.n = shape, n
        self.idx = np.empty(n * shape.n_features, np.int64)
        self.y = np.zeros(n, np.int64)
        self.h = np.empty((n, hidden), f)
        self.theta = np.empty((n, nc), f)
        self.row_loss = np.empty(n, np.float64)
        self.row_correct = np.zeros(n, np.uint8)   # label's logit the largest (accuracy)
        self.dropout_u: np.ndarray | None = None
        self.values_into: np.ndarray | None = None
        self._backward = False
        self._dense = False
        self._factored = False
        self._n_threads = 0
        self._key_capacity = 0

    def need_backward(self, n_threads: int) -> None:
        shape, n = self.shape, self.n
        f, items = shape.dtype, n * shape.n_features
        if not self._backward:
            self.delta2 = np.empty((n, shape.hidden), f)
            # dW, db1, dU, db2 are views of one flat buffer, so that data-parallel
            # training sums them over processes in one collective, with no copy
            self.dense_grads, (self.dW, self.db1, self.dU, self.db2) = dense_gradient_buffer(shape)
            self.grad_rows = np.empty(items, np.int64)
            self.group_ptr = np.empty(items + 1, np.int64)
            self.members = np.empty(items, np.int64)
            self.row_count = np.zeros(shape.n_vocab, np.int32)   # group_rows' counting sort
            self.sort_values = np.empty(2 * items, np.int32)     # and its radix sort
            self.sort_items = np.empty(2 * items, np.int32)
            self._backward = True
        if self._n_threads < n_threads:  # per-thread rows of scratch
            self.radix_counts = np.empty(n_threads * (_kernels.RADIX + 1), np.int64)
            self.scratch = np.empty((n_threads, _padded(shape.embed_dim)), f)
            self.partials = np.empty((n_threads, _padded(shape.hidden)), f)
            self.class_partials = np.empty((n_threads, _padded(shape.n_classes)), f)
            self._n_threads = n_threads

    def dropout_draws(self) -> np.ndarray:
        """The (N, Dh) buffer of a dropout mask's uniform draws, made on first use."""
        if self.dropout_u is None:
            self.dropout_u = np.empty((self.n, self.shape.hidden), self.shape.dtype)
        return self.dropout_u

    def need_dense(self) -> None:
        if not self._dense:
            shape = self.shape
            self.x = np.empty((self.n, shape.n_features * shape.embed_dim), shape.dtype)
            self._dense = True

    def group_slots(self, n_threads: int) -> int:
        """Group the batch in self.idx by (slot, row) on n_threads threads; returns K."""
        shape, n = self.shape, self.n
        items = n * shape.n_features
        if not self._factored:
            self.key_row = np.empty(items, np.int64)
            self.key_ptr = np.empty(items + 1, np.int64)
            self.occurrences = np.empty(items, np.int64)
            self.pos = np.empty(items, np.int64)
            self.slot_offsets = np.empty(shape.n_features + 1, np.int64)
            self.local_row = np.empty(items, np.int64)
            self.key_count = np.empty(items, np.int64)
            self.slot_key = np.empty(items, np.int64)
            self.slot_tables = np.full((0, shape.n_vocab), -1, np.int32)
            self._factored = True
        # one row-number table (|V| int32) per thread, within _SLOT_TABLE_BYTES: a huge
        # vocabulary numbers its slots on fewer threads rather than take gigabytes
        n_tables = min(n_threads, max(1, _SLOT_TABLE_BYTES // (4 * shape.n_vocab)))
        if self.slot_tables.shape[0] < n_tables:
            self.slot_tables = np.full((n_tables, shape.n_vocab), -1, np.int32)
        return _kernels.group_slots(self.idx, n, shape.n_features, self.slot_tables,
                                    self.local_row, self.key_count, self.slot_key, self.key_row,
                                    self.key_ptr, self.occurrences, self.pos,
                                    self.slot_offsets, n_threads)

    def need_keys(self, n_keys: int) -> None:
        """Room for n_keys (slot, row) products; grows by a quarter to stop regrowth."""
        if n_keys > self._key_capacity:
            shape = self.shape
            cap = min(self.n * shape.n_features, n_keys + n_keys // 4 + 16)
            self.xu = np.empty((cap, shape.embed_dim), shape.dtype)
            self.products = np.empty((cap, shape.hidden), shape.dtype)
            self._key_capacity = cap

    def grad_values_for(self, k_rows: int) -> np.ndarray:
        """The (k_rows, d) array that receives the embedding gradient: a fresh one for
        the user, or rows of ``self.values_into`` when a caller set it (a reused buffer)."""
        if self.values_into is not None:
            return self.values_into[:k_rows]
        return np.empty((k_rows, self.shape.embed_dim), self.shape.dtype)


def dense_gradient_buffer(shape: _Shape) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One flat buffer for the gradients of W, b1, U, b2, and its four shaped views."""
    shapes = ((shape.n_features * shape.embed_dim, shape.hidden), (shape.hidden,),
              (shape.hidden, shape.n_classes), (shape.n_classes,))
    sizes = [math.prod(s) for s in shapes]
    flat = np.empty(sum(sizes), shape.dtype)
    views, start = [], 0
    for s, size in zip(shapes, sizes):
        views.append(flat[start:start + size].reshape(s))
        start += size
    return flat, tuple(views)


_local = threading.local()
_CACHE_SIZE = 4


def _workspace(shape: _Shape, n: int) -> Workspace:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    key = (shape, n)
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = Workspace(shape, n)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws


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


_MIN_ROWS_TO_FACTOR = 16


class _Prepared(NamedTuple):
    """A validated call, ready for the kernel: what _prepare hands to _run."""

    p: Params
    ws: Workspace
    n: int
    path: str
    n_threads: int


def _prepare_batch(p, idx, y, *, writeable: bool,
                   n_threads: int = 1) -> tuple[_Shape, Workspace, int]:
    """Validate p, idx and y, and copy idx and y into the workspace's buffers."""
    shape = _check_params(p, writeable=writeable)
    idx = _as_index_array(idx, "idx", 2)
    n = idx.shape[0]
    if n == 0:
        raise ValueError("idx is an empty batch (0 rows)")
    if idx.shape[1] != shape.n_features:
        raise ValueError(f"idx must have {shape.n_features} columns (p.W has "
                         f"{shape.n_features}*{shape.embed_dim} rows), got shape {idx.shape}")
    if y is not None:
        y = _as_index_array(y, "y", 1)
        if y.shape[0] != n:
            raise ValueError(f"y must have length {n} (the rows of idx), got {y.shape[0]}")
    _check_sizes(shape, n)
    ws = _workspace(shape, n)
    _copy_checked(idx, ws.idx, shape.n_vocab, "idx", "the vocabulary", n_threads)
    if y is not None:
        _copy_checked(y, ws.y, shape.n_classes, "y", "the classes")
    return shape, ws, n


def _prepare(p, idx, y, path, *, writeable: bool, backward: bool) -> _Prepared:
    """Validate everything, fill the workspace's index buffers, pick the path."""
    path = _check_path(path)
    # read once: the per-thread scratch rows are sized for this count, whatever
    # another Python thread passes to set_num_threads meanwhile
    n_threads = get_num_threads()
    shape, ws, n = _prepare_batch(p, idx, y, writeable=writeable, n_threads=n_threads)
    if path == "auto":
        path = "dense"
        if n >= _MIN_ROWS_TO_FACTOR:
            n_keys = ws.group_slots(n_threads)
            path = choose_path(n, shape.n_features, shape.embed_dim, shape.hidden, n_keys,
                               backward)
    elif path == "factored":
        n_keys = ws.group_slots(n_threads)
    if path == "dense":
        ws.need_dense()
    else:
        ws.need_keys(n_keys)
    if backward:
        ws.need_backward(n_threads)
    return _Prepared(Params(*p), ws, n, path, n_threads)


def _draw_dropout(prepared: _Prepared, dropout: float, rng) -> float:
    """Fill the workspace's dropout draws; returns the keep probability (1: no dropout)."""
    if dropout == 0.0:
        return 1.0
    draws = prepared.ws.dropout_draws()
    _as_generator(rng).random(out=draws, dtype=draws.dtype)
    return 1.0 - dropout


def _run(mode: int, prepared: _Prepared, rule=None, state1=None, state2=None,
         keep: float = 1.0, mean_over: int = 0):
    p, ws, n, path, n_threads = prepared
    kernel_path = _kernels.PATH_DENSE if path == "dense" else _kernels.PATH_FACTORED
    with _single_threaded_blas:
        return _kernels.run_step(mode, kernel_path, p.L, p.W, p.b1, p.U, p.b2, ws.idx, ws.y,
                                 n, ws, n_threads, rule, state1, state2, keep, mean_over)


class _UpdateRule(NamedTuple):
    """How MODE_UPDATE turns gradients into updates: the fields of the kernels'
    fastgrad_rule (see update_row_* in _kernels.pyx); unused fields stay 0."""

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


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------

def init_params(n_vocab: int, n_features: int, embed_dim: int, hidden: int, n_classes: int,
                dtype=np.float32, seed=None) -> Params:
    """Fresh parameters for the network.

    Initialisation: L uniform in ±sqrt(3/d), so each embedding has an expected
    squared norm of 1; W and U Glorot-uniform (±sqrt(6/(fan_in + fan_out)));
    b1 and b2 zero. ``seed`` is an int, None, or a numpy Generator.
    """
    sizes = {"n_vocab": n_vocab, "n_features": n_features, "embed_dim": embed_dim,
             "hidden": hidden, "n_classes": n_classes}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
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
    """Softmax probabilities, shape (N, Nc), in the parameters' dtype."""
    prepared = _prepare(p, idx, None, path, writeable=False, backward=False)
    _run(_kernels.MODE_PROBA, prepared)
    return prepared.ws.theta.copy()


def predict(p, idx, *, path: str = "auto") -> np.ndarray:
    """The most probable class of each row, shape (N,), int64."""
    return np.argmax(predict_proba(p, idx, path=path), axis=1)


def loss(p, idx, y, *, path: str = "auto", dropout: float = 0.0, rng=None) -> float:
    """Mean cross-entropy of the batch (NaN when a parameter it uses is NaN).

    dropout > 0 drops hidden units as a training step would (inverted dropout,
    mask drawn from rng: an int seed or a numpy Generator; the same seed, the
    same mask, which is how gradients are checked under dropout).
    """
    dropout = _check_dropout(dropout)
    prepared = _prepare(p, idx, y, path, writeable=False, backward=False)
    keep = _draw_dropout(prepared, dropout, rng)
    return float(_run(_kernels.MODE_LOSS, prepared, keep=keep)[0])


def loss_and_grad(p, idx, y, *, path: str = "auto", dropout: float = 0.0, rng=None):
    """(mean loss, Gradients): g.L is SparseRows, the others dense arrays.

    dropout and rng as in loss(): the gradient of the loss with that mask.
    """
    dropout = _check_dropout(dropout)
    prepared = _prepare(p, idx, y, path, writeable=False, backward=True)
    ws = prepared.ws
    keep = _draw_dropout(prepared, dropout, rng)
    value, k_rows, values = _run(_kernels.MODE_GRAD, prepared, keep=keep)
    return float(value), Gradients(
        L=SparseRows(ws.grad_rows[:k_rows].copy(), values),
        W=ws.dW.copy(), b1=ws.db1.copy(), U=ws.dU.copy(), b2=ws.db2.copy())


def sgd_step(p, idx, y, lr, *, path: str = "auto") -> float:
    """One SGD step in place: every parameter -= lr * its gradient (L at touched rows).

    Returns the mean loss before the update. If that loss is not finite (a NaN
    or Inf in the parameters), nothing is written and FloatingPointError is raised.
    """
    lr = _check_lr(lr)
    prepared = _prepare(p, idx, y, path, writeable=True, backward=True)
    with _ParamsWriteLock(prepared.p):
        value = float(_run(_kernels.MODE_UPDATE, prepared,
                           _UpdateRule(_kernels.RULE_SGD, lr))[0])
    _refuse_nonfinite_step(value, "parameter")
    return value


def _refuse_nonfinite_step(value: float, untouched: str) -> None:
    """The error of an update step whose loss is not finite (the kernel wrote nothing)."""
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value}: p holds NaN or Inf where this batch "
                                 f"reads it; no {untouched} was updated")
