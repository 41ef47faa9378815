# cython: language_level=3
"""Compiled kernels of the embedding-window network.

Design
------
One training step of the network in DEVELOPERS.md is six matrix products
(xW, hU, hᵀδ1, δ1Uᵀ, xᵀδ2, δ2Wᵀ) glued together by cheap row-wise work. The
products go to BLAS through the typed layer in ``_blas.pxd``; everything else
is written here as small ``noexcept nogil`` per-row functions, driven by
``prange`` loops over rows (OpenMP when the build has it, serial otherwise).

Layers, bottom to top:

1. per-row functions (``softmax_xent_row``, ``sum_rows``): pure C, no GIL;
2. row-parallel loops over them (``gather_rows``, ``bias_relu_rows``, ...),
   each parallel over output rows so no two threads ever write the same row;
   the two column sums (db1, db2) are per-thread shares added in thread order.
   The result is fixed for a given thread count and bit-identical from run to
   run (thread counts differ only in the rounding of db1 and db2). Every
   parallel loop asks for all n_threads threads, even one with fewer pieces of
   work: a smaller team makes libgomp park the others, and the next loop must
   wake them;
3. ``run_step``: one pass of forward and backward on the dense or the
   factored path, writing only into caller-provided buffers;
4. ``fastgrad._api``: validation, the workspace cache and the public API.
   Nothing here checks its input: the API has done it before any kernel runs.

Two paths compute the same numbers:

* dense: x = [L[w_0] ... L[w_{m-1}]] is gathered into an (N, m*d) buffer and
  the products run over it, exactly as the derivation reads;
* factored: xW = Σ_j L[w_j] W_j, so each distinct (slot, row) pair of the batch
  is multiplied once. ``group_slots`` groups the occurrences of each slot;
  P_j = L[uniq_j] W_j, z[n] = b1 + Σ_j P[pos(n, j)]; backward the segment
  sums S = Σ_occurrences δ2 give dW_j = L[uniq_j]ᵀ S_j and dL rows S_j W_jᵀ.

The embedding gradient is never dense: occurrences are grouped by row, each
row's contributions are summed first (in a fixed order) and the row of L is
touched once. A training step (MODE_UPDATE) applies its optimizer rule there,
row by row, with the row's own optimizer state: SGD, momentum, AdaGrad and Adam
are one C loop each (``update_row_*``), and L2 and the dropout mask are folded
into the passes that already exist, never a pass of their own.

Inference can skip the first layer's products altogether: ``precomputed_hidden``
adds cached rows of L[v] W_j (Chen & Manning's precomputation trick).

Buffers are owned by the caller (``fastgrad._api.Workspace``) and reused from
step to step; the kernels allocate nothing.
"""

cimport cython
from cython.parallel cimport prange, threadid
from libc.math cimport log, isfinite
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

from fastgrad._blas cimport floating, gemm

cnp.import_array()

cdef extern from *:
    """
    #if FASTGRAD_OPENMP
    #include <omp.h>
    static int fastgrad_openmp_max_threads(void) { return omp_get_max_threads(); }
    static double fastgrad_wtime(void) { return omp_get_wtime(); }
    #else
    static int fastgrad_openmp_max_threads(void) { return 1; }
    static double fastgrad_wtime(void) { return 0.0; }
    #endif
    """
    const int FASTGRAD_OPENMP
    int fastgrad_openmp_max_threads() noexcept nogil
    double fastgrad_wtime() noexcept nogil

OPENMP = bool(FASTGRAD_OPENMP)


def openmp_max_threads():
    """OpenMP's default thread count (1 in a build without OpenMP)."""
    return fastgrad_openmp_max_threads()


# ---------------------------------------------------------------------------
# Phase timing: where a step's time goes (tools/phase_profile.py), off by default
# ---------------------------------------------------------------------------
# Wall-clock seconds per phase of run_step, summed over the steps while on; one
# clock read per phase, nothing when off. A developer's tool: not thread-safe
# (steps on two Python threads at once mix their phases), and OpenMP builds only.

PHASES = ("gather rows of L", "first layer: products", "first layer: sums, bias, ReLU",
          "output product hU", "softmax and loss", "ReLU mask backward (δ1Uᵀ)", "dU = hᵀδ1",
          "segment sums of δ2", "dW and dL products", "group dL rows",
          "update L rows (or sum dL)", "update W, b1, U, b2")
cdef enum:
    N_PHASES = 12
cdef double phase_seconds[N_PHASES]
cdef bint phase_timing_on = False


def set_phase_timing(bint on):
    """Start (clearing the totals) or stop timing the phases of run_step."""
    global phase_timing_on
    if on and not FASTGRAD_OPENMP:
        raise RuntimeError("phase timing needs a build with OpenMP (its clock)")
    memset(phase_seconds, 0, sizeof(phase_seconds))
    phase_timing_on = on


def phase_timing():
    """{phase name: seconds} summed since set_phase_timing(True)."""
    return {name: phase_seconds[i] for i, name in enumerate(PHASES)}


cdef inline void lap(int phase, double* since) noexcept nogil:
    """Bill the time since `since` to `phase`, and restart the clock."""
    cdef double now
    if phase_timing_on:
        now = fastgrad_wtime()
        phase_seconds[phase] += now - since[0]
        since[0] = now


# What run_step computes (the public names live in fastgrad._api).
cpdef enum:
    MODE_PROBA = 0   # forward; theta holds the probabilities
    MODE_LOSS = 1    # forward and loss
    MODE_GRAD = 2    # loss and every gradient, into the workspace
    MODE_UPDATE = 3  # loss and gradients, then every parameter updated by an UpdateRule

cpdef enum:
    PATH_DENSE = 0
    PATH_FACTORED = 1

# How MODE_UPDATE turns a gradient g into a parameter update (see update_row_*).
cpdef enum:
    RULE_SGD = 0       # p -= lr (g + l2 p)
    RULE_MOMENTUM = 1  # b = μ b + g;  p -= lr b
    RULE_ADAGRAD = 2   # G += g²;  p -= lr g / (√G + eps)   (or / √(G + eps))
    RULE_ADAM = 3      # torch.optim.Adam on dense parameters, SparseAdam on rows of L

# Rows of δ2 computed per GEMM in relu_mask_backward: a block stays in cache
# while its ReLU mask and its share of db1 are applied.
cdef enum:
    BLOCK_ROWS = 64


# Fewest output rows worth a thread of their own in gemm_rows_parallel.
cdef enum:
    MIN_ROWS_PER_THREAD = 32

# Rows of a table prefetched ahead of the one being read or updated.
cdef enum:
    PREFETCH_AHEAD = 8


# Entries of a dense parameter per parallel chunk of an optimizer update.
cdef enum:
    UPDATE_CHUNK = 8192


# ---------------------------------------------------------------------------
# One threading layer: products split by output rows over OpenMP threads
# ---------------------------------------------------------------------------

