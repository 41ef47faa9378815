# cython: language_level=3
"""The arc-standard transition system over a batch of sentences, in C.

Greedy parsing steps every unfinished sentence of a batch at once: write the 48
features of each one's state (``features``), let the network score them, apply
each one's best legal transition (``advance``). Both are loops over sentences
without the GIL (parallel over threads), so the Python loop runs once per
step of the longest sentence, not once per state.

Transitions: 0 = SHIFT, 1 + k = LEFT-ARC(label k), 1 + L + k = RIGHT-ARC(label k).
Training runs the same batch: ``static_oracle`` writes every state of the gold
derivations; ``explore`` steps the batch with the model in the loop and writes each
state with the dynamic oracle's target (the table of Goldberg, Sartorio & Satta
2014: ``arc_loss`` in _arc_loss.h).

The features are Chen & Manning's (fastgrad/parser/transitions.py, ``features``,
is the readable twin that the tests compare this with): words and tags of s1 s2 s3
b1 b2 b3, of lc1 rc1 lc2 rc2 lc1(lc1) rc1(rc1) of s1 and of s2, and the labels of
those 12 children.

Children arrive in order: in arc-standard a token's left dependents are attached
nearest first (each LEFT-ARC takes the element below it, which lies further left
than the one before) and its right dependents nearest first too (each RIGHT-ARC
attaches the stack top, right of every earlier right dependent). So the two
leftmost and two rightmost children are kept as four numbers per token, with no
sorted lists.
"""

cimport cython
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

import numpy as np

from fastgrad._blas cimport floating

cdef extern from "_arc_loss.h":
    int32_t arc_loss(int32_t base, int32_t n, const int32_t* above, int32_t P,
                     int32_t next_word, const int32_t* gold_head, int32_t* scratch) nogil

cdef enum:
    NONE = -1
    NO_LOSS = 1 << 30    # the loss of an illegal move (above any real one)
    MAX_FEATURES = 256   # a state's features are built on the stack


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bint _crossing_free(const int32_t* heads, int32_t n) noexcept nogil:
    """Whether no two arcs d → heads[d - 1] (words d = 1..n, 0: ROOT) cross."""
    cdef int32_t d, e, a, b, c, f
    for d in range(1, n + 1):
        a = min(d, heads[d - 1])
        b = max(d, heads[d - 1])
        for e in range(1, n + 1):
            c = min(e, heads[e - 1])
            f = max(e, heads[e - 1])
            if a < c < b < f:
                return False
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
def projective_trees(const int32_t[::1] heads, const int32_t[::1] lengths):
    """Per sentence, whether its tree is projective (no two arcs cross, the root's
    arc from position 0 included). heads: 1-based per sentence (0: ROOT), the
    sentences' words one after another, lengths words each."""
    cdef Py_ssize_t i, at = 0, n_sent = lengths.shape[0]
    out = np.ones(n_sent, np.uint8)
    cdef uint8_t[::1] result = out
    if np.asarray(lengths).sum() != heads.shape[0] or (n_sent and np.asarray(lengths).min() < 0):
        raise ValueError("lengths must add up to the number of heads")
    with nogil:
        for i in range(n_sent):
            if lengths[i] > 0:
                result[i] = _crossing_free(&heads[at], lengths[i])
            at += lengths[i]
    return out.view(bool)


def arc_loss_py(stack, int32_t next_word, gold_heads):
    """The C arc_loss of one configuration, on fresh buffers: a test hook (the
    tests hold it to transitions.arc_loss, the readable twin). stack: positions
    from ROOT (0) up; gold_heads: 1-based with a dummy at 0; the buffer is
    next_word .. len(gold_heads) - 1."""
    cdef int32_t n = len(gold_heads) - 1
    cdef int32_t[::1] gold = np.ascontiguousarray(gold_heads, np.int32)
    cdef int32_t[::1] above = np.ascontiguousarray(list(stack)[:0:-1] + [0], np.int32)
    cdef int32_t[::1] work = np.empty(3 * (n + 1) + 2 * (n + 1) * n + 1, np.int32)
    if len(stack) < 1 or not 1 <= next_word <= n + 1:
        raise ValueError("a stack from ROOT up and a next word in 1 .. n + 1")
    return arc_loss(0, n, &above[0], len(stack) - 1, next_word, &gold[0], &work[0])


