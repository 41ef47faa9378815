"""The arc-standard transition system, its static oracle, Chen & Manning's
features (48 with UPOS alone, 18 more per further tag column), and greedy
batched decoding.

A sentence here is a Tree: its words, tags, heads (1-based, 0 = root) and labels.
Non-projective trees have no arc-standard derivation: make_instances skips them
and counts them.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from fastgrad.parser.vocab import NULL, Vocabulary

__all__ = ["Tree", "N_FEATURES", "State", "oracle", "features", "is_projective",
           "gold_sequence", "Instances", "make_instances", "make_instances_in_python", "parse",
           "parse_encoded", "parse_in_python", "root_label"]


class Tree(NamedTuple):
    """One sentence; token i (1-based) is words[i-1], its head heads[i-1] (0 = root).

    tags: the first tag column (UPOS); extra_tags: one list per further column
    (XPOS, FEATS, ...), each value prefixed by its column's name."""

    words: list
    tags: list
    heads: list
    labels: list
    extra_tags: tuple = ()


def is_projective(heads) -> bool:
    """No two arcs cross (the root's arc from position 0 included)."""
    arcs = [(min(h, d), max(h, d)) for d, h in enumerate(heads, start=1)]
    for a, b in arcs:
        for c, e in arcs:
            if a < c < b < e:
                return False
    return True


N_FEATURES = 48   # with one tag column (UPOS), as in the paper; vocab.n_features in general


class State:
    """A parser configuration: stack, buffer position, the arcs built so far."""

    __slots__ = ("n", "stack", "next", "heads", "labels", "left", "right")

    def __init__(self, n_tokens: int):
        self.n = n_tokens                       # tokens 1..n, 0 is ROOT
        self.stack = [0]
        self.next = 1                           # the buffer is next..n
        self.heads = [-1] * (n_tokens + 1)
        self.labels = [-1] * (n_tokens + 1)     # label index of each attached token
        self.left: list[list[int]] = [[] for _ in range(n_tokens + 1)]   # sorted, left of it
        self.right: list[list[int]] = [[] for _ in range(n_tokens + 1)]  # sorted, right of it

    def done(self) -> bool:
        return self.next > self.n and len(self.stack) == 1

    def legal(self, n_labels: int, root_label: int = -1) -> np.ndarray:
        """Boolean mask over the transitions. root_label (>= 0): the label that the
        final RIGHT-ARC to ROOT must carry and no other arc may."""
        mask = np.zeros(1 + 2 * n_labels, bool)
        mask[0] = self.next <= self.n
        if len(self.stack) > 2:                  # LEFT-ARC: s2 is a word, not ROOT
            mask[1:1 + n_labels] = True
        if len(self.stack) > 2 or (len(self.stack) == 2 and self.next > self.n):
            mask[1 + n_labels:] = True           # RIGHT-ARC to ROOT only at the end
        if 0 <= root_label < n_labels:
            to_root = len(self.stack) == 2
            mask[1 + root_label] = False
            mask[1 + n_labels:] &= (np.arange(n_labels) == root_label) == to_root
        return mask

    def apply(self, transition: int, n_labels: int) -> None:
        if transition == 0:
            self.stack.append(self.next)
            self.next += 1
            return
        s1 = self.stack.pop()
        s2 = self.stack.pop()
        if transition <= n_labels:               # LEFT-ARC: s1 → s2
            head, dep, label = s1, s2, transition - 1
            bisect.insort(self.left[head], dep)
        else:                                    # RIGHT-ARC: s2 → s1
            head, dep, label = s2, s1, transition - 1 - n_labels
            bisect.insort(self.right[head], dep)
        self.heads[dep] = head
        self.labels[dep] = label
        self.stack.append(head)


def oracle(state: State, gold_heads, gold_labels, n_children, attached, n_labels) -> int:
    """The static arc-standard oracle: LEFT when s2's head is s1, RIGHT when s1's head
    is s2 and s1 has all its children, else SHIFT. gold_* are 1-based with a dummy 0."""
    if len(state.stack) >= 2:
        s1, s2 = state.stack[-1], state.stack[-2]
        if s2 != 0 and gold_heads[s2] == s1:
            return 1 + gold_labels[s2]
        if gold_heads[s1] == s2 and attached[s1] == n_children[s1]:
            return 1 + n_labels + gold_labels[s1]
    return 0


