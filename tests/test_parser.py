"""The parser example: oracle, features, and a short training run on the treebank."""

import numpy as np
import pytest

import fastgrad
from fastgrad.examples import parser as P
from fastgrad._arc_standard import arc_loss_py
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
    n_labels, root = len(vocab.labels), transitions.root_label(vocab)
    sentences = [JOHN, NESTED]
    golds = [P.gold_sequence(s, vocab)[1] for s in sentences]
    states = [P.State(len(s.words)) for s in sentences]
    counters, asked = [0, 0], []

    def replay_forced(i):        # moves whose state allows one transition alone
        while not states[i].done() and states[i].legal(n_labels, root).sum() == 1:
            states[i].apply(golds[i][counters[i]], n_labels)
            counters[i] += 1

    def oracle_predictor(idx):   # replays the gold moves, in the order parse() asks
        out = np.zeros((len(idx), vocab.n_transitions))
        for i in range(2):
            replay_forced(i)
        active = [i for i in range(2) if not states[i].done()]
        assert len(active) == len(idx)
        for row, i in enumerate(active):
            out[row, golds[i][counters[i]]] = 1
            states[i].apply(golds[i][counters[i]], n_labels)
            counters[i] += 1
        asked.append(len(idx))
        return out

    parses = P.parse(oracle_predictor, sentences, vocab)
    scores = P.attachment_scores(sentences, parses, vocab)
    assert scores["uas"] == scores["las"] == scores["las_full"] == 100.0
    assert scores["words"] == 11 and scores["words_no_punct"] == 10
    # forced states are never scored: the first SHIFTs, and the final arc to ROOT
    n_moves = sum(map(len, golds))
    assert n_moves == 22 and 0 < sum(asked) <= n_moves - 3 * len(sentences)


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
    gold = np.zeros(sum(len(t.words) + 1 for t in trees), np.int32)
    at = 0
    for t in trees:
        gold[at + 1:at + 1 + len(t.words)] = t.heads
        at += len(t.words) + 1
    lengths = vocab.encode_all(trees)[2]
    assert transitions._projective(gold, lengths).tolist() == \
        [P.is_projective(t.heads) for t in trees]


def random_predictor(vocab, seed=0):
    """A fixed random network's probabilities: a deterministic function of the rows."""
    p = fastgrad.init_params(vocab.size, vocab.n_features, 8, 16, vocab.n_transitions,
                             dtype=np.float64, seed=seed)
    return lambda rows: fastgrad.predict_proba(p, rows)


@pytest.mark.parametrize("follow", [0.0, 0.6, 1.0])
def test_exploration_in_c_equals_its_python_twin(follow):
    trees = P.load_splits()["train"][:150] + [CROSSING]
    vocab = P.Vocabulary(trees, min_count=2)
    predictor = random_predictor(vocab)
    want = transitions.explore_in_python(predictor, trees, vocab, follow, seed=11)
    projective = [t for t in trees if transitions.is_projective(t.heads)]
    assert want.n_skipped == len(trees) - len(projective) >= 1
    assert len(want.y) == 2 * sum(len(t.words) for t in projective)
    for threads in (1, 2):
        got = transitions.explore_instances(predictor, trees, vocab, follow, seed=11,
                                            n_threads=threads)
        assert np.array_equal(got.idx, want.idx) and np.array_equal(got.y, want.y)
    static = transitions.make_instances(trees, vocab)
    assert got.idx.shape == static.idx.shape
    if follow > 0:   # states off the gold path
        assert (got.idx != static.idx).any()


def test_arc_loss_counts_no_child_already_attached():
    # word 3 hangs under 2 (wrong; gold: under 4) and has left the stack: it no longer
    # needs 4, so 4 and 5 may build their gold arcs after 1 and 2 go under 5 (loss 0)
    gold = [0, 5, 1, 4, 5, 0]
    state = transitions.State(5)
    for move in (0, 0, 0, 2):        # SHIFT 1, 2, 3; RIGHT-ARC 2 -> 3 (one label)
        state.apply(move, 1)
    assert state.stack == [0, 1, 2] and state.next == 4
    assert transitions.right_stack(state.stack, 4, 5, gold) == [5]
    assert transitions.arc_loss(state.stack, 4, 5, gold) == 0
    assert min(x for x in transitions.move_losses(state, gold) if x is not None) == 0
    assert arc_loss_py(state.stack, 4, gold) == 0      # the C twin


