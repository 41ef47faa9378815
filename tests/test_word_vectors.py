"""Skip-gram word vectors (fastgrad/_skipgram.pyx, fastgrad/parser/word_vectors.py)."""

import numpy as np
import pytest

from fastgrad._skipgram import noise_words, train
from fastgrad.parser.word_vectors import (SkipGramJob, SkipGramOptions, raw_text_sentences,
                                          train_word_vectors)

MASK = 2**64 - 1


def train_in_python(tokens, ends, vectors, output, cumulative, keep, window, negative,
                    epochs, alpha, seed):
    """The C loop's twin in float64: the same draws from the same generator, so the
    same pairs in the same order; the vectors agree to float32 rounding. Returns
    each epoch's mean loss per pair, -log of the probability of the pair's label
    (clipped at 1e-7), summed term by term."""
    state = seed
    losses = []

    def draw():
        nonlocal state
        state = (state * 25214903917 + 11) & MASK
        return state

    total, done = epochs * len(tokens) + 1.0, 0.0
    for _ in range(epochs):
        start, loss, pairs = 0, 0.0, 0
        for end in ends:
            kept = [t for t in tokens[start:end] if keep[t] >= (draw() & 0xFFFF) / 65536.0]
            rate = alpha * max(1.0 - done / total, 1e-4)
            done += end - start
            start = end
            for pos, center in enumerate(kept):
                reach = window - draw() % window
                for c in range(max(0, pos - reach), min(len(kept), pos + reach + 1)):
                    if c == pos:
                        continue
                    grad = np.zeros(vectors.shape[1])
                    for j in range(negative + 1):
                        if j == 0:
                            target, label = center, 1.0
                        else:
                            u = (draw() >> 16) & 0x7FFFFFFF
                            target = int(np.searchsorted(cumulative, u, side="right"))
                            if target == center:
                                continue
                            label = 0.0
                        f = vectors[kept[c]] @ output[target]
                        p = 1.0 if f > 6 else 0.0 if f < -6 else 1 / (1 + np.exp(-f))
                        g = rate * (label - p)
                        grad += g * output[target]
                        output[target] += g * vectors[kept[c]]
                        loss -= np.log(max(p if label else 1 - p, 1e-7))
                        pairs += 1
                    vectors[kept[c]] += grad
        losses.append(loss / max(pairs, 1))
    return np.array(losses)


def toy_corpus(n_sentences=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, n_sentences)
    tokens = rng.integers(0, 12, lengths.sum()).astype(np.int32)
    tokens[::3] = 1    # repeated ids within sentences and pairs
    return tokens, np.cumsum(lengths).astype(np.int64)


def noise_table(counts):
    noise = np.cumsum(np.asarray(counts, float) ** 0.75)
    cumulative = np.round(noise / noise[-1] * (2**31 - 1)).astype(np.uint32)
    cumulative[-1] = 2**31 - 1
    return cumulative


@pytest.mark.parametrize("counts", [
    [5],                                                  # one word
    [3, 3, 1, 1, 1],                                      # a few words
    1e6 / np.arange(1, 100_001),                          # Zipf: buckets of many rare words
    [1e12] + [1] * 5000,                                  # equal entries in a row
], ids=["one", "few", "zipf", "flat-tail"])
def test_bucketed_noise_search_equals_a_whole_table_bisection(counts):
    cumulative = noise_table(counts)
    rng = np.random.default_rng(3)
    edges = np.arange(1 << 16, dtype=np.int64) << 15
    draws = np.concatenate([rng.integers(0, 2**31, 200_000), edges, edges - 1, edges + 1,
                            cumulative.astype(np.int64), cumulative.astype(np.int64) - 1,
                            [0, 2**31 - 1]]).clip(0, 2**31 - 1).astype(np.uint32)
    expected = np.minimum(np.searchsorted(cumulative, draws, side="right"),
                          len(cumulative) - 1)
    np.testing.assert_array_equal(noise_words(cumulative, draws), expected)


@pytest.mark.parametrize("window,negative", [(1, 0), (3, 2), (5, 5)])
def test_c_loop_equals_its_python_twin(window, negative):
    tokens, ends = toy_corpus()
    V, d = 12, 10
    rng = np.random.default_rng(1)
    vectors = ((rng.random((V, d)) - 0.5) / d).astype(np.float32)
    output = (rng.random((V, d)) * 0.1).astype(np.float32)
    cumulative = noise_table(np.bincount(tokens, minlength=V) + 1)
    keep = np.linspace(0.3, 1.0, V).astype(np.float32)
    v64, o64 = vectors.astype(np.float64), output.astype(np.float64)
    losses = train(tokens, ends, vectors, output, cumulative, keep, window, negative, 2,
                   0.1, 12345)
    expected = train_in_python(tokens.tolist(), ends.tolist(), v64, o64, cumulative, keep,
                               window, negative, 2, 0.1, 12345)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert np.abs(vectors - v64).max() > 0 or np.abs(v64).max() > 0
    np.testing.assert_allclose(vectors, v64, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(output, o64, rtol=1e-4, atol=2e-6)


def test_the_loss_is_summed_without_underflow_over_many_pairs():
    """Untrained (alpha tiny, output rows zero), every pair has probability 1/2: the
    mean loss is log 2 whatever the number of pairs, with far more pairs than a
    product of probabilities could hold without restarting."""
    tokens = np.zeros(20_000, np.int32)
    tokens[1::2] = 1
    ends = np.arange(100, 20_001, 100, dtype=np.int64)
    vectors = np.full((2, 4), 0.25, np.float32)
    output = np.zeros((2, 4), np.float32)
    losses = train(tokens, ends, vectors, output, noise_table([1, 1]), np.ones(2, np.float32),
                   3, 2, 2, 1e-30, 7)
    np.testing.assert_allclose(losses, np.log(2), rtol=1e-12)


def test_same_seed_same_vectors_and_the_loss_falls():
    forms, lengths = [], []
    rng = np.random.default_rng(0)
    for _ in range(300):   # two word classes that never share a sentence
        cls = rng.integers(2)
        n = int(rng.integers(3, 8))
        forms += [f"{'ab'[cls]}{k}" for k in rng.integers(0, 10, n)]
        lengths.append(n)
    opts = SkipGramOptions(epochs=6, min_count=1, sample=0)
    a = train_word_vectors(forms, lengths, 16, seed=3, options=opts)
    b = train_word_vectors(forms, lengths, 16, seed=3, options=opts)
    c = train_word_vectors(forms, lengths, 16, seed=4, options=opts)
    assert a.words == b.words and np.array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)
    assert a.losses[-1] < a.losses[0]
    unit = a.vectors / np.linalg.norm(a.vectors, axis=1, keepdims=True)
    same = unit @ unit.T
    cls = np.array([w[0] == "a" for w in a.words])
    within = same[cls[:, None] == cls[None, :]].mean()
    across = same[cls[:, None] != cls[None, :]].mean()
    assert within > across + 0.2


