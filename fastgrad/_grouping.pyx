# cython: language_level=3
"""Grouping a batch's occurrences, and the checked copy of its indices.

Both groupings run on every step before (or between) the parallel loops of
fastgrad._kernels.run_step:

* ``group_slots`` (by (slot, row), for the factored path): each distinct
  (slot, row) key of the batch, numbered in order of first occurrence within
  its slot, and each example's key;
* ``group_rows`` (by row of L, for the embedding gradient): each distinct row
  and the items that touch it, so that a row of L is summed and updated once.

Both give the same groups, in the same order, whatever the thread count, so the
sums over them are bit-identical from run to run. ``group_rows`` is a ``cdef``
function that run_step cimports (``_grouping.pxd``); ``group_rows_py`` and
``group_slots_py`` are ``def`` hooks that let tests check the groupings on
their own, without a workspace.
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset

from fastgrad._row_loops cimport fastgrad_prefetch

import numpy as np

# Both groupings run on every step before (or between) the parallel loops, so a
# serial grouping bounds the speed-up at many threads (Amdahl: a serial (slot, row)
# grouping was a tenth of a cm2014 step, bench/results/design-measurements.md).
# The (slot, row) grouping is
# split over slots; the grouping by row is a radix sort split over threads where
# the vocabulary is wide, and a serial counting sort where it is narrow (cheaper
# there than any split tried: see group_rows_by_counts). Both give the same groups
# whatever the thread count.

cdef enum:
    # Examples transposed together between idx (example-major) and the slot-major
    # scratch: a slot's entries for a block are whole cache lines. One example at a
    # time, the slot-major side is written (or read) n * 8 bytes apart, n_slots
    # streams that fall in the same L1 sets (4 KiB aliasing) and evict each other:
    # the two transposes were most of group_slots' time
    # (bench/results/design-measurements.md).
    TRANSPOSE_BLOCK = 16
    # Fewest items worth a thread of their own in group_rows' radix sort. A thread's
    # items of one digit land next to the next thread's: with fewer than a few cache
    # lines of them per digit (256 digits), the threads' scatters share lines and
    # two threads sorted slower than one (a 2048 x 5 window batch's dL rows: 0.07 ms
    # at one thread, 0.10-0.13 at two with 2048 here; bench/results/speed-intel-2core.md)
    MIN_ITEMS_PER_THREAD = 16384
    # group_rows sorts by counts while the row range is at most this many times the
    # items, by radix beyond.
    COUNTING_RANGE_PER_ITEM = 2
    # gather_indices asks for the data set's row this many rows ahead
    GATHER_AHEAD = 8


cdef Py_ssize_t number_slot_keys(Py_ssize_t n, int32_t* table, int64_t* key_row,
                                 int64_t* rows_then_keys) noexcept nogil:
    """Number one slot's distinct rows in order of first occurrence; returns k.

    IN/OUT rows_then_keys[n]: each item's row on entry, its key (0 .. k-1) on return
    IN/OUT table[|V|]: all -1 on entry and on return
    OUT key_row[k]: the row of each key
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
            k += 1
        rows_then_keys[i] = g
    for i in range(k):
        table[key_row[i]] = -1
    return k


