# cython: language_level=3
"""Uniform draws in [0, 1) from numpy's PCG64, made by several threads with the
bits that Generator.random makes on one (fastgrad/_uniform.h says how).

For the dropout draws of a training step (fastgrad._step.draw_dropout): numpy
fills them on one thread, ~2 ns a float32, ~100 us for a 256 x 200 batch: as much
as a twentieth of the parser's training step at two threads
(bench/results/speed-intel-2core.md). Any other bit generator, or a compiler
without 128-bit integers, and the caller draws through numpy as before.
"""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

cdef extern from "_uniform.h" nogil:
    int FASTGRAD_HAS_PCG64
    void fastgrad_pcg64_doubles(double* out, uint64_t state_hi, uint64_t state_lo,
                                uint64_t inc_hi, uint64_t inc_lo, int64_t d0, int64_t d1)
    void fastgrad_pcg64_floats(float* out, int64_t n, uint64_t state_hi, uint64_t state_lo,
                               uint64_t inc_hi, uint64_t inc_lo, int64_t d0, int64_t d1)
    uint64_t fastgrad_pcg64_at(uint64_t state_hi, uint64_t state_lo, uint64_t inc_hi,
                               uint64_t inc_lo, uint64_t d)
    void fastgrad_pcg64_skip(uint64_t* state_hi, uint64_t* state_lo, uint64_t inc_hi,
                             uint64_t inc_lo, uint64_t delta)

HAS_PCG64 = bool(FASTGRAD_HAS_PCG64)

cdef enum:
    MIN_DRAWS_PER_THREAD = 4096   # below this a thread's start costs more than it saves

_MASK64 = (1 << 64) - 1


def fill_uniform(generator, out, int n_threads=1):
    """Fill out as generator.random(out=out, dtype=out.dtype) would, on up to
    n_threads threads; returns True. Returns False, drawing nothing, unless this
    build has HAS_PCG64, generator's bit generator is a PCG64 and out is a
    C-contiguous float32 or float64 array (the caller then draws through numpy).

    IN/OUT generator: a numpy Generator, its state advanced past the draws
    OUT out
    """
    bitgen = generator.bit_generator
    if (not HAS_PCG64 or type(bitgen) is not np.random.PCG64 or not isinstance(out, np.ndarray)
            or not out.flags.c_contiguous or out.dtype not in (np.float32, np.float64)):
        return False
    cdef float[::1] out_f
    cdef double[::1] out_d
    cdef bint is_float = out.dtype == np.float32
    cdef int64_t n = out.size, first = 0, n_draws, c, n_chunks
    cdef uint64_t hi, lo, inc_hi, inc_lo, last
    flat = out.reshape(-1)
    if is_float:
        out_f = flat
    else:
        out_d = flat
    with bitgen.lock:
        state = bitgen.state
        hi, lo = state["state"]["state"] >> 64, state["state"]["state"] & _MASK64
        inc = state["state"]["inc"]
        inc_hi, inc_lo = inc >> 64, inc & _MASK64
        has_uint32, uinteger = state["has_uint32"], state["uinteger"]
        if is_float and has_uint32 and n > 0:   # the high half kept from the last call
            out_f[0] = <float> ((<uint64_t> uinteger) >> 8) * (1.0 / 16777216.0)
            first, has_uint32 = 1, 0
        n_draws = (n - first + 1) // 2 if is_float else n
        n_chunks = min(<int64_t> max(n_threads, 1),
                       max(<int64_t> 1, n_draws // MIN_DRAWS_PER_THREAD))
        with nogil:
            for c in prange(n_chunks, num_threads=n_chunks, schedule='static'):
                if is_float:
                    fastgrad_pcg64_floats(&out_f[first], n - first, hi, lo, inc_hi, inc_lo,
                                          c * n_draws // n_chunks, (c + 1) * n_draws // n_chunks)
                else:
                    fastgrad_pcg64_doubles(&out_d[0], hi, lo, inc_hi, inc_lo,
                                           c * n_draws // n_chunks, (c + 1) * n_draws // n_chunks)
        if is_float and n_draws > 0:   # numpy keeps the last draw's high half, and
            # marks it unused where the count of floats drawn was odd
            last = fastgrad_pcg64_at(hi, lo, inc_hi, inc_lo, <uint64_t> (n_draws - 1))
            has_uint32, uinteger = (n - first) % 2, last >> 32
        fastgrad_pcg64_skip(&hi, &lo, inc_hi, inc_lo, <uint64_t> n_draws)
        bitgen.state = {"bit_generator": "PCG64",
                        "state": {"state": (int(hi) << 64) | int(lo), "inc": inc},
                        "has_uint32": has_uint32, "uinteger": uinteger}
    return True


def drop_below(int32_t[:, ::1] rows, const double[:, ::1] draws, const double[::1] p_drop,
               int32_t value, int n_threads=1):
    """Word dropout's replacement (fastgrad.parser.training.word_dropout_rows), fused:
    rows[r, c] = value wherever draws[r, c] < p_drop[rows[r, c]], for the first
    draws.shape[1] columns of the first draws.shape[0] rows (what numpy's
    ``words[draws < p_drop[words]] = value`` does in four passes and three
    temporaries). Returns False, changing nothing, if an id lies outside p_drop.

    IN/OUT rows; IN draws, p_drop (a probability per id)
    """
    cdef Py_ssize_t r, c, n = draws.shape[0], m = draws.shape[1], n_ids = p_drop.shape[0]
    cdef int32_t v
    cdef int outside = 0
    if rows.shape[0] < n or rows.shape[1] < m:
        raise ValueError("draws must not be larger than rows")
    with nogil:
        for r in prange(n, num_threads=max(1, n_threads), schedule='static'):
            for c in range(m):
                v = rows[r, c]
                if v < 0 or v >= n_ids:
                    outside += 1
        if outside:
            with gil:
                return False
        for r in prange(n, num_threads=max(1, n_threads), schedule='static'):
            for c in range(m):
                v = rows[r, c]
                if draws[r, c] < p_drop[v]:
                    rows[r, c] = value
    return True
