# The C row loops of _row_loops.h, declared once for Cython (see that header for
# what each computes; _row_ops.pxi wraps them in fused float/double functions).
from libc.stdint cimport int64_t


cdef extern from "_row_loops.h":
    ctypedef struct fastgrad_rule:   # defined in _constants.h
        int kind, eps_inside_sqrt
        double lr, l2, momentum, eps, beta1, beta2
        double dense_step, dense_denom_scale, sparse_step
    void fastgrad_prefetch(const void* p, Py_ssize_t n_bytes, int write) noexcept nogil
    void add_row_f(float* out, const float* src, Py_ssize_t n) noexcept nogil
    void add_row_d(double* out, const double* src, Py_ssize_t n) noexcept nogil
    void mask_add_row_f(float* delta, const float* h, float* total, float scale,
                        Py_ssize_t n) noexcept nogil
    void mask_add_row_d(double* delta, const double* h, double* total, double scale,
                        Py_ssize_t n) noexcept nogil
    void dropout_row_f(float* h, const float* u, float keep, float scale,
                       Py_ssize_t n) noexcept nogil
    void dropout_row_d(double* h, const double* u, double keep, double scale,
                       Py_ssize_t n) noexcept nogil
    void exp_shifted_row_f(float* row, float shift, Py_ssize_t n) noexcept nogil
    void sum_indexed_rows_f(float* out, const float* table, const int64_t* idx,
                            Py_ssize_t count, Py_ssize_t n_out, Py_ssize_t n) noexcept nogil
    void sum_indexed_rows_d(double* out, const double* table, const int64_t* idx,
                            Py_ssize_t count, Py_ssize_t n_out, Py_ssize_t n) noexcept nogil
    void sum_rows_f(float* out, const float* const* rows, Py_ssize_t count, int first,
                    Py_ssize_t n) noexcept nogil
    void sum_rows_d(double* out, const double* const* rows, Py_ssize_t count, int first,
                    Py_ssize_t n) noexcept nogil
    enum: FASTGRAD_SLOTS_PER_SUM
    void sum_slots_by_example_f(float* sums, const float* src, const int64_t* pos, Py_ssize_t n,
                                Py_ssize_t n_slots, const int64_t* slot_offsets, Py_ssize_t j0,
                                Py_ssize_t j1, Py_ssize_t block, Py_ssize_t len) noexcept nogil
    void sum_slots_by_example_d(double* sums, const double* src, const int64_t* pos,
                                Py_ssize_t n, Py_ssize_t n_slots, const int64_t* slot_offsets,
                                Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t block,
                                Py_ssize_t len) noexcept nogil
    void exp_shifted_row_d(double* row, double shift, Py_ssize_t n) noexcept nogil
    double sum_row_f(const float* row, Py_ssize_t n) noexcept nogil
    double sum_row_d(const double* row, Py_ssize_t n) noexcept nogil
    float max_row_f(const float* row, Py_ssize_t n) noexcept nogil
    double max_row_d(const double* row, Py_ssize_t n) noexcept nogil
    void update_row_f(const fastgrad_rule* r, int sparse, float* p, const float* g,
                      float* s1, float* s2, Py_ssize_t n) noexcept nogil
    void update_row_d(const fastgrad_rule* r, int sparse, double* p, const double* g,
                      double* s1, double* s2, Py_ssize_t n) noexcept nogil
    void bias_relu_row_f(float* out, const float* bias, Py_ssize_t n) noexcept nogil
    void bias_relu_row_d(double* out, const double* bias, Py_ssize_t n) noexcept nogil
