#pragma once
// Debian's OpenBLAS: cblas.h from the pkg-config include dir. No lapacke.h ships, so the
// LAPACK routines Graft needs are declared here by their Fortran symbols.
#include <cblas.h>

char *openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

// LAPACK divide-and-conquer SVD (column-major, Fortran calling convention).
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda,
             float *s, float *u, const int *ldu, float *vt, const int *ldvt,
             float *work, const int *lwork, int *iwork, int *info);
