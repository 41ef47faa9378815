"""Validation: every rule an argument must meet, each in one function.

Every public call checks all of its arguments before any kernel runs, so an
exception always leaves parameters, optimizer state and files as they were. The
kernels trust what passes here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastgrad import _grouping
from fastgrad._types import FLOAT_DTYPES, Params, Shape

BLAS_INT_MAX = 2**31 - 1   # BLAS's 32-bit integers: the largest size or leading dimension
PATHS = ("auto", "dense", "factored")


def check_params(p, *, writeable: bool) -> Shape:
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
        if arr.dtype not in FLOAT_DTYPES:
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
    return Shape(dtype, n_vocab, d, width // d, hidden, n_classes)


def check_sizes(shape: Shape, n: int) -> None:
    m, d, hidden, nc = shape.n_features, shape.embed_dim, shape.hidden, shape.n_classes
    sizes = {"N": n, "N*m": n * m, "m*d": m * d, "m*d*Dh": m * d * hidden,
             "Dh*Nc": hidden * nc, "N*Nc": n * nc, "N*Dh": n * hidden,
             "|V|": shape.n_vocab}
    for what, size in sizes.items():
        if size > BLAS_INT_MAX:
            raise ValueError(f"{what} = {size} exceeds 2**31-1, the largest size that "
                             "BLAS's 32-bit integers can hold; split the batch or "
                             "shrink the model")


def check_columns(idx: np.ndarray, shape: Shape, name: str = "idx") -> None:
    """idx must have one column per feature slot of the model."""
    if idx.shape[1] != shape.n_features:
        raise ValueError(f"{name} must have {shape.n_features} columns (p.W has "
                         f"{shape.n_features}*{shape.embed_dim} rows), got shape {idx.shape}")


def as_index_array(arr, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        # uint64 values >= 2**63 wrap negative here, and are refused as out of range
        arr = arr.astype(np.int64)
    return arr


def copy_checked(src: np.ndarray, dst: np.ndarray, upper: int, name: str,
                  what: str, n_threads: int = 1, first_row: int = 0) -> None:
    """Copy indices into an int64 workspace buffer, refusing any outside [0, upper);
    src holds the caller's rows from first_row on (which the error names)."""
    n_bad, first = _grouping.copy_indices(src.reshape(src.shape[0], -1), dst, upper,
                                         n_threads)
    _refuse_outside(src, n_bad, first, upper, name, what, first_row)


def check_range(src: np.ndarray, upper: int, name: str, what: str,
                n_threads: int = 1) -> None:
    """Refuse a whole index array (a data set, before its first step) holding any
    entry outside [0, upper), naming the first such entry."""
    n_bad, first = _grouping.count_outside(src.reshape(src.shape[0], -1), upper, n_threads)
    _refuse_outside(src, n_bad, first, upper, name, what, 0)


def _refuse_outside(src, n_bad: int, first: int, upper: int, name: str, what: str,
                    first_row: int) -> None:
    if n_bad:
        pos = np.unravel_index(first, src.shape)
        where = ", ".join(str(int(i) + (first_row if axis == 0 else 0))
                          for axis, i in enumerate(pos))
        raise ValueError(f"{name}[{where}] = {int(src[pos])} is outside {what} [0, {upper})"
                         + (f" ({n_bad} entries are)" if n_bad > 1 else ""))


def check_real(value, name: str, low: float = 0.0, high: float = math.inf,
                high_open: bool = False) -> float:
    """A finite real number in [low, high] (or [low, high)), else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
        interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be finite and in {interval}, got {value}")
    return value


def check_lr(lr) -> float:
    return check_real(lr, "lr")


def check_dropout(dropout) -> float:
    return check_real(dropout, "dropout", 0.0, 1.0, high_open=True)


def as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, "
                    f"got {type(rng).__name__}")


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path
