# Segment sums over groups in CSR form (group_ptr, members): the factored path's
# S = Σ δ2 per key and the embedding gradient's sum per row of L. Threads take
# contiguous parts of equal work; each group is summed in one fixed order.
# Included by _kernels.pyx (which holds the cimports).

cdef inline Py_ssize_t group_range_start(const int64_t* group_ptr, Py_ssize_t n_groups,
                                         Py_ssize_t part, Py_ssize_t n_parts) noexcept nogil:
    """First group of part `part` when n_groups groups are cut into n_parts
    contiguous parts of about equal work, a group's work being its members plus one.

    Work per group is anything but even (a tag's key may hold hundreds of
    occurrences, a rare word's one), so equal numbers of groups per thread left
    most threads waiting for the one holding the tags (at 16 threads the sums
    took longer than at 4: bench/results/design-measurements.md). A binary search
    on the running work
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
