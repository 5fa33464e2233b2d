// What widening 16 bf16 values costs beside the FMAs (matmul.c, "The bf16 order"): a loop of 16
// independent FMAs per iteration, alone and with one widening of 16 values (a 64-byte load, one
// or two ALU operations, a 64-byte store to L1) each, in the ways the kernels have done it. Prints
// each loop's FMA rate and the cycles it adds per 8 FMA cycles (one iteration at 2 FMAs per
// cycle). The variants alternate, repeat by repeat; medians of 11. Not a test.
//   clang -O3 -o /tmp/widen tools/bench_matmul/widen.c && /tmp/widen
#include <stdint.h>
#include <stdio.h>

#include "timing.h"

#define T __attribute__((target("avx512f,avx512bw"), noinline))
#define LOOP(NAME, ...)                                                                             \
    T static double NAME(const uint16_t *src, float *dst, long it) {                                \
        __m512 acc[16];                                                                             \
        for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);                             \
        __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);                               \
        const __m512i lo = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0,   \
                                            7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);        \
        __mmask32 odd = 0xAAAAAAAAu;                                                                \
        (void)lo, (void)odd;                                                                        \
        double t0 = now();                                                                          \
        for (long r = 0; r < it; r++) {                                                             \
            __asm__ volatile("" : "+v"(a));                                                         \
            const uint16_t *s = src + 32 * (r & 63);                                                \
            float *d = dst + 16 * (r & 63);                                                         \
            (void)s, (void)d;                                                                       \
            __VA_ARGS__                                                                             \
            for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(a, acc[i], b);                    \
        }                                                                                           \
        double t = now() - t0;                                                                      \
        for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);                        \
        _mm512_store_ps(dst + 4096, acc[0]);                                                        \
        return 2.0 * 16 * 16 * it / t / 1e9;                                                        \
    }
LOOP(fma_only, )
LOOP(store_only, _mm512_store_ps(d, b);)
// The panel's widening until 2026-11-25: clang turns the masked permute into vpermt2w.
LOOP(maskz_permutexvar, {
    __m512i v = _mm512_loadu_si512(s);
    _mm512_store_ps(d, _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, lo, v)));
})
// The same as one vpermw with a zeroing mask, forced by inline assembly.
LOOP(vpermw_asm, {
    __m512i v = _mm512_loadu_si512(s), x;
    __asm__("vpermw %[v], %[i], %[r] %{%[m]%}%{z%}" : [r] "=v"(x) : [v] "v"(v), [i] "v"(lo), [m] "Yk"(odd));
    _mm512_store_ps(d, _mm512_castsi512_ps(x));
})
// ld512's widening in the plain order (the direct path until 2026-11-25): vpmovzxwd and a shift.
LOOP(zero_extend_shift, {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)s));
    _mm512_store_ps(d, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
})
// The bf16 order's two halves: even columns by a shift, odd columns by a mask.
LOOP(shift, {
    __m512i v = _mm512_loadu_si512(s);
    _mm512_store_ps(d, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
})
LOOP(mask, {
    __m512i v = _mm512_loadu_si512(s);
    _mm512_store_ps(d, _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u))));
})

int main(void) {
    if (!__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "needs AVX-512 BW\n");
        return 2;
    }
    uint16_t *src = aligned_alloc(64, 65536);
    float *dst = aligned_alloc(64, 131072);
    for (int i = 0; i < 32768; i++) src[i] = 0x3a83;
    enum { N = 7, R = 11 };
    double (*fn[N])(const uint16_t *, float *, long) = {fma_only, store_only, maskz_permutexvar, vpermw_asm,
                                                        zero_extend_shift, shift, mask};
    const char *name[N] = {"16 FMAs", "+ store", "+ load, maskz_permutexvar (vpermt2w), store",
                           "+ load, vpermw{z} (asm), store", "+ vpmovzxwd (load), shift, store",
                           "+ load, shift, store", "+ load, mask, store"};
    double t[N][R];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < N; i++) t[i][r] = fn[i](src, dst, 5000000);
    double med[N];
    for (int i = 0; i < N; i++) med[i] = median(t[i], R);
    for (int i = 0; i < N; i++)
        printf("%-46s %6.1f GFLOP/s  %5.1f%%  +%.2f cycles per 8\n", name[i], med[i], 100 * med[i] / med[0],
               8 * (med[0] / med[i] - 1));
    return 0;
}
