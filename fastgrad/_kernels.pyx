# cython: language_level=3
"""Compiled kernels of the embedding-window network.

Design
------
One training step of the network in README.md ("The network") is six matrix products
(xW, hU, hᵀδ1, δ1Uᵀ, xᵀδ2, δ2Wᵀ) glued together by cheap row-wise work. The
products go to BLAS through the typed layer in ``_blas.pxd``; everything else
is written here as small ``noexcept nogil`` per-row functions, driven by
``prange`` loops over rows (OpenMP when the build has it, serial otherwise).

Layers, bottom to top:

1. per-row functions: the C row loops of ``_row_loops.h`` (declared in
   ``_row_loops.pxd``) and their fused wrappers with ``softmax_xent_row`` and
   ``sum_rows`` (``_row_ops.pxi``): pure C, no GIL;
2. row-parallel loops over them (``_dense_layers.pxi``, ``_factored.pxi``,
   ``_segments.pxi``, ``_updates.pxi``, ``_precomputed.pxi``),
   each parallel over output rows so no two threads ever write the same row;
   the two column sums (db1, db2) are per-thread shares added in thread order.
   The result is fixed for a given thread count and bit-identical from run to
   run (thread counts differ only in the rounding of db1 and db2). Every
   parallel loop asks for all n_threads threads, even one with fewer pieces of
   work: a smaller team makes libgomp park the others, and the next loop must
   wake them;
3. ``run_step`` (here): one pass of forward and backward on the dense or the
   factored path, writing only into the buffers of a typed
   ``fastgrad._workspace.Workspace``;
4. ``fastgrad._step`` (the validated call) and ``fastgrad._api`` (the public
   functions). Nothing here checks its input: that is done before any kernel runs.

The constants (modes, paths, optimizer rules, phases) are defined once, in
``_constants.h``, and declared for Cython in ``_kernels.pxd``.

Two paths compute the same numbers:

* dense: x = [L[w_0] ... L[w_{m-1}]] is gathered into an (N, m*d) buffer and
  the products run over it, exactly as the derivation reads;
* factored: xW = Σ_j L[w_j] W_j, so each distinct (slot, row) pair of the batch
  is multiplied once. ``_grouping.group_slots`` groups the occurrences of each slot;
  P_j = L[uniq_j] W_j, z[n] = b1 + Σ_j P[pos(n, j)]; backward the segment
  sums S = Σ_occurrences δ2 give dW_j = L[uniq_j]ᵀ S_j and dL rows S_j W_jᵀ.

The embedding gradient is never dense: occurrences are grouped by row, each
row's contributions are summed first (in a fixed order) and the row of L is
touched once. A training step (MODE_UPDATE) applies its optimizer rule there,
row by row, with the row's own optimizer state: SGD, momentum, AdaGrad and Adam
are one C loop each (``update_row_*``), and L2 and the dropout mask are folded
into the passes that already exist, never a pass of their own.

Inference can skip the first layer's products altogether: ``precomputed_hidden``
adds cached rows of L[v] W_j (Chen & Manning's precomputation trick).

Buffers are owned by the caller (``fastgrad._workspace.Workspace``) and reused from
step to step; the kernels allocate nothing.
"""

cimport cython
from cython.parallel cimport prange, threadid
from libc.math cimport exp, log, isfinite
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

from fastgrad._blas cimport floating, gemm, sgemm, dgemm, fastgrad_sgemm_fn, fastgrad_dgemm_fn
from fastgrad._grouping cimport group_rows
from fastgrad._row_loops cimport *
from fastgrad._workspace cimport Workspace

cnp.import_array()

cdef extern from *:
    """
    #if FASTGRAD_OPENMP
    #include <omp.h>
    static int fastgrad_openmp_max_threads(void) { return omp_get_max_threads(); }
    static double fastgrad_wtime(void) { return omp_get_wtime(); }
    #else
    static int fastgrad_openmp_max_threads(void) { return 1; }
    static double fastgrad_wtime(void) { return 0.0; }
    #endif
    """
    const int FASTGRAD_OPENMP
    int fastgrad_openmp_max_threads() noexcept nogil
    double fastgrad_wtime() noexcept nogil

OPENMP = bool(FASTGRAD_OPENMP)


def _set_gemm(size_t sgemm_address, size_t dgemm_address):
    """Point the kernels' sgemm and dgemm at a BLAS (fastgrad/_blas_library.py)."""
    global sgemm, dgemm
    if not sgemm_address or not dgemm_address:
        raise ImportError("no BLAS sgemm/dgemm address")
    sgemm = <fastgrad_sgemm_fn> sgemm_address
    dgemm = <fastgrad_dgemm_fn> dgemm_address


