# The grouping by row that fastgrad._kernels.run_step calls without the GIL
# (defined, with its contract, in _grouping.pyx).
from libc.stdint cimport int32_t, int64_t


cdef Py_ssize_t group_rows(const int64_t* values, Py_ssize_t n_items, Py_ssize_t n_values,
                           int32_t* row_count, int32_t* sort_values, int32_t* sort_items,
                           int64_t* counts, int64_t* uniq, int64_t* group_ptr, int64_t* members,
                           int n_threads) noexcept nogil
