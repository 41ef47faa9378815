/* Row loops that must vectorize, in C once per dtype (_f: float, _d: double).

   Cython cannot say `restrict`; without it the compiler has to assume that rows
   may overlap and keeps these loops scalar. Declared for Cython in
   fastgrad/_row_loops.pxd; the Cython kernels reach them through the fused
   wrappers in _row_ops.pxi. */
#ifndef FASTGRAD_ROW_LOOPS_H
#define FASTGRAD_ROW_LOOPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_c_portability.h"
#include "_constants.h"

/* Ask for the cache lines of n_bytes at p ahead of use (write: for a store).
   Rows of a big embedding table are read (and updated) in random order, one
   DRAM latency each; prefetching a few rows ahead overlaps those latencies. */
static inline void fastgrad_prefetch(const void *p, Py_ssize_t n_bytes, int write) {
#if defined(__GNUC__) || defined(__clang__)
    const char *c = (const char *) p;
    for (Py_ssize_t b = 0; b < n_bytes; b += 64) {
        if (write) __builtin_prefetch(c + b, 1, 3);
        else __builtin_prefetch(c + b, 0, 3);
    }
#else
    (void) p; (void) n_bytes; (void) write;
#endif
}
#define FASTGRAD_ROW_LOOPS(T, S)                                                    \
static inline void add_row_##S(T *restrict out, const T *restrict src,              \
                               Py_ssize_t n) {                                      \
    for (Py_ssize_t c = 0; c < n; ++c) out[c] += src[c];                            \
}                                                                                   \
/* relu'(z) mask of one row of δ2, and that row added into db1 */                   \
/* (h is after dropout: a dropped unit is 0, a kept one was scaled by `scale`) */   \
FASTGRAD_CLONES void mask_add_row_##S(T *restrict delta, const T *restrict h,       \
                                    T *restrict total, T scale, Py_ssize_t n) {     \
    for (Py_ssize_t c = 0; c < n; ++c) {                                            \
        T v = h[c] > 0 ? delta[c] * scale : (T)0;                                   \
        delta[c] = v;                                                               \
        total[c] += v;                                                              \
    }                                                                               \
}                                                                                   \
/* out = relu(out + bias); NaN stays NaN, as np.maximum's does */                   \
FASTGRAD_CLONES void bias_relu_row_##S(T *restrict out, const T *restrict bias,     \
                                     Py_ssize_t n) {                                \
    for (Py_ssize_t c = 0; c < n; ++c) {                                            \
        T v = out[c] + bias[c];                                                     \
        out[c] = v < 0 ? (T)0 : v;                                                  \
    }                                                                               \
}                                                                                   \
/* inverted dropout: keep a unit when its uniform draw u < keep, scaled by 1/keep */ \
FASTGRAD_CLONES void dropout_row_##S(T *restrict h, const T *restrict u, T keep,    \
                                   T scale, Py_ssize_t n) {                         \
    for (Py_ssize_t c = 0; c < n; ++c) h[c] = u[c] < keep ? h[c] * scale : (T)0;    \
}                                                                                   \
/* One optimizer step on n entries: p, its gradient g (l2 p is added here, not      \
   in a pass of its own) and the rule's state s1, s2 (NULL when unused). A row      \
   of L passes sparse = 1: Adam then follows torch.optim.SparseAdam. */             \
