"""Precomputed inference (Chen & Manning 2014, §3.3).

z = b1 + Σ_j L[w_j] W_j: a parser asks for the same (slot, row) products over
and over (every tag, every label, the frequent words), so they are multiplied
once, ahead of time, and inference adds cached rows of Dh numbers instead of
multiplying d x Dh blocks. A (slot, row) pair not cached falls back to the
product, so the result always equals predict_proba's (to rounding).

The cache is a snapshot: after p changes (training), call precompute again.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from fastgrad import _api, _kernels
from fastgrad._step import prepare_batch
from fastgrad._threads import _single_threaded_blas, threads_for_step
from fastgrad._types import Params
from fastgrad._validate import check_params

__all__ = ["Precomputed", "precompute", "PLAIN_MIN_ROWS"]

# From this many rows on, Precomputed.predict_proba is predict_proba itself. Up to 1024
# rows the cache was 1.2-2.8x faster than the plain path; at 4096 rows 0.79-1.06x: in a
# large batch most distinct (slot, row) pairs are rare words the cache lacks, so the
# factored path's products cost little more than the misses, and its products sit in a
# compact buffer while the cache's rows are spread over a table of tens of MB. Letting the
# cache stand in for the factored path's products (copying cached rows into its buffer)
# was 0.79-0.86x from 2048 rows on: the copies from the table cost more than the products
# they save (bench/results/parser-pipeline-2core.md).
PLAIN_MIN_ROWS = 2048


def _rows_per_slot(rows, n_slots: int, n_vocab: int) -> list[np.ndarray]:
    if rows is None:
        return [np.arange(n_vocab)] * n_slots
    if isinstance(rows, np.ndarray) or (
            isinstance(rows, (list, tuple)) and rows and isinstance(rows[0], numbers.Integral)):
        rows = [rows] * n_slots
    elif not isinstance(rows, (list, tuple)) or len(rows) != n_slots:
        raise ValueError(f"rows must be None, one array of row ids, or a sequence of "
                         f"{n_slots} arrays (one per slot)")
    out = []
    for j, r in enumerate(rows):
        r = np.asarray(r)
        if r.size == 0:
            out.append(np.empty(0, np.int64))
            continue
        if r.dtype.kind not in "iu" or r.ndim != 1:
            raise TypeError(f"rows[{j}] must be a 1-D integer array, got {r.dtype} {r.shape}")
        if r.min() < 0 or r.max() >= n_vocab:
            raise ValueError(f"rows[{j}] holds ids outside the vocabulary [0, {n_vocab})")
        out.append(np.unique(r).astype(np.int64))
    return out


class Precomputed:
    """Cached products L[v] W_j of chosen (slot, row) pairs; see precompute()."""

    def __init__(self, p, rows=None):
        shape = check_params(p, writeable=False)
        self.p = Params(*p)
        m, d, hidden, n_vocab = shape.n_features, shape.embed_dim, shape.hidden, shape.n_vocab
        per_slot = _rows_per_slot(rows, m, n_vocab)
        n_cached = sum(len(r) for r in per_slot)
        if n_cached >= 2**31:
            raise ValueError(f"{n_cached} cached products exceed 2**31-1")
        self.cache_pos = np.full((m, n_vocab), -1, np.int32)
        self.table = np.empty((n_cached, hidden), shape.dtype)
        base = 0
        for j, r in enumerate(per_slot):
            if len(r):
                self.cache_pos[j, r] = np.arange(base, base + len(r), dtype=np.int32)
            base += len(r)
        self._per_slot = per_slot
        self.n_cached = n_cached
        self._scratch(m, d, hidden, shape.dtype)
        self.refresh()

    def _scratch(self, m: int, d: int, hidden: int, dtype) -> None:
        """predict_proba's scratch for the misses, grown on demand and reused."""
        self._lock = threading.Lock()
        self._miss_row = np.empty(0, np.int64)
        self._miss_offsets = np.empty(m + 1, np.int64)
        self._miss_x = np.empty((0, d), dtype)
        self._missed = np.empty((0, hidden), dtype)

    @classmethod
    def _from_table(cls, p, cache_pos: np.ndarray, table: np.ndarray) -> "Precomputed":
        """A cache whose rows the caller made, not L[v] W_j products
        (fastgrad/parser/joint_tags.py: one row per tag tuple). cache_pos (m x |V|,
        int32): the table row of each cached (slot, id), -1 elsewhere; uncached pairs
        are multiplied from p as usual. refresh() is refused (nothing to multiply)."""
        shape = check_params(p, writeable=False)
        self = cls.__new__(cls)
        self.p = Params(*p)
        self.cache_pos, self.table = cache_pos, table
        self._per_slot = None
        self.n_cached = table.shape[0]
        self._scratch(shape.n_features, shape.embed_dim, shape.hidden, shape.dtype)
        return self

    def refresh(self) -> None:
        """Multiply the cached products again from p's current values, in place (after
        training steps changed p: no new table, so a training loop that parses its dev
        set every epoch keeps one cache, touched memory and all). numpy's BLAS runs
        these products on one thread: with more, its workers spun on after the last
        product, beside the kernels' threads of the parse that follows (4% of a
        parse's perf samples; bench/results/parser-memory-2core.md)."""
        from threadpoolctl import threadpool_limits

        if self._per_slot is None:
            raise ValueError("this cache was made from rows given to it: make it again "
                             "instead of refreshing it")
        d, base = self.p.L.shape[1], 0
        with self._lock, threadpool_limits(1, user_api="blas"):
            for j, r in enumerate(self._per_slot):
                if len(r):
                    np.matmul(self.p.L[r], self.p.W[j * d:(j + 1) * d],
                              out=self.table[base:base + len(r)])
                base += len(r)

    @property
    def nbytes(self) -> int:
        """Memory the cache takes (the products and the position table)."""
        return self.table.nbytes + self.cache_pos.nbytes

    def predict_proba(self, idx) -> np.ndarray:
        """Softmax probabilities, shape (N, Nc): predict_proba(p, idx) to rounding.

        Pairs the cache lacks are multiplied together, one product per slot over
        its distinct missing rows. From PLAIN_MIN_ROWS rows on, the rows are
        predict_proba's own (the plain path is then as fast or faster: never slower
        by construction), except for a cache made by _from_table, whose rows are not
        products of p. Calls on one Precomputed from several Python threads take
        turns (the misses are numbered in its table)."""
        try:
            rows = len(idx)
        except TypeError:
            rows = 0          # (refused by the checks below)
        if rows >= PLAIN_MIN_ROWS and self._per_slot is not None:   # (not _from_table's)
            return _api.predict_proba(self.p, idx)
        _, ws, n = prepare_batch(self.p, idx, None, writeable=False)
        p = self.p
        threads = threads_for_step()
        with self._lock, _single_threaded_blas:
            items = n * self.cache_pos.shape[0]
            if self._miss_row.shape[0] < items:
                self._miss_row = np.empty(items, np.int64)
            n_miss = _kernels.number_misses(ws.idx, n, self.cache_pos, self._miss_row,
                                            self._miss_offsets)
            try:
                self._room_for_misses(n_miss)
            except BaseException:   # (MemoryError) the table must not keep the numbering
                self.cache_pos[self.cache_pos < -1] = -1
                raise
            _kernels.precomputed_proba(p.L, p.W, p.b1, p.U, p.b2, ws.idx, n, self.cache_pos,
                                       self.table, self._miss_row, self._miss_offsets,
                                       self._miss_x, self._missed, ws, threads)
            return ws.theta[:n].copy()

    def _room_for_misses(self, n_miss: int) -> None:
        if self._missed.shape[0] < n_miss:   # grown by a quarter: no regrowth
            rows = n_miss + n_miss // 4
            self._miss_x = np.empty((rows, self.p.L.shape[1]), self.table.dtype)
            self._missed = np.empty((rows, self.table.shape[1]), self.table.dtype)

    def predict(self, idx) -> np.ndarray:
        """The most probable class of each row, shape (N,)."""
        return np.argmax(self.predict_proba(idx), axis=1)

    def __repr__(self) -> str:
        return f"Precomputed({self.n_cached} products, {self.nbytes / 2**20:.1f} MiB)"


def precompute(p, rows=None) -> Precomputed:
    """Cache L[v] W_j for inference (Chen & Manning's precomputation).

    Parameters
    ----------
    p : Params
        Read now; later changes to p are not seen by the cache.
    rows : None, int array, or a sequence of m int arrays
        None caches every row of L for every slot; one array caches those rows
        for every slot; m arrays, one per slot (a word slot caches the frequent
        words, a tag slot every tag, a label slot every label).

    Returns
    -------
    Precomputed
        Its predict_proba(idx) gives the probabilities; it costs (cached
        pairs) x Dh numbers of memory (its nbytes).
    """
    return Precomputed(p, rows)