def gemm_addresses():
    """The addresses the kernels call for sgemm and dgemm (for show_config's tests)."""
    return <size_t> sgemm, <size_t> dgemm


from fastgrad._blas_library import choose as _choose_blas

BLAS = _choose_blas()
_set_gemm(BLAS.sgemm, BLAS.dgemm)


def openmp_max_threads():
    """OpenMP's default thread count (1 in a build without OpenMP)."""
    return fastgrad_openmp_max_threads()


# ---------------------------------------------------------------------------
# Phase timing: where a step's time goes (tools/phase_profile.py), off by default
# ---------------------------------------------------------------------------
# Wall-clock seconds per phase of run_step, summed over the steps while on; one
# clock read per phase, nothing when off. A developer's tool: not thread-safe
# (steps on two Python threads at once mix their phases), and OpenMP builds only.

PHASES = tuple(fastgrad_phase_names[i].decode("utf-8") for i in range(<int> N_PHASES))
cdef double phase_seconds[N_PHASES]
cdef bint phase_timing_on = False


def set_phase_timing(bint on):
    """Start (clearing the totals) or stop timing the phases of run_step."""
    global phase_timing_on
    if on and not FASTGRAD_OPENMP:
        raise RuntimeError("phase timing needs a build with OpenMP (its clock)")
    memset(phase_seconds, 0, sizeof(phase_seconds))
    phase_timing_on = on


def phase_timing():
    """{phase name: seconds} summed since set_phase_timing(True)."""
    return {name: phase_seconds[i] for i, name in enumerate(PHASES)}


cdef inline void lap(fastgrad_phase phase, double* since) noexcept nogil:
    """Bill the time since `since` to `phase`, and restart the clock."""
    cdef double now
    if phase_timing_on:
        now = fastgrad_wtime()
        phase_seconds[<int> phase] += now - since[0]
        since[0] = now


# The kernels, bottom to top (each file says what it holds)
include "_row_ops.pxi"
include "_dense_layers.pxi"
include "_factored.pxi"
include "_segments.pxi"
include "_updates.pxi"
include "_precomputed.pxi"
include "_exchange.pxi"


# ---------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------

