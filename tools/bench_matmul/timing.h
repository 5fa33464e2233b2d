// Timing pieces shared by the kernel benchmarks in this folder (step.c, stores.c): a monotonic
// clock, a median, and the FMA-only loop they report their rates against. Not a test.
#pragma once
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}

// FMA_PEAK(NAME, ...): the FMA-only loop the engine's benchmark also reports against.
#include "../../Sources/CKernels/fma_loop.h"
