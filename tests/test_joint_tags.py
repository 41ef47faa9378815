"""fastgrad/parser/joint_tags.py: a token's tag columns as one cached row in the parse."""

import numpy as np
import pytest

import fastgrad
from fastgrad.examples import parser as P
from fastgrad.parser import transitions
from fastgrad.parser.joint_tags import JointTags
from fastgrad.parser.vocab import NULL, Vocabulary

COLUMNS = ["upos", "xpos", "feats"]


def treebank(n_columns, seed=0, n_sentences=60):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(30)]
    trees = []
    for n in list(range(1, 8)) + list(rng.integers(1, 30, size=n_sentences)):
        extra = tuple([f"c{c}={v}" for v in rng.choice(["x", "y", "z", "q", "r"], n)]
                      for c in range(n_columns - 1))
        heads = [0] + [int(rng.integers(0, k + 1)) for k in range(1, n)]   # any tree
        trees.append(P.Tree(list(rng.choice(words, n)), list(rng.choice(["A", "B", "C"], n)),
                            heads, list(rng.choice(["nsubj", "obj", "root"], n)), extra))
    return trees, Vocabulary(trees, min_count=1, tag_columns=COLUMNS[:n_columns])


def model(vocab, dtype, hidden=24, seed=1):
    return fastgrad.init_params(vocab.size, vocab.n_features, 6, hidden, vocab.n_transitions,
                                dtype=dtype, seed=seed)


@pytest.mark.parametrize("n_columns", [2, 3])
def test_joint_rows_give_predict_proba_on_every_state_of_a_parse(dtype, n_columns):
    trees, vocab = treebank(n_columns)
    p = model(vocab, dtype)
    word, tag, lengths = vocab.encode_all(trees)
    joint = JointTags(p, vocab, vocab.tag_id[NULL])
    predict, tuples, no_token = joint.for_chunk(tag)
    batch = transitions._batch(vocab, word, tag, lengths)
    rows = np.zeros((len(lengths), vocab.n_features), np.int64)
    rows48 = np.zeros((len(lengths), 48), np.int64)
    n, steps = batch.n_unfinished, 0
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    while n:
        batch.features(rows, 2)
        batch.joint_features(rows48, tuples, no_token, 2)
        # the joint ids are the 84-id rows, each token's tag columns read as one tuple
        np.testing.assert_array_equal(rows48[:n, :18], rows[:n, :18])
        np.testing.assert_array_equal(rows48[:n, 36:], rows[:n, 18 + 18 * n_columns:])
        expected = fastgrad.predict_proba(p, rows[:n])
        np.testing.assert_allclose(predict(rows48[:n]), expected, rtol=tolerance,
                                   atol=tolerance)
        n = batch.advance(np.ascontiguousarray(expected), 2)
        steps += 1
    assert steps > 20


def test_a_parse_with_joint_rows_equals_the_84_slot_parse():
    trees, vocab = treebank(3, seed=2, n_sentences=200)
    p = model(vocab, np.float64, seed=4)
    encoded = vocab.encode_all(trees)
    predict, tuples, no_token = JointTags(p, vocab, vocab.tag_id[NULL]).for_chunk(encoded[1])
    joint = transitions.parse_encoded(predict, vocab, *encoded, joint=(tuples, no_token))
    plain = transitions.parse_encoded(fastgrad.precompute(p, vocab.rows_to_cache()).predict_proba,
                                      vocab, *encoded)
    for a, b in zip(joint.result_arrays(), plain.result_arrays()):
        np.testing.assert_array_equal(a, b)


def test_a_large_batch_stays_on_the_joint_rows():
    # from PLAIN_MIN_ROWS rows an ordinary cache hands over to predict_proba; this one
    # cannot (its tuple slots' W rows are zeros), so it must not
    from fastgrad._precompute import PLAIN_MIN_ROWS
    trees, vocab = treebank(3, seed=3, n_sentences=PLAIN_MIN_ROWS + 100)
    p = model(vocab, np.float64)
    word, tag, lengths = vocab.encode_all(trees)
    predict, tuples, no_token = JointTags(p, vocab, vocab.tag_id[NULL]).for_chunk(tag)
    batch = transitions._batch(vocab, word, tag, lengths)
    rows = np.zeros((len(lengths), vocab.n_features), np.int64)
    rows48 = np.zeros((len(lengths), 48), np.int64)
    n = batch.skip_forced(1)
    assert n >= PLAIN_MIN_ROWS
    batch.features(rows, 1)
    batch.joint_features(rows48, tuples, no_token, 1)
    np.testing.assert_allclose(predict(rows48[:n]), fastgrad.predict_proba(p, rows[:n]),
                               rtol=1e-12, atol=1e-12)


def test_more_tuples_than_ids_and_one_column():
    # a small vocabulary with many tag combinations: tuple ids past the model's ids
    trees, vocab = treebank(3, seed=5, n_sentences=300)
    encoded = vocab.encode_all(trees)
    n_tuples = len(np.unique(encoded[1].reshape(-1, 3), axis=0))
    assert n_tuples > vocab.size
    p = model(vocab, np.float64)
    predict, tuples, no_token = JointTags(p, vocab, vocab.tag_id[NULL]).for_chunk(encoded[1])
    assert tuples.max() >= vocab.size
    joint = transitions.parse_encoded(predict, vocab, *encoded, joint=(tuples, no_token))
    plain = transitions.parse_encoded(lambda x: fastgrad.predict_proba(p, x), vocab, *encoded)
    for a, b in zip(joint.result_arrays(), plain.result_arrays()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="two or more tag columns"):
        JointTags(p, treebank(1)[1], 0)


def test_a_cache_made_from_given_rows_refuses_refresh():
    trees, vocab = treebank(2)
    p = model(vocab, np.float32)
    predict, _, _ = JointTags(p, vocab, vocab.tag_id[NULL]).for_chunk(vocab.encode_all(trees)[1])
    with pytest.raises(ValueError, match="make it again"):
        predict.__self__.refresh()
