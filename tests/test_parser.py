"""The parser example: oracle, features, and a short training run on the treebank."""

import numpy as np
import pytest

import fastgrad
from fastgrad.examples import parser as P
from fastgrad.parser import transitions

JOHN = P.Tree(words=["John", "saw", "Mary", "."], tags=["NOUN", "VERB", "NOUN", "PUNCT"],
                  heads=[2, 0, 2, 2], labels=["nsubj", "root", "dobj", "p"])
NESTED = P.Tree(words=["the", "old", "man", "saw", "a", "dog", "today"],
                    tags=["DET", "ADJ", "NOUN", "VERB", "DET", "NOUN", "ADV"],
                    heads=[3, 3, 4, 0, 6, 4, 4], labels=["det", "amod", "nsubj", "root", "det",
                                                         "dobj", "advmod"])
CROSSING = P.Tree(words=list("abcd"), tags=["X"] * 4, heads=[3, 4, 0, 3],
                      labels=["l"] * 4)


def test_oracle_rebuilds_hand_made_trees():
    vocab = P.Vocabulary([JOHN, NESTED], min_count=1)
    for sentence in (JOHN, NESTED):
        _, moves, state = P.gold_sequence(sentence, vocab)
        assert len(moves) == 2 * len(sentence.words)
        assert state.heads[1:] == sentence.heads
        assert [vocab.labels[k] for k in state.labels[1:]] == sentence.labels
    _, moves, _ = P.gold_sequence(JOHN, vocab)
    n = len(vocab.labels)
    L = {lab: 1 + k for k, lab in enumerate(vocab.labels)}
    R = {lab: 1 + n + k for k, lab in enumerate(vocab.labels)}
    assert moves == [0, 0, L["nsubj"], 0, R["dobj"], 0, R["p"], R["root"]]


def test_projectivity():
    assert P.is_projective(JOHN.heads) and P.is_projective(NESTED.heads)
    assert not P.is_projective(CROSSING.heads)
    vocab = P.Vocabulary([JOHN, CROSSING], min_count=1)
    data = P.make_instances([JOHN, CROSSING], vocab)
    assert (data.n_sentences, data.n_skipped) == (1, 1) and len(data.y) == 8


def test_features_follow_the_template():
    vocab = P.Vocabulary([JOHN], min_count=1)
    words, tags = vocab.encode(JOHN)
    state = P.State(4)
    n = len(vocab.labels)
    for t in (0, 0, 1 + vocab.label_index["nsubj"], 0):   # SHIFT SHIFT LEFT(nsubj) SHIFT
        state.apply(t, n)
    assert state.stack == [0, 2, 3] and state.next == 4
    row = [0] * P.N_FEATURES
    P.features(state, words, tags, vocab, row)
    w, t, lab = vocab.word_id, vocab.tag_id, vocab.label_id
    null_w, null_t, null_l = w[P.NULL], t[P.NULL], lab[P.NULL]
    # s1 s2 s3 b1 b2 b3 = Mary saw ROOT . NULL NULL
    assert row[:6] == [w["Mary"], w["saw"], w[P.ROOT], w["."], null_w, null_w]
    assert row[18:24] == [t["NOUN"], t["VERB"], t[P.ROOT], t["PUNCT"], null_t, null_t]
    # s1's six children: none; s2's: lc1 = John, the rest none
    assert row[6:12] == [null_w] * 6 and row[12:18] == [w["John"]] + [null_w] * 5
    assert row[30] == t["NOUN"] and row[31:36] == [null_t] * 5
    assert row[36:48] == [null_l] * 6 + [lab["nsubj"]] + [null_l] * 5
    assert all(0 <= i < vocab.size for i in row)


def test_parse_and_scores_on_a_perfect_predictor():
    vocab = P.Vocabulary([JOHN, NESTED], min_count=1)
    golds = {id(s): P.gold_sequence(s, vocab)[1] for s in (JOHN, NESTED)}
    sentences = [JOHN, NESTED]
    counters = [0, 0]

    def oracle_predictor(idx):   # replays the gold moves, in the order parse() asks
        out = np.zeros((len(idx), vocab.n_transitions))
        active = [i for i in range(2) if counters[i] < len(golds[id(sentences[i])])]
        for row, i in enumerate(active):
            out[row, golds[id(sentences[i])][counters[i]]] = 1
            counters[i] += 1
        return out

    parses = P.parse(oracle_predictor, sentences, vocab)
    scores = P.attachment_scores(sentences, parses, vocab)
    assert scores["uas"] == scores["las"] == scores["las_full"] == 100.0
    assert scores["words"] == 11 and scores["words_no_punct"] == 10


@pytest.fixture(scope="module")
def splits():
    try:
        return P.load_splits()
    except SystemExit as e:
        pytest.skip(str(e))


