// Timing pieces shared by the kernel benchmarks in this folder (step.c, stores.c, widen.c): a
// monotonic clock, a median, and the FMA-only loop they report their rates against (FMA_PEAK,
// from the engine's fma_loop.h, whose clock is theirs). Not a test.
#pragma once
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../Sources/CKernels/fma_loop.h"

static double now(void) { return gk_fma_loop_clock(); }

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}
