"""Pseudo-projective parsing (fastgrad/parser/projectivize.py)."""

import numpy as np
import pytest

from fastgrad._arc_standard import projective_trees
from fastgrad.parser import transitions as T
from fastgrad.parser.projectivize import Lowering, lift, lower, projectivize_trees
from fastgrad.parser.vocab import Vocabulary

# "A hearing is scheduled on the issue today": "on the issue" hangs from "hearing"
# across "is scheduled" (the classic non-projective English example).
HEARING = T.Tree(words="A hearing is scheduled on the issue today .".split(),
                 tags=["DET", "NOUN", "AUX", "VERB", "ADP", "DET", "NOUN", "NOUN", "PUNCT"],
                 heads=[2, 4, 4, 0, 7, 7, 2, 4, 4],
                 labels=["det", "nsubj", "aux", "root", "case", "det", "nmod", "obl",
                         "punct"])
# two crossing arcs inside one subtree, and a lift that must go up twice
DEEP = T.Tree(words=list("abcdefg"), tags=["X"] * 7, heads=[0, 4, 1, 1, 2, 3, 3],
              labels=["root", "x", "y", "z", "u", "v", "w"])
CROSSING = T.Tree(words=list("abcd"), tags=["X"] * 4, heads=[3, 4, 0, 3],
                  labels=["a", "b", "root", "c"])


@pytest.mark.parametrize("tree", [HEARING, DEEP, CROSSING])
def test_lift_makes_projective_and_lower_undoes_it(tree):
    assert not T.is_projective(tree.heads)
    heads, labels, lifts = lift(tree.heads, tree.labels)
    assert lifts >= 1 and T.is_projective(heads)
    assert sum("||" in lab for lab in labels) >= 1
    assert lower(heads, labels) == (list(tree.heads), list(tree.labels))


def test_the_lift_is_the_shortest_arc_to_the_grandparent():
    heads, labels, lifts = lift(HEARING.heads, HEARING.labels)
    assert lifts == 1 and heads[6] == 4 and labels[6] == "nmod||nsubj"
    assert heads[:6] + heads[7:] == HEARING.heads[:6] + HEARING.heads[7:]


@pytest.mark.parametrize("tree", [HEARING, DEEP, CROSSING])
def test_gold_sequence_of_the_lifted_tree_rebuilds_the_gold_tree(tree):
    (lifted,), which = projectivize_trees([tree], [False], min_count=1)
    assert which == [0]
    vocab = Vocabulary([lifted], min_count=1)
    _, moves, state = T.gold_sequence(lifted, vocab)     # the Python twin
    data = T.make_instances([lifted], vocab)             # the C oracle
    assert data.n_skipped == 0 and data.y.tolist() == moves
    parsed = [vocab.labels[k] for k in state.labels[1:]]
    assert lower(state.heads[1:], parsed) == (list(tree.heads), list(tree.labels))
    lowering = Lowering(vocab.labels)
    heads = lowering(state.heads[1:], state.labels[1:], [len(tree.words)])
    assert heads.tolist() == list(tree.heads)
    assert [lowering.plain_names[k] for k in state.labels[1:]] == list(tree.labels)


def test_rare_decorations_keep_their_plain_label_and_the_lift():
    trees = [HEARING, HEARING, T.Tree(*DEEP[:4])]
    out, which = projectivize_trees(trees, [False] * 3, min_count=2)
    assert which == [0, 1, 2]
    assert out[0].labels[6] == "nmod||nsubj"          # seen twice: kept
    assert all("||" not in lab for lab in out[2].labels) and T.is_projective(out[2].heads)


def test_lowering_searches_below_the_head_only_outside_its_own_subtree():
    # word 3 says its head is an "obj" below word 1; the only "obj" (4) is its own child
    heads, labels = lower([0, 1, 1, 3], ["root", "x", "y||obj", "obj"])
    assert heads == [0, 1, 1, 3] and labels == ["root", "x", "y", "obj"]
    # the breadth-first search takes the nearest level first, left to right
    heads, _ = lower([0, 1, 1, 2, 3, 1], ["root", "a", "obj", "obj", "b", "c||obj"])
    assert heads[5] == 3


def test_lowering_arrays_equals_lowering_each_sentence():
    labels = ["root", "x", "y||x", "z||root"]
    lowering = Lowering(labels)
    sentences = [([0, 1, 1], [0, 1, 2]), ([2, 0, 2, 2], [1, 0, 3, 1]), ([0], [0])]
    heads = np.concatenate([h for h, _ in sentences])
    ids = np.concatenate([k for _, k in sentences])
    got = lowering(heads, ids, [len(h) for h, _ in sentences])
    want = sum((lower(h, [labels[k] for k in ks])[0] for h, ks in sentences), [])
    assert got.tolist() == want
    assert lowering.plain_names == ["root", "x", "y", "z"]
    off = Lowering(labels, enabled=False)
    assert off(heads, ids, [3, 4, 1]).tolist() == heads.tolist() and off.plain_names == labels


def test_c_projectivity_equals_the_python_test_on_the_treebank():
    from fastgrad.examples.parser import load_splits

    trees = load_splits()["train"]
    heads = np.array([h for t in trees for h in t.heads], np.int32)
    lengths = np.array([len(t.heads) for t in trees], np.int32)
    got = projective_trees(heads, lengths)
    want = np.array([T.is_projective(t.heads) for t in trees])
    assert np.array_equal(got, want) and (~want).sum() > 50
    out, which = projectivize_trees(trees, got, min_count=1)
    assert sorted(which) == np.flatnonzero(~want).tolist()
    assert all(T.is_projective(out[k].heads) for k in which)
    recovered = sum(lower(out[k].heads, out[k].labels) == (list(trees[k].heads),
                                                            list(trees[k].labels))
                    for k in which)
    assert recovered >= 0.9 * len(which)
    with pytest.raises(ValueError, match="lengths"):
        projective_trees(heads, lengths[:-1])
