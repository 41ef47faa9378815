# Per-row functions: fused (float/double) wrappers over the C row loops of
# _row_loops.h, and the one-row pieces of a step (a segment sum, a softmax row).
# Included by _kernels.pyx (which holds the cimports); see its design notes.

# Rows of a table prefetched ahead of the one being read or updated.
cdef enum:
    PREFETCH_AHEAD = 8


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


cdef inline void sum_rows(const floating* src, Py_ssize_t row_len,
                          const int64_t* members, Py_ssize_t count,
                          floating* out) noexcept nogil:
    """out = Σ_i src[members[i]], summed in the order of members.

    IN src (rows of row_len), IN members[count] (count >= 1), OUT out[row_len].
    """
    if floating is float:
        sum_indexed_rows_f(out, src, members, count, 1, row_len)
    else:
        sum_indexed_rows_d(out, src, members, count, 1, row_len)


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
    if mode != MODE_PROBA:
        correct[0] = row[label] >= mx
        xent = -(<double> row[label] - <double> mx)
    if floating is float:
        exp_shifted_row_f(row, mx, n_classes)
        total = sum_row_f(row, n_classes)
    else:
        exp_shifted_row_d(row, mx, n_classes)
        total = sum_row_d(row, n_classes)
    if mode == MODE_LOSS:
        return xent + log(total)
    if mode == MODE_PROBA:
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