cdef class ArcStandardBatch:
    """States of a batch of sentences, parsed together (see the module's notes)."""

    cdef int32_t[::1] start        # sentence i's positions: start[i] (ROOT) .. start[i] + n_i
    cdef int32_t[::1] length       # n_i, its words
    cdef int32_t[::1] word         # per position: feature ids (ROOT at the sentence's start)
    cdef int32_t[::1] tag          # per position: n_columns tag ids side by side
    cdef int32_t[::1] head, label  # per position: built so far (-1: not yet)
    cdef int32_t[::1] lc1, lc2, rc1, rc2
    cdef int32_t[::1] stack, depth, next_word
    cdef int32_t[::1] active
    cdef int32_t[::1] n_moves     # per sentence: transitions applied so far
    cdef int32_t[::1] loss_bound  # per sentence: its configuration's arc loss (explore)
    cdef object scratch           # explore's per-thread work space, made on first use
    cdef Py_ssize_t n_active
    cdef int n_columns, n_labels, null_word, null_tag, null_label, label_base, root_label
    cdef readonly int n_features

    def __init__(self, word, tag, lengths, int n_columns, int n_labels, int null_word,
                 int null_tag, int null_label, int label_base, int root_label=-1):
        """word: feature ids of every sentence's positions, each sentence ROOT first
        then its words (sum of lengths + 1 entries); tag: n_columns ids per position,
        side by side; lengths: words per sentence; root_label: the index of the label
        only the word attached to ROOT may carry, and that word no other (-1: none)."""
        lengths = np.ascontiguousarray(lengths, np.int32)
        if lengths.size and lengths.min() < 1:
            raise ValueError("every sentence needs at least one word")
        starts = np.zeros(lengths.size + 1, np.int32)
        np.cumsum(lengths + 1, out=starts[1:])
        total = int(starts[lengths.size])   # (no negative indices: wraparound is off)
        word = np.ascontiguousarray(word, np.int32)
        tag = np.ascontiguousarray(tag, np.int32)
        if n_columns < 1 or word.shape != (total,) or tag.shape != (total * n_columns,):
            raise ValueError(f"word must hold {total} ids (ROOT and the words of every "
                             f"sentence) and tag {n_columns} per position")
        self.start, self.length, self.word, self.tag = starts, lengths, word, tag
        self.head = np.full(total, NONE, np.int32)
        self.label = np.full(total, NONE, np.int32)
        self.lc1 = np.full(total, NONE, np.int32)
        self.lc2 = np.full(total, NONE, np.int32)
        self.rc1 = np.full(total, NONE, np.int32)
        self.rc2 = np.full(total, NONE, np.int32)
        self.stack = np.zeros(total, np.int32)     # sentence i's stack: stack[start[i] ...]
        self.depth = np.ones(lengths.size, np.int32)  # ROOT is on every stack
        self.next_word = np.ones(lengths.size, np.int32)
        self.active = np.arange(lengths.size, dtype=np.int32)
        self.n_moves = np.zeros(lengths.size, np.int32)
        self.loss_bound = np.zeros(lengths.size, np.int32)   # a gold tree is reachable
        self.n_active = lengths.size
        self.n_columns, self.n_features = n_columns, 18 + 18 * n_columns + 12
        self.n_labels, self.null_word, self.null_tag = n_labels, null_word, null_tag
        self.null_label, self.label_base = null_label, label_base
        self.root_label = root_label if 0 <= root_label < n_labels else -1

    @property
    def n_unfinished(self):
        return self.n_active

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def features(self, int64_t[:, ::1] out, int n_threads=1):
        """Row r of out: the features of the r-th unfinished sentence; returns how many."""
        cdef Py_ssize_t r
        if out.shape[0] < self.n_active or out.shape[1] != self.n_features:
            raise ValueError(f"out must be at least ({self.n_active}, {self.n_features})")
        with nogil:
            for r in prange(self.n_active, num_threads=n_threads, schedule='static'):
                self._features(self.active[r], &out[r, 0])
        return self.n_active

    cdef inline int32_t _child(self, int32_t base, int32_t t, int which) noexcept nogil:
        """Child `which` (0 lc1, 1 rc1, 2 lc2, 3 rc2) of position t, or NONE."""
        if t == NONE:
            return NONE
        if which == 0:
            return self.lc1[base + t]
        if which == 1:
            return self.rc1[base + t]
        if which == 2:
            return self.lc2[base + t]
        return self.rc2[base + t]

    cdef void _tokens(self, int32_t i, int32_t* tokens) noexcept nogil:
        """The 18 positions the features read (NONE where there is no such token):
        s1 s2 s3, b1 b2 b3, then per s1 and s2: lc1 rc1 lc2 rc2 lc1(lc1) rc1(rc1)."""
        cdef int32_t base = self.start[i], d = self.depth[i], n = self.length[i]
        cdef int32_t k, s, c
        for k in range(3):
            tokens[k] = self.stack[base + d - 1 - k] if d > k else NONE
        for k in range(3):
            tokens[3 + k] = self.next_word[i] + k if self.next_word[i] + k <= n else NONE
        for k in range(2):
            s = tokens[k]
            for c in range(4):
                tokens[6 + 6 * k + c] = self._child(base, s, c)
            tokens[10 + 6 * k] = self._child(base, tokens[6 + 6 * k], 0)
            tokens[11 + 6 * k] = self._child(base, tokens[7 + 6 * k], 1)

    cdef void _features(self, int32_t i, int64_t* row) noexcept nogil:
        cdef int32_t base = self.start[i]
        cdef int32_t tokens[18]
        cdef int32_t k, c, column, label_slot = 18 + 18 * self.n_columns
        self._tokens(i, tokens)
        for k in range(18):
            if tokens[k] == NONE:
                row[k] = self.null_word
                for column in range(self.n_columns):
                    row[18 + 18 * column + k] = self.null_tag
            else:
                row[k] = self.word[base + tokens[k]]
                for column in range(self.n_columns):
                    row[18 + 18 * column + k] = \
                        self.tag[(base + tokens[k]) * self.n_columns + column]
        self._label_features(i, tokens, row + label_slot)

    cdef void _joint_features(self, int32_t i, const int32_t* tuple_of_position,
                              int32_t null_tuple, int64_t* row) noexcept nogil:
        """_features with each token's tag columns as one id: 18 words, the 18
        tokens' tag tuples (tuple_of_position; null_tuple where no token), 12 labels."""
        cdef int32_t base = self.start[i]
        cdef int32_t tokens[18]
        cdef int32_t k
        self._tokens(i, tokens)
        for k in range(18):
            if tokens[k] == NONE:
                row[k] = self.null_word
                row[18 + k] = null_tuple
            else:
                row[k] = self.word[base + tokens[k]]
                row[18 + k] = tuple_of_position[base + tokens[k]]
        self._label_features(i, tokens, row + 36)

    cdef inline void _label_features(self, int32_t i, const int32_t* tokens,
                                     int64_t* out) noexcept nogil:
        """The labels of the 12 child tokens (tokens[6:18])."""
        cdef int32_t k, c
        for k in range(12):
            c = tokens[6 + k]
            out[k] = self.label_base + self.label[self.start[i] + c] if c != NONE \
                else self.null_label

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def joint_features(self, int64_t[:, ::1] out, const int32_t[::1] tuple_of_position,
                       int32_t null_tuple, int n_threads=1):
        """features() with each token's tag columns as one tuple id (see
        _joint_features): rows of 48 ids; returns how many."""
        cdef Py_ssize_t r
        if out.shape[0] < self.n_active or out.shape[1] != 48:
            raise ValueError(f"out must be at least ({self.n_active}, 48)")
        if tuple_of_position.shape[0] != self.word.shape[0]:
            raise ValueError("tuple_of_position must hold one id per position")
        with nogil:
            for r in prange(self.n_active, num_threads=n_threads, schedule='static'):
                self._joint_features(self.active[r], &tuple_of_position[0], null_tuple,
                                     &out[r, 0])
        return self.n_active

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def advance(self, const floating[:, ::1] scores, int n_threads=1):
        """Apply each unfinished sentence's highest-scoring legal transition (row r of
        scores for the r-th, as features() wrote them); returns how many remain."""
        cdef Py_ssize_t r
        if scores.shape[0] < self.n_active or scores.shape[1] != 1 + 2 * self.n_labels:
            raise ValueError(f"scores must be at least ({self.n_active}, {1 + 2 * self.n_labels})")
        with nogil:
            for r in prange(self.n_active, num_threads=n_threads, schedule='static'):
                self._apply(self.active[r], self._best(self.active[r], &scores[r, 0]))
            self._keep_unfinished()
        return self.n_active

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def skip_forced(self, int n_threads=1):
        """Apply every unfinished sentence's forced moves (the states where one
        transition alone is legal) until it reaches a choice or is done; returns how
        many remain. A greedy parse need not score a forced state: its move does
        not depend on the scores, so the parses are the same, with fewer rows (17%
        of EWT's gold states). Training states keep them: they are instances."""
        cdef Py_ssize_t r
        cdef int32_t i
        cdef int t
        with nogil:
            for r in prange(self.n_active, num_threads=n_threads, schedule='static'):
                i = self.active[r]
                t = self._forced(i)
                while t >= 0:
                    self._apply(i, t)
                    t = self._forced(i)
            self._keep_unfinished()
        return self.n_active

    cdef inline int _forced(self, int32_t i) noexcept nogil:
        """The one legal transition of sentence i's state, or -1 when it has a
        choice or is done: SHIFT when no arc is legal; with a root label, the final
        RIGHT-ARC to ROOT when it is the only legal kind (_best's rule)."""
        cdef bint shift_ok, left_ok, right_ok
        self._legal(i, &shift_ok, &left_ok, &right_ok)
        if shift_ok and not left_ok and not right_ok:
            return 0
        if right_ok and not shift_ok and not left_ok and self.root_label >= 0:
            return 1 + self.n_labels + self.root_label
        return -1

    cdef void _keep_unfinished(self) noexcept nogil:
        """Compact the active list to the unfinished sentences, in order."""
        cdef Py_ssize_t r, kept = 0
        for r in range(self.n_active):
            if self.next_word[self.active[r]] <= self.length[self.active[r]] \
                    or self.depth[self.active[r]] > 1:
                self.active[kept] = self.active[r]
                kept += 1
        self.n_active = kept

    cdef inline void _legal(self, int32_t i, bint* shift_ok, bint* left_ok,
                            bint* right_ok) noexcept nogil:
        """Which kinds of move sentence i's state allows (State.legal): SHIFT while
        the buffer holds a word; LEFT-ARC with two words above ROOT; RIGHT-ARC as
        well, or onto ROOT once the buffer is empty."""
        cdef int d = self.depth[i]
        shift_ok[0] = self.next_word[i] <= self.length[i]
        left_ok[0] = d > 2
        right_ok[0] = d > 2 or (d == 2 and not shift_ok[0])

    cdef int _best(self, int32_t i, const floating* row) noexcept nogil:
        """The legal transition with the highest score (the first, on ties). With a
        root label, the final RIGHT-ARC to ROOT must carry it and no other arc may."""
        cdef int d = self.depth[i], t, best = -1, L = self.n_labels, root = self.root_label
        cdef bint shift_ok, left_ok, right_ok
        cdef double top = -1.0
        self._legal(i, &shift_ok, &left_ok, &right_ok)
        if shift_ok:
            best, top = 0, row[0]
        if left_ok:
            for t in range(1, 1 + L):
                if t - 1 != root and (best < 0 or row[t] > top):
                    best, top = t, row[t]
        if right_ok:
            for t in range(1 + L, 1 + 2 * L):
                if root >= 0 and ((t - 1 - L == root) != (d == 2)):
                    continue
                if best < 0 or row[t] > top:
                    best, top = t, row[t]
        return best

    cdef void _apply(self, int32_t i, int t) noexcept nogil:
        cdef int32_t base = self.start[i], d = self.depth[i]
        cdef int32_t s1, s2, h, dep
        self.n_moves[i] += 1
        if t == 0:
            self.stack[base + d] = self.next_word[i]
            self.depth[i] = d + 1
            self.next_word[i] += 1
            return
        s1 = self.stack[base + d - 1]
        s2 = self.stack[base + d - 2]
        if t <= self.n_labels:                      # LEFT-ARC: s1 → s2
            h, dep = s1, s2
            self.label[base + dep] = t - 1
            self.lc2[base + h] = self.lc1[base + h]
            self.lc1[base + h] = dep
        else:                                       # RIGHT-ARC: s2 → s1
            h, dep = s2, s1
            self.label[base + dep] = t - 1 - self.n_labels
            self.rc2[base + h] = self.rc1[base + h]
            self.rc1[base + h] = dep
        self.head[base + dep] = h
        self.stack[base + d - 2] = h
        self.depth[i] = d - 1

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def static_oracle(self, const int32_t[::1] gold_head, const int32_t[::1] gold_label,
                      const int64_t[::1] first_row, int32_t[:, ::1] out_idx,
                      int32_t[::1] out_y, int n_threads=1):
        """Training instances: every sentence i with first_row[i] >= 0 is run through
        the static oracle from its first state to its last, row first_row[i] + k of
        out_idx getting the features of its k-th state and out_y its oracle move (2n
        states for n words); the others are left alone. Parallel over sentences.

        IN gold_head, gold_label: per position (as word's layout; ROOT's entries
        unused) the gold head (0 = ROOT, 1..n) and label index of each word; the
        sentences run must be projective (else an oracle move is illegal).
        Returns the sentences whose derivation stopped on an illegal move (empty)."""
        cdef Py_ssize_t i, n_sent = self.length.shape[0]
        cdef int32_t[::1] pending = np.zeros(self.head.shape[0], np.int32)
        cdef uint8_t[::1] failed = np.zeros(n_sent, np.uint8)
        if gold_head.shape[0] != self.head.shape[0] or gold_label.shape[0] != self.head.shape[0] \
                or first_row.shape[0] != n_sent or out_idx.shape[1] != self.n_features:
            raise ValueError("gold arrays, first_row or out_idx do not fit the batch")
        if self.n_features > MAX_FEATURES:
            raise ValueError(f"at most {MAX_FEATURES} features")
        for i in range(n_sent):
            if first_row[i] >= 0 and (first_row[i] + 2 * self.length[i] > out_idx.shape[0]
                                      or first_row[i] + 2 * self.length[i] > out_y.shape[0]):
                raise ValueError(f"sentence {i}'s rows do not fit in out_idx and out_y")
        with nogil:
            for i in prange(n_sent, num_threads=n_threads, schedule='dynamic'):
                if first_row[i] >= 0:
                    failed[i] = not self._derive(i, &gold_head[0], &gold_label[0],
                                                 &pending[0], &out_idx[first_row[i], 0],
                                                 &out_y[first_row[i]])
        return np.flatnonzero(np.asarray(failed))

    cdef bint _derive(self, int32_t i, const int32_t* gold_head, const int32_t* gold_label,
                      int32_t* pending, int32_t* rows, int32_t* moves) noexcept nogil:
        """Sentence i's static-oracle derivation (transitions.oracle's rules: LEFT when
        s2's gold head is s1; RIGHT when s1's is s2 and s1 has all its children; else
        SHIFT), features and moves written row by row; False on an illegal move."""
        cdef int32_t base = self.start[i], n = self.length[i], k, d, s1, s2, t
        cdef int64_t row[MAX_FEATURES]
        cdef Py_ssize_t f, step = 0
        for k in range(1, n + 1):
            pending[base + gold_head[base + k]] += 1
        while self.next_word[i] <= n or self.depth[i] > 1:
            self._features(i, row)
            for f in range(self.n_features):
                rows[step * self.n_features + f] = <int32_t> row[f]
            d = self.depth[i]
            t = 0
            if d >= 2:
                s1 = self.stack[base + d - 1]
                s2 = self.stack[base + d - 2]
                if s2 != 0 and gold_head[base + s2] == s1:
                    t = 1 + gold_label[base + s2]
                elif gold_head[base + s1] == s2 and pending[base + s1] == 0:
                    t = 1 + self.n_labels + gold_label[base + s1]
            if t == 0 and self.next_word[i] > n:
                return False            # SHIFT on an empty buffer: not projective
            if t > self.n_labels and d == 2 and self.next_word[i] <= n:
                return False            # RIGHT-ARC to ROOT before the end
            moves[step] = t
            if t != 0:
                pending[base + (s1 if t <= self.n_labels else s2)] -= 1
            self._apply(i, t)
            step += 1
            if step > 2 * n:
                return False
        return True

    # ---- training with exploration: the dynamic oracle ------------------------
    # arc_loss is in _arc_loss.h; transitions.arc_loss / move_losses are the
    # readable twins (and the docs).

    cdef int32_t _loss_after(self, int32_t i, int m, const int32_t* gold_head,
                             int32_t* scratch) noexcept nogil:
        """The arc loss of sentence i's configuration after legal move m (0 SHIFT,
        1 LEFT, 2 RIGHT), the arc that move builds not counted."""
        cdef int32_t base = self.start[i], d = self.depth[i], n = self.length[i]
        cdef int32_t nxt = self.next_word[i], k
        cdef int32_t* above = scratch           # the stack's words after the move, top first
        cdef int32_t* work = scratch + (n + 2)
        if m == 0:                              # the next word goes on top
            above[0] = nxt
            for k in range(d - 1):
                above[1 + k] = self.stack[base + d - 1 - k]
            return arc_loss(base, n, above, d, nxt + 1, gold_head, work)
        if m == 1:                              # s1 heads s2: s2 leaves the stack
            above[0] = self.stack[base + d - 1]
            for k in range(d - 3):
                above[1 + k] = self.stack[base + d - 3 - k]
        else:                                   # s2 heads s1: s1 leaves the stack
            for k in range(d - 2):
                above[k] = self.stack[base + d - 2 - k]
        return arc_loss(base, n, above, d - 2, nxt, gold_head, work)

    cdef int _dynamic_target(self, int32_t i, const floating* row, const int32_t* gold_head,
                             const int32_t* gold_label, int32_t* scratch, int32_t bound,
                             int32_t* after) noexcept nogil:
        """The zero-cost transition the model scores highest (ties: the lowest id):
        a zero-cost move's loss (move_losses) is the least of the legal moves'; an
        arc carries its dependent's gold label where legal, else the best-scored
        legal label.

        IN bound: no legal move's loss is below it (this configuration's arc loss,
        known from the move that led here: a move never lowers the loss). The
        moves are costed in order of score (ties: the lowest id), and the first
        whose loss is bound is the target: every one before it cost more, so it
        is the best-scored zero-cost move, and the rest need no cost (arc_loss,
        cubic in the stack and buffer, was most of an exploration's own time).
        -1: no bound (every move costed).
        OUT after[m]: the arc loss after move m, or -1 where it was not costed."""
        cdef int32_t base = self.start[i], d = self.depth[i]
        cdef int32_t s1 = NONE, s2 = NONE, least
        cdef int32_t loss[3]
        cdef int32_t wrong[3]
        cdef int ids[3]
        cdef int order[3]
        cdef int m, k, n_legal = 0, best = -1, L = self.n_labels
        cdef bint ok[3]
        self._legal(i, &ok[0], &ok[1], &ok[2])
        if d >= 2:
            s1 = self.stack[base + d - 1]
            s2 = self.stack[base + d - 2]
        wrong[0] = 0
        wrong[1] = (gold_head[base + s2] != s1) if ok[1] else 0
        wrong[2] = (gold_head[base + s1] != s2) if ok[2] else 0
        ids[0] = 0
        ids[1] = self._arc_label(row, 1, gold_label[base + s2], False) if ok[1] else -1
        ids[2] = self._arc_label(row, 1 + L, gold_label[base + s1], d == 2) if ok[2] else -1
        for m in range(3):
            after[m] = -1
            loss[m] = NO_LOSS
            if not ok[m]:
                continue
            if row[ids[m]] != row[ids[m]]:
                bound = -1                      # a NaN score: no order, cost them all
            k = n_legal                         # insertion by score, then by m
            while k > 0 and row[ids[m]] > row[ids[order[k - 1]]]:
                order[k] = order[k - 1]
                k -= 1
            order[k] = m
            n_legal += 1
        for k in range(n_legal):
            m = order[k]
            after[m] = self._loss_after(i, m, gold_head, scratch)
            loss[m] = wrong[m] + after[m]
            if loss[m] == bound:
                return ids[m]
        least = NO_LOSS
        for m in range(3):
            least = min(least, loss[m])
        for m in range(3):   # (in id order: on equal scores the first stays)
            if loss[m] == least and (best < 0 or row[ids[m]] > row[best]):
                best = ids[m]
        return best

    cdef int _arc_label(self, const floating* row, int first, int32_t gold, bint to_root) \
            noexcept nogil:
        """The arc transition (first: 1 LEFT, 1 + L RIGHT) with the gold label if it is
        legal (the root label only to ROOT and there always), else the best-scored
        legal one."""
        cdef int k, best = -1, root = self.root_label
        if root >= 0 and to_root:
            return first + root
        if root < 0 or gold != root:
            return first + gold
        for k in range(self.n_labels):
            if k != root and (best < 0 or row[first + k] > row[best]):
                best = first + k
        return best

    def _explore_scratch(self, const int32_t[::1] gold_head, const int64_t[::1] first_row,
                         int32_t[:, ::1] out_idx, int32_t[::1] out_y, int threads):
        """explore's and explore_forced's checks of their arrays, and their per-thread
        work space (arc_loss's, for the longest sentence; made on first use)."""
        cdef Py_ssize_t r, n_max
        cdef int32_t i
        if gold_head.shape[0] != self.head.shape[0] or first_row.shape[0] != self.length.shape[0] \
                or out_idx.shape[1] != self.n_features:
            raise ValueError("gold arrays, first_row or out_idx do not fit the batch")
        for r in range(self.n_active):
            i = self.active[r]
            if first_row[i] < 0 or first_row[i] + 2 * self.length[i] > out_idx.shape[0] \
                    or first_row[i] + 2 * self.length[i] > out_y.shape[0]:
                raise ValueError(f"sentence {i}'s rows do not fit in out_idx and out_y")
        if self.scratch is None or self.scratch.shape[0] < threads:
            n_max = np.asarray(self.length).max(initial=0)
            self.scratch = np.empty((threads, 4 * (n_max + 2) + 2 * (n_max + 1) * n_max + 8),
                                    np.int32)
        return self.scratch

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def explore_forced(self, const int32_t[::1] gold_head, const int64_t[::1] first_row,
                       int32_t[:, ::1] out_idx, int32_t[::1] out_y, int n_threads=1):
        """explore's steps for the forced states (_forced: one legal transition), with
        no scores: each unfinished sentence's forced states written (features, and
        the forced move as target) and their moves applied, until it reaches a choice
        or is done; returns how many remain. Whatever the scores, such a state's
        target and the move followed are its one legal transition, and explore's
        coins are drawn per sentence and move, so the instances are those of explore
        alone, with fewer rows to score (17% of EWT's gold states are forced).
        Arrays as explore's."""
        cdef Py_ssize_t r, f
        cdef int32_t i, t, tid
        cdef int64_t at
        cdef int64_t* feats
        cdef int32_t threads = max(1, n_threads)
        cdef int32_t[:, ::1] scratch = self._explore_scratch(gold_head, first_row, out_idx,
                                                             out_y, threads)
        cdef int64_t[:, ::1] rows = np.empty((threads, self.n_features), np.int64)
        with nogil:
            for r in prange(self.n_active, num_threads=threads, schedule='static'):
                i = self.active[r]
                tid = threadid()
                feats = &rows[tid, 0]
                t = self._forced(i)
                while t >= 0:
                    at = first_row[i] + self.n_moves[i]
                    self._features(i, feats)
                    for f in range(self.n_features):
                        out_idx[at, f] = <int32_t> feats[f]
                    out_y[at] = t
                    self.loss_bound[i] = self._loss_after(i, 0 if t == 0 else 2, &gold_head[0],
                                                          &scratch[tid, 0])
                    self._apply(i, t)
                    t = self._forced(i)
            self._keep_unfinished()
        return self.n_active

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def explore(self, const floating[:, ::1] scores, const int64_t[:, ::1] rows,
                const int32_t[::1] gold_head, const int32_t[::1] gold_label,
                const int64_t[::1] first_row, int32_t[:, ::1] out_idx, int32_t[::1] out_y,
                double follow, uint64_t seed, int n_threads=1):
        """One step of training with exploration (Goldberg & Nivre 2012), for every
        unfinished sentence: its state's features (row r of rows, as features()
        wrote them) and the dynamic oracle's target (the zero-cost transition the
        model scores highest) go to row first_row[i] + (moves so far) of out_idx
        and out_y; then the sentence follows the model's best legal transition with
        probability follow, else the target. Returns how many remain.

        IN scores: the model's scores of the rows (no dropout); gold_head,
        gold_label: as static_oracle's (projective trees). The coin of sentence i's
        k-th move is a hash of (seed, i, k): the same for any thread count."""
        cdef Py_ssize_t r, f
        cdef int32_t i, t, tid, m
        cdef int32_t* after
        cdef int64_t at
        cdef uint64_t z
        cdef int32_t threads = max(1, n_threads)
        if scores.shape[0] < self.n_active or scores.shape[1] != 1 + 2 * self.n_labels \
                or rows.shape[0] < self.n_active or rows.shape[1] != self.n_features:
            raise ValueError("scores and rows must have a row for each unfinished sentence")
        if gold_label.shape[0] != self.head.shape[0]:
            raise ValueError("gold arrays, first_row or out_idx do not fit the batch")
        cdef int32_t[:, ::1] scratch = self._explore_scratch(gold_head, first_row, out_idx,
                                                             out_y, threads)
        with nogil:
            for r in prange(self.n_active, num_threads=threads, schedule='static'):
                i = self.active[r]
                tid = threadid()
                after = &scratch[tid, scratch.shape[1] - 3]   # (past what arc_loss uses)
                t = self._dynamic_target(i, &scores[r, 0], &gold_head[0], &gold_label[0],
                                         &scratch[tid, 0], self.loss_bound[i], after)
                at = first_row[i] + self.n_moves[i]
                for f in range(self.n_features):
                    out_idx[at, f] = <int32_t> rows[r, f]
                out_y[at] = t
                z = seed + <uint64_t> i * 0x9E3779B97F4A7C15ULL \
                    + <uint64_t> self.n_moves[i] * 0xBF58476D1CE4E5B9ULL
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL     # splitmix64's finalizer
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
                z = z ^ (z >> 31)
                if <double> (z >> 11) * (1.0 / 9007199254740992.0) < follow:
                    t = self._best(i, &scores[r, 0])
                m = 0 if t == 0 else (1 if t <= self.n_labels else 2)
                if after[m] < 0:
                    after[m] = self._loss_after(i, m, &gold_head[0], &scratch[tid, 0])
                self.loss_bound[i] = after[m]
                self._apply(i, t)
            self._keep_unfinished()
        return self.n_active

    def result_arrays(self):
        """(heads, label indices) of every sentence's words 1..n, one after another
        (int32 arrays; ROOT's positions left out)."""
        words = np.ones(len(self.head), bool)
        words[np.asarray(self.start)[:-1]] = False
        return np.asarray(self.head)[words], np.asarray(self.label)[words]

    def result(self):
        """(heads, label indices) per sentence, its words 1..n."""
        out = []
        head, label = np.asarray(self.head), np.asarray(self.label)
        for i in range(len(self.length)):
            a, b = self.start[i] + 1, self.start[i] + 1 + self.length[i]
            out.append((head[a:b].tolist(), label[a:b].tolist()))
        return out
