# Optimizer updates in place: the C struct of a rule, dense parameters in chunks,
# and the rows of L a batch touched, each summed and updated once (the embedding
# gradient is never stored). The rules themselves are update_row_* in
# _row_loops.h. Included by _kernels.pyx (which holds the cimports).

# Entries of a dense parameter per parallel chunk of an optimizer update.
cdef enum:
    UPDATE_CHUNK = 8192


cdef void set_rule(fastgrad_rule* r, rule):
    """The C struct from a fastgrad._step.UpdateRule (same field names)."""
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
