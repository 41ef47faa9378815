"""The parse command's first layer with each token's tag columns as one cached row.

A model with UPOS, XPOS and FEATS has 84 features: 18 words, 3 x 18 tags and 12
labels. Precomputed inference (fastgrad._precompute) then adds 84 cached rows of Dh
numbers per parser state, and that table reading is what limits the parse. A token's
tags always come together, so the products of one token's tags in one token slot,
L[upos] W_upos,k + L[xpos] W_xpos,k + L[feats] W_feats,k, are added ahead of time:
once per distinct tag tuple of the chunk being parsed (a few hundred on EWT) and per
token slot k. A state then reads 48 rows: 18 words, 18 tag tuples, 12 labels.

The model seen by the cache has 48 slots (``JointTags.p``): the word and label slots
keep their W rows, and a tuple slot's W rows are zeros that are never read, because
every tuple of a chunk is cached. The sums equal predict_proba's to rounding, as every
precomputed sum does; only the order of the additions differs. Training is untouched:
its dev parses and exploration use the 84-slot cache (ParserModel._predictor).
"""

from __future__ import annotations

import numpy as np

from fastgrad._precompute import Precomputed, precompute
from fastgrad._types import Params

__all__ = ["JointTags"]

N_TOKENS, N_LABELS = 18, 12
N_SLOTS = 2 * N_TOKENS + N_LABELS                 # words, tag tuples, labels


class JointTags:
    """A parser model's word and label products cached once; each chunk's tag-tuple
    rows added to them by for_chunk. Needs two or more tag columns."""

    def __init__(self, p: Params, vocab, null_tag: int):
        from threadpoolctl import ThreadpoolController

        n_columns = len(vocab.tag_columns)
        if n_columns < 2:
            raise ValueError("joint tag rows need two or more tag columns")
        d, hidden = p.L.shape[1], p.W.shape[1]
        label_slot = N_TOKENS * (1 + n_columns)
        W = np.zeros((N_SLOTS * d, hidden), p.W.dtype)
        W[:N_TOKENS * d] = p.W[:N_TOKENS * d]
        W[2 * N_TOKENS * d:] = p.W[label_slot * d:]
        self.source, self.n_columns, self.null_tag = p, n_columns, null_tag
        self.p = Params(p.L, W, p.b1, p.U, p.b2)
        rows = vocab.rows_to_cache()
        base = precompute(self.p, rows[:N_TOKENS] + [[]] * N_TOKENS + rows[label_slot:])
        self._base_rows = base.n_cached
        self._cache_pos = base.cache_pos
        self._table = base.table
        self._n_tuples = 0
        self._blas = ThreadpoolController()   # made once: a limit through it is ~20 µs

    def for_chunk(self, tag: np.ndarray):
        """(predict_proba over 48-id rows, tuple id of every position, the tuple id of
        'no token'). tag: encode_chunk's (or encode_all's) tag ids, n_columns per
        position."""
        C, n_vocab = self.n_columns, self.source.L.shape[0]
        tags = np.concatenate([tag.reshape(-1, C), np.full((1, C), self.null_tag, tag.dtype)])
        tags = tags.astype(np.int64)
        if n_vocab ** C < 2**62:    # one int64 key per tuple: 10x faster than unique(axis=0)
            key = tags[:, 0].copy()
            for c in range(1, C):
                key *= n_vocab
                key += tags[:, c]
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            uniq = tags[first]
        else:
            uniq, inverse = np.unique(tags, axis=0, return_inverse=True)
        n_tuples = len(uniq)
        if n_tuples > self._cache_pos.shape[1]:
            self._room_for_ids(n_tuples + n_tuples // 4)
        hidden = self.p.W.shape[1]
        d = self.p.L.shape[1]
        need = self._base_rows + N_TOKENS * n_tuples
        if self._table.shape[0] < need:          # grown by a quarter: rarely again
            table = np.empty((need + need // 4, hidden), self._table.dtype)
            table[:self._base_rows] = self._table[:self._base_rows]
            self._table = table
        joint = self._table[self._base_rows:need].reshape(N_TOKENS, n_tuples, hidden)
        W = self.source.W
        embedded = [self.source.L[uniq[:, c]] for c in range(C)]   # each column's rows
        with self._blas.limit(limits=1, user_api="blas"):   # (see Precomputed.refresh)
            for k in range(N_TOKENS):
                for c in range(C):             # the columns' products, added in order
                    slot = N_TOKENS * (1 + c) + k
                    if c == 0:
                        np.matmul(embedded[c], W[slot * d:(slot + 1) * d], out=joint[k])
                    else:
                        joint[k] += embedded[c] @ W[slot * d:(slot + 1) * d]
        self._cache_pos[N_TOKENS:2 * N_TOKENS, :self._n_tuples] = -1
        self._cache_pos[N_TOKENS:2 * N_TOKENS, :n_tuples] = (
            self._base_rows + n_tuples * np.arange(N_TOKENS)[:, None]
            + np.arange(n_tuples)[None, :])
        self._n_tuples = n_tuples
        pre = Precomputed._from_table(self.p, self._cache_pos, self._table[:need])
        inverse = inverse.reshape(-1)
        return pre.predict_proba, inverse[:-1].astype(np.int32), int(inverse[-1])

    def _room_for_ids(self, n_ids: int) -> None:
        """More tag tuples than the model has ids (a small vocabulary with many tag
        combinations): the cache's model gets zero rows of L past the real ones, so
        that every tuple id is a valid id; only word slots ever read L (misses), and
        their ids are the real ones."""
        L = self.source.L
        padded = np.zeros((n_ids, L.shape[1]), L.dtype)
        padded[:L.shape[0]] = L
        self.p = Params(padded, *self.p[1:])
        cache_pos = np.full((N_SLOTS, n_ids), -1, np.int32)
        cache_pos[:, :self._cache_pos.shape[1]] = self._cache_pos
        self._cache_pos = cache_pos
