// The FMA-only loop: 12 independent FMA chains (more than FMA latency × ports, 8 on these cores)
// and nothing else, so it runs at the core's f32 FMA rate. NAME() returns that rate in GFLOP/s.
// The reference that batched decode (gk_fma_rate, graft bench) and the kernel benchmarks
// (tools/bench_matmul) report their compute against.
#pragma once
#include <immintrin.h>
#include <string.h>
#include <time.h>

static inline double gk_fma_loop_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// FMADD(a, acc, b) is one instruction doing FLOPS floating-point operations per lane of VEC (2
// for an FMA); FMA_PEAK is the FMA form.
#define FMA_PEAK(NAME, TARGET, VEC, SET1, FMADD, ADD, LANES, REG) \
    FMA_PEAK_OPS(NAME, TARGET, VEC, SET1, FMADD, ADD, LANES, REG, 2)
#define FMA_PEAK_OPS(NAME, TARGET, VEC, SET1, FMADD, ADD, LANES, REG, FLOPS)                        \
    __attribute__((target(TARGET), noinline)) static double NAME(void) {                            \
        VEC acc[12];                                                                                \
        for (int i = 0; i < 12; i++) acc[i] = SET1((float)i);                                       \
        VEC a = SET1(0.999f), b = SET1(1e-3f);                                                      \
        const long iters = 20000000;                                                                \
        double t0 = gk_fma_loop_clock();                                                            \
        for (long r = 0; r < iters; r++) {                                                          \
            __asm__ volatile("" : REG(a));                                                          \
            for (int i = 0; i < 12; i++) acc[i] = FMADD(a, acc[i], b);                              \
        }                                                                                           \
        double t = gk_fma_loop_clock() - t0;                                                        \
        for (int i = 1; i < 12; i++) acc[0] = ADD(acc[0], acc[i]);                                  \
        float sink[LANES];                                                                          \
        memcpy(sink, &acc[0], sizeof sink);                                                         \
        volatile float keep = sink[0];                                                              \
        (void)keep;                                                                                 \
        return (double)(FLOPS) * LANES * 12 * iters / t / 1e9;                                      \
    }
