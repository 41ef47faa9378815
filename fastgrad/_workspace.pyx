# cython: language_level=3
"""Every buffer a step needs, sized once per shape and reused (see _workspace.pxd).

A training loop over same-shaped batches allocates nothing after its first
step. Workspaces are cached per Python thread (``workspace_for``), so threads
that work on independent parameters never share one.
"""

import math
import threading
from collections import OrderedDict

import numpy as np

from fastgrad import _grouping

# One row-number table (|V| int32) per thread for group_slots, within this many
# bytes: a huge vocabulary numbers its slots on fewer threads rather than take
# gigabytes.
SLOT_TABLE_BYTES = 64 << 20


def padded(row_len):
    """Row length of a per-thread scratch row: each thread's row written in a hot
    loop must share no cache line with its neighbour's (false sharing made the
    2-thread embedding update slower than the 1-thread one), so rows are padded
    to whole 64-byte lines plus one line, whatever the buffer's alignment."""
    return (row_len + 15) // 16 * 16 + 16


def dense_gradient_buffer(shape):
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


cdef class Workspace:
    """Buffers for one (dtype, N, m, d, Dh, Nc, |V|) shape, grown on demand."""

    def __init__(self, shape, Py_ssize_t n):
        f = shape.dtype
        self.shape, self.n = shape, n
        self.idx = np.empty(n * shape.n_features, np.int64)
        self.y = np.zeros(n, np.int64)
        self.h = np.empty((n, shape.hidden), f)
        self.theta = np.empty((n, shape.n_classes), f)
        self.row_loss = np.empty(n, np.float64)
        self.row_correct = np.zeros(n, np.uint8)

    def need_backward(self, int n_threads):
        """Allocate (once) the backward buffers, and per-thread rows for n_threads."""
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
        if self._n_threads < n_threads:
            self.radix_counts = np.empty(n_threads * (_grouping.RADIX + 1), np.int64)
            self.scratch = np.empty((n_threads, padded(shape.embed_dim)), f)
            self.partials = np.empty((n_threads, padded(shape.hidden)), f)
            self.class_partials = np.empty((n_threads, padded(shape.n_classes)), f)
            self._n_threads = n_threads

    def dropout_draws(self):
        """The (N, Dh) buffer of a dropout mask's uniform draws, made on first use."""
        if self.dropout_u is None:
            self.dropout_u = np.empty((self.n, self.shape.hidden), self.shape.dtype)
        return self.dropout_u

    def need_dense(self):
        """Allocate (once) the dense path's gathered inputs."""
        if not self._dense:
            shape = self.shape
            self.x = np.empty((self.n, shape.n_features * shape.embed_dim), shape.dtype)
            self._dense = True

    def group_slots(self, int n_threads, Py_ssize_t n=-1):
        """Group the batch in self.idx (its first n rows; default all) by (slot, row)
        on n_threads threads; returns K."""
        shape = self.shape
        if n < 0:
            n = self.n
        items = self.n * shape.n_features
        if not self._factored:
            self.key_row = np.empty(items, np.int64)
            self.pos = np.empty(items, np.int64)
            self.slot_offsets = np.empty(shape.n_features + 1, np.int64)
            self.local_row = np.empty(items, np.int64)
            self.slot_key = np.empty(items, np.int64)
            self.slot_tables = np.full((0, shape.n_vocab), -1, np.int32)
            self._factored = True
        n_tables = min(n_threads, max(1, SLOT_TABLE_BYTES // (4 * shape.n_vocab)))
        if self.slot_tables.shape[0] < n_tables:
            self.slot_tables = np.full((n_tables, shape.n_vocab), -1, np.int32)
        return _grouping.group_slots(self.idx, n, shape.n_features, self.slot_tables,
                                     self.local_row, self.slot_key, self.key_row, self.pos,
                                     self.slot_offsets, n_threads)

    def need_keys(self, Py_ssize_t n_keys):
        """Room for n_keys (slot, row) products; grows by a quarter to stop regrowth."""
        if n_keys > self._key_capacity:
            shape = self.shape
            cap = min(self.n * shape.n_features, n_keys + n_keys // 4 + 16)
            self.xu = np.empty((cap, shape.embed_dim), shape.dtype)
            self.products = np.empty((cap, shape.hidden), shape.dtype)
            self._key_capacity = cap

    def grad_values_for(self, Py_ssize_t k_rows):
        """The (k_rows, d) array that receives the embedding gradient: a fresh one for
        the user, or rows of ``self.values_into`` when a caller set it (a reused buffer)."""
        if self.values_into is not None:
            return self.values_into[:k_rows]
        return np.empty((k_rows, self.shape.embed_dim), self.shape.dtype)


_local = threading.local()
CACHE_SIZE = 4   # shapes kept per thread (a training loop and its evaluation, ...)


def workspace_for(shape, Py_ssize_t n, bint at_least=False):
    """This Python thread's workspace for (shape, n), made on first use.

    at_least: one workspace of this shape with room for n rows or more, grown by a
    quarter when a call needs more. For forward-only calls without labels
    (predict_proba, precomputed inference), which read and write only their first n
    rows: a parse, whose row count falls step by step as sentences finish, then
    reuses one workspace instead of allocating (and faulting in) one per count."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = OrderedDict()
    key = (shape, None) if at_least else (shape, n)
    ws = cache.get(key)
    if at_least and ws is not None and (<Workspace> ws).n < n:
        n = max(n, (<Workspace> ws).n + (<Workspace> ws).n // 4)
        del cache[key]
        ws = None
    if ws is None:
        ws = cache[key] = Workspace(shape, n)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return ws
