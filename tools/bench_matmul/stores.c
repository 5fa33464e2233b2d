// How much 512-bit stores slow the panel kernel's 4 × 4 tile (README, "Night (2026-11-24)").
// The tile loop of matmul.c's ptile512 (4 panel rows and 4 packed tokens per 16-column
// step, 16 FMAs, all in L1), alone and with 1 or 2 stores to L1 per step, as the next panel's
// widening (1 per step at 16 tokens) and the saved accumulators (0.67) add them; the FMA-only
// loop that tools/bench_matmul/run reports against (timing.h) is the reference. The variants
// alternate, repeat by repeat, so that a noisy machine affects them alike; medians of 21. Not a
// test.
//   clang -O3 -o /tmp/stores tools/bench_matmul/stores.c && /tmp/stores
#include <stdio.h>

#include "timing.h"

// One 384-column K block (24 steps) per iteration, as a tile run at 16 tokens on 7B shapes.
#define TILE(NAME, STORES)                                                                          \
    __attribute__((target("avx512f"), noinline)) static double NAME(const float *p, const float *x, \
                                                                     float *buf, long iters) {      \
        __m512 acc[16];                                                                             \
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();                                  \
        const __m512 v = _mm512_set1_ps(1);                                                         \
        double t0 = now();                                                                          \
        for (long r = 0; r < iters; r++)                                                            \
            for (int k = 0; k < 24; k++) {                                                          \
                const float *pk = p + 64 * k, *xk = x + 64 * k;                                     \
                __m512 w0 = _mm512_load_ps(pk), w1 = _mm512_load_ps(pk + 16);                       \
                __m512 w2 = _mm512_load_ps(pk + 32), w3 = _mm512_load_ps(pk + 48);                  \
                for (int b = 0; b < 4; b++) {                                                       \
                    __m512 xv = _mm512_load_ps(xk + 16 * b);                                        \
                    acc[b] = _mm512_fmadd_ps(w0, xv, acc[b]);                                       \
                    acc[4 + b] = _mm512_fmadd_ps(w1, xv, acc[4 + b]);                               \
                    acc[8 + b] = _mm512_fmadd_ps(w2, xv, acc[8 + b]);                               \
                    acc[12 + b] = _mm512_fmadd_ps(w3, xv, acc[12 + b]);                             \
                }                                                                                   \
                for (int s = 0; s < STORES; s++) _mm512_store_ps(buf + 16 * (STORES * k + s), v);   \
            }                                                                                       \
        double t = now() - t0;                                                                      \
        for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);                        \
        _mm512_store_ps(buf + 4096, acc[0]);                                                        \
        return 2.0 * 16 * 16 * 24 * iters / t / 1e9;                                                \
    }
TILE(tile0, 0)
TILE(tile1, 1)
TILE(tile2, 2)

// The FMA-only loop of tools/bench_matmul/run, in the variants' signature.
FMA_PEAK(fma_peak512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16, "+v")
static double fma_only(const float *p, const float *x, float *buf, long iters) {
    (void)p, (void)x, (void)buf, (void)iters;
    return fma_peak512();
}

int main(void) {
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "needs AVX-512\n");
        return 2;
    }
    float *p = aligned_alloc(64, 65536), *x = aligned_alloc(64, 65536), *buf = aligned_alloc(64, 65536);
    for (int i = 0; i < 16384; i++) p[i] = x[i] = 1e-3f, buf[i] = 0;
    enum { N = 4, R = 21 };
    double (*fn[N])(const float *, const float *, float *, long) = {fma_only, tile0, tile1, tile2};
    const char *name[N] = {"FMA-only loop", "tile", "tile + 1 store/step", "tile + 2 stores/step"};
    double t[N][R];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) t[i][r] = fn[i](p, x, buf, 100000);
    double med[N];
    for (int i = 0; i < N; i++) med[i] = median(t[i], R); // sorts t[i]
    for (int i = 0; i < N; i++)
        printf("%-22s median %6.1f GFLOP/s (%5.1f%% of the FMA-only loop; quartiles %.1f-%.1f)\n", name[i], med[i],
               100 * med[i] / med[0], t[i][R / 4], t[i][3 * R / 4]);
    return 0;
}