def test_a_job_in_its_own_thread_gives_the_same_vectors_and_hands_over_errors():
    rng = np.random.default_rng(5)
    lengths = rng.integers(2, 9, 200).tolist()
    forms = [f"w{k}" for k in rng.zipf(1.5, sum(lengths)) % 40]
    opts = SkipGramOptions(epochs=3, min_count=1)
    alone = train_word_vectors(forms, lengths, 12, seed=2, options=opts)
    job = SkipGramJob(forms, lengths, 12, seed=2, options=opts)
    assert job.words == alone.words                 # known before the loop runs
    threaded = job.start().result()
    assert np.array_equal(threaded.vectors, alone.vectors)
    assert np.array_equal(threaded.losses, alone.losses)
    failing = SkipGramJob(forms, lengths, 12, options=opts._replace(window=0)).start()
    with pytest.raises(ValueError, match="window >= 1"):   # raised in the caller's thread
        failing.result()


def test_raw_text_adds_words_and_counts(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("the zebra runs\n\n  the zebra   sleeps \nonce\n", encoding="utf-8")
    assert list(raw_text_sentences(raw)) == [["the", "zebra", "runs"],
                                             ["the", "zebra", "sleeps"], ["once"]]
    wv = train_word_vectors(["the", "dog", "runs", "the", "dog"], [3, 2], 8, raw_text=raw,
                            options=SkipGramOptions(epochs=1))
    assert wv.words == ["the", "dog", "runs", "zebra"]   # seen twice or more, frequent first
    assert wv.n_tokens == 5 + 3 + 2 and wv.vectors.shape == (4, 8)
    raw.write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"raw.txt:2: not UTF-8"):
        train_word_vectors(["a", "a"], [2], 4, raw_text=raw)
    with pytest.raises(ValueError, match="no word occurs 2 times"):
        train_word_vectors(["a", "b"], [2], 4)


def test_bad_arguments_are_refused_before_anything_is_written():
    tokens, ends = toy_corpus()
    V, d = 12, 4
    vectors, output = np.ones((V, d), np.float32), np.zeros((V, d), np.float32)
    cumulative, keep = noise_table(np.ones(V)), np.ones(V, np.float32)
    args = (cumulative, keep, 2, 2, 1, 0.05, 0)
    bad_ids = tokens.copy()
    bad_ids[3] = V
    with pytest.raises(ValueError, match="token ids"):
        train(bad_ids, ends, vectors, output, *args)
    with pytest.raises(ValueError, match="last sentence"):
        train(tokens, ends[:-1], vectors, output, *args)
    with pytest.raises(ValueError, match="a row per word"):
        train(tokens, ends, vectors, output[:-1], *args)
    with pytest.raises(ValueError, match="window >= 1"):
        train(tokens, ends, vectors, output, cumulative, keep, 0, 2, 1, 0.05, 0)
    assert (vectors == 1).all() and (output == 0).all()


def test_a_cancelled_job_stops_at_once_and_says_so():
    rng = np.random.default_rng(6)
    lengths = rng.integers(2, 9, 300).tolist()
    forms = [f"w{k}" for k in rng.integers(0, 30, sum(lengths))]
    # a day's worth of epochs: only cancel() ends it within the test's time
    job = SkipGramJob(forms, lengths, 8, options=SkipGramOptions(epochs=10**8, min_count=1))
    job.start()
    job.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result()


def test_train_returns_none_when_stopped_before_it_starts():
    tokens, ends = toy_corpus()
    vectors = np.full((12, 4), 0.1, np.float32)
    before = vectors.copy()
    out = train(tokens, ends, vectors, np.zeros((12, 4), np.float32), noise_table([1] * 12),
                np.ones(12, np.float32), 2, 2, 3, 0.1, 1, np.ones(1, np.uint8))
    assert out is None and np.array_equal(vectors, before)
    with pytest.raises(ValueError, match="stop"):
        train(tokens, ends, vectors, np.zeros((12, 4), np.float32), noise_table([1] * 12),
              np.ones(12, np.float32), 2, 2, 3, 0.1, 1, np.zeros(0, np.uint8))