def features(state: State, words, tags, vocab: Vocabulary, out) -> None:
    """Chen & Manning's features of a state, written into out (a row of ids).

    Words of s1 s2 s3 b1 b2 b3, of lc1 rc1 lc2 rc2 of s1 and of s2, and of lc1(lc1)
    rc1(rc1) of s1 and of s2 (18); their tags, 18 per tag column (tags[c] is column
    c's ids per token); the labels of those 12 children: 48 with one tag column.
    """
    null_w, null_t = vocab.word_id[NULL], vocab.tag_id[NULL]
    null_l = vocab.label_id[NULL]
    label_base = vocab.n_words + vocab.n_tags + 2     # labels[k] is label_base + k
    stack, left, right = state.stack, state.left, state.right
    tokens = [stack[-1] if len(stack) > 0 else -1,
              stack[-2] if len(stack) > 1 else -1,
              stack[-3] if len(stack) > 2 else -1]
    for k in range(3):
        b = state.next + k
        tokens.append(b if b <= state.n else -1)
    children = []
    for s in tokens[:2]:
        if s < 0:
            children += [-1] * 6
            continue
        lc, rc = left[s], right[s]
        lc1 = lc[0] if lc else -1
        rc1 = rc[-1] if rc else -1
        children += [lc1, rc1, lc[1] if len(lc) > 1 else -1, rc[-2] if len(rc) > 1 else -1,
                     left[lc1][0] if lc1 >= 0 and left[lc1] else -1,
                     right[rc1][-1] if rc1 >= 0 and right[rc1] else -1]
    # order: s1 s2 s3 b1 b2 b3, then per s1 and s2: lc1 rc1 lc2 rc2 lc1lc1 rc1rc1
    tokens += children
    labels = state.labels
    label_slot = 18 + 18 * len(tags)
    for i, t in enumerate(tokens):
        out[i] = words[t] if t >= 0 else null_w
        for c, column in enumerate(tags):
            out[18 + 18 * c + i] = column[t] if t >= 0 else null_t
    for i, t in enumerate(children):
        out[label_slot + i] = label_base + labels[t] if t >= 0 else null_l


class Instances(NamedTuple):
    idx: np.ndarray        # (n_states, vocab.n_features) feature ids
    y: np.ndarray          # (n_states,) gold transitions
    n_sentences: int
    n_skipped: int         # non-projective sentences


def gold_sequence(sentence: Tree, vocab: Vocabulary):
    """The oracle's transitions for a projective sentence, with the states' features."""
    n = len(sentence.words)
    n_labels = len(vocab.labels)
    heads = [0] + sentence.heads
    labels = [0] + [vocab.label_index.get(lab, 0) for lab in sentence.labels]
    n_children = [0] * (n + 1)
    for h in sentence.heads:
        n_children[h] += 1
    attached = [0] * (n + 1)
    words, tags = vocab.encode(sentence)
    state = State(n)
    rows, moves = [], []
    while not state.done():
        row = [0] * vocab.n_features
        features(state, words, tags, vocab, row)
        t = oracle(state, heads, labels, n_children, attached, n_labels)
        rows.append(row)
        moves.append(t)
        if t != 0:
            attached[state.stack[-1] if t <= n_labels else state.stack[-2]] += 1
        state.apply(t, n_labels)
    return rows, moves, state


