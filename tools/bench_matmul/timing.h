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

// 12 independent FMA chains (FMA latency × ports is 8 here): the core's f32 FMA rate, in GFLOP/s (zmm, or ymm without AVX-512).
#define FMA_PEAK(NAME, TARGET, VEC, SET1, FMADD, ADD, LANES, REG)                                   \
    __attribute__((target(TARGET), noinline)) static double NAME(void) {                            \
        VEC acc[12];                                                                                \
        for (int i = 0; i < 12; i++) acc[i] = SET1((float)i);                                       \
        VEC a = SET1(0.999f), b = SET1(1e-3f);                                                      \
        const long iters = 20000000;                                                                \
        double t0 = now();                                                                          \
        for (long r = 0; r < iters; r++) {                                                          \
            __asm__ volatile("" : REG(a));                                                          \
            for (int i = 0; i < 12; i++) acc[i] = FMADD(a, acc[i], b);                              \
        }                                                                                           \
        double t = now() - t0;                                                                      \
        for (int i = 1; i < 12; i++) acc[0] = ADD(acc[0], acc[i]);                                  \
        float sink[LANES];                                                                          \
        memcpy(sink, &acc[0], sizeof sink);                                                         \
        volatile float keep = sink[0];                                                              \
        (void)keep;                                                                                 \
        return 2.0 * LANES * 12 * iters / t / 1e9;                                                  \
    }
