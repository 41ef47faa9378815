"""The arc-standard transition system, its static oracle, its dynamic oracle
(Goldberg, Sartorio & Satta's table: arc_loss, move_losses) and training with
exploration, Chen & Manning's features (48 with UPOS alone, 18 more per further
tag column), and greedy batched decoding. The C batch (fastgrad/_arc_standard.pyx)
does all of it for training and parsing; the functions here are its readable
twins, which the tests compare it with.

A sentence here is a Tree: its words, tags, heads (1-based, 0 = root) and labels.
Non-projective trees have no arc-standard derivation: make_instances skips them
and counts them (training lifts them first: fastgrad.parser.projectivize).
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import numpy as np

from fastgrad.parser.vocab import NULL, Vocabulary

__all__ = ["Tree", "N_FEATURES", "State", "oracle", "features", "is_projective",
           "gold_sequence", "Instances", "make_instances", "make_instances_in_python",
           "Exploration", "explore_instances", "explore_in_python", "dynamic_target", "parse",
           "parse_encoded", "parse_in_python", "root_label", "right_stack", "arc_loss",
           "move_losses"]


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


def right_stack(stack, next_word: int, n: int, gold_heads) -> list:
    """The buffer words (next_word..n) a dynamic oracle must consider: those whose
    gold head lies left of the buffer, or with a gold child on the stack or among
    the words kept before them. Every other buffer word's gold arcs join buffer
    words only, and building them costs nothing (Goldberg, Sartorio & Satta 2014).
    A word already attached is no child that counts: its head is fixed, and a
    buffer word kept for it alone would join the stack's tree for nothing (which
    overstated the loss of some states: tests/test_parser.py's brute force).
    stack: positions from ROOT (0) up; gold_heads: 1-based with a dummy at 0."""
    marked = [False] * (n + 1)
    for c in stack[1:]:
        if gold_heads[c] >= next_word:
            marked[gold_heads[c]] = True
    kept = []
    for b in range(next_word, n + 1):
        if gold_heads[b] < next_word or marked[b]:
            kept.append(b)
            if gold_heads[b] > b:
                marked[gold_heads[b]] = True
    return kept


def arc_loss(stack, next_word: int, n: int, gold_heads) -> int:
    """The fewest wrong heads, among the words not yet attached, of any tree an
    arc-standard derivation can still reach (single root): the tabular dynamic
    oracle of Goldberg, Sartorio & Satta (TACL 2014). stack: positions from the
    bottom (ROOT, 0) to the top; the buffer is next_word..n.

    Span (i, j): the top i stack words and the first j right-stack words, reduced
    to one tree; table[i, j][h]: its fewest wrong heads with h its head. A span
    grows by the stack word below it (which heads the span's head, or becomes its
    dependent) or by the next right-stack word (likewise); ROOT takes the final
    span's head as its one dependent."""
    above = stack[:0:-1]                   # the stack's words, top first
    right = right_stack(stack, next_word, n, gold_heads)
    P, Q = len(above), len(right)
    if P + Q == 0:
        return 0
    table = {(1, 0): {above[0]: 0}} if P else {}
    if Q:
        table[(0, 1)] = {right[0]: 0}
    for total in range(2, P + Q + 1):
        for i in range(max(0, total - Q), min(P, total) + 1):
            j, cell = total - i, {}
            if i and (i - 1, j) in table:  # the stack word below joins, on the left
                u = above[i - 1]
                for h, c in table[(i - 1, j)].items():
                    cell[h] = min(cell.get(h, n + 1), c + (gold_heads[u] != h))
                    cell[u] = min(cell.get(u, n + 1), c + (gold_heads[h] != u))
            if j and (i, j - 1) in table:  # the next right-stack word joins, on the right
                v = right[j - 1]
                for h, c in table[(i, j - 1)].items():
                    cell[h] = min(cell.get(h, n + 1), c + (gold_heads[v] != h))
                    cell[v] = min(cell.get(v, n + 1), c + (gold_heads[h] != v))
            table[(i, j)] = cell
    return min(c + (gold_heads[h] != 0) for h, c in table[(P, Q)].items())


def move_losses(state: State, gold_heads) -> list:
    """[SHIFT, LEFT, RIGHT]: the fewest wrong heads of any tree reachable after each
    structural move (None where illegal), the move's own arc included. The
    zero-cost moves are those whose loss equals arc_loss of the state."""
    stack, nxt, n = state.stack, state.next, state.n
    out = [None, None, None]
    if nxt <= n:
        out[0] = arc_loss(stack + [nxt], nxt + 1, n, gold_heads)
    if len(stack) > 2:
        s1, s2 = stack[-1], stack[-2]
        out[1] = (gold_heads[s2] != s1) + arc_loss(stack[:-2] + [s1], nxt, n, gold_heads)
    if len(stack) > 2 or (len(stack) == 2 and nxt > n):
        s1, s2 = stack[-1], stack[-2]
        out[2] = (gold_heads[s1] != s2) + arc_loss(stack[:-1], nxt, n, gold_heads)
    return out


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


