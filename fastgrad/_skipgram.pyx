# cython: language_level=3
"""Skip-gram with negative sampling (Mikolov et al. 2013), the word2vec recipe, in C.

The parser's word rows start from these vectors (fastgrad/parser/word_vectors.py
prepares the corpus and calls ``train``). Like the library's kernels, the
gradient of a pair is a scatter into rows of two tables: the input vectors
(the ones kept) and the output vectors of the target and the noise words.

The recipe is word2vec's: a window reduced at random per position, frequent
words subsampled, noise words drawn from the unigram distribution raised to
0.75 (a cumulative table searched by bisection, within the range that a bucket
of the draw's top bits allows), the learning rate decayed
linearly to 1e-4 of its start over all epochs, sigmoids clipped at ±6.

Deterministic: one thread, one 64-bit linear congruential generator (word2vec's)
seeded by the caller, so a seed gives the same vectors on every run and machine
with the same compiler flags (no FMA contraction, fixed summation order).
float32 only: the vectors become rows of a float32 embedding table.
"""

cimport cython
from libc.math cimport log
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

import numpy as np


cdef extern from "_skipgram.h":
    float skipgram_pair(const float* inp, float* out, float* grad_in, float label,
                        float alpha, Py_ssize_t n) noexcept nogil
    void skipgram_add(float* row, float* grad, Py_ssize_t n) noexcept nogil
    int skipgram_stopped(const unsigned char* flag) noexcept nogil


cdef inline uint64_t _next(uint64_t* state) noexcept nogil:
    state[0] = state[0] * <uint64_t> 25214903917ULL + 11
    return state[0]


# The noise draw is a uniform 31-bit u; the word is the first entry of the
# cumulative table above u. A plain bisection over every word took a third of
# skip-gram's time in mispredicted branches, so the draws are split by their top
# NOISE_BUCKET_BITS bits: bucket_start[b] is the answer for the smallest u of bucket
# b, and the answer for any u of that bucket lies in [bucket_start[b],
# bucket_start[b + 1]] (the answer grows with u). Bisecting that range gives the
# same word as bisecting the whole table; for the frequent words, which take most
# draws, the range is one entry.
cdef enum:
    NOISE_BUCKET_BITS = 16
    NOISE_BUCKET_SHIFT = 31 - NOISE_BUCKET_BITS


def noise_buckets(const uint32_t[::1] cumulative):
    """bucket_start (2^NOISE_BUCKET_BITS + 1 entries, int32): the noise word of the
    smallest draw of each bucket, then the last word (the answer's upper bound)."""
    cum = np.asarray(cumulative)
    firsts = np.arange(1 << NOISE_BUCKET_BITS, dtype=np.int64) << NOISE_BUCKET_SHIFT
    starts = np.minimum(np.searchsorted(cum, firsts, side="right"), len(cum) - 1)
    return np.append(starts, len(cum) - 1).astype(np.int32)