def group_slots(const int64_t[::1] idx, Py_ssize_t n, Py_ssize_t n_slots,
                int32_t[:, ::1] tables, int64_t[::1] local_row, int64_t[::1] slot_key,
                int64_t[::1] key_row, int64_t[::1] pos, int64_t[::1] slot_offsets,
                int n_threads):
    """Number the batch's (slot, row) keys; returns K = Σ_j K_j.

    Slots go to threads whole, so each is numbered by one thread in example order:
    a slot's keys are its distinct rows in order of first occurrence. The kernels
    rely on that order: the segment sums of the backward pass (sum_slot_deltas)
    know a key is new when it is the slot's next number, so no list of each
    key's examples is built. The slots are worked on slot-major (slot_key holds
    idx transposed, then the keys): read in place, each slot's rows would be one
    per cache line of idx, and pos[i, j], pos[i, j+1] share a line that threads
    working on different slots would fight over. So idx is transposed in a first
    pass and pos written in a last one, both by blocks of TRANSPOSE_BLOCK examples.

    IN  idx (n * n_slots, row-major (n, n_slots))
    IN/OUT tables (T x |V|): all -1 on entry and on return; T threads (at most
        n_threads) number the slots, one table each
    scratch local_row, slot_key (n * n_slots)
    OUT key_row[K]: the row of each (slot, row) key, slots in order, and within a
        slot in order of first occurrence
    OUT pos[n * n_slots]: the key of each (example, slot)
    OUT slot_offsets[n_slots + 1]: slot j owns keys slot_offsets[j] : slot_offsets[j + 1]
    """
    cdef Py_ssize_t i, j, block, first, last
    cdef Py_ssize_t n_blocks = (n + TRANSPOSE_BLOCK - 1) // TRANSPOSE_BLOCK
    cdef int n_workers = min(n_threads, <int> tables.shape[0])
    with nogil:
        for block in prange(n_blocks, num_threads=n_threads, schedule='static'):
            first = block * TRANSPOSE_BLOCK
            last = min(first + TRANSPOSE_BLOCK, n)
            for j in range(n_slots):
                for i in range(first, last):
                    slot_key[j * n + i] = idx[i * n_slots + j]
        # static: every slot costs about the same (n items), and a dynamic loop's
        # shared counter, fetched once a slot by each thread, moved between cores
        # for more time than a small batch's numbering takes
        for j in prange(n_slots, num_threads=n_workers, schedule='static'):
            slot_offsets[j + 1] = number_slot_keys(n, &tables[threadid(), 0], &local_row[j * n],
                                                   &slot_key[j * n])
        slot_offsets[0] = 0
        for j in range(n_slots):
            slot_offsets[j + 1] += slot_offsets[j]
        for j in prange(n_slots, num_threads=n_workers, schedule='static'):
            memcpy(&key_row[slot_offsets[j]], &local_row[j * n],
                   (slot_offsets[j + 1] - slot_offsets[j]) * sizeof(int64_t))
        for block in prange(n_blocks, num_threads=n_threads, schedule='static'):
            first = block * TRANSPOSE_BLOCK
            last = min(first + TRANSPOSE_BLOCK, n)
            for j in range(n_slots):
                for i in range(first, last):
                    pos[i * n_slots + j] = slot_key[j * n + i] + slot_offsets[j]
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
    scatters over 8-bit digits do not; bench/results/design-measurements.md).
    """
    # (a thread a chunk: a team larger than the chunks woke threads with nothing to do,
    # which at a 256-row parser batch cost more than the grouping: 0.11-0.16 ms against
    # 0.02 at one thread, bench/results/speed-intel-2core.md)
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
        for c in prange(n_chunks, num_threads=<int> n_chunks, schedule='static'):
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
        for c in prange(n_chunks, num_threads=<int> n_chunks, schedule='static'):
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
    for c in prange(n_chunks, num_threads=<int> n_chunks, schedule='static'):
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
    for c in prange(n_chunks, num_threads=<int> n_chunks, schedule='static'):
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
    read every item, and the split ran slower than one thread at every count tried
    (bench/results/design-measurements.md).
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


cdef Py_ssize_t count_and_copy(const index_t[:, :] src, Py_ssize_t upper, int64_t* dst,
                               int n_threads) noexcept nogil:
    """The entries of src outside [0, upper), counted in parallel over rows; with
    dst (else NULL), src copied into it in C order on the way."""
    cdef Py_ssize_t i, j, n = src.shape[0], m = src.shape[1], n_bad = 0
    cdef int64_t v
    for i in prange(n, num_threads=n_threads, schedule='static'):
        for j in range(m):
            v = <int64_t> src[i, j]
            if dst != NULL:
                dst[i * m + j] = v
            if v < 0 or v >= upper:
                n_bad += 1
    return n_bad


cdef Py_ssize_t first_outside(const index_t[:, :] src, Py_ssize_t upper) noexcept nogil:
    """The flat (C order) position of src's first entry outside [0, upper), or -1."""
    cdef Py_ssize_t i, j, m = src.shape[1]
    cdef int64_t v
    for i in range(src.shape[0]):
        for j in range(m):
            v = <int64_t> src[i, j]
            if v < 0 or v >= upper:
                return i * m + j
    return -1