FASTGRAD_CLONES void update_row_##S(const fastgrad_rule *r, int sparse, T *restrict p, \
                           const T *restrict g, T *restrict s1, T *restrict s2,     \
                           Py_ssize_t n) {                                          \
    const T lr = (T)r->lr, l2 = (T)r->l2, eps = (T)r->eps;                          \
    Py_ssize_t c;                                                                   \
    switch (r->kind) {                                                              \
    case FASTGRAD_RULE_SGD:                                                         \
        for (c = 0; c < n; ++c) p[c] -= lr * (g[c] + l2 * p[c]);                    \
        break;                                                                      \
    case FASTGRAD_RULE_MOMENTUM: {                                                  \
        const T mu = (T)r->momentum;                                                \
        for (c = 0; c < n; ++c) {                                                   \
            T b = mu * s1[c] + (g[c] + l2 * p[c]);                                  \
            s1[c] = b;                                                              \
            p[c] -= lr * b;                                                         \
        }                                                                           \
        break; }                                                                    \
    case FASTGRAD_RULE_ADAGRAD:                                                     \
        if (r->eps_inside_sqrt) {                                                   \
            for (c = 0; c < n; ++c) {                                               \
                T gi = g[c] + l2 * p[c], G = s1[c] + gi * gi;                       \
                s1[c] = G;                                                          \
                p[c] -= lr * gi / SQRT_##S(G + eps);                                \
            }                                                                       \
        } else {                                                                    \
            for (c = 0; c < n; ++c) {                                               \
                T gi = g[c] + l2 * p[c], G = s1[c] + gi * gi;                       \
                s1[c] = G;                                                          \
                p[c] -= lr * gi / (SQRT_##S(G) + eps);                              \
            }                                                                       \
        }                                                                           \
        break;                                                                      \
    case FASTGRAD_RULE_ADAM: {                                                      \
        const T b1 = (T)r->beta1, b2 = (T)r->beta2;                                 \
        const T step = (T)(sparse ? r->sparse_step : r->dense_step);                \
        const T scale = (T)(sparse ? 1.0 : r->dense_denom_scale);                   \
        for (c = 0; c < n; ++c) {                                                   \
            T gi = g[c] + l2 * p[c];                                                \
            T m = s1[c] + (1 - b1) * (gi - s1[c]);                                  \
            T v = b2 * s2[c] + (1 - b2) * gi * gi;                                  \
            s1[c] = m;                                                              \
            s2[c] = v;                                                              \
            p[c] -= step * m / (SQRT_##S(v) * scale + eps);                         \
        }                                                                           \
        break; }                                                                    \
    }                                                                               \
}
#define SQRT_f sqrtf
#define SQRT_d sqrt
FASTGRAD_ROW_LOOPS(float, f)
FASTGRAD_ROW_LOOPS(double, d)

/* out[e] = Σ_k table[idx[e * count + k]] for e < n_out (rows of n), each in the
   order of its idx; count >= 1. Four rows are added per sweep over out[e], in
   registers and in the same order as one at a time ((((out + r0) + r1) + r2) + r3):
   the same bits, a quarter of the stores. With n_out > 1 a column k (four at a
   time) is added for every e before the next: where a slot's keys are numbered in
   order of first occurrence, the rows a column reads for a block of examples lie
   close together in the table (a few streams a prefetcher follows, not one random
   row per (example, slot)), and the out rows stay in L1. The result is the same
   for any n_out. */
#define FASTGRAD_SUM_INDEXED(T, S)                                                  \
static inline void add4_rows_##S(T *restrict out, const T *restrict r0,             \
                                 const T *restrict r1, const T *restrict r2,        \
                                 const T *restrict r3, Py_ssize_t n) {              \
    for (Py_ssize_t c = 0; c < n; ++c)                                              \
        out[c] = (((out[c] + r0[c]) + r1[c]) + r2[c]) + r3[c];                      \
}                                                                                   \
FASTGRAD_CLONES                                                                     \
void sum_indexed_rows_##S(T *restrict out, const T *table,                          \
                          const int64_t *restrict idx, Py_ssize_t count,            \
                          Py_ssize_t n_out, Py_ssize_t n) {                         \
    Py_ssize_t e, k = 1;                                                            \
    for (e = 0; e < n_out; ++e)                                                     \
        memcpy(out + e * n, table + idx[e * count] * n, n * sizeof(T));             \
    for (; k + 4 <= count; k += 4)                                                  \
        for (e = 0; e < n_out; ++e) {                                               \
            const int64_t *ix = idx + e * count + k;                                \
            add4_rows_##S(out + e * n, table + ix[0] * n, table + ix[1] * n,        \
                          table + ix[2] * n, table + ix[3] * n, n);                 \
        }                                                                           \
    for (; k < count; ++k)                                                          \
        for (e = 0; e < n_out; ++e)                                                 \
            add_row_##S(out + e * n, table + idx[e * count + k] * n, n);            \
}
FASTGRAD_SUM_INDEXED(float, f)
FASTGRAD_SUM_INDEXED(double, d)

/* out[c] = Σ_k rows[k][c] over count >= 1 rows, in order (first: from 0, i.e.
   0 + rows[0][c] + rows[1][c] + ...; else from out[c]): the sums of precomputed
   inference, one row per feature slot. Columns go in blocks of four 32-byte
   vectors whose partial sums stay in registers while every row's block is added,
   so out is stored once per block, not once per row (the same bits as adding one
   row at a time). GCC and clang's vector types keep them in registers (a plain
   array of partial sums was spilled to the stack on every row); elsewhere the
   scalar loop. */
