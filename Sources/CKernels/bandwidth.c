#include "ckernels.h"
#include "fma_loop.h"
#include <immintrin.h>

__attribute__((target("avx512f")))
static float read512(const void *p, size_t n) {
    const float *f = (const float *)p;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0, m = n / 4;
    for (; i + 64 <= m; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(f + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(f + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(f + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(f + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// `streams` equal parts read in lockstep, each asking for the line `prefetch` bytes ahead: more
// cache-line fills in flight than one sequential stream gets from the hardware prefetcher
// (the decode kernels read several weight rows at once and prefetch, so a one-stream probe
// can understate what they reach).
__attribute__((target("avx512f")))
static float read512_streams(const void *p, size_t n, int streams, size_t prefetch) {
    const char *c = (const char *)p;
    __m512 a[8];
    for (int s = 0; s < 8; s++) a[s] = _mm512_setzero_ps();
    if (streams > 8) streams = 8;
    size_t per = n / (size_t)streams / 256 * 256;
    for (size_t i = 0; i < per; i += 256) {
        for (int s = 0; s < streams; s++) {
            const char *q = c + (size_t)s * per + i;
            if (prefetch)
                for (int l = 0; l < 4; l++) _mm_prefetch(q + prefetch + 64 * l, _MM_HINT_T0);
            __m512 x = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps((const float *)q), _mm512_loadu_ps((const float *)(q + 64))),
                                     _mm512_add_ps(_mm512_loadu_ps((const float *)(q + 128)), _mm512_loadu_ps((const float *)(q + 192))));
            a[s] = _mm512_add_ps(a[s], x);
        }
    }
    __m512 t = a[0];
    for (int s = 1; s < 8; s++) t = _mm512_add_ps(t, a[s]);
    return _mm512_reduce_add_ps(t);
}

__attribute__((target("avx2")))
static float read256(const void *p, size_t n) {
    const float *f = (const float *)p;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0, m = n / 4;
    for (; i + 32 <= m; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(f + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(f + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(f + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(f + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

float gk_read_bytes(const void *p, size_t n) {
    gk_cpu_features f = gk_detect_cpu();
    if (f.avx512f) return read512(p, n);
    if (f.avx2_fma) return read256(p, n);
    const float *x = (const float *)p;
    float s = 0;
    for (size_t i = 0; i < n / 4; i += 16) s += x[i];
    return s;
}

float gk_read_bytes_streams(const void *p, size_t n, int streams, size_t prefetch) {
    gk_cpu_features f = gk_detect_cpu();
    if (f.avx512f && streams > 1) return read512_streams(p, n, streams, prefetch);
    return gk_read_bytes(p, n);
}

FMA_PEAK(fma_loop512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16, "+v")
FMA_PEAK(fma_loop256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8, "+x")

double gk_fma_rate(void) {
    switch (gk_current_level()) {
    case GK_LEVEL_AVX512: return fma_loop512();
    case GK_LEVEL_AVX2: return fma_loop256();
    default: return 0;
    }
}

// The same loop on AVX-512 BF16's dot products: each lane of a and b read as a pair of bf16
// values (0.996 and -0.248, 0.001 and 7.5e-28: no denormals), two multiply-adds per lane, 4
// FLOP. The compute reference of products with bf16 activations (gk_matmul_bf16x).
#define DPBF16_FMADD(a, acc, b) \
    _mm512_dpbf16_ps((acc), (__m512bh)_mm512_castps_si512(a), (__m512bh)_mm512_castps_si512(b))
FMA_PEAK_OPS(dp_loop512, "avx512f,avx512bf16", __m512, _mm512_set1_ps, DPBF16_FMADD, _mm512_add_ps, 16, "+v", 4)

double gk_dpbf16_rate(void) {
    return gk_bf16x_path(gk_current_level()) == GK_BF16X_DPBF16 ? dp_loop512() : 0;
}