cdef void gemm_rows_parallel(bint trans_a, bint trans_b, int n_rows, int n_cols, int n_inner,
                             floating alpha, const floating* a, int lda,
                             const floating* b, int ldb, floating beta, floating* c,
                             int ldc, int n_threads) noexcept nogil:
    """gemm with its output rows split into n_threads contiguous blocks.

    The API runs BLAS single-threaded while a kernel runs, so OpenMP is the
    only thread pool: BLAS's spinning workers never compete with the
    row-parallel loops. Each thread owns whole rows of C, so there is no
    reduction and the result is fixed for a given thread count.
    """
    cdef int t, start, rows
    cdef int n_chunks = min(n_threads, (n_rows + MIN_ROWS_PER_THREAD - 1) // MIN_ROWS_PER_THREAD)
    cdef int chunk
    if n_chunks <= 1:
        gemm(trans_a, trans_b, n_rows, n_cols, n_inner, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    chunk = (n_rows + n_chunks - 1) // n_chunks
    for t in prange(n_chunks, num_threads=n_threads, schedule='static'):
        start = t * chunk
        rows = min(chunk, n_rows - start)
        if rows > 0:
            gemm(trans_a, trans_b, rows, n_cols, n_inner, alpha,
                 a + (start if trans_a else <Py_ssize_t> start * lda), lda, b, ldb, beta,
                 c + <Py_ssize_t> start * ldc, ldc)


# The factored path's products, one set per feature slot j (keys key0 .. key0+K_j):
#   SLOT_FORWARD:  P_j = L[uniq_j] W_j                         (K_j x Dh)
#   SLOT_BACKWARD: dW_j = L[uniq_j]ᵀ S_j, then the keys' dL rows S_j W_jᵀ (K_j x d),
#                  written over L[uniq_j] once dW_j no longer needs it
# Slots differ in size (a word slot has hundreds of keys, a tag slot a few dozen),
# so whole slots balance badly over many threads (18 word slots on 16 threads: two
# rounds, the second one-eighth full). So at more threads the products are cut
# into about TASKS_PER_THREAD tasks a thread, handed out dynamically: blocks of
# keys for P_j and the dL rows, blocks of columns for dW_j (whose inner dimension
# is K_j: its rows cannot be cut without a reduction). Cutting finer than needed
# costs: each BLAS call repacks its operands (with fixed 128-key and 64-column
# blocks a 1-thread parser step spent ~25% more time in BLAS). Each task is one
# BLAS call fixed by the thread count, so the result is fixed for a thread count.
cdef enum:
    SLOT_FORWARD = 0
    SLOT_BACKWARD = 1
    TASKS_PER_THREAD = 4
    MIN_BLOCK_ROWS = 64
    MIN_BLOCK_COLS = 32


cdef inline void slot_rows_task(int stage, Py_ssize_t task, Py_ssize_t n_slots,
                                Py_ssize_t block_rows, const int64_t* slot_offsets,
                                Py_ssize_t d, Py_ssize_t n_hidden, floating* xu,
                                floating* products, const floating* W) noexcept nogil:
    """Task `task` of the row blocks: P rows (forward) or dL rows (backward) of one
    block of one slot's keys; tasks past a slot's last block do nothing."""
    cdef Py_ssize_t j = task % n_slots
    cdef Py_ssize_t first = slot_offsets[j] + (task // n_slots) * block_rows
    cdef int rows = <int> min(block_rows, slot_offsets[j + 1] - first)
    cdef const floating* W_j = W + j * d * n_hidden
    if rows <= 0:
        return
    if stage == SLOT_FORWARD:
        gemm(False, False, rows, <int> n_hidden, <int> d, <floating> 1, xu + first * d, <int> d,
             W_j, <int> n_hidden, <floating> 0, products + first * n_hidden, <int> n_hidden)
    else:
        gemm(False, True, rows, <int> d, <int> n_hidden, <floating> 1,
             products + first * n_hidden, <int> n_hidden, W_j, <int> n_hidden, <floating> 0,
             xu + first * d, <int> d)


cdef inline void slot_dW_task(Py_ssize_t task, Py_ssize_t n_slots, Py_ssize_t block_cols,
                              const int64_t* slot_offsets, Py_ssize_t d, Py_ssize_t n_hidden,
                              const floating* xu, const floating* products,
                              floating* dW) noexcept nogil:
    """Task `task` of dW: one block of columns of dW_j = L[uniq_j]ᵀ S_j."""
    cdef Py_ssize_t j = task % n_slots
    cdef Py_ssize_t col = (task // n_slots) * block_cols
    cdef Py_ssize_t key0 = slot_offsets[j]
    cdef int k = <int> (slot_offsets[j + 1] - key0)
    cdef int cols = <int> min(block_cols, n_hidden - col)
    if cols <= 0:
        return
    gemm(True, False, <int> d, cols, k, <floating> 1, xu + key0 * d, <int> d,
         products + key0 * n_hidden + col, <int> n_hidden, <floating> 0,
         dW + j * d * n_hidden + col, <int> n_hidden)


cdef void slot_gemms(int stage, const int64_t* slot_offsets, Py_ssize_t n_slots, Py_ssize_t d,
                     Py_ssize_t n_hidden, floating* xu, floating* products, const floating* W,
                     floating* dW, int n_threads) noexcept nogil:
    """Every slot's products, as tasks handed out dynamically (see above).

    IN/OUT xu (K x d): L[key rows]; in SLOT_BACKWARD overwritten by the dL rows
    IN/OUT products (K x Dh): OUT P (forward); IN S (backward)
    OUT dW (backward)
    """
    cdef Py_ssize_t j, task, most_keys = 0
    cdef Py_ssize_t n_tasks = <Py_ssize_t> TASKS_PER_THREAD * n_threads
    cdef Py_ssize_t n_keys = slot_offsets[n_slots]
    for j in range(n_slots):
        most_keys = max(most_keys, slot_offsets[j + 1] - slot_offsets[j])
    # about n_tasks blocks of keys in all, and dW_j in as many column blocks as it
    # takes for n_tasks; at 1 thread that is one call per slot and product
    cdef Py_ssize_t block_rows = max(<Py_ssize_t> MIN_BLOCK_ROWS, (n_keys + n_tasks - 1) // n_tasks)
    cdef Py_ssize_t col_blocks = min((n_tasks + n_slots - 1) // n_slots,
                                     max(<Py_ssize_t> 1, n_hidden // MIN_BLOCK_COLS))
    cdef Py_ssize_t block_cols = (n_hidden + col_blocks - 1) // col_blocks
    # block-major task order: every slot's first block, then every slot's second, ...
    cdef Py_ssize_t n_row_tasks = n_slots * ((most_keys + block_rows - 1) // block_rows)
    cdef Py_ssize_t n_dW_tasks = n_slots * col_blocks
    block_cols = (block_cols + 15) // 16 * 16   # whole SIMD registers, columns of either dtype
    if stage == SLOT_BACKWARD and n_row_tasks == n_slots and col_blocks == 1:
        # whole slots: dL_j right after dW_j, while S_j is still in cache
        for task in prange(n_slots, num_threads=n_threads, schedule='dynamic'):
            slot_dW_task(task, n_slots, block_cols, slot_offsets, d, n_hidden, xu, products,
                         dW)
            slot_rows_task(stage, task, n_slots, block_rows, slot_offsets, d, n_hidden, xu,
                           products, W)
        return
    if stage == SLOT_BACKWARD:
        for task in prange(n_dW_tasks, num_threads=n_threads, schedule='dynamic'):
            slot_dW_task(task, n_slots, block_cols, slot_offsets, d, n_hidden, xu, products,
                         dW)
    for task in prange(n_row_tasks, num_threads=n_threads, schedule='dynamic'):
        slot_rows_task(stage, task, n_slots, block_rows, slot_offsets, d, n_hidden, xu,
                       products, W)


# Row loops that must vectorize. Cython cannot say `restrict`, and without it
# the compiler has to assume the rows may overlap and keeps these loops
# scalar; so they are written in C, once per dtype.
cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__cplusplus)
    #define restrict __restrict  /* MSVC's C compiler spells it this way */
    #endif
    /* The hottest row loops are compiled for AVX2 and plain x86-64 and the
       best one is picked at load time (GCC function multiversioning, glibc x86-64: it
       needs ifunc, which musl lacks);
       a wheel built for every x86-64 then still uses the wide vectors of the CPU it
       runs on. Same operations in the same order in every version (and no FMA
       contraction: -ffp-contract=off), so the results do not depend on the CPU. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
    #define FASTGRAD_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define FASTGRAD_CLONES
    #endif
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
    #define FASTGRAD_ROW_LOOPS(T, S)                                                   \\
    static inline void add_row_##S(T *restrict out, const T *restrict src,             \\
                                   Py_ssize_t n) {                                     \\
        for (Py_ssize_t c = 0; c < n; ++c) out[c] += src[c];                           \\
    }                                                                                  \\
    /* relu'(z) mask of one row of δ2, and that row added into db1 */                  \\
    /* (h is after dropout: a dropped unit is 0, a kept one was scaled by `scale`) */  \\
    FASTGRAD_CLONES void mask_add_row_##S(T *restrict delta, const T *restrict h,        \\
                                        T *restrict total, T scale, Py_ssize_t n) {    \\
        for (Py_ssize_t c = 0; c < n; ++c) {                                           \\
            T v = h[c] > 0 ? delta[c] * scale : (T)0;                                  \\
            delta[c] = v;                                                              \\
            total[c] += v;                                                             \\
        }                                                                              \\
    }                                                                                  \\
    /* out = relu(out + bias); NaN stays NaN, as np.maximum's does */                  \\
    FASTGRAD_CLONES void bias_relu_row_##S(T *restrict out, const T *restrict bias,      \\
                                         Py_ssize_t n) {                               \\
        for (Py_ssize_t c = 0; c < n; ++c) {                                           \\
            T v = out[c] + bias[c];                                                    \\
            out[c] = v < 0 ? (T)0 : v;                                                 \\
        }                                                                              \\
    }                                                                                  \\
    /* inverted dropout: keep a unit when its uniform draw u < keep, scaled by 1/keep */ \\
    FASTGRAD_CLONES void dropout_row_##S(T *restrict h, const T *restrict u, T keep,     \\
                                       T scale, Py_ssize_t n) {                        \\
        for (Py_ssize_t c = 0; c < n; ++c) h[c] = u[c] < keep ? h[c] * scale : (T)0;  \\
    }                                                                                  \\
    /* One optimizer step on n entries: p, its gradient g (l2 p is added here, not   \\
       in a pass of its own) and the rule's state s1, s2 (NULL when unused). A row  \\
       of L passes sparse = 1: Adam then follows torch.optim.SparseAdam. */          \\
    FASTGRAD_CLONES void update_row_##S(const fastgrad_rule *r, int sparse, T *restrict p,      \\
                               const T *restrict g, T *restrict s1, T *restrict s2,    \\
                               Py_ssize_t n) {                                         \\
        const T lr = (T)r->lr, l2 = (T)r->l2, eps = (T)r->eps;                         \\
        Py_ssize_t c;                                                                  \\
        switch (r->kind) {                                                             \\
        case 0:                                                                        \\
            for (c = 0; c < n; ++c) p[c] -= lr * (g[c] + l2 * p[c]);                   \\
            break;                                                                     \\
        case 1: {                                                                      \\
            const T mu = (T)r->momentum;                                               \\
            for (c = 0; c < n; ++c) {                                                  \\
                T b = mu * s1[c] + (g[c] + l2 * p[c]);                                 \\
                s1[c] = b;                                                             \\
                p[c] -= lr * b;                                                        \\
            }                                                                          \\
            break; }                                                                   \\
        case 2:                                                                        \\
            if (r->eps_inside_sqrt) {                                                  \\
                for (c = 0; c < n; ++c) {                                              \\
                    T gi = g[c] + l2 * p[c], G = s1[c] + gi * gi;                      \\
                    s1[c] = G;                                                         \\
                    p[c] -= lr * gi / SQRT_##S(G + eps);                               \\
                }                                                                      \\
            } else {                                                                   \\
                for (c = 0; c < n; ++c) {                                              \\
                    T gi = g[c] + l2 * p[c], G = s1[c] + gi * gi;                      \\
                    s1[c] = G;                                                         \\
                    p[c] -= lr * gi / (SQRT_##S(G) + eps);                             \\
                }                                                                      \\
            }                                                                          \\
            break;                                                                     \\
        case 3: {                                                                      \\
            const T b1 = (T)r->beta1, b2 = (T)r->beta2;                                \\
            const T step = (T)(sparse ? r->sparse_step : r->dense_step);               \\
            const T scale = (T)(sparse ? 1.0 : r->dense_denom_scale);                  \\
            for (c = 0; c < n; ++c) {                                                  \\
                T gi = g[c] + l2 * p[c];                                               \\
                T m = s1[c] + (1 - b1) * (gi - s1[c]);                                 \\
                T v = b2 * s2[c] + (1 - b2) * gi * gi;                                 \\
                s1[c] = m;                                                             \\
                s2[c] = v;                                                             \\
                p[c] -= step * m / (SQRT_##S(v) * scale + eps);                        \\
            }                                                                          \\
            break; }                                                                   \\
        }                                                                              \\
    }
    typedef struct {
        int kind, eps_inside_sqrt;
        double lr, l2, momentum, eps, beta1, beta2;
        double dense_step, dense_denom_scale, sparse_step;  /* Adam's bias corrections */
    } fastgrad_rule;
    #define SQRT_f sqrtf
    #define SQRT_d sqrt
    FASTGRAD_ROW_LOOPS(float, f)
    FASTGRAD_ROW_LOOPS(double, d)

    /* out = Σ_k table[idx[k]] (rows of n), in the order of idx; count >= 1. Four rows
       are added per sweep over out, in registers and in the same order as one at a
       time ((((out + r0) + r1) + r2) + r3): the same bits, a quarter of the stores. */
    #define FASTGRAD_SUM_INDEXED(T, S)                                                 \
    static inline void add4_rows_##S(T *restrict out, const T *restrict r0,            \
                                     const T *restrict r1, const T *restrict r2,       \
                                     const T *restrict r3, Py_ssize_t n) {             \
        for (Py_ssize_t c = 0; c < n; ++c)                                             \
            out[c] = (((out[c] + r0[c]) + r1[c]) + r2[c]) + r3[c];                     \
    }                                                                                  \
    FASTGRAD_CLONES                                                                    \
    void sum_indexed_rows_##S(T *restrict out, const T *table,                         \
                              const int64_t *restrict idx, Py_ssize_t count,           \
                              Py_ssize_t n) {                                          \
        Py_ssize_t k = 1;                                                              \
        memcpy(out, table + idx[0] * n, n * sizeof(T));                                \
        for (; k + 4 <= count; k += 4)                                                 \
            add4_rows_##S(out, table + idx[k] * n, table + idx[k + 1] * n,             \
                          table + idx[k + 2] * n, table + idx[k + 3] * n, n);          \
        for (; k < count; ++k)                                                         \
            add_row_##S(out, table + idx[k] * n, n);                                   \
    }
    FASTGRAD_SUM_INDEXED(float, f)
    FASTGRAD_SUM_INDEXED(double, d)

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
    #define FASTGRAD_SUM_ROW(T, S)                                                     \
    FASTGRAD_CLONES double sum_row_##S(const T *restrict row, Py_ssize_t n) {             \
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                     \
        Py_ssize_t c = 0;                                                              \
        for (; c + 8 <= n; c += 8)                                                     \
            for (int k = 0; k < 8; ++k) part[k] += (double) row[c + k];                \
        double total = ((part[0] + part[1]) + (part[2] + part[3]))                     \
                     + ((part[4] + part[5]) + (part[6] + part[7]));                    \
        for (; c < n; ++c) total += (double) row[c];                                   \
        return total;                                                                  \
    }
    FASTGRAD_SUM_ROW(float, f)
    FASTGRAD_SUM_ROW(double, d)
    /* max of a row (n >= 1), eight running maxima: throughput-, not latency-bound.
       A NaN is skipped, as by the scalar `v > mx`; NaN rows still give NaN losses
       because exp(NaN - max) is NaN. */
    #define FASTGRAD_MAX_ROW(T, S)                                                     \
    FASTGRAD_CLONES T max_row_##S(const T *restrict row, Py_ssize_t n) {                  \
        T mx = row[0];                                                                 \
        Py_ssize_t c = 1;                                                              \
        if (n >= 16) {                                                                 \
            T part[8];                                                                 \
            for (int k = 0; k < 8; ++k) part[k] = row[k];                              \
            for (c = 8; c + 8 <= n; c += 8)                                            \
                for (int k = 0; k < 8; ++k)                                            \
                    part[k] = row[c + k] > part[k] ? row[c + k] : part[k];             \
            for (int k = 0; k < 8; ++k) mx = part[k] > mx ? part[k] : mx;              \
        }                                                                              \
        for (; c < n; ++c) mx = row[c] > mx ? row[c] : mx;                             \
        return mx;                                                                     \
    }
    FASTGRAD_MAX_ROW(float, f)
    FASTGRAD_MAX_ROW(double, d)
    """
    void fastgrad_prefetch(const void* p, Py_ssize_t n_bytes, int write) noexcept nogil
    ctypedef struct fastgrad_rule:
        int kind, eps_inside_sqrt
        double lr, l2, momentum, eps, beta1, beta2
        double dense_step, dense_denom_scale, sparse_step
    void add_row_f(float* out, const float* src, Py_ssize_t n) noexcept nogil
    void add_row_d(double* out, const double* src, Py_ssize_t n) noexcept nogil
    void mask_add_row_f(float* delta, const float* h, float* total, float scale,
                        Py_ssize_t n) noexcept nogil
    void mask_add_row_d(double* delta, const double* h, double* total, double scale,
                        Py_ssize_t n) noexcept nogil
    void dropout_row_f(float* h, const float* u, float keep, float scale,
                       Py_ssize_t n) noexcept nogil
    void dropout_row_d(double* h, const double* u, double keep, double scale,
                       Py_ssize_t n) noexcept nogil
    void exp_shifted_row_f(float* row, float shift, Py_ssize_t n) noexcept nogil
    void sum_indexed_rows_f(float* out, const float* table, const int64_t* idx,
                            Py_ssize_t count, Py_ssize_t n) noexcept nogil
    void sum_indexed_rows_d(double* out, const double* table, const int64_t* idx,
                            Py_ssize_t count, Py_ssize_t n) noexcept nogil
    void exp_shifted_row_d(double* row, double shift, Py_ssize_t n) noexcept nogil
    double sum_row_f(const float* row, Py_ssize_t n) noexcept nogil
    double sum_row_d(const double* row, Py_ssize_t n) noexcept nogil
    float max_row_f(const float* row, Py_ssize_t n) noexcept nogil
    double max_row_d(const double* row, Py_ssize_t n) noexcept nogil
    void update_row_f(const fastgrad_rule* r, int sparse, float* p, const float* g,
                      float* s1, float* s2, Py_ssize_t n) noexcept nogil
    void update_row_d(const fastgrad_rule* r, int sparse, double* p, const double* g,
                      double* s1, double* s2, Py_ssize_t n) noexcept nogil
    void bias_relu_row_f(float* out, const float* bias, Py_ssize_t n) noexcept nogil
    void bias_relu_row_d(double* out, const double* bias, Py_ssize_t n) noexcept nogil


cdef inline void add_row(floating* out, const floating* src, Py_ssize_t n) noexcept nogil:
    """out[:n] += src[:n]; the rows must not overlap."""
    if floating is float:
        add_row_f(out, src, n)
    else:
        add_row_d(out, src, n)


cdef inline void bias_relu_row(floating* out, const floating* bias, Py_ssize_t n) noexcept nogil:
    """out[:n] = relu(out[:n] + bias[:n])."""
    if floating is float:
        bias_relu_row_f(out, bias, n)
    else:
        bias_relu_row_d(out, bias, n)


cdef inline void mask_add_row(floating* delta, const floating* h, floating* total,
                              floating scale, Py_ssize_t n) noexcept nogil:
    """delta[:n] *= [h > 0] * scale; total[:n] += delta[:n]."""
    if floating is float:
        mask_add_row_f(delta, h, total, scale, n)
    else:
        mask_add_row_d(delta, h, total, scale, n)


cdef inline void update_row(const fastgrad_rule* rule, bint sparse, floating* p,
                            const floating* g, floating* s1, floating* s2,
                            Py_ssize_t n) noexcept nogil:
    """p[:n] updated from its gradient g by the rule; s1, s2 its state (or NULL)."""
    if floating is float:
        update_row_f(rule, sparse, p, g, s1, s2, n)
    else:
        update_row_d(rule, sparse, p, g, s1, s2, n)


# ---------------------------------------------------------------------------
# Per-row functions
# ---------------------------------------------------------------------------

cdef inline void sum_rows(const floating* src, Py_ssize_t row_len,
                          const int64_t* members, Py_ssize_t count,
                          floating* out) noexcept nogil:
    """out = Σ_i src[members[i]], summed in the order of members.

    IN src (rows of row_len), IN members[count] (count >= 1), OUT out[row_len].
    """
    if floating is float:
        sum_indexed_rows_f(out, src, members, count, row_len)
    else:
        sum_indexed_rows_d(out, src, members, count, row_len)


cdef inline double softmax_xent_row(floating* row, Py_ssize_t n_classes, int64_t label,
                                    int mode, floating scale,
                                    unsigned char* correct) noexcept nogil:
    """Stable softmax and cross-entropy of one row of logits, in one pass.

    IN/OUT row: logits θ; on return, by mode, the probabilities (MODE_PROBA),
    δ1 = (ŷ - onehot(label)) * scale (MODE_GRAD, MODE_UPDATE), or exp(θ - max θ)
    (MODE_LOSS). Returns the row's cross-entropy (0 for MODE_PROBA). The
    exponentials are one vectorized sweep; their sum is taken in double; no
    one-hot row is ever built.
    OUT correct (not in MODE_PROBA): 1 when the label's logit is the row's maximum.
    """
    cdef Py_ssize_t c
    cdef floating mx
    cdef floating e
    cdef double total
    cdef double xent = 0.0
    if floating is float:
        mx = max_row_f(row, n_classes)
    else:
        mx = max_row_d(row, n_classes)
    if mode != 0:
        correct[0] = row[label] >= mx
        xent = -(<double> row[label] - <double> mx)
    if floating is float:
        exp_shifted_row_f(row, mx, n_classes)
        total = sum_row_f(row, n_classes)
    else:
        exp_shifted_row_d(row, mx, n_classes)
        total = sum_row_d(row, n_classes)
    if mode == 1:
        return xent + log(total)
    if mode == 0:
        scale = <floating> (1.0 / total)
        for c in range(n_classes):
            row[c] *= scale
        return 0.0
    xent += log(total)
    e = <floating> (<double> scale / total)
    for c in range(n_classes):
        row[c] *= e
    row[label] -= scale
    return xent


# ---------------------------------------------------------------------------
# Row-parallel loops
# ---------------------------------------------------------------------------

cdef void gather_rows(const floating* table, Py_ssize_t row_len, const int64_t* rows,
                      Py_ssize_t n_rows, floating* out, int n_threads) noexcept nogil:
    """out[i] = table[rows[i]] for i < n_rows.  IN table, rows; OUT out."""
    cdef Py_ssize_t i
    for i in prange(n_rows, num_threads=n_threads, schedule='static'):
        if i + PREFETCH_AHEAD < n_rows:
            fastgrad_prefetch(table + rows[i + PREFETCH_AHEAD] * row_len,
                              row_len * sizeof(floating), 0)
        memcpy(out + i * row_len, table + rows[i] * row_len, row_len * sizeof(floating))


cdef void bias_relu_rows(floating* z, const floating* b1, Py_ssize_t n, Py_ssize_t n_hidden,
                         int n_threads) noexcept nogil:
    """h = relu(z + b1), in place.  IN/OUT z (n x n_hidden), IN b1."""
    cdef Py_ssize_t i
    for i in prange(n, num_threads=n_threads, schedule='static'):
        bias_relu_row(z + i * n_hidden, b1, n_hidden)


cdef void sum_slot_products_relu(const floating* products, const int64_t* pos,
                                 Py_ssize_t n, Py_ssize_t n_slots, Py_ssize_t n_hidden,
                                 const floating* b1, floating* h, int n_threads) noexcept nogil:
    """Factored forward: h[i] = relu(b1 + Σ_j products[pos[i, j]]).

    IN products (K x n_hidden): row u is L[row of u] W_slot(u)
    IN pos (n x n_slots): the product row of each (example, slot)
    OUT h (n x n_hidden)
    """
    cdef Py_ssize_t i, j
    cdef floating* out
    for i in prange(n, num_threads=n_threads, schedule='static'):
        out = h + i * n_hidden
        sum_rows(products, n_hidden, pos + i * n_slots, n_slots, out)
        bias_relu_row(out, b1, n_hidden)


cdef void softmax_xent_rows(floating* theta, const floating* b2, const int64_t* y,
                            Py_ssize_t n, Py_ssize_t n_classes, int mode, floating scale,
                            double* row_loss, unsigned char* row_correct,
                            floating* db2, floating* partials, Py_ssize_t share_stride,
                            int n_threads) noexcept nogil:
    """θ += b2, then softmax_xent_row, row by row while the row is in cache.

    Per-row losses go to row_loss so the batch sum can be taken serially, in a
    fixed order, whatever the threads. row_correct (n entries; unused in
    MODE_PROBA): 1 where the label's logit is the largest, for accuracies at no
    extra pass. With db2 (backward modes) each thread also adds its rows of δ1
    into its share of partials (n_threads shares of n_classes, share_stride apart:
    see fastgrad._api._padded), and db2 = Σ δ1 is the sum of the shares in thread order:
    no second sweep over θ.
    """
    cdef Py_ssize_t i
    cdef int64_t label
    cdef floating* row
    if db2 != NULL:
        memset(partials, 0, n_threads * share_stride * sizeof(floating))
    for i in prange(n, num_threads=n_threads, schedule='static'):
        label = y[i] if mode != 0 else 0
        row = theta + i * n_classes
        add_row(row, b2, n_classes)
        row_loss[i] = softmax_xent_row(row, n_classes, label, mode, scale, row_correct + i)
        if db2 != NULL:
            add_row(partials + threadid() * share_stride, row, n_classes)
    if db2 != NULL:
        memcpy(db2, partials, n_classes * sizeof(floating))
        for i in range(1, n_threads):
            add_row(db2, partials + i * share_stride, n_classes)


cdef inline Py_ssize_t group_range_start(const int64_t* group_ptr, Py_ssize_t n_groups,
                                         Py_ssize_t part, Py_ssize_t n_parts) noexcept nogil:
    """First group of part `part` when n_groups groups are cut into n_parts
    contiguous parts of about equal work, a group's work being its members plus one.

    Work per group is anything but even (a tag's key may hold hundreds of
    occurrences, a rare word's one), so equal numbers of groups per thread left
    most threads waiting for the one holding the tags: at 16 threads the segment
    sums took longer than at 4. A binary search on the running work
    group_ptr[g] - group_ptr[0] + g finds each cut.
    """
    cdef int64_t total = group_ptr[n_groups] - group_ptr[0] + n_groups
    cdef int64_t target = total * part // n_parts
    cdef Py_ssize_t lo = 0, hi = n_groups, mid
    if part >= n_parts:
        return n_groups
    while lo < hi:   # the first g whose running work reaches target
        mid = (lo + hi) // 2
        if group_ptr[mid] - group_ptr[0] + mid < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef void sum_groups(const floating* src, Py_ssize_t row_len, const int64_t* group_ptr,
                     const int64_t* members, Py_ssize_t n_groups, floating* out,
                     int n_threads) noexcept nogil:
    """Segment sum: out[g] = Σ src[members[group_ptr[g] : group_ptr[g+1]]].

    IN src rows, IN the groups (CSR), OUT out (n_groups x row_len). Threads take
    parts of equal work (group_range_start); each group's sum has one fixed
    order, so the result does not depend on the thread count.
    """
    cdef Py_ssize_t part, g
    for part in prange(n_threads, num_threads=n_threads, schedule='static'):
        for g in range(group_range_start(group_ptr, n_groups, part, n_threads),
                       group_range_start(group_ptr, n_groups, part + 1, n_threads)):
            sum_rows(src, row_len, members + group_ptr[g], group_ptr[g + 1] - group_ptr[g],
                     out + g * row_len)


cdef void scatter_update_groups(const floating* src, Py_ssize_t row_len,
                                const int64_t* group_ptr, const int64_t* members,
                                const int64_t* group_rows, Py_ssize_t n_groups,
                                const fastgrad_rule* rule, floating* table, floating* state1,
                                floating* state2, floating* scratch, Py_ssize_t share_stride,
                                int n_threads) noexcept nogil:
    """Row group_rows[g] of table updated by the rule from its gradient Σ src[members of g].

    Each touched row is summed into a per-thread scratch row and updated once,
    together with its own rows of the rule's state: the embedding gradient is
    never stored. Threads take parts of equal work, as in sum_groups.
    IN src rows and the groups; IN/OUT table, state1, state2 (|V| x row_len, or
    NULL when the rule keeps none); scratch: n_threads rows of row_len,
    share_stride apart.
    """
    cdef Py_ssize_t part, g, k, row, end, ahead
    cdef floating* acc
    for part in prange(n_threads, num_threads=n_threads, schedule='static'):
        acc = scratch + threadid() * share_stride
        end = group_range_start(group_ptr, n_groups, part + 1, n_threads)
        for g in range(group_range_start(group_ptr, n_groups, part, n_threads), end):
            if g + PREFETCH_AHEAD < end:
                ahead = group_rows[g + PREFETCH_AHEAD] * row_len
                fastgrad_prefetch(table + ahead, row_len * sizeof(floating), 1)
                for k in range(group_ptr[g + PREFETCH_AHEAD], group_ptr[g + PREFETCH_AHEAD + 1]):
                    fastgrad_prefetch(src + members[k] * row_len, row_len * sizeof(floating), 0)
                if state1 != NULL:
                    fastgrad_prefetch(state1 + ahead, row_len * sizeof(floating), 1)
                if state2 != NULL:
                    fastgrad_prefetch(state2 + ahead, row_len * sizeof(floating), 1)
            sum_rows(src, row_len, members + group_ptr[g], group_ptr[g + 1] - group_ptr[g],
                     acc)
            row = group_rows[g] * row_len
            update_row(rule, True, table + row, acc, state1 + row if state1 != NULL else NULL,
                       state2 + row if state2 != NULL else NULL, row_len)


cdef void update_dense(const fastgrad_rule* rule, floating* p, const floating* g,
                       floating* state1, floating* state2, Py_ssize_t n,
                       int n_threads) noexcept nogil:
    """A dense parameter (n entries) updated by the rule, in chunks over threads.

    IN g; IN/OUT p, state1, state2 (n entries each, or NULL when unused).
    """
    cdef Py_ssize_t chunk, start
    cdef Py_ssize_t n_chunks = (n + UPDATE_CHUNK - 1) // UPDATE_CHUNK
    for chunk in prange(n_chunks, num_threads=n_threads, schedule='static'):
        start = chunk * UPDATE_CHUNK
        update_row(rule, False, p + start, g + start,
                   state1 + start if state1 != NULL else NULL,
                   state2 + start if state2 != NULL else NULL, min(UPDATE_CHUNK, n - start))


cdef void dropout_rows(floating* h, const floating* u, Py_ssize_t n, Py_ssize_t n_hidden,
                       floating keep, int n_threads) noexcept nogil:
    """Inverted dropout: h[i, c] = u[i, c] < keep ? h[i, c] / keep : 0.

    IN/OUT h (n x n_hidden); IN u, uniform draws in [0, 1) of the same shape.
    """
    cdef Py_ssize_t i
    cdef floating scale = 1 / keep
    for i in prange(n, num_threads=n_threads, schedule='static'):
        if floating is float:
            dropout_row_f(h + i * n_hidden, u + i * n_hidden, keep, scale, n_hidden)
        else:
            dropout_row_d(h + i * n_hidden, u + i * n_hidden, keep, scale, n_hidden)


cdef void relu_mask_backward(const floating* delta1, const floating* U, const floating* h,
                             Py_ssize_t n, Py_ssize_t n_classes, Py_ssize_t n_hidden,
                             floating mask_scale, floating* delta2, floating* db1,
                             floating* partials, Py_ssize_t share_stride,
                             int n_threads) noexcept nogil:
    """δ2 = δ1 Uᵀ ∘ relu'(z) and db1 = Σ_rows δ2, one block of rows at a time.

    With dropout the mask is the dropout mask and the ReLU's at once: h is
    after dropout (0 where dropped) and mask_scale = 1/keep (1 without dropout).

    Each block's product is masked (relu'(z) = [h > 0]) and summed into its
    thread's share of db1 while it is still in cache: no mask array, no second
    sweep over δ2. Blocks go to threads statically and the shares are added in
    thread order, so db1 is fixed for a given thread count.
    IN delta1 (n x n_classes), U (n_hidden x n_classes), h (n x n_hidden)
    OUT delta2 (n x n_hidden), db1 (n_hidden); scratch partials (n_threads shares of
    n_hidden, share_stride apart)
    """
    cdef Py_ssize_t block, start, rows, i
    # Few classes: δ1Uᵀ is cheap and small blocks keep δ2 in L1 for the mask. Many
    # classes: the product dominates and every block repacks U, so one block a thread.
    cdef Py_ssize_t block_rows = BLOCK_ROWS if n_classes < BLOCK_ROWS else \
        max(<Py_ssize_t> BLOCK_ROWS, (n + n_threads - 1) // n_threads)
    cdef Py_ssize_t n_blocks = (n + block_rows - 1) // block_rows
    cdef floating* share
    memset(partials, 0, n_threads * share_stride * sizeof(floating))
    for block in prange(n_blocks, num_threads=n_threads, schedule='static'):
        start = block * block_rows
        rows = min(block_rows, n - start)
        share = partials + threadid() * share_stride
        gemm(False, True, <int> rows, <int> n_hidden, <int> n_classes,
             <floating> 1, delta1 + start * n_classes, <int> n_classes,
             U, <int> n_classes, <floating> 0, delta2 + start * n_hidden, <int> n_hidden)
        for i in range(start, start + rows):
            mask_add_row(delta2 + i * n_hidden, h + i * n_hidden, share, mask_scale, n_hidden)
    memcpy(db1, partials, n_hidden * sizeof(floating))
    for i in range(1, n_threads):
        add_row(db1, partials + i * share_stride, n_hidden)


# ---------------------------------------------------------------------------
# Grouping occurrences: by (slot, row) for the factored path, by row for dL
# ---------------------------------------------------------------------------
# Both groupings run on every step before (or between) the parallel loops, so a
# serial grouping bounds the speed-up at many threads (Amdahl): on cm2014 a serial
# (slot, row) grouping was ~10% of a 1-thread step. The (slot, row) grouping is
# split over slots; the grouping by row is a radix sort split over threads where
# the vocabulary is wide, and a serial counting sort where it is narrow (cheaper
# there than any split tried: see group_rows_by_counts). Both give the same groups
# whatever the thread count.

cdef enum:
    # Fewest items worth a thread of their own in group_rows.
    MIN_ITEMS_PER_THREAD = 2048
    # group_rows sorts by counts while the row range is at most this many times the
    # items, by radix beyond.
    COUNTING_RANGE_PER_ITEM = 2


cdef Py_ssize_t number_slot_keys(Py_ssize_t n, int32_t* table, int64_t* key_row,
                                 int64_t* key_count, int64_t* rows_then_keys) noexcept nogil:
    """Number one slot's distinct rows in order of first occurrence; returns k.

    IN/OUT rows_then_keys[n]: each item's row on entry, its key on return
    IN/OUT table[|V|]: all -1 on entry and on return
    OUT key_row[k], key_count[k] (occurrences of each key)
    """
    cdef Py_ssize_t i, k = 0
    cdef int64_t v
    cdef int32_t g
    for i in range(n):
        v = rows_then_keys[i]
        g = table[v]
        if g < 0:
            g = <int32_t> k
            table[v] = g
            key_row[k] = v
            key_count[k] = 0
            k += 1
        key_count[g] += 1
        rows_then_keys[i] = g
    for i in range(k):
        table[key_row[i]] = -1
    return k


cdef void place_slot_keys(Py_ssize_t n, Py_ssize_t k, int64_t key0, int64_t item0,
                          const int64_t* local_row, int64_t* key_count, int64_t* key_row,
                          int64_t* key_ptr, int64_t* occurrences,
                          int64_t* key_of) noexcept nogil:
    """Lay one numbered slot out at keys key0 .. key0+k (counting sort by key).

    IN  local_row[k], key_count[k] (consumed: it becomes each key's write cursor)
    OUT key_row[key0 + g], key_ptr[key0 + g]; occurrences[item0 ...]: the slot's n
        examples, grouped by key, ascending within a key
    IN/OUT key_of[n]: each item's local key on entry, its global key key0 + g on return
    """
    cdef Py_ssize_t g, i
    cdef int64_t start = item0, count
    for g in range(k):
        key_row[key0 + g] = local_row[g]
        key_ptr[key0 + g] = start
        count = key_count[g]
        key_count[g] = start
        start += count
    for i in range(n):
        g = key_of[i]
        occurrences[key_count[g]] = i
        key_count[g] += 1
        key_of[i] = key0 + g


def group_slots(const int64_t[::1] idx, Py_ssize_t n, Py_ssize_t n_slots,
                int32_t[:, ::1] tables, int64_t[::1] local_row, int64_t[::1] key_count,
                int64_t[::1] slot_key, int64_t[::1] key_row, int64_t[::1] key_ptr,
                int64_t[::1] occurrences, int64_t[::1] pos, int64_t[::1] slot_offsets,
                int n_threads):
    """Group the batch's occurrences by (slot, row); returns K = Σ_j K_j.

    Slots go to threads whole, so each is numbered by one thread in example order:
    a slot's keys are its distinct rows in order of first occurrence (any fixed
    order serves the sums, and this one needs no sort). The slots are worked on
    slot-major (slot_key holds idx transposed, then the keys): read in place,
    each slot's rows would be one per cache line of idx, and pos[i, j], pos[i, j+1]
    share a line that threads working on different slots would fight over. So idx
    is transposed in a first pass and pos written in a last one, both by examples.

    IN  idx (n * n_slots, row-major (n, n_slots))
    IN/OUT tables (T x |V|): all -1 on entry and on return; T threads (at most
        n_threads) number the slots, one table each
    scratch local_row, key_count, slot_key (n * n_slots)
    OUT key_row[K]: the row of each (slot, row) key, slots in order
    OUT key_ptr[K + 1], occurrences[n * n_slots]: the examples of key u are
        occurrences[key_ptr[u] : key_ptr[u + 1]], ascending
    OUT pos[n * n_slots]: the key of each (example, slot)
    OUT slot_offsets[n_slots + 1]: slot j owns keys slot_offsets[j] : slot_offsets[j + 1]
    """
    cdef Py_ssize_t i, j
    cdef int64_t k
    cdef int n_workers = min(n_threads, <int> tables.shape[0])
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule='static'):
            for j in range(n_slots):
                slot_key[j * n + i] = idx[i * n_slots + j]
        for j in prange(n_slots, num_threads=n_workers, schedule='dynamic'):
            slot_offsets[j + 1] = number_slot_keys(n, &tables[threadid(), 0], &local_row[j * n],
                                                   &key_count[j * n], &slot_key[j * n])
        slot_offsets[0] = 0
        for j in range(n_slots):
            slot_offsets[j + 1] += slot_offsets[j]
        for j in prange(n_slots, num_threads=n_workers, schedule='dynamic'):
            k = slot_offsets[j + 1] - slot_offsets[j]
            place_slot_keys(n, k, slot_offsets[j], j * n, &local_row[j * n], &key_count[j * n],
                            &key_row[0], &key_ptr[0], &occurrences[0], &slot_key[j * n])
        key_ptr[slot_offsets[n_slots]] = n * n_slots
        for i in prange(n, num_threads=n_threads, schedule='static'):
            for j in range(n_slots):
                pos[i * n_slots + j] = slot_key[j * n + i]
    return slot_offsets[n_slots]


cdef enum:
    RADIX_BITS = 8
cpdef enum:
    RADIX = 256   # 1 << RADIX_BITS: a thread's counts stay in L1 (the API sizes them)


cdef Py_ssize_t group_rows_by_radix(const int64_t* values, Py_ssize_t n_items,
                                    Py_ssize_t n_values, int32_t* sort_values,
                                    int32_t* sort_items, int64_t* counts, int64_t* uniq,
                                    int64_t* group_ptr, int64_t* members,
                                    int n_threads) noexcept nogil:
    """group_rows for a value range wide against the items: a radix sort.

    scratch sort_values, sort_items (2 x n_items each), counts (n_threads x RADIX + n_threads);
    the rest as group_rows

    A stable least-significant-digit radix sort of (value, item) pairs, 8 bits a
    pass (two passes up to 65,536 rows of L), then the runs of equal values. Each
    pass: every thread counts the digits of its contiguous share of the items,
    one prefix sum over (digit, thread) gives each thread its places, and every
    thread moves its items there in order. The work is O(items) a pass whatever
    the vocabulary size (a counting sort over a |V|-sized table scanned the whole
    range and made random accesses into it), threads share it evenly, and the
    order, hence the result, does not depend on the thread count. Where the range
    is narrow a counting sort is faster (its table stays in cache; 256-way
    scatters over 8-bit digits do not): window, |V| = 5 x items, 0.11 ms against
    0.36-0.45; parser, |V| = items / 7, 0.5-0.7 ms against 0.22-0.25.
    """
    cdef Py_ssize_t n_chunks = min(<Py_ssize_t> n_threads,
                                   max(<Py_ssize_t> 1, n_items // MIN_ITEMS_PER_THREAD))
    cdef int bits = 1, n_passes, p, shift
    cdef Py_ssize_t c, i, first, end, b, k
    cdef int64_t running, count, v
    cdef int32_t* src_v
    cdef int32_t* src_i
    cdef int32_t* dst_v
    cdef int32_t* dst_i
    cdef int64_t* my_counts
    cdef int64_t* chunk_groups = counts + n_chunks * RADIX
    while (<int64_t> 1 << bits) < n_values:
        bits += 1
    n_passes = (bits + RADIX_BITS - 1) // RADIX_BITS
    for p in range(n_passes):
        shift = p * RADIX_BITS
        src_v = sort_values + ((p + 1) % 2) * n_items
        src_i = sort_items + ((p + 1) % 2) * n_items
        dst_v = sort_values + (p % 2) * n_items
        dst_i = sort_items + (p % 2) * n_items
        for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
            first = c * n_items // n_chunks
            end = (c + 1) * n_items // n_chunks
            my_counts = counts + c * RADIX
            memset(my_counts, 0, RADIX * sizeof(int64_t))
            for i in range(first, end):
                v = values[i] if p == 0 else src_v[i]
                my_counts[(v >> shift) & (RADIX - 1)] += 1
        running = 0   # places: digit by digit, and within a digit thread by thread
        for b in range(RADIX):
            for c in range(n_chunks):
                count = counts[c * RADIX + b]
                counts[c * RADIX + b] = running
                running += count
        for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
            first = c * n_items // n_chunks
            end = (c + 1) * n_items // n_chunks
            my_counts = counts + c * RADIX
            for i in range(first, end):
                v = values[i] if p == 0 else src_v[i]
                b = (v >> shift) & (RADIX - 1)
                dst_v[my_counts[b]] = <int32_t> v
                dst_i[my_counts[b]] = <int32_t> i if p == 0 else src_i[i]
                my_counts[b] += 1
    # runs of equal values in the sorted pairs: each thread counts the run starts in
    # its share, a prefix sum numbers them, and each writes its groups and members
    src_v = sort_values + ((n_passes + 1) % 2) * n_items
    src_i = sort_items + ((n_passes + 1) % 2) * n_items
    for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
        first = c * n_items // n_chunks
        end = (c + 1) * n_items // n_chunks
        count = 0
        for i in range(first, end):
            count = count + (i == 0 or src_v[i] != src_v[i - 1])
        chunk_groups[c] = count
    running = 0
    for c in range(n_chunks):
        count = chunk_groups[c]
        chunk_groups[c] = running
        running += count
    k = running
    for c in prange(n_chunks, num_threads=n_threads, schedule='static'):
        first = c * n_items // n_chunks
        end = (c + 1) * n_items // n_chunks
        b = chunk_groups[c]
        for i in range(first, end):
            if i == 0 or src_v[i] != src_v[i - 1]:
                uniq[b] = src_v[i]
                group_ptr[b] = i
                b = b + 1
            members[i] = src_i[i]
    group_ptr[k] = n_items
    return k


cdef Py_ssize_t group_rows_by_counts(const int64_t* values, Py_ssize_t n_items,
                                     Py_ssize_t n_values, int32_t* row_count, int64_t* uniq,
                                     int64_t* group_ptr, int64_t* members) noexcept nogil:
    """group_rows for a value range no wider than a few times the items: a counting
    sort over a table of the whole range, on one thread.

    IN/OUT row_count[n_values]: all 0 on entry and on return (int32: counts and
    cursors are below n_items); the rest as group_rows.
    Serial on purpose: split over threads by ranges of values, each thread had to
    read every item, and the split ran slower than one thread (parser, 17,000 keys:
    0.16 ms on 1 thread, 0.31-0.37 ms on 2 to 16 on the 16-core machine).
    """
    cdef Py_ssize_t i, g, k = 0
    cdef int64_t v, start = 0, count
    for i in range(n_items):
        row_count[values[i]] += 1
    for v in range(n_values):
        count = row_count[v]
        if count != 0:
            uniq[k] = v
            group_ptr[k] = start
            row_count[v] = <int32_t> start   # from here on: the group's write cursor
            start += count
            k += 1
    group_ptr[k] = n_items
    for i in range(n_items):
        v = values[i]
        members[row_count[v]] = i
        row_count[v] += 1
    for g in range(k):
        row_count[uniq[g]] = 0
    return k


cdef Py_ssize_t group_rows(const int64_t* values, Py_ssize_t n_items, Py_ssize_t n_values,
                           int32_t* row_count, int32_t* sort_values, int32_t* sort_items,
                           int64_t* counts, int64_t* uniq, int64_t* group_ptr, int64_t* members,
                           int n_threads) noexcept nogil:
    """Group items by value (a row of L); returns the number k of distinct values.

    IN  values[n_items], each in [0, n_values)
    OUT uniq[k]: the distinct values, ascending
    OUT group_ptr[k + 1], members[n_items]: the items of group g are
        members[group_ptr[g] : group_ptr[g + 1]], ascending, so every sum over a
        group has a fixed order
    IN/OUT row_count[n_values]: all 0 on entry and on return
    scratch sort_values, sort_items (2 x n_items each), counts (n_threads x RADIX + n_threads)
    Both strategies give the same groups, at any thread count.
    """
    if n_values > COUNTING_RANGE_PER_ITEM * n_items:
        return group_rows_by_radix(values, n_items, n_values, sort_values, sort_items, counts,
                                   uniq, group_ptr, members, n_threads)
    return group_rows_by_counts(values, n_items, n_values, row_count, uniq, group_ptr, members)


ctypedef fused index_t:
    int32_t
    int64_t


def copy_indices(const index_t[:, :] src, int64_t[::1] dst, Py_ssize_t upper,
                 int n_threads=1):
    """Copy an integer index array into dst (C order) and count the entries outside
    [0, upper). Returns (n_bad, first bad flat position or -1).

    Rows are copied in parallel (every step copies N*m indices before any kernel
    runs); the first bad position is looked for only when there is one.
    """
    cdef Py_ssize_t i, j, n = src.shape[0], m = src.shape[1]
    cdef Py_ssize_t n_bad = 0, first = -1
    cdef int64_t v
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule='static'):
            for j in range(m):
                v = <int64_t> src[i, j]
                dst[i * m + j] = v
                if v < 0 or v >= upper:
                    n_bad += 1
        if n_bad:
            for i in range(n * m):
                if dst[i] < 0 or dst[i] >= upper:
                    first = i
                    break
    return n_bad, first


# ---------------------------------------------------------------------------
# Precomputed inference (Chen & Manning §3.3): cached L[v] W_j rows
# ---------------------------------------------------------------------------

cdef void precomputed_hidden(const floating* L, const floating* W, const floating* b1,
                             const int64_t* idx, const int32_t* cache_pos,
                             const floating* table, Py_ssize_t n, Py_ssize_t n_slots,
                             Py_ssize_t n_vocab, Py_ssize_t d, Py_ssize_t n_hidden,
                             floating* h, int n_threads) noexcept nogil:
    """h[i] = relu(b1 + Σ_j L[w_ij] W_j), each term a cached row when there is one.

    IN cache_pos (n_slots x n_vocab): the row of table holding L[v] W_j, or -1;
    an uncached (slot, row) pair is multiplied on the spot (a 1 x d by d x Dh
    product). IN L, W, b1, idx (n x n_slots), table; OUT h (n x n_hidden).
    """
    cdef Py_ssize_t i, j
    cdef int64_t w
    cdef int32_t at
    cdef floating* out
    for i in prange(n, num_threads=n_threads, schedule='static'):
        out = h + i * n_hidden
        memset(out, 0, n_hidden * sizeof(floating))
        for j in range(n_slots):
            w = idx[i * n_slots + j]
            at = cache_pos[j * n_vocab + w]
            if at >= 0:
                add_row(out, table + at * n_hidden, n_hidden)
            else:
                gemm(False, False, 1, <int> n_hidden, <int> d, <floating> 1, L + w * d, <int> d,
                     W + j * d * n_hidden, <int> n_hidden, <floating> 1, out, <int> n_hidden)
        bias_relu_row(out, b1, n_hidden)


def precomputed_proba(const floating[:, ::1] L, const floating[:, ::1] W,
                      const floating[::1] b1, const floating[:, ::1] U,
                      const floating[::1] b2, const int64_t[::1] idx, Py_ssize_t n,
                      const int32_t[:, ::1] cache_pos, const floating[:, ::1] table,
                      ws, int n_threads):
    """Probabilities of n rows from cached first-layer products, into ws.theta.

    IN parameters, idx (n*m, checked), cache_pos (m x |V|), table (K x Dh);
    OUT ws.h, ws.theta (the probabilities).
    """
    cdef Py_ssize_t n_vocab = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t n_slots = W.shape[0] // d, n_hidden = W.shape[1], n_classes = U.shape[1]
    cdef Py_ssize_t i
    cdef floating[:, ::1] h = ws.h
    cdef floating[:, ::1] theta = ws.theta
    cdef double[::1] row_loss = ws.row_loss
    cdef const floating* ptable = &table[0, 0] if table.shape[0] > 0 else NULL
    with nogil:
        precomputed_hidden(&L[0, 0], &W[0, 0], &b1[0], &idx[0], &cache_pos[0, 0], ptable, n,
                           n_slots, n_vocab, d, n_hidden, &h[0, 0], n_threads)
        gemm_rows_parallel(False, False, <int> n, <int> n_classes, <int> n_hidden, <floating> 1,
                           &h[0, 0], <int> n_hidden, &U[0, 0], <int> n_classes, <floating> 0,
                           &theta[0, 0], <int> n_classes, n_threads)
        softmax_xent_rows(&theta[0, 0], &b2[0], NULL, n, n_classes, MODE_PROBA, 1,
                          &row_loss[0], NULL, NULL, NULL, 0, n_threads)


# ---------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------

cdef void set_rule(fastgrad_rule* r, rule):
    """The C struct from a fastgrad._api._UpdateRule (same field names)."""
    r.kind = rule.kind
    r.eps_inside_sqrt = rule.eps_inside_sqrt
    r.lr = rule.lr
    r.l2 = rule.l2
    r.momentum = rule.momentum
    r.eps = rule.eps
    r.beta1 = rule.beta1
    r.beta2 = rule.beta2
    r.dense_step = rule.dense_step
    r.dense_denom_scale = rule.dense_denom_scale
    r.sparse_step = rule.sparse_step


def run_step(int mode, int path,
             const floating[:, ::1] L, const floating[:, ::1] W, const floating[::1] b1,
             const floating[:, ::1] U, const floating[::1] b2,
             const int64_t[::1] idx, const int64_t[::1] y, Py_ssize_t n,
             ws, int n_threads, rule=None, state1=None, state2=None,
             double keep=1.0, double mean_over=0.0):
    """One forward (and, by mode, backward) pass; see the MODE_* constants.

    IN  parameters L, W, b1, U, b2; idx (n*m) and y (n) as int64, already checked
    IN  ws: a fastgrad._api.Workspace holding every buffer (OUT: theta holds the
        probabilities in MODE_PROBA; dW, dU, db1, db2 the dense gradients and
        grad_rows/grad_values the embedding gradient in MODE_GRAD)
    IN  keep < 1: inverted dropout on h with keep probability `keep`, the unit
        kept where ws.dropout_u (n x Dh uniform draws) < keep (not in MODE_PROBA)
    IN  rule (MODE_UPDATE): a fastgrad._api._UpdateRule
    IN/OUT state1, state2 (MODE_UPDATE): the rule's state, arrays shaped as
        (L, W, b1, U, b2) in their dtype, or None when the rule keeps none
    IN/OUT in MODE_UPDATE every parameter, updated in place only when the loss is finite
    IN  mean_over > 0: the loss and gradients are sums over these n rows divided by
        mean_over instead of n (a shard of a larger global batch: fastgrad.distributed)
    Returns (mean loss, number k of touched rows of L, and in MODE_GRAD a fresh
    (k, d) array of their gradients, else None).
    """
    cdef Py_ssize_t n_vocab = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t n_slots = W.shape[0] // d, n_hidden = W.shape[1], n_classes = U.shape[1]
    cdef Py_ssize_t width = n_slots * d, i, k_rows = 0, n_keys = 0
    cdef double loss = 0.0, clock = 0.0
    cdef double divisor = mean_over if mean_over > 0 else <double> n
    cdef floating inv_n = <floating> (1.0 / divisor)
    cdef bint backward = mode >= 2
    cdef bint dropout = keep < 1.0 and mode != MODE_PROBA
    cdef floating mask_scale = <floating> (1.0 / keep) if dropout else 1
    cdef floating* dropout_u = NULL
    cdef fastgrad_rule update_rule
    cdef floating* s1[5]
    cdef floating* s2[5]

    cdef floating* pL = <floating*> &L[0, 0]
    cdef floating* pW = <floating*> &W[0, 0]
    cdef floating* pb1 = <floating*> &b1[0]
    cdef floating* pU = <floating*> &U[0, 0]
    cdef floating* pb2 = <floating*> &b2[0]

    cdef floating[:, ::1] h = ws.h
    cdef floating[:, ::1] theta = ws.theta
    cdef double[::1] row_loss = ws.row_loss
    cdef unsigned char[::1] row_correct = ws.row_correct
    cdef floating[:, ::1] x          # dense: the gathered inputs, later dL per occurrence
    cdef floating[:, ::1] xu         # factored: L[key rows], later dL per key
    cdef floating[:, ::1] products   # factored: P, later the segment sums S
    cdef floating[:, ::1] delta2, dW, dU, scratch, partials, class_partials
    cdef floating[::1] db1, db2
    cdef int64_t[::1] key_row, key_ptr, occurrences, pos, slot_offsets
    cdef int64_t[::1] grad_rows, group_ptr, members, radix_counts
    cdef int32_t[::1] row_count, sort_values, sort_items

    if path == PATH_DENSE:
        x = ws.x
    else:
        xu = ws.xu
        products = ws.products
        key_row = ws.key_row
        key_ptr = ws.key_ptr
        occurrences = ws.occurrences
        pos = ws.pos
        slot_offsets = ws.slot_offsets
        n_keys = slot_offsets[n_slots]
    if backward:
        delta2 = ws.delta2
        dW = ws.dW
        dU = ws.dU
        db1 = ws.db1
        db2 = ws.db2
        grad_rows = ws.grad_rows
        group_ptr = ws.group_ptr
        members = ws.members
        row_count = ws.row_count
        sort_values = ws.sort_values
        sort_items = ws.sort_items
        radix_counts = ws.radix_counts
        partials = ws.partials
        class_partials = ws.class_partials
        if mode == MODE_UPDATE:
            scratch = ws.scratch
            set_rule(&update_rule, rule)
            for i in range(5):
                s1[i] = <floating*> cnp.PyArray_DATA(state1[i]) if state1 is not None else NULL
                s2[i] = <floating*> cnp.PyArray_DATA(state2[i]) if state2 is not None else NULL
    if dropout:
        dropout_u = <floating*> cnp.PyArray_DATA(ws.dropout_u)

    with nogil:
        # ---- forward: h = relu(x W + b1), θ = h U + b2 ----
        if phase_timing_on:
            clock = fastgrad_wtime()
        if path == PATH_DENSE:
            gather_rows(pL, d, &idx[0], n * n_slots, &x[0, 0], n_threads)
            lap(0, &clock)
            gemm_rows_parallel(False, False, <int> n, <int> n_hidden, <int> width, <floating> 1,
                               &x[0, 0], <int> width, pW, <int> n_hidden, <floating> 0, &h[0, 0],
                               <int> n_hidden, n_threads)
            lap(1, &clock)
            bias_relu_rows(&h[0, 0], pb1, n, n_hidden, n_threads)
        else:
            gather_rows(pL, d, &key_row[0], n_keys, &xu[0, 0], n_threads)
            lap(0, &clock)
            slot_gemms(SLOT_FORWARD, &slot_offsets[0], n_slots, d, n_hidden, &xu[0, 0],
                       &products[0, 0], pW, NULL, n_threads)
            lap(1, &clock)
            sum_slot_products_relu(&products[0, 0], &pos[0], n, n_slots, n_hidden, pb1,
                                   &h[0, 0], n_threads)
        if dropout:
            dropout_rows(&h[0, 0], dropout_u, n, n_hidden, <floating> keep, n_threads)
        lap(2, &clock)
        gemm_rows_parallel(False, False, <int> n, <int> n_classes, <int> n_hidden, <floating> 1,
                           &h[0, 0], <int> n_hidden, pU, <int> n_classes, <floating> 0, &theta[0, 0],
                           <int> n_classes, n_threads)
        lap(3, &clock)

        # ---- θ += b2; softmax, cross-entropy, δ1 = (ŷ - y) / N, db2 = Σ δ1: one pass ----
        softmax_xent_rows(&theta[0, 0], pb2, &y[0], n, n_classes, mode, inv_n, &row_loss[0],
                          &row_correct[0], &db2[0] if backward else NULL,
                          &class_partials[0, 0] if backward else NULL,
                          class_partials.shape[1] if backward else 0, n_threads)
        if mode != MODE_PROBA:
            for i in range(n):
                loss += row_loss[i]
            loss /= divisor
        lap(4, &clock)

    if not backward or (mode == MODE_UPDATE and not isfinite(loss)):
        return loss, 0, None

    with nogil:
        # ---- backward through the output layer: dU = hᵀ δ1 (db2 is done) ----
        relu_mask_backward(&theta[0, 0], pU, &h[0, 0], n, n_classes, n_hidden, mask_scale,
                           &delta2[0, 0], &db1[0], &partials[0, 0], partials.shape[1],
                           n_threads)
        lap(5, &clock)
        gemm_rows_parallel(True, False, <int> n_hidden, <int> n_classes, <int> n, <floating> 1,
                           &h[0, 0], <int> n_hidden, &theta[0, 0], <int> n_classes, <floating> 0,
                           &dU[0, 0], <int> n_classes, n_threads)
        lap(6, &clock)

        # ---- backward through the first layer: dW, and dL per occurrence or key ----
        if path == PATH_DENSE:
            # dW = xᵀ δ2, then x is free: it receives δ2 Wᵀ (one row of d per occurrence)
            gemm_rows_parallel(True, False, <int> width, <int> n_hidden, <int> n, <floating> 1,
                               &x[0, 0], <int> width, &delta2[0, 0], <int> n_hidden, <floating> 0,
                               &dW[0, 0], <int> n_hidden, n_threads)
            gemm_rows_parallel(False, True, <int> n, <int> width, <int> n_hidden, <floating> 1,
                               &delta2[0, 0], <int> n_hidden, pW, <int> n_hidden, <floating> 0,
                               &x[0, 0], <int> width, n_threads)
            lap(8, &clock)
            k_rows = group_rows(&idx[0], n * n_slots, n_vocab, &row_count[0], &sort_values[0],
                                &sort_items[0], &radix_counts[0], &grad_rows[0], &group_ptr[0],
                                &members[0], n_threads)
        else:
            # S_u = Σ_{examples of key u} δ2 replaces P; dW_j = L[uniq_j]ᵀ S_j;
            # then xu is free and receives S_j W_jᵀ (one row of d per key)
            sum_groups(&delta2[0, 0], n_hidden, &key_ptr[0], &occurrences[0], n_keys,
                       &products[0, 0], n_threads)
            lap(7, &clock)
            slot_gemms(SLOT_BACKWARD, &slot_offsets[0], n_slots, d, n_hidden, &xu[0, 0],
                       &products[0, 0], pW, &dW[0, 0], n_threads)
            lap(8, &clock)
            k_rows = group_rows(&key_row[0], n_keys, n_vocab, &row_count[0], &sort_values[0],
                                &sort_items[0], &radix_counts[0], &grad_rows[0], &group_ptr[0],
                                &members[0], n_threads)
        lap(9, &clock)

    # rows of dL, one per occurrence (dense) or per key (factored), to be summed by row
    cdef const floating* dl_items = &x[0, 0] if path == PATH_DENSE else &xu[0, 0]
    cdef floating[:, ::1] values
    if mode == MODE_GRAD:
        values = ws.grad_values_for(k_rows)
        with nogil:
            sum_groups(dl_items, d, &group_ptr[0], &members[0], k_rows, &values[0, 0],
                       n_threads)
            lap(10, &clock)
        return loss, k_rows, values.base

    with nogil:
        # ---- MODE_UPDATE: every parameter updated by the rule, L at touched rows once ----
        scatter_update_groups(dl_items, d, &group_ptr[0], &members[0], &grad_rows[0], k_rows,
                              &update_rule, pL, s1[0], s2[0], &scratch[0, 0],
                              scratch.shape[1], n_threads)
        lap(10, &clock)
        update_dense(&update_rule, pW, &dW[0, 0], s1[1], s2[1], width * n_hidden, n_threads)
        update_dense(&update_rule, pb1, &db1[0], s1[2], s2[2], n_hidden, n_threads)
        update_dense(&update_rule, pU, &dU[0, 0], s1[3], s2[3], n_hidden * n_classes,
                     n_threads)
        update_dense(&update_rule, pb2, &db2[0], s1[4], s2[4], n_classes, n_threads)
        lap(11, &clock)
    return loss, k_rows, None


# Updates from given gradients and the merge of sparse rows from several processes
include "_exchange.pxi"