#if defined(__GNUC__) || defined(__clang__)
#define FASTGRAD_SUM_ROWS(T, S)                                                     \
typedef T fastgrad_vec_##S __attribute__((vector_size(32)));                        \
FASTGRAD_CLONES                                                                     \
void sum_rows_##S(T *restrict out, const T *const *restrict rows, Py_ssize_t count, \
                  int first, Py_ssize_t n) {                                        \
    enum { V = 32 / sizeof(T) };                                                    \
    Py_ssize_t c = 0, k, b;                                                         \
    for (; c + V <= n; ) {                                                          \
        int width = c + 4 * V <= n ? 4 : 1;     /* vectors in this block */         \
        fastgrad_vec_##S acc[4], v;                                                 \
        for (b = 0; b < 4; ++b) {                                                   \
            if (b >= width) break;                                                  \
            if (first) memset(&acc[b], 0, sizeof v);                                \
            else memcpy(&acc[b], out + c + b * V, sizeof v);                        \
        }                                                                           \
        if (width == 4) {                                                           \
            fastgrad_vec_##S a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];    \
            for (k = 0; k < count; ++k) {                                           \
                const T *r = rows[k] + c;                                           \
                memcpy(&v, r, sizeof v); a0 += v;                                   \
                memcpy(&v, r + V, sizeof v); a1 += v;                               \
                memcpy(&v, r + 2 * V, sizeof v); a2 += v;                           \
                memcpy(&v, r + 3 * V, sizeof v); a3 += v;                           \
            }                                                                       \
            memcpy(out + c, &a0, sizeof v);                                         \
            memcpy(out + c + V, &a1, sizeof v);                                     \
            memcpy(out + c + 2 * V, &a2, sizeof v);                                 \
            memcpy(out + c + 3 * V, &a3, sizeof v);                                 \
        } else {                                                                    \
            fastgrad_vec_##S a0 = acc[0];                                           \
            for (k = 0; k < count; ++k) {                                           \
                memcpy(&v, rows[k] + c, sizeof v); a0 += v;                         \
            }                                                                       \
            memcpy(out + c, &a0, sizeof v);                                         \
        }                                                                           \
        c += width * V;                                                             \
    }                                                                               \
    for (; c < n; ++c) {                                                            \
        T acc = (first ? (T)0 : out[c]) + rows[0][c];                               \
        for (k = 1; k < count; ++k) acc += rows[k][c];                              \
        out[c] = acc;                                                               \
    }                                                                               \
}
#else
#define FASTGRAD_SUM_ROWS(T, S)                                                     \
void sum_rows_##S(T *restrict out, const T *const *restrict rows, Py_ssize_t count, \
                  int first, Py_ssize_t n) {                                        \
    for (Py_ssize_t c = 0; c < n; ++c) {                                            \
        T acc = (first ? (T)0 : out[c]) + rows[0][c];                               \
        for (Py_ssize_t k = 1; k < count; ++k) acc += rows[k][c];                   \
        out[c] = acc;                                                               \
    }                                                                               \
}
#endif
FASTGRAD_SUM_ROWS(float, f)
FASTGRAD_SUM_ROWS(double, d)

/* The factored path's segment sums for slots j0 .. j1-1 (at most
   FASTGRAD_SLOTS_PER_SUM): sums[u] = Σ src[i] over the examples i whose key in
   slot j is u (pos[i * n_slots + j] = u), i ascending. A slot's keys must be
   numbered from slot_offsets[j] on in order of first occurrence (as
   fastgrad._grouping.group_slots numbers them), so a key is new exactly when it
   is the next number: copied then, added to after. Examples go in blocks of
   `block` whose src rows stay in L1 while every slot of the range reads them. */