def test_oracle_rebuilds_every_projective_treebank_tree(splits):
    sentences = splits["train"] + splits["dev"] + splits["test"]
    assert len(sentences) > 4000
    vocab = P.Vocabulary(splits["train"])
    rebuilt = skipped = 0
    for s in sentences:
        if not P.is_projective(s.heads):
            skipped += 1
            continue
        _, moves, state = P.gold_sequence(s, vocab)
        assert state.heads[1:] == s.heads
        assert [vocab.labels[k] for k in state.labels[1:]] == \
            [lab if lab in vocab.label_index else vocab.labels[0] for lab in s.labels]
        rebuilt += 1
    assert rebuilt > 0.8 * len(sentences) and skipped > 0


def test_short_training_run_beats_the_trivial_baseline(splits):
    train, dev = splits["train"][:400], splits["dev"][:150]
    vocab = P.Vocabulary(train)
    data = P.make_instances(train, vocab)
    p = P.init_like_paper(vocab, embed_dim=32, hidden=100, seed=0)
    opt = fastgrad.AdaGrad(p, lr=0.05)
    fastgrad.fit(p, data.idx, data.y, opt, epochs=4, batch_size=128, dropout=0.2,
                 shuffle_seed=0, progress=False)
    pre = fastgrad.precompute(p, vocab.rows_to_cache())
    parses = P.parse(pre.predict_proba, dev, vocab)
    uas = P.attachment_scores(dev, parses, vocab)["uas"] / 100
    baseline = P.right_neighbour_baseline(dev)
    assert uas > baseline + 0.05, (uas, baseline)
    # precomputed and plain inference agree on real states
    plain = P.parse(lambda idx: fastgrad.predict_proba(p, idx), dev[:20], vocab)
    assert plain == parses[:20]


@pytest.mark.parametrize("n_columns", [1, 3])
def test_c_transition_system_matches_the_python_twin(n_columns):
    # a predictor whose scores are a fixed function of the feature row: the two
    # implementations parse alike only if features, legality and moves all agree
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    sentences = []
    for n in list(range(1, 12)) + list(rng.integers(1, 40, size=60)):
        extra = tuple([f"c{c}={v}" for v in rng.choice(["x", "y", "z", "w"], n)]
                      for c in range(n_columns - 1))
        sentences.append(P.Tree(list(rng.choice(words, n)), list(rng.choice(["A", "B", "C"], n)),
                                [0] * n, ["l"] * n, extra))
    columns = ["upos", "xpos", "feats"][:n_columns]
    vocab = P.Vocabulary(sentences, min_count=1, tag_columns=columns)
    assert vocab.n_features == 18 + 18 * n_columns + 12
    mix = rng.standard_normal((vocab.n_features, vocab.n_transitions))

    def predictor(idx):
        return np.sin(idx.astype(np.float64) @ mix * 0.37)

    c = P.parse(predictor, sentences, vocab)
    assert c == transitions.parse_in_python(predictor, sentences, vocab)
    for heads, labels in c:                                   # a tree with one root
        assert heads.count(0) == 1 and all(0 <= k < len(vocab.labels) for k in labels)


@pytest.mark.parametrize("threads", [1, 2])
def test_c_oracle_equals_the_python_twin_on_every_treebank_state(splits, threads):
    sentences = splits["train"] + splits["dev"] + [CROSSING, JOHN]
    vocab = P.Vocabulary(splits["train"])
    c = transitions.make_instances(sentences, vocab, n_threads=threads)
    py = transitions.make_instances_in_python(sentences, vocab)
    assert c.idx.shape == py.idx.shape and c.idx.shape[0] > 50_000
    assert np.array_equal(c.idx, py.idx) and np.array_equal(c.y, py.y)
    assert (c.n_sentences, c.n_skipped) == (py.n_sentences, py.n_skipped) and c.n_skipped > 0


def test_c_projectivity_equals_the_twin_on_random_trees():
    from fastgrad.parser.vocab import Vocabulary
    rng = np.random.default_rng(0)
    trees = []
    for _ in range(300):
        n = int(rng.integers(1, 9))
        heads = [0] * n
        order = rng.permutation(n) + 1   # a random tree: each word attached to an earlier one
        for k in range(1, n):
            heads[order[k] - 1] = int(order[rng.integers(0, k)])
        trees.append(P.Tree(["w"] * n, ["X"] * n, heads, ["dep"] * n))
    vocab = Vocabulary(trees, min_count=1)
    batch = transitions._batch(vocab, *vocab.encode_all(trees))
    gold = np.zeros(sum(len(t.words) + 1 for t in trees), np.int32)
    at = 0
    for t in trees:
        gold[at + 1:at + 1 + len(t.words)] = t.heads
        at += len(t.words) + 1
    assert batch.projective(gold).tolist() == [P.is_projective(t.heads) for t in trees]
