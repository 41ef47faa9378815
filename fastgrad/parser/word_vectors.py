"""Word vectors the parser learns itself: skip-gram with negative sampling on the
training file's forms, optionally with more raw text, before the parser trains.

Why our own and not gensim's: the gradient is a scatter into rows of two tables
(what this library does), the C loop is short (fastgrad/_skipgram.pyx), it is
deterministic for a seed by construction (one thread, its own generator: no
hash seeds, no worker scheduling), and the default parser needs no extra
package. It runs word2vec's recipe, with the settings that Parsito's English
models were trained with where they apply (skip-gram, 5 noise words, 15 epochs,
min count 2), word2vec's subsampling, and a window of 2: narrow windows make
syntactic neighbours (Bansal, Gimpel & Livescu 2014), and on EWT dev it did no
worse than 5 in a third of the time (bench/results/parser-accuracy-2core.md).

Raw text: UTF-8, one sentence a line, words separated by whitespace; streamed
twice (counting, then encoding to int32 ids), never held as Python strings.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import NamedTuple

import numpy as np

__all__ = ["SkipGramOptions", "WordVectors", "SkipGramJob", "train_word_vectors",
           "raw_text_sentences"]


class SkipGramOptions(NamedTuple):
    epochs: int = 15
    window: int = 2
    negative: int = 5
    min_count: int = 2
    sample: float = 1e-3
    alpha: float = 0.025


class WordVectors(NamedTuple):
    words: list            # most frequent first
    vectors: np.ndarray    # (len(words), dim) float32
    n_tokens: int          # tokens trained on per epoch (before subsampling)
    seconds: float
    losses: np.ndarray     # mean loss per pair, per epoch


_BLOCK_LINES = 100_000


def raw_text_sentences(path):
    """The sentences of a raw text file as lists of words (one line each; blank
    lines skipped); a line that is not UTF-8 is a ValueError naming file:line."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                words = line.decode("utf-8").split()
            except UnicodeDecodeError:
                raise ValueError(f"{name}:{line_no}: not UTF-8 text") from None
            if words:
                yield words


def _sentences(forms, lengths, raw_text):
    """The training file's sentences, then the raw text's."""
    at = 0
    for n in lengths:
        yield forms[at:at + n]
        at += n
    if raw_text is not None:
        yield from raw_text_sentences(raw_text)


def _encode(sentences, index):
    """int32 ids of the words in index (others dropped, as word2vec drops rare
    words) and each sentence's end offset; built in blocks of sentences."""
    token_blocks, length_blocks, block, lengths = [], [], [], []

    def flush():
        token_blocks.append(np.fromiter((index[w] for w in block), np.int32, len(block)))
        length_blocks.append(np.array(lengths, np.int64))
        block.clear()
        lengths.clear()

    for words in sentences:
        kept = [w for w in words if w in index]
        block += kept
        lengths.append(len(kept))
        if len(lengths) >= _BLOCK_LINES:
            flush()
    flush()
    tokens = np.concatenate(token_blocks)
    return tokens, np.cumsum(np.concatenate(length_blocks))


def train_word_vectors(forms, lengths, dim: int, *, raw_text=None, seed: int = 0,
                       options: SkipGramOptions = SkipGramOptions()) -> WordVectors:
    """Skip-gram vectors of dimension dim for the words seen at least
    options.min_count times in the training forms (a list of str, sentence after
    sentence, lengths words each) and the raw text file, if any."""
    return SkipGramJob(forms, lengths, dim, raw_text=raw_text, seed=seed,
                       options=options).result()


class SkipGramJob:
    """train_word_vectors in two halves. The constructor reads, counts and encodes
    the corpus, so the words (most frequent first, the rows to come) are known at
    once; the C loop then runs, holding no GIL, in a thread of its own (start()),
    so that the caller's other set-up (the parser's vocabulary and instances) runs
    beside it. result() waits for it: the same vectors as train_word_vectors."""

    def __init__(self, forms, lengths, dim: int, *, raw_text=None, seed: int = 0,
                 options: SkipGramOptions = SkipGramOptions()):
        self._started = time.perf_counter()
        counts: Counter = Counter()
        for words in _sentences(forms, lengths, raw_text):
            counts.update(words)
        words = sorted((w for w, c in counts.items() if c >= options.min_count),
                       key=lambda w: (-counts[w], w))
        if not words:
            raise ValueError(f"no word occurs {options.min_count} times: nothing to learn "
                             "word vectors from (more text, or random word rows: "
                             "--word-vectors none, word_vectors='none')")
        index = {w: i for i, w in enumerate(words)}
        self._tokens, self._ends = _encode(_sentences(forms, lengths, raw_text), index)
        freq = np.array([counts[w] for w in words], np.float64)
        # word2vec's subsampling: keep a word of frequency f with (sqrt(f/t) + 1) t/f,
        # t = sample·total
        threshold = options.sample * len(self._tokens)
        keep = np.minimum(1.0, (np.sqrt(freq / threshold) + 1) * threshold / freq) \
            if options.sample > 0 else np.ones(len(words))
        noise = np.cumsum(freq ** 0.75)
        cumulative = np.minimum(np.round(noise / noise[-1] * (2**31 - 1)), 2**31 - 1)
        cumulative[-1] = 2**31 - 1
        rng = np.random.default_rng(seed)   # word2vec's start: uniform in ±0.5/dim
        self.words = words
        self._vectors = ((rng.random((len(words), dim)) - 0.5) / dim).astype(np.float32)
        self._output = np.zeros((len(words), dim), np.float32)
        self._cumulative = cumulative.astype(np.uint32)
        self._keep = keep.astype(np.float32)
        self._options, self._seed = options, seed
        self._stop = np.zeros(1, np.uint8)   # set by cancel(); the C loop reads it
        self._thread: threading.Thread | None = None
        self._outcome: tuple | None = None   # (losses, error, seconds) once run

    def _run(self) -> None:
        from fastgrad._skipgram import train

        o = self._options
        try:
            losses = train(self._tokens, self._ends, self._vectors, self._output,
                           self._cumulative, self._keep, o.window, o.negative, o.epochs,
                           o.alpha, (self._seed * 1_000_003 + 7) % 2**64, self._stop)
            error = None if losses is not None else RuntimeError("the skip-gram job was "
                                                                 "cancelled")
            self._outcome = (losses, error, time.perf_counter() - self._started)
        except BaseException as err:   # handed to result(), in the caller's thread
            self._outcome = (None, err, 0.0)

    def start(self) -> "SkipGramJob":
        """Run the C loop in a thread of its own; returns self."""
        self._thread = threading.Thread(target=self._run, name="fastgrad-skipgram",
                                        daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Until the C loop has finished (run here when start() was not called)."""
        if self._thread is None:
            if self._outcome is None:
                self._run()
        else:
            self._thread.join()

    def cancel(self) -> None:
        """Stop the C loop at its next sentence and wait for it (the caller gave
        up: an error elsewhere in the set-up should not wait for the vectors)."""
        self._stop[0] = 1
        if self._thread is not None:
            self._thread.join()

    def result(self) -> WordVectors:
        """The vectors (waiting for the loop); its error, if it failed."""
        self.wait()
        assert self._outcome is not None
        losses, error, seconds = self._outcome
        if error is not None:
            raise error
        return WordVectors(self.words, self._vectors, len(self._tokens), seconds, losses)