#define FASTGRAD_SLOTS_PER_SUM 8
#define FASTGRAD_SLOT_SUMS(T, S)                                                    \
FASTGRAD_CLONES                                                                     \
void sum_slots_by_example_##S(T *restrict sums, const T *restrict src,              \
                              const int64_t *restrict pos, Py_ssize_t n,            \
                              Py_ssize_t n_slots, const int64_t *restrict slot_offsets, \
                              Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t block,       \
                              Py_ssize_t len) {                                     \
    int64_t next_key[FASTGRAD_SLOTS_PER_SUM];                                       \
    if (j1 - j0 > FASTGRAD_SLOTS_PER_SUM) j1 = j0 + FASTGRAD_SLOTS_PER_SUM;         \
    for (Py_ssize_t j = j0; j < j1; ++j) next_key[j - j0] = slot_offsets[j];        \
    for (Py_ssize_t first = 0; first < n; first += block) {                         \
        Py_ssize_t last = first + block < n ? first + block : n;                    \
        for (Py_ssize_t j = j0; j < j1; ++j) {                                      \
            int64_t next = next_key[j - j0];                                        \
            for (Py_ssize_t i = first; i < last; ++i) {                             \
                int64_t u = pos[i * n_slots + j];                                   \
                if (u == next) {                                                    \
                    memcpy(sums + u * len, src + i * len, len * sizeof(T));         \
                    ++next;                                                         \
                } else {                                                            \
                    add_row_##S(sums + u * len, src + i * len, len);                \
                }                                                                   \
            }                                                                       \
            next_key[j - j0] = next;                                                \
        }                                                                           \
    }                                                                               \
}
FASTGRAD_SLOT_SUMS(float, f)
FASTGRAD_SLOT_SUMS(double, d)

/* exp(x) for x <= 0 in float32, written so that a loop of it vectorizes (no libm
   call, no branch): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, Cephes'
   degree-7 polynomial for e^r, 2^k built in the exponent bits. Relative error
   ~2e-7 (a couple of ulp). Below -87.3 the result is 0; NaN stays NaN. */
static inline float fastgrad_expf_nonpositive(float x) {
    const float lo = -87.33654f;
    float xc = x < lo ? lo : x;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round */
    float r = xc - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_k;
    two_k.i = ((int32_t) k + 127) << 23;
    float e = x < lo ? 0.0f : p * two_k.f;
    return x == x ? e : x;
}
/* row[c] = exp(row[c] - shift) for every c, shift the row's max */
FASTGRAD_CLONES
void exp_shifted_row_f(float *restrict row, float shift, Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; ++c) row[c] = fastgrad_expf_nonpositive(row[c] - shift);
}
static inline void exp_shifted_row_d(double *restrict row, double shift, Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; ++c) row[c] = exp(row[c] - shift);
}
/* Σ row in double, eight partial sums in a fixed order: deterministic, and not
   bound by the latency of one chain of additions */
#define FASTGRAD_SUM_ROW(T, S)                                                      \
FASTGRAD_CLONES double sum_row_##S(const T *restrict row, Py_ssize_t n) {           \
    double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                      \
    Py_ssize_t c = 0;                                                               \
    for (; c + 8 <= n; c += 8)                                                      \
        for (int k = 0; k < 8; ++k) part[k] += (double) row[c + k];                 \
    double total = ((part[0] + part[1]) + (part[2] + part[3]))                      \
                 + ((part[4] + part[5]) + (part[6] + part[7]));                     \
    for (; c < n; ++c) total += (double) row[c];                                    \
    return total;                                                                   \
}
FASTGRAD_SUM_ROW(float, f)
FASTGRAD_SUM_ROW(double, d)
/* max of a row (n >= 1), eight running maxima: throughput-, not latency-bound.
   A NaN is skipped, as by the scalar `v > mx`; NaN rows still give NaN losses
   because exp(NaN - max) is NaN. */
#define FASTGRAD_MAX_ROW(T, S)                                                      \
FASTGRAD_CLONES T max_row_##S(const T *restrict row, Py_ssize_t n) {                \
    T mx = row[0];                                                                  \
    Py_ssize_t c = 1;                                                               \
    if (n >= 16) {                                                                  \
        T part[8];                                                                  \
        for (int k = 0; k < 8; ++k) part[k] = row[k];                               \
        for (c = 8; c + 8 <= n; c += 8)                                             \
            for (int k = 0; k < 8; ++k)                                             \
                part[k] = row[c + k] > part[k] ? row[c + k] : part[k];              \
        for (int k = 0; k < 8; ++k) mx = part[k] > mx ? part[k] : mx;               \
    }                                                                               \
    for (; c < n; ++c) mx = row[c] > mx ? row[c] : mx;                              \
    return mx;                                                                      \
}
FASTGRAD_MAX_ROW(float, f)
FASTGRAD_MAX_ROW(double, d)

#endif
