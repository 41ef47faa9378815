# The typed contract between the Python layer and fastgrad._kernels.run_step:
# every buffer a step reads or writes is a declared attribute, so a misspelt
# buffer name in the kernels is a compile error, not a run-time one.
cimport numpy as cnp


cdef class Workspace:
    cdef readonly object shape          # fastgrad._types.Shape
    cdef readonly Py_ssize_t n          # rows of the batch
    # the batch, as the kernels read it (checked copies)
    cdef readonly cnp.ndarray idx       # (n * m,) int64
    cdef readonly cnp.ndarray y         # (n,) int64
    # forward
    cdef readonly cnp.ndarray h             # (n, Dh)
    cdef readonly cnp.ndarray theta         # (n, Nc): logits, then probabilities or δ1
    cdef readonly cnp.ndarray row_loss      # (n,) float64
    cdef readonly cnp.ndarray row_correct   # (n,) uint8: the label's logit is the largest
    cdef readonly cnp.ndarray dropout_u     # (n, Dh) uniform draws, or None
    # dense path
    cdef readonly cnp.ndarray x             # (n, m*d): gathered rows, later dL per occurrence
    # factored path (fastgrad._grouping.group_slots)
    cdef readonly cnp.ndarray key_row, pos, slot_offsets
    cdef readonly cnp.ndarray local_row, slot_key, slot_tables
    cdef readonly cnp.ndarray xu            # (K, d): L[key rows], later dL per key
    cdef readonly cnp.ndarray products      # (K, Dh): P, later the segment sums S
    # backward
    cdef readonly cnp.ndarray delta2        # (n, Dh)
    cdef readonly cnp.ndarray dense_grads   # flat: dW, db1, dU, db2 are views of it
    cdef readonly cnp.ndarray dW, db1, dU, db2
    cdef readonly cnp.ndarray grad_rows, group_ptr, members          # group_rows' output
    cdef readonly cnp.ndarray row_count, sort_values, sort_items, radix_counts   # its scratch
    cdef readonly cnp.ndarray scratch, partials, class_partials      # per-thread rows
    # where MODE_GRAD writes the embedding gradient's values: a caller's reused
    # buffer, or None for a fresh array each call
    cdef public cnp.ndarray values_into

    cdef bint _backward, _dense, _factored
    cdef int _n_threads
    cdef Py_ssize_t _key_capacity
