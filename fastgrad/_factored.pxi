# The factored path: xW = Σ_j L[w_j] W_j, each distinct (slot, row) key multiplied
# once (the keys come from fastgrad._grouping.group_slots). Included by
# _kernels.pyx (which holds the cimports).

# The factored path's products, one set per feature slot j (keys key0 .. key0+K_j):
#   forward (slot_gemms):     P_j = L[uniq_j] W_j                (K_j x Dh)
#   backward (slot_backward): S_j = Σ δ2 by key, dW_j = L[uniq_j]ᵀ S_j, then the keys'
#                             dL rows S_j W_jᵀ (K_j x d), written over L[uniq_j] once
#                             dW_j no longer needs it
# Slots differ in size (a word slot has hundreds of keys, a tag slot a few dozen),
# so whole slots balance badly over many threads (18 word slots on 16 threads: two
# rounds, the second one-eighth full). So at more threads the products are cut
# into about TASKS_PER_THREAD tasks a thread, handed out dynamically: blocks of
# keys for P_j and the dL rows, blocks of columns for dW_j (whose inner dimension
# is K_j: its rows cannot be cut without a reduction). Cutting finer than needed
# costs: each BLAS call repacks its operands (fixed small blocks made a 1-thread
# step markedly slower: bench/results/design-measurements.md). Each task is one
# BLAS call fixed by the thread count, so the result is fixed for a thread count.
cdef enum:
    SLOT_FORWARD = 0
    SLOT_BACKWARD = 1
    TASKS_PER_THREAD = 4
    MIN_BLOCK_ROWS = 64
    MIN_BLOCK_COLS = 32
    SUM_BLOCK_ROWS = 32
    FUSED_SUM_BYTES = 1 << 20
    FUSED_TASKS_PER_THREAD = 4


