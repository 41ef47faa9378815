# Precomputed inference (Chen & Manning §3.3): the first layer from cached
# L[v] W_j rows (fastgrad/_precompute.py builds the cache). Included by
# _kernels.pyx (which holds the cimports).
#
# A batch's (slot, row) pairs that the cache lacks are multiplied together, one
# product per slot over that slot's distinct missing rows (the factored path's
# slot_gemms), never one 1 x d by d x Dh product per occurrence: per occurrence,
# a few hundred rows were enough for the misses to make precomputed inference
# slower than predict_proba.


def number_misses(const int64_t[::1] idx, Py_ssize_t n, int32_t[:, ::1] cache_pos,
                  int64_t[::1] miss_row, int64_t[::1] miss_offsets):
    """Number the batch's distinct uncached (slot, row) pairs, slot by slot.

    IN idx (n * m); IN/OUT cache_pos (m x |V|): -1 where uncached on entry; the k-th
    miss's entry becomes -2 - k (precomputed_proba puts every one back to -1)
    OUT miss_row[k]: its row of L; miss_offsets (m + 1): slot j's misses are
    miss_offsets[j] .. miss_offsets[j + 1]. Returns the number of misses.
    """
    cdef Py_ssize_t i, j, m = cache_pos.shape[0], k = 0
    cdef int64_t w
    with nogil:
        for j in range(m):
            miss_offsets[j] = k
            for i in range(n):
                w = idx[i * m + j]
                if cache_pos[j, w] == -1:
                    cache_pos[j, w] = <int32_t> (-2 - k)
                    miss_row[k] = w
                    k += 1
        miss_offsets[m] = k
    return k


cdef enum:
    ROWS_PER_SUM = 64    # row pointers gathered on the stack, then summed at once


cdef void precomputed_hidden(const floating* b1, const int64_t* idx, const int32_t* cache_pos,
                             const floating* table, const floating* missed, Py_ssize_t n,
                             Py_ssize_t n_slots, Py_ssize_t n_vocab, Py_ssize_t n_hidden,
                             floating* h, int n_threads) noexcept nogil:
    """h[i] = relu(b1 + Σ_j L[w_ij] W_j), each term a row of table or of missed.

    IN cache_pos (n_slots x n_vocab): the row of table holding L[v] W_j, or -2 - k
    for the k-th row of missed; IN b1, idx (n x n_slots); OUT h (n x n_hidden).
    The rows of an example are summed together, ROWS_PER_SUM at a time, with the
    partial sums in registers (sum_rows_*; one slot at a time, out was loaded and
    stored once per slot: 5 µs an EWT state at one thread, bench/results/
    parser-pipeline-2core.md).
    """
    cdef Py_ssize_t i
    for i in prange(n, num_threads=n_threads, schedule='static'):
        precomputed_row(b1, idx + i * n_slots, idx + (i + 1) * n_slots if i + 1 < n else NULL,
                        cache_pos, table, missed, n_slots, n_vocab, n_hidden,
                        h + i * n_hidden)


cdef void precomputed_row(const floating* b1, const int64_t* idx, const int64_t* next_idx,
                          const int32_t* cache_pos, const floating* table,
                          const floating* missed, Py_ssize_t n_slots, Py_ssize_t n_vocab,
                          Py_ssize_t n_hidden, floating* out) noexcept nogil:
    """One example of precomputed_hidden; next_idx (or NULL): the next example's
    ids, whose rows are prefetched (their misses overlap with this sum)."""
    cdef Py_ssize_t j, j0 = 0, j1
    cdef int32_t at
    cdef const floating* rows[ROWS_PER_SUM]
    while j0 < n_slots:
        j1 = min(n_slots, j0 + ROWS_PER_SUM)
        for j in range(j0, j1):
            at = cache_pos[j * n_vocab + idx[j]]
            rows[j - j0] = table + at * n_hidden if at >= 0 else \
                missed + (-2 - <Py_ssize_t> at) * n_hidden
        if next_idx != NULL:
            for j in range(j0, j1):
                at = cache_pos[j * n_vocab + next_idx[j]]
                fastgrad_prefetch(table + at * n_hidden if at >= 0 else
                                  missed + (-2 - <Py_ssize_t> at) * n_hidden,
                                  n_hidden * sizeof(floating), 0)
        if floating is float:
            sum_rows_f(out, rows, j1 - j0, j0 == 0, n_hidden)
        else:
            sum_rows_d(out, rows, j1 - j0, j0 == 0, n_hidden)
        j0 = j1
    bias_relu_row(out, b1, n_hidden)


def precomputed_proba(const floating[:, ::1] L, const floating[:, ::1] W,
                      const floating[::1] b1, const floating[:, ::1] U,
                      const floating[::1] b2, const int64_t[::1] idx, Py_ssize_t n,
                      int32_t[:, ::1] cache_pos, const floating[:, ::1] table,
                      const int64_t[::1] miss_row, const int64_t[::1] miss_offsets,
                      floating[:, ::1] miss_x, floating[:, ::1] missed,
                      Workspace ws, int n_threads):
    """Probabilities of n rows from cached first-layer products, into ws.theta.

    IN parameters, idx (n*m, checked), table (K x Dh); the misses as number_misses
    left them; scratch miss_x (misses x d), missed (misses x Dh).
    IN/OUT cache_pos: as number_misses left it on entry, all its misses -1 again
    on return. OUT ws.h, ws.theta (the probabilities).
    """
    cdef Py_ssize_t n_vocab = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t n_slots = W.shape[0] // d, n_hidden = W.shape[1], n_classes = U.shape[1]
    cdef Py_ssize_t j, k, n_miss = miss_offsets[n_slots]
    cdef floating[:, ::1] h = ws.h
    cdef floating[:, ::1] theta = ws.theta
    cdef double[::1] row_loss = ws.row_loss
    cdef const floating* ptable = &table[0, 0] if table.shape[0] > 0 else NULL
    cdef floating* pmissed = &missed[0, 0] if n_miss > 0 else NULL
    with nogil:
        if n_miss > 0:
            gather_rows(&L[0, 0], d, &miss_row[0], n_miss, &miss_x[0, 0], n_threads)
            slot_gemms(&miss_offsets[0], n_slots, d, n_hidden, &miss_x[0, 0], pmissed, &W[0, 0],
                       n_threads)
        precomputed_hidden(&b1[0], &idx[0], &cache_pos[0, 0], ptable, pmissed, n, n_slots,
                           n_vocab, n_hidden, &h[0, 0], n_threads)
        for j in range(n_slots):
            for k in range(miss_offsets[j], miss_offsets[j + 1]):
                cache_pos[j, miss_row[k]] = -1
        gemm_rows_parallel(False, False, <int> n, <int> n_classes, <int> n_hidden, <floating> 1,
                           &h[0, 0], <int> n_hidden, &U[0, 0], <int> n_classes, <floating> 0,
                           &theta[0, 0], <int> n_classes, n_threads)
        softmax_xent_rows(&theta[0, 0], &b2[0], NULL, n, n_classes, MODE_PROBA, 1,
                          &row_loss[0], NULL, NULL, NULL, 0, n_threads)