def make_instances(sentences, vocab: Vocabulary, n_threads: int | None = None) -> Instances:
    """The static oracle's states of every projective sentence, their features and
    moves, in sentence order (non-projective ones skipped and counted): built by
    the C transition system (fastgrad._arc_standard), parallel over sentences;
    make_instances_in_python is its readable twin, equal row for row."""
    from fastgrad._threads import threads_for_step

    word, tag, lengths = vocab.encode_all(sentences)
    heads = np.zeros(len(word), np.int32)
    labels = np.zeros(len(word), np.int32)
    at, index = 0, vocab.label_index
    for s in sentences:
        n = len(s.words)
        heads[at + 1:at + 1 + n] = s.heads
        labels[at + 1:at + 1 + n] = [index.get(lab, 0) for lab in s.labels]
        at += n + 1
    batch = _batch(vocab, word, tag, lengths)
    projective = batch.projective(heads)
    states = np.where(projective, 2 * lengths, 0)
    first_row = np.where(projective, np.cumsum(states) - states, -1).astype(np.int64)
    total = int(states.sum())
    idx = np.empty((total, vocab.n_features), np.int32)
    y = np.empty(total, np.int32)
    failed = batch.static_oracle(
        heads, labels, first_row, idx, y, threads_for_step() if n_threads is None else n_threads)
    if len(failed):   # is_projective said yes: cannot happen
        raise RuntimeError(f"the static oracle failed on sentence {failed[0]}")
    n_used = int(projective.sum())
    return Instances(idx, y, n_used, len(sentences) - n_used)


def make_instances_in_python(sentences, vocab: Vocabulary) -> Instances:
    """make_instances, one State object per sentence (the readable twin)."""
    rows, moves, n_used, n_skipped = [], [], 0, 0
    for sentence in sentences:
        if not is_projective(sentence.heads):
            n_skipped += 1
            continue
        r, m, _ = gold_sequence(sentence, vocab)
        rows += r
        moves += m
        n_used += 1
    return Instances(np.array(rows, np.int32), np.array(moves, np.int32), n_used, n_skipped)


def _batch(vocab: Vocabulary, word, tag, lengths):
    from fastgrad._arc_standard import ArcStandardBatch

    return ArcStandardBatch(word, tag, lengths, len(vocab.tag_columns), len(vocab.labels),
                            vocab.word_id[NULL], vocab.tag_id[NULL], vocab.label_id[NULL],
                            vocab.n_words + vocab.n_tags + 2, root_label(vocab))


def root_label(vocab: Vocabulary) -> int:
    """The index of UD's ``root`` label, which greedy decoding gives to the word
    attached to ROOT and to no other (-1 when the labels have no ``root``)."""
    return vocab.label_index.get("root", -1)


def parse_encoded(predictor, vocab: Vocabulary, word, tag, lengths,
                  n_threads: int | None = None):
    """Greedy parses of encoded sentences (vocab.encode_all's or encode_chunk's
    arrays): the C batch after every sentence is done. predictor(idx) → scores
    (N, n_transitions); every unfinished sentence contributes one state to each
    call. The states live in C (fastgrad._arc_standard), stepped all at once."""
    from fastgrad._threads import threads_for_step

    batch = _batch(vocab, word, tag, lengths)
    threads = threads_for_step() if n_threads is None else n_threads
    rows = np.zeros((len(lengths), vocab.n_features), np.int64)
    n = batch.n_unfinished
    while n:
        batch.features(rows, threads)
        n = batch.advance(np.ascontiguousarray(predictor(rows[:n])), threads)
    return batch


def parse(predictor, sentences, vocab: Vocabulary, n_threads: int | None = None):
    """Greedy parses: (heads, label indices) per sentence (see parse_encoded)."""
    return parse_encoded(predictor, vocab, *vocab.encode_all(sentences), n_threads).result()


def parse_in_python(predictor, sentences, vocab: Vocabulary):
    """parse(), one State object per sentence: the readable twin the tests check it by."""
    n_labels, root = len(vocab.labels), root_label(vocab)
    states = [State(len(s.words)) for s in sentences]
    encoded = [vocab.encode(s) for s in sentences]
    active = [i for i, s in enumerate(states) if not s.done()]
    batch = np.zeros((len(sentences), vocab.n_features), np.int64)
    while active:
        for row, i in enumerate(active):
            words, tags = encoded[i]
            features(states[i], words, tags, vocab, batch[row])
        proba = predictor(batch[:len(active)])
        for row, i in enumerate(active):
            scores = np.where(states[i].legal(n_labels, root), proba[row], -1.0)
            states[i].apply(int(np.argmax(scores)), n_labels)
        active = [i for i in active if not states[i].done()]
    return [(s.heads[1:], s.labels[1:]) for s in states]
