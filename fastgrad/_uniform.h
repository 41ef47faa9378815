/* numpy's PCG64 (the bit generator of np.random.default_rng: a 128-bit LCG with
   the XSL-RR output, O'Neill 2014) and numpy's uniform floats from it, in C, so a
   batch's dropout draws can be made by several threads: each thread jumps the LCG
   to its first draw (Brown's O(log n) advance) and makes its share. The values,
   and the state left behind, are those of Generator.random(out=..., dtype=...)
   drawn on one thread (tests/test_uniform.py compares them with numpy's):
     float64: (next64 >> 11) * 2^-53, one draw each;
     float32: (next32 >> 8) * 2^-24, where next32 is the low half of a draw and
              then its high half, kept between calls in (has_uint32, uinteger).
   Needs a 128-bit integer type (GCC, Clang); FASTGRAD_HAS_PCG64 says whether this
   compiler has one (without it, the callers draw through numpy). */
#ifndef FASTGRAD_UNIFORM_H
#define FASTGRAD_UNIFORM_H

#include <stdint.h>

#if defined(__SIZEOF_INT128__)
#define FASTGRAD_HAS_PCG64 1
typedef __uint128_t fastgrad_u128;

/* PCG's default 128-bit multiplier (numpy's PCG64_DEFAULT_MULTIPLIER) */
#define FASTGRAD_PCG64_MULT \
    (((fastgrad_u128)2549297995355413924ULL << 64) | (fastgrad_u128)4865540595714422341ULL)

static inline fastgrad_u128 fastgrad_u128_of(uint64_t hi, uint64_t lo) {
    return ((fastgrad_u128)hi << 64) | lo;
}

/* One draw: the state steps, then its XSL-RR output. */
static inline uint64_t fastgrad_pcg64_next(fastgrad_u128 *state, fastgrad_u128 inc) {
    *state = *state * FASTGRAD_PCG64_MULT + inc;
    uint64_t x = (uint64_t)(*state >> 64) ^ (uint64_t)*state;
    unsigned rot = (unsigned)(*state >> 122);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

/* The state `delta` draws later. */
static inline fastgrad_u128 fastgrad_pcg64_advance(fastgrad_u128 state, uint64_t delta,
                                                   fastgrad_u128 inc) {
    fastgrad_u128 mult = FASTGRAD_PCG64_MULT, plus = inc, acc_mult = 1, acc_plus = 0;
    while (delta > 0) {
        if (delta & 1) {
            acc_mult *= mult;
            acc_plus = acc_plus * mult + plus;
        }
        plus = (mult + 1) * plus;
        mult *= mult;
        delta >>= 1;
    }
    return acc_mult * state + acc_plus;
}

/* Draws d0 .. d1-1 of a fill that starts from state (hi, lo): float64, draw d
   gives out[d]. */
static inline void fastgrad_pcg64_doubles(double *out, uint64_t state_hi, uint64_t state_lo,
                                          uint64_t inc_hi, uint64_t inc_lo, int64_t d0,
                                          int64_t d1) {
    fastgrad_u128 inc = fastgrad_u128_of(inc_hi, inc_lo);
    fastgrad_u128 s = fastgrad_pcg64_advance(fastgrad_u128_of(state_hi, state_lo),
                                             (uint64_t)d0, inc);
    for (int64_t d = d0; d < d1; ++d)
        out[d] = (double)(fastgrad_pcg64_next(&s, inc) >> 11) * (1.0 / 9007199254740992.0);
}

/* float32: draw d gives out[2d] (its low half) and out[2d + 1] (its high half)
   where 2d + 1 < n. */
static inline void fastgrad_pcg64_floats(float *out, int64_t n, uint64_t state_hi,
                                         uint64_t state_lo, uint64_t inc_hi, uint64_t inc_lo,
                                         int64_t d0, int64_t d1) {
    fastgrad_u128 inc = fastgrad_u128_of(inc_hi, inc_lo);
    fastgrad_u128 s = fastgrad_pcg64_advance(fastgrad_u128_of(state_hi, state_lo),
                                             (uint64_t)d0, inc);
    for (int64_t d = d0; d < d1; ++d) {
        uint64_t v = fastgrad_pcg64_next(&s, inc);
        out[2 * d] = (float)((uint32_t)v >> 8) * (1.0f / 16777216.0f);
        if (2 * d + 1 < n)
            out[2 * d + 1] = (float)((uint32_t)(v >> 32) >> 8) * (1.0f / 16777216.0f);
    }
}

/* Draw number d (0: the next one) of the stream at state (hi, lo). */
static inline uint64_t fastgrad_pcg64_at(uint64_t state_hi, uint64_t state_lo, uint64_t inc_hi,
                                         uint64_t inc_lo, uint64_t d) {
    fastgrad_u128 inc = fastgrad_u128_of(inc_hi, inc_lo);
    fastgrad_u128 s = fastgrad_pcg64_advance(fastgrad_u128_of(state_hi, state_lo), d, inc);
    return fastgrad_pcg64_next(&s, inc);
}

/* The state (hi, lo) `delta` draws later, as two halves. */
static inline void fastgrad_pcg64_skip(uint64_t *state_hi, uint64_t *state_lo, uint64_t inc_hi,
                                       uint64_t inc_lo, uint64_t delta) {
    fastgrad_u128 s = fastgrad_pcg64_advance(fastgrad_u128_of(*state_hi, *state_lo), delta,
                                             fastgrad_u128_of(inc_hi, inc_lo));
    *state_hi = (uint64_t)(s >> 64);
    *state_lo = (uint64_t)s;
}

#else
#define FASTGRAD_HAS_PCG64 0
static inline void fastgrad_pcg64_doubles(double *out, uint64_t state_hi, uint64_t state_lo,
                                          uint64_t inc_hi, uint64_t inc_lo, int64_t d0,
                                          int64_t d1) {}
static inline void fastgrad_pcg64_floats(float *out, int64_t n, uint64_t state_hi,
                                         uint64_t state_lo, uint64_t inc_hi, uint64_t inc_lo,
                                         int64_t d0, int64_t d1) {}
static inline uint64_t fastgrad_pcg64_at(uint64_t state_hi, uint64_t state_lo, uint64_t inc_hi,
                                         uint64_t inc_lo, uint64_t d) { return 0; }
static inline void fastgrad_pcg64_skip(uint64_t *state_hi, uint64_t *state_lo, uint64_t inc_hi,
                                       uint64_t inc_lo, uint64_t delta) {}
#endif

#endif
