# Row-parallel loops of the layers both paths share: the products split by output
# rows, the gather of x, bias and ReLU, dropout, softmax with loss and db2, and
# the ReLU mask backward with db1. Each loop is parallel over output rows, so no
# two threads write the same row; column sums are per-thread shares added in
# thread order. Included by _kernels.pyx (which holds the cimports).

# Fewest output rows worth a thread of their own in gemm_rows_parallel.
cdef enum:
    MIN_ROWS_PER_THREAD = 32

# Rows of δ2 computed per GEMM in relu_mask_backward: a block stays in cache
# while its ReLU mask and its share of db1 are applied.
cdef enum:
    BLOCK_ROWS = 64


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
    see fastgrad._workspace.padded), and db2 = Σ δ1 is the sum of the shares in thread order:
    no second sweep over θ.
    """
    cdef Py_ssize_t i
    cdef int64_t label
    cdef floating* row
    if db2 != NULL:
        memset(partials, 0, n_threads * share_stride * sizeof(floating))
    for i in prange(n, num_threads=n_threads, schedule='static'):
        label = y[i] if mode != MODE_PROBA else 0
        row = theta + i * n_classes
        add_row(row, b2, n_classes)
        row_loss[i] = softmax_xent_row(row, n_classes, label, mode, scale, row_correct + i)
        if db2 != NULL:
            add_row(partials + threadid() * share_stride, row, n_classes)
    if db2 != NULL:
        memcpy(db2, partials, n_classes * sizeof(floating))
        for i in range(1, n_threads):
            add_row(db2, partials + i * share_stride, n_classes)


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