def copy_indices(const index_t[:, :] src, int64_t[::1] dst, Py_ssize_t upper,
                 int n_threads=1):
    """Copy an integer index array into dst (C order) and count the entries outside
    [0, upper). Returns (n_bad, first bad flat position or -1).

    Rows are copied in parallel (every step copies N*m indices before any kernel
    runs); the first bad position is looked for only when there is one.
    """
    cdef Py_ssize_t n_bad, first = -1
    if dst.shape[0] < src.shape[0] * src.shape[1]:
        raise ValueError("dst is too small for the copied indices")
    with nogil:
        n_bad = count_and_copy(src, upper, &dst[0] if dst.shape[0] else NULL, n_threads)
        if n_bad:
            first = first_outside(src, upper)
    return n_bad, first


def count_outside(const index_t[:, :] src, Py_ssize_t upper, int n_threads=1):
    """copy_indices's check alone, for a whole data set checked before its first
    step: (n_bad, the first bad flat position or -1)."""
    cdef Py_ssize_t n_bad, first = -1
    with nogil:
        n_bad = count_and_copy(src, upper, NULL, n_threads)
        if n_bad:
            first = first_outside(src, upper)
    return n_bad, first


def gather_indices(const index_t[:, :] src, const int64_t[::1] rows, int64_t[::1] dst,
                   int n_threads=1):
    """dst (C order) = src[rows]: a batch of a data set already checked whole
    (count_outside), gathered straight into a workspace buffer (fit's steps).
    IN rows: each in [0, src.shape[0]) (not checked: the caller's permutation)."""
    cdef Py_ssize_t i, j, n = rows.shape[0], m = src.shape[1]
    cdef Py_ssize_t row_bytes = m * src.strides[1]
    if dst.shape[0] < n * m:
        raise ValueError("dst is too small for the gathered rows")
    if n == 0 or m == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule='static'):
            # the rows lie anywhere in a data set of any size: each one a DRAM
            # latency (and a page walk) unless asked for ahead
            if i + GATHER_AHEAD < n:
                fastgrad_prefetch(&src[rows[i + GATHER_AHEAD], 0], row_bytes, 0)
            for j in range(m):
                dst[i * m + j] = <int64_t> src[rows[i], j]


# ---------------------------------------------------------------------------
# Test hooks: the groupings on their own, with buffers of their own
# ---------------------------------------------------------------------------

def group_rows_py(const int64_t[::1] values, Py_ssize_t n_values, int n_threads=1):
    """group_rows on fresh buffers: returns (uniq, group_ptr, members).

    IN values (each in [0, n_values); not checked: a test hook)."""
    cdef Py_ssize_t n = values.shape[0], k
    cdef int32_t[::1] row_count = np.zeros(n_values, np.int32)
    cdef int32_t[::1] sort_values = np.empty(2 * n + 1, np.int32)
    cdef int32_t[::1] sort_items = np.empty(2 * n + 1, np.int32)
    cdef int64_t[::1] counts = np.empty(n_threads * (RADIX + 1), np.int64)
    uniq = np.empty(n + 1, np.int64)
    group_ptr = np.empty(n + 1, np.int64)
    members = np.empty(n + 1, np.int64)
    cdef int64_t[::1] u = uniq, g = group_ptr, m = members
    with nogil:
        k = group_rows(&values[0], n, n_values, &row_count[0], &sort_values[0], &sort_items[0],
                       &counts[0], &u[0], &g[0], &m[0], n_threads)
    if np.any(np.asarray(row_count)):
        raise AssertionError("group_rows left its count table dirty")
    return uniq[:k], group_ptr[:k + 1], members[:n]


def group_slots_py(const int64_t[:, ::1] idx, Py_ssize_t n_values, int n_threads=1,
                   int n_tables=1):
    """group_slots on fresh buffers: returns a dict of its outputs (key_row,
    pos (n, m), slot_offsets) and the tables it was given (to check that they
    are left all -1). IN idx (n, m), not checked: a test hook."""
    cdef Py_ssize_t n = idx.shape[0], m = idx.shape[1], items = n * m
    tables = np.full((n_tables, n_values), -1, np.int32)
    out = {name: np.empty(items, np.int64) for name in ("key_row", "pos")}
    out["slot_offsets"] = np.empty(m + 1, np.int64)
    k = group_slots(np.ascontiguousarray(idx).reshape(-1), n, m, tables,
                    np.empty(items, np.int64), np.empty(items, np.int64), out["key_row"],
                    out["pos"], out["slot_offsets"], n_threads)
    out["key_row"] = out["key_row"][:k]
    out["pos"] = out["pos"].reshape(n, m)
    out["tables"] = tables
    return out