def run_step(int mode, int path,
             const floating[:, ::1] L, const floating[:, ::1] W, const floating[::1] b1,
             const floating[:, ::1] U, const floating[::1] b2,
             Workspace ws, Py_ssize_t n, int n_threads, rule=None, state1=None, state2=None,
             double keep=1.0, double mean_over=0.0):
    """One forward (and, by mode, backward) pass; see the MODE_* constants.

    IN  parameters L, W, b1, U, b2
    IN  ws: the Workspace holding the batch (ws.idx (n*m) and ws.y (n), int64, already
        checked) and every buffer (OUT: theta holds the
        probabilities in MODE_PROBA; dW, dU, db1, db2 the dense gradients and
        grad_rows/grad_values the embedding gradient in MODE_GRAD)
    IN  keep < 1: inverted dropout on h with keep probability `keep`, the unit
        kept where ws.dropout_u (n x Dh uniform draws) < keep (not in MODE_PROBA)
    IN  rule (MODE_UPDATE): a fastgrad._step.UpdateRule
    IN/OUT state1, state2 (MODE_UPDATE): the rule's state, arrays shaped as
        (L, W, b1, U, b2) in their dtype, or None when the rule keeps none
    IN/OUT in MODE_UPDATE every parameter, updated in place only when the loss is finite
    IN  mean_over > 0: the loss and gradients are sums over these n rows divided by
        mean_over instead of n (a shard of a larger global batch: fastgrad.distributed)
    Returns (mean loss, number k of touched rows of L, and in MODE_GRAD a fresh
    (k, d) array of their gradients, else None).
    """
    cdef Py_ssize_t n_vocab = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t n_slots = W.shape[0] // d, n_hidden = W.shape[1], n_classes = U.shape[1]
    cdef Py_ssize_t width = n_slots * d, i, k_rows = 0, n_keys = 0
    cdef double loss = 0.0, clock = 0.0
    cdef double divisor = mean_over if mean_over > 0 else <double> n
    cdef floating inv_n = <floating> (1.0 / divisor)
    cdef bint backward = mode == MODE_GRAD or mode == MODE_UPDATE
    cdef bint dropout = keep < 1.0 and mode != MODE_PROBA
    cdef floating mask_scale = <floating> (1.0 / keep) if dropout else 1
    cdef floating* dropout_u = NULL
    cdef fastgrad_rule update_rule
    cdef floating* s1[5]
    cdef floating* s2[5]

    cdef floating* pL = <floating*> &L[0, 0]
    cdef floating* pW = <floating*> &W[0, 0]
    cdef floating* pb1 = <floating*> &b1[0]
    cdef floating* pU = <floating*> &U[0, 0]
    cdef floating* pb2 = <floating*> &b2[0]

    cdef const int64_t[::1] idx = ws.idx
    cdef const int64_t[::1] y = ws.y
    cdef floating[:, ::1] h = ws.h
    cdef floating[:, ::1] theta = ws.theta
    cdef double[::1] row_loss = ws.row_loss
    cdef unsigned char[::1] row_correct = ws.row_correct
    cdef floating[:, ::1] x          # dense: the gathered inputs, later dL per occurrence
    cdef floating[:, ::1] xu         # factored: L[key rows], later dL per key
    cdef floating[:, ::1] products   # factored: P, later the segment sums S
    cdef floating[:, ::1] delta2, dW, dU, scratch, partials, class_partials
    cdef floating[::1] db1, db2
    cdef int64_t[::1] key_row, pos, slot_offsets
    cdef int64_t[::1] grad_rows, group_ptr, members, radix_counts
    cdef int32_t[::1] row_count, sort_values, sort_items

    if path == PATH_DENSE:
        x = ws.x
    else:
        xu = ws.xu
        products = ws.products
        key_row = ws.key_row
        pos = ws.pos
        slot_offsets = ws.slot_offsets
        n_keys = slot_offsets[n_slots]
    if backward:
        delta2 = ws.delta2
        dW = ws.dW
        dU = ws.dU
        db1 = ws.db1
        db2 = ws.db2
        grad_rows = ws.grad_rows
        group_ptr = ws.group_ptr
        members = ws.members
        row_count = ws.row_count
        sort_values = ws.sort_values
        sort_items = ws.sort_items
        radix_counts = ws.radix_counts
        partials = ws.partials
        class_partials = ws.class_partials
        if mode == MODE_UPDATE:
            scratch = ws.scratch
            set_rule(&update_rule, rule)
            for i in range(5):
                s1[i] = <floating*> cnp.PyArray_DATA(state1[i]) if state1 is not None else NULL
                s2[i] = <floating*> cnp.PyArray_DATA(state2[i]) if state2 is not None else NULL
    if dropout:
        dropout_u = <floating*> cnp.PyArray_DATA(ws.dropout_u)

    with nogil:
        # ---- forward: h = relu(x W + b1), θ = h U + b2 ----
        if phase_timing_on:
            clock = fastgrad_wtime()
        if path == PATH_DENSE:
            gather_rows(pL, d, &idx[0], n * n_slots, &x[0, 0], n_threads)
            lap(PHASE_GATHER, &clock)
            gemm_rows_parallel(False, False, <int> n, <int> n_hidden, <int> width, <floating> 1,
                               &x[0, 0], <int> width, pW, <int> n_hidden, <floating> 0, &h[0, 0],
                               <int> n_hidden, n_threads)
            lap(PHASE_FIRST_PRODUCTS, &clock)
            bias_relu_rows(&h[0, 0], pb1, n, n_hidden, n_threads)
        else:
            gather_rows(pL, d, &key_row[0], n_keys, &xu[0, 0], n_threads)
            lap(PHASE_GATHER, &clock)
            slot_gemms(&slot_offsets[0], n_slots, d, n_hidden, &xu[0, 0], &products[0, 0], pW,
                       n_threads)
            lap(PHASE_FIRST_PRODUCTS, &clock)
            sum_slot_products_relu(&products[0, 0], &pos[0], n, n_slots, n_hidden, pb1,
                                   &h[0, 0], n_threads)
        if dropout:
            dropout_rows(&h[0, 0], dropout_u, n, n_hidden, <floating> keep, n_threads)
        lap(PHASE_FIRST_SUMS, &clock)
        gemm_rows_parallel(False, False, <int> n, <int> n_classes, <int> n_hidden, <floating> 1,
                           &h[0, 0], <int> n_hidden, pU, <int> n_classes, <floating> 0, &theta[0, 0],
                           <int> n_classes, n_threads)
        lap(PHASE_OUTPUT_PRODUCT, &clock)

        # ---- θ += b2; softmax, cross-entropy, δ1 = (ŷ - y) / N, db2 = Σ δ1: one pass ----
        softmax_xent_rows(&theta[0, 0], pb2, &y[0], n, n_classes, mode, inv_n, &row_loss[0],
                          &row_correct[0], &db2[0] if backward else NULL,
                          &class_partials[0, 0] if backward else NULL,
                          class_partials.shape[1] if backward else 0, n_threads)
        if mode != MODE_PROBA:
            for i in range(n):
                loss += row_loss[i]
            loss /= divisor
        lap(PHASE_SOFTMAX, &clock)

    if not backward or (mode == MODE_UPDATE and not isfinite(loss)):
        return loss, 0, None

    with nogil:
        # ---- backward through the output layer: dU = hᵀ δ1 (db2 is done) ----
        relu_mask_backward(&theta[0, 0], pU, &h[0, 0], n, n_classes, n_hidden, mask_scale,
                           &delta2[0, 0], &db1[0], &partials[0, 0], partials.shape[1],
                           n_threads)
        lap(PHASE_MASK_BACKWARD, &clock)
        gemm_rows_parallel(True, False, <int> n_hidden, <int> n_classes, <int> n, <floating> 1,
                           &h[0, 0], <int> n_hidden, &theta[0, 0], <int> n_classes, <floating> 0,
                           &dU[0, 0], <int> n_classes, n_threads)
        lap(PHASE_DU, &clock)

        # ---- backward through the first layer: dW, and dL per occurrence or key ----
        if path == PATH_DENSE:
            # dW = xᵀ δ2, then x is free: it receives δ2 Wᵀ (one row of d per occurrence)
            gemm_rows_parallel(True, False, <int> width, <int> n_hidden, <int> n, <floating> 1,
                               &x[0, 0], <int> width, &delta2[0, 0], <int> n_hidden, <floating> 0,
                               &dW[0, 0], <int> n_hidden, n_threads)
            gemm_rows_parallel(False, True, <int> n, <int> width, <int> n_hidden, <floating> 1,
                               &delta2[0, 0], <int> n_hidden, pW, <int> n_hidden, <floating> 0,
                               &x[0, 0], <int> width, n_threads)
            lap(PHASE_DW_DL, &clock)
            k_rows = group_rows(&idx[0], n * n_slots, n_vocab, &row_count[0], &sort_values[0],
                                &sort_items[0], &radix_counts[0], &grad_rows[0], &group_ptr[0],
                                &members[0], n_threads)
        else:
            # S_u = Σ_{examples of key u} δ2 replaces P; dW_j = L[uniq_j]ᵀ S_j;
            # then xu is free and receives S_j W_jᵀ (one row of d per key)
            slot_backward(&slot_offsets[0], n_slots, d, n_hidden, &xu[0, 0], &products[0, 0],
                          pW, &dW[0, 0], &delta2[0, 0], &pos[0], n, n_threads, &clock)
            lap(PHASE_DW_DL, &clock)
            k_rows = group_rows(&key_row[0], n_keys, n_vocab, &row_count[0], &sort_values[0],
                                &sort_items[0], &radix_counts[0], &grad_rows[0], &group_ptr[0],
                                &members[0], n_threads)
        lap(PHASE_GROUP_DL, &clock)

    # rows of dL, one per occurrence (dense) or per key (factored), to be summed by row
    cdef const floating* dl_items = &x[0, 0] if path == PATH_DENSE else &xu[0, 0]
    cdef floating[:, ::1] values
    if mode == MODE_GRAD:
        values = ws.grad_values_for(k_rows)
        with nogil:
            sum_groups(dl_items, d, &group_ptr[0], &members[0], k_rows, &values[0, 0],
                       n_threads)
            lap(PHASE_UPDATE_L, &clock)
        return loss, k_rows, values.base

    with nogil:
        # ---- MODE_UPDATE: every parameter updated by the rule, L at touched rows once ----
        scatter_update_groups(dl_items, d, &group_ptr[0], &members[0], &grad_rows[0], k_rows,
                              &update_rule, pL, s1[0], s2[0], &scratch[0, 0],
                              scratch.shape[1], n_threads)
        lap(PHASE_UPDATE_L, &clock)
        update_dense(&update_rule, pW, &dW[0, 0], s1[1], s2[1], width * n_hidden, n_threads)
        update_dense(&update_rule, pb1, &db1[0], s1[2], s2[2], n_hidden, n_threads)
        update_dense(&update_rule, pU, &dU[0, 0], s1[3], s2[3], n_hidden * n_classes,
                     n_threads)
        update_dense(&update_rule, pb2, &db2[0], s1[4], s2[4], n_classes, n_threads)
        lap(PHASE_UPDATE_DENSE, &clock)
    return loss, k_rows, None