def _gold_arrays(sentences, vocab: Vocabulary, n_positions: int):
    """Gold heads and label indices per position (encode_all's layout, ROOT's
    entries 0)."""
    heads = np.zeros(n_positions, np.int32)
    labels = np.zeros(n_positions, np.int32)
    at, index = 0, vocab.label_index
    for s in sentences:
        n = len(s.words)
        heads[at + 1:at + 1 + n] = s.heads
        labels[at + 1:at + 1 + n] = [index.get(lab, 0) for lab in s.labels]
        at += n + 1
    return heads, labels


def _projective(heads, lengths) -> np.ndarray:
    """Per sentence, whether its gold tree is projective (is_projective's test, in C);
    heads in the batch layout of _gold_arrays (each sentence's ROOT position first)."""
    from fastgrad._arc_standard import projective_trees

    roots = np.cumsum(lengths + 1) - (lengths + 1)
    return projective_trees(np.delete(heads, roots), lengths)


def make_instances(sentences, vocab: Vocabulary, n_threads: int | None = None) -> Instances:
    """The static oracle's states of every projective sentence, their features and
    moves, in sentence order (non-projective ones skipped and counted): built by
    the C transition system (fastgrad._arc_standard), parallel over sentences;
    make_instances_in_python is its readable twin, equal row for row."""
    from fastgrad._threads import threads_for_step

    word, tag, lengths = vocab.encode_all(sentences)
    heads, labels = _gold_arrays(sentences, vocab, len(word))
    batch = _batch(vocab, word, tag, lengths)
    projective = _projective(heads, lengths)
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


class Exploration:
    """The training set made ready once for every exploring epoch: its projective
    sentences encoded (only they have a zero-cost path), their gold arrays, each
    sentence's first row (2n states per sentence, as make_instances), and the
    output arrays that each run overwrites."""

    def __init__(self, sentences, vocab: Vocabulary):
        word, tag, lengths = vocab.encode_all(sentences)
        heads, labels = _gold_arrays(sentences, vocab, len(word))
        roots = np.cumsum(lengths + 1) - (lengths + 1)          # ROOT's positions
        keep = np.flatnonzero(_projective(heads, lengths))
        if len(keep) < len(sentences):
            positions = np.concatenate([np.arange(roots[k], roots[k] + lengths[k] + 1)
                                        for k in keep]) if len(keep) else np.zeros(0, np.int64)
            word, heads, labels = word[positions], heads[positions], labels[positions]
            k = len(vocab.tag_columns)
            tag = tag.reshape(-1, k)[positions].reshape(-1)
            lengths = lengths[keep]
        self.vocab, self.word, self.tag, self.lengths = vocab, word, tag, lengths
        self.heads, self.labels = heads, labels
        states = 2 * lengths.astype(np.int64)
        self.first_row = np.cumsum(states) - states
        total = int(states.sum())
        self.instances = Instances(np.empty((total, vocab.n_features), np.int32),
                                   np.empty(total, np.int32), len(keep),
                                   len(sentences) - len(keep))

    def reuse(self, instances: Instances) -> None:
        """Write every later run into instances' arrays where they have this
        exploration's shapes (make_instances' of the same sentences do): a caller
        done with the static oracle's rows saves a second set of that size, and
        touching fresh pages (137 MB for EWT) in the first run."""
        idx, y = self.instances.idx, self.instances.y
        if instances.idx.shape == idx.shape and instances.idx.dtype == idx.dtype \
                and instances.idx.flags.c_contiguous and instances.y.shape == y.shape \
                and instances.y.dtype == y.dtype and instances.y.flags.c_contiguous:
            self.instances = self.instances._replace(idx=instances.idx, y=instances.y)

    def run(self, predictor, follow: float, seed: int, n_threads: int | None = None) -> Instances:
        """Every sentence parsed greedily by predictor, following the model's best
        legal move with probability follow and the dynamic oracle's otherwise; each
        visited state's features and its dynamic-oracle target (the zero-cost
        transition the model scores highest: arc_loss, move_losses) written into
        self.instances, which is returned."""
        from fastgrad._threads import threads_for_step

        threads = threads_for_step() if n_threads is None else n_threads
        out = self.instances
        batch = _batch(self.vocab, self.word, self.tag, self.lengths)
        rows = np.zeros((len(self.lengths), self.vocab.n_features), np.int64)
        n = batch.explore_forced(self.heads, self.first_row, out.idx, out.y, threads)
        while n:
            batch.features(rows, threads)
            scores = np.ascontiguousarray(predictor(rows[:n]))
            n = batch.explore(scores, rows, self.heads, self.labels, self.first_row, out.idx,
                              out.y, float(follow), seed % 2**64, threads)
            n = batch.explore_forced(self.heads, self.first_row, out.idx, out.y, threads)
        return out