def test_dynamic_targets_with_nan_scores_equal_the_python_twin():
    # a NaN score orders no move: every move is costed, as the twin does
    trees = P.load_splits()["train"][:60]
    vocab = P.Vocabulary(trees, min_count=2)
    plain = random_predictor(vocab, 2)

    def predictor(rows):
        scores = plain(rows).copy()
        scores[np.asarray(rows).sum(axis=1) % 3 == 0, 1::2] = np.nan   # (by the row alone)
        return scores
    want = transitions.explore_in_python(predictor, trees, vocab, 0.0, seed=5)
    got = transitions.explore_instances(predictor, trees, vocab, 0.0, seed=5, n_threads=2)
    assert np.array_equal(got.y, want.y) and np.array_equal(got.idx, want.idx)


def test_exploration_writes_into_the_static_rows_it_is_given():
    trees = P.load_splits()["train"][:80] + [CROSSING]
    vocab = P.Vocabulary(trees, min_count=2)
    predictor = random_predictor(vocab)
    static = transitions.make_instances(trees, vocab)
    reusing = transitions.Exploration(trees, vocab)
    reusing.reuse(static)
    got = reusing.run(predictor, 0.6, seed=3)
    want = transitions.Exploration(trees, vocab).run(predictor, 0.6, seed=3)
    assert got.idx is static.idx and got.y is static.y
    assert np.array_equal(got.idx, want.idx) and np.array_equal(got.y, want.y)
    other = transitions.Exploration(trees[:40], vocab)   # other shapes: not taken
    other.reuse(static)
    assert other.run(predictor, 0.6, seed=3).idx is not static.idx


def test_following_the_dynamic_oracle_builds_the_gold_tree():
    trees = P.load_splits()["train"][:200]
    vocab = P.Vocabulary(trees, min_count=2)
    got = transitions.explore_instances(random_predictor(vocab, 1), trees, vocab, 0.0, seed=0)
    at, n_labels = 0, len(vocab.labels)
    for t in trees:
        if not transitions.is_projective(t.heads):
            continue
        state = transitions.State(len(t.words))
        for move in got.y[at:at + 2 * len(t.words)]:
            state.apply(int(move), n_labels)
        at += 2 * len(t.words)
        assert state.heads[1:] == t.heads
        assert [vocab.labels[k] for k in state.labels[1:]] == t.labels


def test_arc_loss_is_the_best_reachable_tree_by_brute_force():
    import random
    rng = random.Random(0)

    def best(stack, nxt, n, gold, wrong=0):
        if nxt > n and len(stack) == 1:
            return wrong
        out = []
        if nxt <= n:
            out.append(best(stack + [nxt], nxt + 1, n, gold, wrong))
        if len(stack) > 2:
            out.append(best(stack[:-2] + stack[-1:], nxt, n, gold,
                            wrong + (gold[stack[-2]] != stack[-1])))
        if len(stack) > 2 or (len(stack) == 2 and nxt > n):
            out.append(best(stack[:-1], nxt, n, gold, wrong + (gold[stack[-1]] != stack[-2])))
        return min(out)

    checked = 0
    while checked < 400:
        n = rng.randint(1, 7)
        gold = [0] * (n + 1)
        order = list(range(1, n + 1))
        rng.shuffle(order)
        for k, w in enumerate(order[1:], start=1):
            gold[w] = rng.choice(order[:k])
        if not transitions.is_projective(gold[1:]):
            continue
        state = transitions.State(n)
        for _ in range(rng.randint(0, 2 * n - 1)):
            legal = np.flatnonzero(state.legal(1))
            if len(legal) == 0:
                break
            state.apply(int(rng.choice(legal)), 1)
        if state.done():
            continue
        loss = transitions.arc_loss(state.stack, state.next, n, gold)
        assert loss == best(list(state.stack), state.next, n, gold)
        assert arc_loss_py(state.stack, state.next, gold) == loss
        assert min(x for x in transitions.move_losses(state, gold) if x is not None) == loss
        checked += 1
