"""Pseudo-projective parsing (Nivre & Nilsson 2005, the HEAD encoding): train on
every tree, output non-projective ones.

Arc-standard builds projective trees only. Before training, every
non-projective tree is *lifted*: while some arc crosses another, its shortest
non-projective arc (ties: the leftmost dependent) moves up, the dependent
reattached to its head's head, until the tree is projective. A lifted word's
label records the label of its original head: ``obl||nsubj`` is an ``obl``
whose true head is an ``nsubj`` somewhere below its current head. After
parsing, *lowering* undoes it: for each decorated word, a breadth-first search
below its current head (top-down, left to right, never inside the word's own
subtree) takes the first word whose label (undecorated) is the recorded one as
its head; if none is found the word stays where it is. The decoration is
dropped either way, so no ``||`` reaches an output file.

Heads here are 1-based per sentence (0: ROOT), as in CoNLL-U. An arc h → d is
non-projective when a word strictly between h and d is not a descendant of h.
A single-rooted tree's arc from ROOT is never non-projective, so a lift never
reaches ROOT.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["SEPARATOR", "lift", "lower", "projectivize_trees", "Lowering"]

SEPARATOR = "||"


def _nonprojective_arcs(heads) -> list:
    """The dependents (1-based) of the non-projective arcs."""
    n = len(heads)
    out = []
    for d in range(1, n + 1):
        h = heads[d - 1]
        for k in range(min(h, d) + 1, max(h, d)):
            a = k   # is h an ancestor of k?
            while a != 0 and a != h:
                a = heads[a - 1]
            if a != h:
                out.append(d)
                break
    return out


def lift(heads, labels):
    """A projective tree from any tree (1-based heads, 0 = ROOT; one label per
    word): (heads, labels, number of lifts); labels of lifted words decorated."""
    heads, labels, lifts = list(heads), list(labels), 0
    while True:
        arcs = _nonprojective_arcs(heads)
        if not arcs:
            return heads, labels, lifts
        d = min(arcs, key=lambda d: (abs(heads[d - 1] - d), d))
        h = heads[d - 1]
        if SEPARATOR not in labels[d - 1]:   # record the original head's label once
            labels[d - 1] = f"{labels[d - 1]}{SEPARATOR}{_plain(labels[h - 1])}"
        heads[d - 1] = heads[h - 1]
        lifts += 1


def _plain(label: str) -> str:
    return label.split(SEPARATOR, 1)[0]


def lower(heads, labels):
    """Undo lift on a parse (lists, 1-based heads): each decorated word moved
    under the first word, breadth-first below its head and outside its own
    subtree, whose label is the recorded one; every decoration dropped."""
    heads, labels = list(heads), list(labels)
    n = len(heads)
    children = [[] for _ in range(n + 1)]
    for d in range(1, n + 1):
        children[heads[d - 1]].append(d)
    for d in range(1, n + 1):
        if SEPARATOR not in labels[d - 1]:
            continue
        label, wanted = labels[d - 1].split(SEPARATOR, 1)
        wanted = _plain(wanted)
        queue, found, at = list(children[heads[d - 1]]), None, 0
        while at < len(queue):
            c = queue[at]
            at += 1
            if c == d:
                continue                      # not inside its own subtree
            if _plain(labels[c - 1]) == wanted:
                found = c
                break
            queue += children[c]
        if found is not None:
            children[heads[d - 1]].remove(d)
            children[found].append(d)
            children[found].sort()
            heads[d - 1] = found
        labels[d - 1] = label
    return heads, labels


def projectivize_trees(trees, projective, min_count: int = 10):
    """Trees (transitions.Tree) with the non-projective ones lifted (projective: one
    bool per tree, from the C batch's test); a decorated label seen fewer than
    min_count times keeps only its plain part (the lift stays: the tree is still
    projective), so rare decorations add no transitions. Returns (trees, lifted)."""
    out, lifted = list(trees), []
    for k in np.flatnonzero(~np.asarray(projective, bool)).tolist():
        t = trees[k]
        heads, labels, _ = lift(t.heads, t.labels)
        out[k] = t._replace(heads=heads, labels=labels)
        lifted.append(k)
    counts = Counter(lab for k in lifted for lab in out[k].labels if SEPARATOR in lab)
    for k in lifted:
        labels = [lab if counts[lab] >= min_count or SEPARATOR not in lab else _plain(lab)
                  for lab in out[k].labels]
        out[k] = out[k]._replace(labels=labels)
    return out, lifted


class Lowering:
    """lower() on a parser's output arrays: heads 1-based per sentence, label indices
    into labels (some of them decorated), sentences of lengths words one after
    another. plain_names: what each label index is written as (decoration dropped)."""

    def __init__(self, labels, enabled: bool = True):
        """enabled False: labels are taken as they are (a model trained without lifts)."""
        self.labels = list(labels)
        self.decorated = np.array([enabled and SEPARATOR in lab for lab in self.labels], bool)
        self.plain_names = [_plain(lab) if enabled else lab for lab in self.labels]

    def __call__(self, heads, labels, lengths) -> np.ndarray:
        """The heads with every decorated word lowered (a new array; write the labels
        by plain_names)."""
        heads = np.array(heads, np.int32)
        labels = np.asarray(labels)
        marked = np.flatnonzero(self.decorated[labels]) if self.decorated.any() else []
        if len(marked):
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            for s in np.unique(np.searchsorted(starts, marked, side="right") - 1).tolist():
                a, b = int(starts[s]), int(starts[s] + lengths[s])
                heads[a:b] = lower(heads[a:b].tolist(),
                                   [self.labels[k] for k in labels[a:b].tolist()])[0]
        return heads
