# Kernels for data-parallel training (fastgrad.distributed), included by _kernels.pyx.
#
# A distributed step cannot fuse the update into the backward pass as run_step's
# MODE_UPDATE does: the gradients must first be summed over the processes. So the
# step is split there: MODE_GRAD on each process's shard, the exchange (in Python,
# over MPI), then apply_update on the summed gradients, which runs the same
# update_row rule as MODE_UPDATE (rows of L with sparse = 1, each row once, with
# its own state rows), so a step on P processes does what one process would do on
# the whole batch, up to the order of the sums.
#
# merge_rows sums the (rows, values) gathered from every process: rows in the order
# they first appear, each row's values added in the order they arrive (rank order,
# since MPI's allgather concatenates by rank). Every process merges the same bytes
# in the same order, so every replica gets the same bits.


def apply_update(rule, floating[:, ::1] L, floating[:, ::1] W, floating[::1] b1,
                 floating[:, ::1] U, floating[::1] b2,
                 const int64_t[::1] rows, const floating[:, ::1] values,
                 const floating[:, ::1] dW, const floating[::1] db1,
                 const floating[:, ::1] dU, const floating[::1] db2,
                 state1, state2, int n_threads):
    """Every parameter updated by the rule from given gradients, in place.

    IN  rule: a fastgrad._step.UpdateRule; rows (k,) distinct rows of L and
        values (k, d) their gradients (k may be 0); dW, db1, dU, db2 dense gradients
    IN/OUT L, W, b1, U, b2, and state1, state2 (the rule's state, arrays shaped as
        the parameters, or None when the rule keeps none)
    The caller has checked shapes, dtypes and that the rows are distinct and in range.
    """
    cdef fastgrad_rule update_rule
    cdef floating* s1[5]
    cdef floating* s2[5]
    cdef Py_ssize_t i, k = rows.shape[0], d = L.shape[1]
    set_rule(&update_rule, rule)
    for i in range(5):
        s1[i] = <floating*> cnp.PyArray_DATA(state1[i]) if state1 is not None else NULL
        s2[i] = <floating*> cnp.PyArray_DATA(state2[i]) if state2 is not None else NULL
    cdef floating* pL = &L[0, 0]
    cdef const floating* pv = &values[0, 0] if k > 0 else NULL
    cdef int64_t row
    with nogil:
        for i in prange(k, num_threads=n_threads, schedule='static'):
            row = rows[i] * d
            update_row(&update_rule, True, pL + row, pv + i * d,
                       s1[0] + row if s1[0] != NULL else NULL,
                       s2[0] + row if s2[0] != NULL else NULL, d)
        update_dense(&update_rule, &W[0, 0], &dW[0, 0], s1[1], s2[1], W.shape[0] * W.shape[1],
                     n_threads)
        update_dense(&update_rule, &b1[0], &db1[0], s1[2], s2[2], b1.shape[0], n_threads)
        update_dense(&update_rule, &U[0, 0], &dU[0, 0], s1[3], s2[3], U.shape[0] * U.shape[1],
                     n_threads)
        update_dense(&update_rule, &b2[0], &db2[0], s1[4], s2[4], b2.shape[0], n_threads)


def merge_rows(const int64_t[::1] rows, const floating[:, ::1] values, int32_t[::1] table,
               int64_t[::1] out_rows, floating[:, ::1] out_values):
    """Sum the values of equal rows: out_values[t] = Σ values[i] over rows[i] == out_rows[t].

    IN  rows (K,) in [0, len(table)), values (K, d): the concatenation of every
        process's (rows, values), each process's rows distinct
    IN/OUT table (|V|,) int32 scratch: all -1 on entry and on return
    OUT out_rows (the distinct rows, in order of first appearance), out_values
    Returns the number of distinct rows. Each sum is taken in the order of the input.
    """
    cdef Py_ssize_t i, t, n_out = 0, n = rows.shape[0], d = values.shape[1]
    cdef int64_t row
    with nogil:
        for i in range(n):
            row = rows[i]
            t = table[row]
            if t < 0:
                table[row] = <int32_t> n_out
                out_rows[n_out] = row
                memcpy(&out_values[n_out, 0], &values[i, 0], d * sizeof(floating))
                n_out += 1
            else:
                add_row(&out_values[t, 0], &values[i, 0], d)
        for t in range(n_out):
            table[out_rows[t]] = -1
    return n_out