def explore_instances(predictor, sentences, vocab: Vocabulary, follow: float, seed: int,
                      n_threads: int | None = None) -> Instances:
    """Training with exploration's states (Goldberg & Nivre 2012) for every projective
    sentence, in sentence order (Exploration(...).run; training keeps one
    Exploration for all its epochs)."""
    return Exploration(sentences, vocab).run(predictor, follow, seed, n_threads)


def _coin(seed: int, sentence: int, move: int) -> float:
    """explore's uniform draw for a sentence's move (splitmix64 of the three)."""
    mask = 2**64 - 1
    z = (seed + sentence * 0x9E3779B97F4A7C15 + move * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return ((z ^ (z >> 31)) >> 11) / 2.0**53


def dynamic_target(state: State, gold_heads, gold_labels, scores, n_labels: int,
                   root: int = -1) -> int:
    """The zero-cost transition with the highest score (the first on ties); an arc
    carries its dependent's gold label where legal (gold_* 1-based, dummy at 0)."""
    def arc(first, gold, to_root):
        if root >= 0 and to_root:
            return first + root
        if root < 0 or gold != root:
            return first + gold
        return first + max((k for k in range(n_labels) if k != root),
                           key=lambda k: (scores[first + k], -k))

    losses = move_losses(state, gold_heads)
    least = min(x for x in losses if x is not None)
    candidates = []
    if losses[0] == least:
        candidates.append(0)
    if losses[1] == least:
        candidates.append(arc(1, gold_labels[state.stack[-2]], False))
    if losses[2] == least:
        candidates.append(arc(1 + n_labels, gold_labels[state.stack[-1]],
                              len(state.stack) == 2))
    best = candidates[0]
    for t in candidates[1:]:
        if scores[t] > scores[best]:
            best = t
    return best


def explore_in_python(predictor, sentences, vocab: Vocabulary, follow: float,
                      seed: int) -> Instances:
    """explore_instances, one State object per sentence (the readable twin)."""
    n_labels, root = len(vocab.labels), root_label(vocab)
    chosen = [s for s in sentences if is_projective(s.heads)]
    states = [State(len(s.words)) for s in chosen]
    golds = [([0] + list(s.heads), [0] + [vocab.label_index.get(lab, 0) for lab in s.labels])
             for s in chosen]
    encoded = [vocab.encode(s) for s in chosen]
    out_rows = [[None] * (2 * len(s.words)) for s in chosen]
    out_y = [[None] * (2 * len(s.words)) for s in chosen]
    moves = [0] * len(chosen)
    active = [i for i, s in enumerate(states) if not s.done()]
    while active:
        rows = np.zeros((len(active), vocab.n_features), np.int64)
        for r, i in enumerate(active):
            features(states[i], *encoded[i], vocab, rows[r])
        scores = predictor(rows)
        for r, i in enumerate(active):
            target = dynamic_target(states[i], *golds[i], scores[r], n_labels, root)
            out_rows[i][moves[i]], out_y[i][moves[i]] = rows[r].tolist(), target
            if _coin(seed, i, moves[i]) < follow:
                masked = np.where(states[i].legal(n_labels, root), scores[r], -np.inf)
                target = int(np.argmax(masked))
            states[i].apply(target, n_labels)
            moves[i] += 1
        active = [i for i in active if not states[i].done()]
    idx = np.array([row for rows in out_rows for row in rows], np.int32)
    return Instances(idx.reshape(-1, vocab.n_features), np.array(sum(out_y, []), np.int32),
                     len(chosen), len(sentences) - len(chosen))


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
                  n_threads: int | None = None, joint=None):
    """Greedy parses of encoded sentences (vocab.encode_all's or encode_chunk's
    arrays): the C batch after every sentence is done. predictor(idx) → scores
    (N, n_transitions); every unfinished sentence contributes one state to each
    call, except where its one legal move is forced (skip_forced). The states
    live in C (fastgrad._arc_standard), stepped all at once. joint: (tag tuple of
    every position, the tuple of no token) for a predictor of 48-id rows, each
    token's tag columns as one id (fastgrad/parser/joint_tags.py)."""
    from fastgrad._threads import threads_for_step

    batch = _batch(vocab, word, tag, lengths)
    threads = threads_for_step() if n_threads is None else n_threads
    rows = np.zeros((len(lengths), vocab.n_features if joint is None else 48), np.int64)
    n = batch.skip_forced(threads)
    while n:
        if joint is None:
            batch.features(rows, threads)
        else:
            batch.joint_features(rows, joint[0], joint[1], threads)
        batch.advance(np.ascontiguousarray(predictor(rows[:n])), threads)
        n = batch.skip_forced(threads)
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
