# Precomputed inference (Chen & Manning §3.3): the first layer from cached
# L[v] W_j rows (fastgrad/_precompute.py builds the cache). Included by
# _kernels.pyx (which holds the cimports).

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
                      Workspace ws, int n_threads):
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
