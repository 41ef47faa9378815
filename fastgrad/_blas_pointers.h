/* The BLAS products the kernels call, as two function pointers (Fortran BLAS
   interface: every argument by address). They are set once, at import of
   fastgrad._kernels, to the library fastgrad/_blas_library.py chooses
   (scipy-openblas32's OpenBLAS, or scipy.linalg.cython_blas's exports); static,
   so each extension module that includes this header holds its own pair. */
#ifndef FASTGRAD_BLAS_POINTERS_H
#define FASTGRAD_BLAS_POINTERS_H

typedef void (*fastgrad_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                  int *, float *, int *, float *, float *, int *);
typedef void (*fastgrad_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                  int *, double *, int *, double *, double *, int *);
static fastgrad_sgemm_fn fastgrad_sgemm = 0;
static fastgrad_dgemm_fn fastgrad_dgemm = 0;

#endif
