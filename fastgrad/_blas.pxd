# cython: language_level=3
"""The typed BLAS layer: every BLAS call in fastgrad goes through here.

All fastgrad buffers are C-ordered (row-major) while BLAS is column-major. A
row-major product C = op(A) op(B) is the column-major product
Cᵀ = op(B)ᵀ op(A)ᵀ, so ``gemm`` swaps the operands instead of transposing
anything. ``gemm`` is fused over float and double and inlined into the
kernels that cimport this file, so the kernels never call BLAS in two
different ways. (Vector updates are plain C loops in the kernels: at a few
hundred entries a row, a BLAS call costs more than the loop.)

Sizes arrive as int: the Python layer refuses any shape whose sizes or
leading dimensions do not fit BLAS's 32-bit integers before a kernel runs.

Which BLAS: sgemm and dgemm are function pointers (_blas_pointers.h) that
fastgrad/_blas_library.py sets at import to the fastest one available
(scipy-openblas32's OpenBLAS, else scipy.linalg.cython_blas); see that module.
"""

cdef extern from "_blas_pointers.h":
    ctypedef void (*fastgrad_sgemm_fn)(char*, char*, int*, int*, int*, float*, float*, int*,
                                       float*, int*, float*, float*, int*) noexcept nogil
    ctypedef void (*fastgrad_dgemm_fn)(char*, char*, int*, int*, int*, double*, double*,
                                       int*, double*, int*, double*, double*, int*) noexcept nogil
    fastgrad_sgemm_fn sgemm "fastgrad_sgemm"
    fastgrad_dgemm_fn dgemm "fastgrad_dgemm"

ctypedef fused floating:
    float
    double


cdef inline void gemm(bint trans_a, bint trans_b, int n_rows, int n_cols, int n_inner,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C[n_rows, n_cols] = alpha op(A) op(B) + beta C.

    IN  a: op(A) is n_rows x n_inner (A itself is n_inner x n_rows when trans_a)
    IN  b: op(B) is n_inner x n_cols
    OUT c: n_rows x n_cols, leading dimension ldc
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if n_rows <= 0 or n_cols <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n_cols, &n_rows, &n_inner, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n_cols, &n_rows, &n_inner, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)