cdef inline int32_t _noise_word(uint32_t u, const uint32_t* cumulative,
                                const int32_t* bucket_start) noexcept nogil:
    """The first entry of the cumulative table above the 31-bit draw u (or the
    last word), bisecting only u's bucket's range."""
    cdef int32_t lo = bucket_start[u >> NOISE_BUCKET_SHIFT]
    cdef int32_t hi = bucket_start[(u >> NOISE_BUCKET_SHIFT) + 1], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cumulative[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline int32_t _noise(const uint32_t* cumulative, const int32_t* bucket_start,
                           uint64_t* state) noexcept nogil:
    """A word drawn with probability proportional to its count^0.75."""
    return _noise_word(<uint32_t> ((_next(state) >> 16) & 0x7FFFFFFF), cumulative,
                       bucket_start)


def noise_words(const uint32_t[::1] cumulative, const uint32_t[::1] draws):
    """Test hook: the noise word of each 31-bit draw, as train finds it."""
    starts = noise_buckets(cumulative)
    cdef const int32_t[::1] bucket_start = starts
    out = np.empty(draws.shape[0], np.int32)
    cdef int32_t[::1] words = out
    cdef Py_ssize_t k
    for k in range(draws.shape[0]):
        words[k] = _noise_word(draws[k] & 0x7FFFFFFF, &cumulative[0], &bucket_start[0])
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def train(const int32_t[::1] tokens, const int64_t[::1] sentence_ends,
          float[:, ::1] vectors, float[:, ::1] output, const uint32_t[::1] cumulative,
          const float[::1] keep, int window, int negative, int epochs, double alpha,
          uint64_t seed, const uint8_t[::1] stop=None):
    """Train vectors in place; returns the mean loss per pair of each epoch, or
    None when stop[0] became non-zero (checked before each sentence: another
    thread gave up waiting; the vectors are then partly trained).

    IN  tokens: word ids (0 .. V-1), every sentence's words one after another
    IN  sentence_ends: the end offset of each sentence in tokens (ascending)
    IN/OUT vectors (V, d): the input vectors, already initialised (the result)
    IN/OUT output (V, d): the output vectors (word2vec starts them at zero)
    IN  cumulative (V,): the noise distribution's cumulative counts^0.75, scaled to
        2^31 - 1, non-decreasing, its last entry 2^31 - 1
    IN  keep (V,): each word's probability of being kept by subsampling, in [0, 1]
    window: the largest distance to a context word; negative: noise words per pair
    IN  stop (1,): optional; set by another thread to end the loop early
    """
    cdef Py_ssize_t V = vectors.shape[0], d = vectors.shape[1]
    cdef Py_ssize_t n_sent = sentence_ends.shape[0], n_tok = tokens.shape[0]
    if output.shape[0] != V or output.shape[1] != d or cumulative.shape[0] != V \
            or keep.shape[0] != V:
        raise ValueError("vectors, output, cumulative and keep must have a row per word")
    if V < 1 or window < 1 or negative < 0 or epochs < 1 or not alpha > 0:
        raise ValueError("need a word, window >= 1, negative >= 0, epochs >= 1, alpha > 0")
    if n_sent and (sentence_ends[n_sent - 1] != n_tok):
        raise ValueError("the last sentence must end at the last token")
    ids = np.asarray(tokens)
    if n_tok and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"token ids must lie in [0, {V})")
    if np.any(np.diff(np.asarray(sentence_ends)) < 0) or (n_sent and sentence_ends[0] < 0):
        raise ValueError("sentence_ends must be ascending")
    starts = noise_buckets(cumulative)
    cdef const int32_t[::1] bucket_start = starts
    kept_ids = np.empty(max(1, int(np.diff(np.asarray(sentence_ends), prepend=0).max()
                                   if n_sent else 1)), np.int32)
    cdef int32_t[::1] kept = kept_ids
    grad_array = np.zeros(d, np.float32)
    cdef float[::1] grad = grad_array
    losses = np.zeros(epochs, np.float64)
    cdef double[::1] loss = losses
    cdef uint64_t state = seed
    # -log of the pairs' probabilities, summed as the log of their product: each
    # is at least 1e-7, so the product is logged and restarted before it underflows
    cdef double product
    cdef double total = <double> epochs * n_tok + 1.0, done = 0.0, rate, pairs
    cdef Py_ssize_t e, s, start, k, n_kept, pos, lo, hi, c, j
    cdef int32_t center, context, target, reach
    cdef float label
    cdef const uint8_t* stop_flag = NULL
    cdef bint stopped = False
    if stop is not None:
        if stop.shape[0] < 1:
            raise ValueError("stop must have one entry")
        stop_flag = &stop[0]
    with nogil:
        for e in range(epochs):
            pairs = 0.0
            product = 1.0
            start = 0
            for s in range(n_sent):
                if stop_flag != NULL and skipgram_stopped(stop_flag):
                    stopped = True
                    break
                n_kept = 0
                for k in range(start, sentence_ends[s]):     # subsampling
                    if keep[tokens[k]] >= <float> (_next(&state) & 0xFFFF) / 65536.0:
                        kept[n_kept] = tokens[k]
                        n_kept += 1
                rate = alpha * max(1.0 - done / total, 1e-4)
                done += sentence_ends[s] - start
                start = sentence_ends[s]
                for pos in range(n_kept):
                    center = kept[pos]
                    reach = window - <int32_t> (_next(&state) % <uint64_t> window)
                    lo = max(0, pos - reach)
                    hi = min(n_kept, pos + reach + 1)
                    for c in range(lo, hi):
                        if c == pos:
                            continue
                        context = kept[c]     # its vector predicts the center word
                        for j in range(negative + 1):
                            if j == 0:
                                target, label = center, 1.0
                            else:
                                target = _noise(&cumulative[0], &bucket_start[0], &state)
                                if target == center:
                                    continue
                                label = 0.0
                            product *= skipgram_pair(&vectors[context, 0], &output[target, 0],
                                                     &grad[0], label, <float> rate, d)
                            if product < 1e-290:
                                loss[e] -= log(product)
                                product = 1.0
                            pairs += 1.0
                        skipgram_add(&vectors[context, 0], &grad[0], d)
            if stopped:
                break
            loss[e] -= log(product)
            if pairs > 0:
                loss[e] /= pairs
    return None if stopped else losses
