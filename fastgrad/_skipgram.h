/* The row loops of skip-gram with negative sampling (fastgrad/_skipgram.pyx), in
   C because they need `restrict` to vectorize: a word's input row and an output
   row never overlap (they live in two tables).

   One (context, target) pair with label y in {0, 1}, learning rate alpha:
       f = in · out;  g = alpha (y - sigmoid(f))
       grad_in += g out;  out += g in          (in is updated after all targets)
   Eight partial sums in a fixed order make the dot product deterministic and not
   bound by the latency of one chain of additions. */
#ifndef FASTGRAD_SKIPGRAM_H
#define FASTGRAD_SKIPGRAM_H

#include <math.h>
#include <stdint.h>

#include "_c_portability.h"

/* skipgram_pair and skipgram_add are cloned for AVX-512 and AVX2 (FASTGRAD_CLONES;
   the dot's eight partial sums are written out): the same vectors on every CPU.
   1.98-2.42 -> 1.82-2.07 s for EWT train's 15 epochs
   (bench/results/speed-intel-2core.md). */

static inline float skipgram_dot(const float *restrict a, const float *restrict b,
                                 Py_ssize_t n) {
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Py_ssize_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int k = 0; k < 8; ++k) part[k] += a[c + k] * b[c + k];
    float total = ((part[0] + part[1]) + (part[2] + part[3]))
                + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; c < n; ++c) total += a[c] * b[c];
    return total;
}

/* One pair: returns the probability the model gave its label, sigmoid(±f) clipped
   below at 1e-7 (the caller sums -log of it, for progress lines, as the log of a
   running product: a logf per pair was a tenth of skip-gram's time);
   MAX_EXP clips as word2vec does (beyond ±6 the gradient is taken as saturated). */
FASTGRAD_CLONES
static float skipgram_pair(const float *restrict in, float *restrict out,
                           float *restrict grad_in, float label, float alpha, Py_ssize_t n) {
    float f = skipgram_dot(in, out, n), g, p;
    if (f > 6.0f) p = 1.0f;
    else if (f < -6.0f) p = 0.0f;
    else p = 1.0f / (1.0f + expf(-f));
    g = alpha * (label - p);
    for (Py_ssize_t c = 0; c < n; ++c) grad_in[c] += g * out[c];
    for (Py_ssize_t c = 0; c < n; ++c) out[c] += g * in[c];
    p = label > 0.5f ? p : 1.0f - p;
    return p > 1e-7f ? p : 1e-7f;
}

/* The caller's stop flag, set from another thread (SkipGramJob.cancel): read
   through volatile so the loop sees it change. */
static inline int skipgram_stopped(const unsigned char *flag) {
    return *(const volatile unsigned char *) flag != 0;
}

FASTGRAD_CLONES
static void skipgram_add(float *restrict row, float *restrict grad, Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; ++c) {
        row[c] += grad[c];
        grad[c] = 0.0f;
    }
}

#endif
