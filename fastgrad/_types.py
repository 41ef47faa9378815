"""The record types of the API: parameters, gradients, and a model's shape.

NumPy only, so that fastgrad.reference (the readable twin of the kernels) and
tools can use them without the compiled extension.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Params", "SparseRows", "Gradients", "Shape", "FLOAT_DTYPES"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


class Shape(NamedTuple):
    """The sizes and dtype of a model: what every buffer of a step is sized by."""

    dtype: np.dtype
    n_vocab: int
    embed_dim: int
    n_features: int
    hidden: int
    n_classes: int