cdef inline void slot_rows_task(int stage, Py_ssize_t task, Py_ssize_t n_slots,
                                Py_ssize_t block_rows, const int64_t* slot_offsets,
                                Py_ssize_t d, Py_ssize_t n_hidden, floating* xu,
                                floating* products, const floating* W) noexcept nogil:
    """Task `task` of the row blocks: P rows (forward) or dL rows (backward) of one
    block of one slot's keys; tasks past a slot's last block do nothing."""
    cdef Py_ssize_t j = task % n_slots
    cdef Py_ssize_t first = slot_offsets[j] + (task // n_slots) * block_rows
    cdef int rows = <int> min(block_rows, slot_offsets[j + 1] - first)
    cdef const floating* W_j = W + j * d * n_hidden
    if rows <= 0:
        return
    if stage == SLOT_FORWARD:
        gemm(False, False, rows, <int> n_hidden, <int> d, <floating> 1, xu + first * d, <int> d,
             W_j, <int> n_hidden, <floating> 0, products + first * n_hidden, <int> n_hidden)
    else:
        gemm(False, True, rows, <int> d, <int> n_hidden, <floating> 1,
             products + first * n_hidden, <int> n_hidden, W_j, <int> n_hidden, <floating> 0,
             xu + first * d, <int> d)


cdef inline void slot_dW_task(Py_ssize_t task, Py_ssize_t n_slots, Py_ssize_t block_cols,
                              const int64_t* slot_offsets, Py_ssize_t d, Py_ssize_t n_hidden,
                              const floating* xu, const floating* products,
                              floating* dW) noexcept nogil:
    """Task `task` of dW: one block of columns of dW_j = L[uniq_j]ᵀ S_j."""
    cdef Py_ssize_t j = task % n_slots
    cdef Py_ssize_t col = (task // n_slots) * block_cols
    cdef Py_ssize_t key0 = slot_offsets[j]
    cdef int k = <int> (slot_offsets[j + 1] - key0)
    cdef int cols = <int> min(block_cols, n_hidden - col)
    if cols <= 0:
        return
    gemm(True, False, <int> d, cols, k, <floating> 1, xu + key0 * d, <int> d,
         products + key0 * n_hidden + col, <int> n_hidden, <floating> 0,
         dW + j * d * n_hidden + col, <int> n_hidden)


cdef inline void slot_task_layout(const int64_t* slot_offsets, Py_ssize_t n_slots,
                                  Py_ssize_t n_hidden, int n_threads, Py_ssize_t* block_rows,
                                  Py_ssize_t* n_row_tasks, Py_ssize_t* block_cols,
                                  Py_ssize_t* n_dW_tasks) noexcept nogil:
    """How slot_gemms and slot_backward cut the slots' products into tasks.

    About TASKS_PER_THREAD * n_threads blocks of keys in all, and dW_j in as many
    column blocks as it takes for that many tasks. At one or two threads that is
    mostly one task per slot and product (task counts equal to n_slots): unless a
    slot holds more than K / (TASKS_PER_THREAD * n_threads) keys (and 64), or Dh
    is wide enough for column blocks. Row tasks go block-major: every slot's
    first block, then every slot's second, ...
    """
    cdef Py_ssize_t j, most_keys = 0
    cdef Py_ssize_t n_tasks = <Py_ssize_t> TASKS_PER_THREAD * n_threads
    cdef Py_ssize_t n_keys = slot_offsets[n_slots]
    for j in range(n_slots):
        most_keys = max(most_keys, slot_offsets[j + 1] - slot_offsets[j])
    block_rows[0] = max(<Py_ssize_t> MIN_BLOCK_ROWS, (n_keys + n_tasks - 1) // n_tasks)
    n_row_tasks[0] = n_slots * ((most_keys + block_rows[0] - 1) // block_rows[0])
    cdef Py_ssize_t col_blocks = min((n_tasks + n_slots - 1) // n_slots,
                                     max(<Py_ssize_t> 1, n_hidden // MIN_BLOCK_COLS))
    n_dW_tasks[0] = n_slots * col_blocks
    block_cols[0] = (n_hidden + col_blocks - 1) // col_blocks
    block_cols[0] = (block_cols[0] + 15) // 16 * 16   # whole SIMD registers, either dtype


cdef void slot_gemms(const int64_t* slot_offsets, Py_ssize_t n_slots, Py_ssize_t d,
                     Py_ssize_t n_hidden, const floating* xu, floating* products,
                     const floating* W, int n_threads) noexcept nogil:
    """Every slot's forward product P_j = L[uniq_j] W_j, as tasks (see above).

    IN xu (K x d): L[key rows]; OUT products (K x Dh): P
    """
    cdef Py_ssize_t task, block_rows, n_row_tasks, block_cols, n_dW_tasks
    slot_task_layout(slot_offsets, n_slots, n_hidden, n_threads, &block_rows, &n_row_tasks,
                     &block_cols, &n_dW_tasks)
    for task in prange(n_row_tasks, num_threads=n_threads, schedule='dynamic'):
        slot_rows_task(SLOT_FORWARD, task, n_slots, block_rows, slot_offsets, d, n_hidden,
                       <floating*> xu, products, W)


cdef void slot_backward(const int64_t* slot_offsets, Py_ssize_t n_slots, Py_ssize_t d,
                        Py_ssize_t n_hidden, floating* xu, floating* products,
                        const floating* W, floating* dW, const floating* delta2,
                        const int64_t* pos, Py_ssize_t n, int n_threads,
                        double* clock) noexcept nogil:
    """The factored first layer's backward: for every slot j, S_j (the segment
    sums of δ2 by key, over products), dW_j = L[uniq_j]ᵀ S_j, and the keys' dL
    rows S_j W_jᵀ (over xu, once dW_j no longer needs it).

    Where each slot is one task (slot_task_layout: mostly at one or two threads),
    a task does all three for a few slots: their sums in one pass over δ2 (rather
    than one pass a slot), then dW_j and the dL rows slot by slot while S is still
    in L2 rather than after every slot's sums went through L3
    (bench/results/design-measurements.md, parser-pipeline-2core.md). As many slots
    as FUSED_SUM_BYTES of S hold: a group whose S outgrows L2 loses more than the
    shared pass saves (cm2014 uniform at 2 threads). The grouping changes no sum's
    order (sum_slot_deltas), so not the result. Otherwise the sums run first, over
    whole slots (sum_slot_deltas), and the products as cut by slot_task_layout;
    PHASE_SEGMENT_SUMS is lapped between them.

    IN/OUT xu (K x d): IN L[key rows], OUT the dL rows
    OUT products (K x Dh): S; OUT dW
    IN delta2 (n x Dh), pos (n x m), slot_offsets: from group_slots
    """
    cdef Py_ssize_t task, block_rows, n_row_tasks, block_cols, n_dW_tasks
    slot_task_layout(slot_offsets, n_slots, n_hidden, n_threads, &block_rows, &n_row_tasks,
                     &block_cols, &n_dW_tasks)
    cdef Py_ssize_t per_task, n_tasks, j0, j1, j
    if n_row_tasks == n_slots and n_dW_tasks == n_slots:
        # slots a task: as many as FUSED_SUM_BYTES of S hold at the mean keys a
        # slot, at most FASTGRAD_SLOTS_PER_SUM, and FUSED_TASKS_PER_THREAD tasks a thread
        per_task = (<Py_ssize_t> FUSED_SUM_BYTES // (n_hidden * sizeof(floating))) * n_slots \
            // max(<Py_ssize_t> 1, slot_offsets[n_slots])
        per_task = max(<Py_ssize_t> 1, min(per_task, min(<Py_ssize_t> FASTGRAD_SLOTS_PER_SUM,
                                           n_slots // (FUSED_TASKS_PER_THREAD * n_threads))))
        n_tasks = (n_slots + per_task - 1) // per_task
        for task in prange(n_tasks, num_threads=n_threads, schedule='dynamic'):
            j0 = task * per_task
            j1 = min(j0 + per_task, n_slots)
            sum_slot_range(delta2, pos, slot_offsets, n, n_slots, j0, j1, n_hidden, products)
            for j in range(j0, j1):
                slot_dW_task(j, n_slots, block_cols, slot_offsets, d, n_hidden, xu, products,
                             dW)
                slot_rows_task(SLOT_BACKWARD, j, n_slots, block_rows, slot_offsets, d,
                               n_hidden, xu, products, W)
        return
    sum_slot_deltas(delta2, pos, slot_offsets, n, n_slots, n_hidden, products, n_threads)
    lap(PHASE_SEGMENT_SUMS, clock)
    for task in prange(n_dW_tasks, num_threads=n_threads, schedule='dynamic'):
        slot_dW_task(task, n_slots, block_cols, slot_offsets, d, n_hidden, xu, products, dW)
    for task in prange(n_row_tasks, num_threads=n_threads, schedule='dynamic'):
        slot_rows_task(SLOT_BACKWARD, task, n_slots, block_rows, slot_offsets, d, n_hidden,
                       xu, products, W)


cdef void sum_slot_products_relu(const floating* products, const int64_t* pos,
                                 Py_ssize_t n, Py_ssize_t n_slots, Py_ssize_t n_hidden,
                                 const floating* b1, floating* h, int n_threads) noexcept nogil:
    """Factored forward: h[i] = relu(b1 + Σ_j products[pos[i, j]]).

    IN products (K x n_hidden): row u is L[row of u] W_slot(u)
    IN pos (n x n_slots): the product row of each (example, slot)
    OUT h (n x n_hidden)
    """
    cdef Py_ssize_t block, i, first, count
    cdef Py_ssize_t n_blocks = (n + SUM_BLOCK_ROWS - 1) // SUM_BLOCK_ROWS
    for block in prange(n_blocks, num_threads=n_threads, schedule='static'):
        first = block * SUM_BLOCK_ROWS
        count = min(<Py_ssize_t> SUM_BLOCK_ROWS, n - first)
        if floating is float:
            sum_indexed_rows_f(h + first * n_hidden, products, pos + first * n_slots, n_slots,
                                count, n_hidden)
        else:
            sum_indexed_rows_d(h + first * n_hidden, products, pos + first * n_slots, n_slots,
                                count, n_hidden)
        for i in range(first, first + count):
            bias_relu_row(h + i * n_hidden, b1, n_hidden)


cdef inline void sum_slot_range(const floating* delta2, const int64_t* pos,
                                const int64_t* slot_offsets, Py_ssize_t n, Py_ssize_t n_slots,
                                Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t n_hidden,
                                floating* sums) noexcept nogil:
    """The segment sums of slots j0 .. j1-1 (at most FASTGRAD_SLOTS_PER_SUM), one thread."""
    if floating is float:
        sum_slots_by_example_f(sums, delta2, pos, n, n_slots, slot_offsets, j0, j1,
                               SUM_BLOCK_ROWS, n_hidden)
    else:
        sum_slots_by_example_d(sums, delta2, pos, n, n_slots, slot_offsets, j0, j1,
                               SUM_BLOCK_ROWS, n_hidden)


cdef void sum_slot_deltas(const floating* delta2, const int64_t* pos, const int64_t* slot_offsets,
                          Py_ssize_t n, Py_ssize_t n_slots, Py_ssize_t n_hidden,
                          floating* sums, int n_threads) noexcept nogil:
    """Factored backward: sums[u] = Σ δ2[i] over the examples i of key u, i ascending.

    IN delta2 (n x n_hidden), IN pos (n x n_slots) and slot_offsets as numbered by
    group_slots (a slot's keys in order of first occurrence), OUT sums (K x n_hidden).
    Threads take groups of whole slots (a key belongs to one slot, so no two
    threads write one row); each group reads δ2 once, a block of examples at a
    time for all its slots. Each sum's order is fixed by the examples, so the
    result does not depend on the thread count or the grouping.
    """
    cdef Py_ssize_t per_task = max(<Py_ssize_t> 1,
                                   min(<Py_ssize_t> FASTGRAD_SLOTS_PER_SUM, n_slots // n_threads))
    cdef Py_ssize_t n_tasks = (n_slots + per_task - 1) // per_task
    cdef Py_ssize_t task, j0
    for task in prange(n_tasks, num_threads=n_threads, schedule='dynamic'):
        j0 = task * per_task
        sum_slot_range(delta2, pos, slot_offsets, n, n_slots, j0, min(j0 + per_task, n_slots),
                       n_hidden, sums)
