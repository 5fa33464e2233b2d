// Times one decode step's matmuls (every layer's q, k, v, o, gate, up, down and the lm head) at
// a batch of n tokens over bf16 weights, for kernel builds loaded side by side with dlopen, so
// that variants alternate within one process on a noisy machine. Prints, per build, the median
// step time, its GFLOP/s and its ratio to an FMA-only loop timed in the same run (the core's
// f32 FMA peak), and the largest difference of its outputs from the first build's.
// Built and run by tools/bench_matmul/run; not a test.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*matmul_at_fn)(int, int, float *, size_t, const float *, size_t, const void *, size_t, size_t,
                             size_t, size_t);
typedef void (*matmul_next_fn)(int, int, float *, size_t, const float *, size_t, const void *, size_t, size_t,
                               size_t, size_t, const void *, size_t);
typedef void (*matmul_bf16x_fn)(int, float *, size_t, const uint16_t *, size_t, const void *, size_t, size_t, size_t,
                                size_t, const void *, size_t);
typedef int (*bf16x_path_fn)(int);

#include "timing.h"

FMA_PEAK(fma_peak512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16, "+v")
FMA_PEAK(fma_peak256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8, "+x")

static double fma_peak(int isa) { return isa == 2 && __builtin_cpu_supports("avx512f") ? fma_peak512() : fma_peak256(); }

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: step LAYERS HIDDEN Q KV INTER VOCAB TOKENS REPEATS [--l3|--l2] [--avx2] BUILD.so...\n");
        return 2;
    }
    const size_t layers = strtoul(argv[1], 0, 10), d = strtoul(argv[2], 0, 10), qd = strtoul(argv[3], 0, 10),
                 kvd = strtoul(argv[4], 0, 10), f = strtoul(argv[5], 0, 10), vocab = strtoul(argv[6], 0, 10),
                 n = strtoul(argv[7], 0, 10);
    const int repeats = atoi(argv[8]);
    int arg = 9, l3 = 0, l2 = 0, isa = 2; // gk_matmul_at's level: 2 AVX-512, 1 AVX2
    for (; arg < argc && argv[arg][0] == '-'; arg++) {
        if (strcmp(argv[arg], "--l3") == 0) l3 = 1;
        else if (strcmp(argv[arg], "--l2") == 0) l3 = l2 = 1;
        else if (strcmp(argv[arg], "--avx2") == 0) isa = 1;
        else { fprintf(stderr, "unknown option %s\n", argv[arg]); return 2; }
    }
    const int builds = argc - arg;
    if (builds < 1 || builds > 16 || repeats < 1) { fprintf(stderr, "1 to 16 builds, repeats >= 1\n"); return 2; }
    // A build with gk_matmul_next is told each product's next matrix, as Model.forward tells it
    // (not after the lm head); older builds have no hint.
    // A build named LIB@bf16x times gk_matmul_bf16x (bf16 activations: x rounded to bf16 once,
    // outside the timing) on the path gk_bf16x_path picks.
    matmul_at_fn fn[16];
    matmul_next_fn fnext[16];
    matmul_bf16x_fn fbx[16];
    int bxpath[16];
    for (int i = 0; i < builds; i++) {
        char lib[4096];
        snprintf(lib, sizeof lib, "%s", argv[arg + i]);
        char *at = strchr(lib, '@');
        if (at) *at = 0;
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (!h || !(fn[i] = (matmul_at_fn)dlsym(h, "gk_matmul_at"))) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        fnext[i] = (matmul_next_fn)dlsym(h, "gk_matmul_next");
        fbx[i] = NULL;
        if (at && strcmp(at + 1, "bf16x") == 0) {
            fbx[i] = (matmul_bf16x_fn)dlsym(h, "gk_matmul_bf16x");
            bf16x_path_fn pathfn = (bf16x_path_fn)dlsym(h, "gk_bf16x_path");
            if (!fbx[i] || !pathfn) { fprintf(stderr, "%s: no gk_matmul_bf16x\n", lib); return 1; }
            bxpath[i] = pathfn(isa);
            printf("%s: bf16 activations (gk_matmul_bf16x, path %d)\n", argv[arg + i], bxpath[i]);
        } else if (at) { fprintf(stderr, "unknown build suffix %s\n", at + 1); return 2; }
        if (fnext[i]) printf("%s: told the next matrix (gk_matmul_next)\n", argv[arg + i]);
    }
    // --l3: one layer (no lm head), repeated, so that the weights stay in the last-level cache.
    // --l2: the first rows (64, or 512 KiB of them) of each of one layer's matrices, each
    // repeated before the next: its weights stay in L2, so the kernels run with no memory stream.
    const size_t nl = l3 ? 1 : layers, inner = l2 ? 400 : l3 ? 100 : 1;
    size_t shapes[7][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd}, {f, d}, {f, d}, {d, f}};
    size_t count = nl * 7 + (l3 ? 0 : 1), elems = 0;
    size_t (*m)[2] = malloc(count * sizeof *m);
    for (size_t l = 0, i = 0; l < nl; l++)
        for (int s = 0; s < 7; s++, i++) { m[i][0] = shapes[s][0]; m[i][1] = shapes[s][1]; }
    if (!l3) { m[count - 1][0] = vocab; m[count - 1][1] = d; }
    if (l2)
        for (size_t i = 0; i < count; i++) {
            size_t r = (512 * 1024 / (2 * m[i][1])) & ~(size_t)3;
            m[i][0] = r < 4 ? 4 : r > 64 ? 64 : r;
        }
    double flops = 0;
    size_t maxk = 0, maxr = 0;
    for (size_t i = 0; i < count; i++) {
        elems += m[i][0] * m[i][1];
        flops += 2.0 * m[i][0] * m[i][1] * n;
        if (m[i][1] > maxk) maxk = m[i][1];
        if (m[i][0] > maxr) maxr = m[i][0];
    }
    uint16_t *w = aligned_alloc(64, (elems * 2 + 63) / 64 * 64);
    uint32_t seed = 1;
    for (size_t i = 0; i < elems; i++) {
        seed = seed * 1664525u + 1013904223u;
        float v = ((int)(seed >> 9) % 2001 - 1000) * 1e-4f;
        uint32_t bits;
        memcpy(&bits, &v, 4);
        w[i] = (uint16_t)(bits >> 16);
    }
    float *x = aligned_alloc(64, n * maxk * 4);
    for (size_t i = 0; i < n * maxk; i++) x[i] = ((int)(i * 7919 % 2001) - 1000) * 1e-3f;
    uint16_t *xb = aligned_alloc(64, (n * maxk * 2 + 63) / 64 * 64);   // x rounded to bf16 (to nearest even)
    for (size_t i = 0; i < n * maxk; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        xb[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    float *out[16];
    for (int b = 0; b < builds; b++) out[b] = aligned_alloc(64, n * maxr * 4);
    double *t = malloc(sizeof(double) * repeats * builds);
    // Per matrix role (q, k, v, o, gate, up, down, lm head): seconds per step, per build and repeat.
    double *role = calloc((size_t)repeats * builds * 8, sizeof(double));
    double peaks[3];
    for (int r = 0; r < repeats; r++) {
        if (r < 3) peaks[r] = fma_peak(isa);
        for (int b = 0; b < builds; b++) {
            double t0 = now();
            // Each matrix in turn (repeated in a row with --l2, the whole list repeated with --l3).
            for (size_t it = 0; it < (l2 ? 1 : inner); it++)
                for (size_t i = 0, off = 0; i < count; off += m[i][0] * m[i][1], i++) {
                    double t1 = now();
                    const size_t here = m[i][0] * m[i][1];
                    const int hint = fnext[b] && !l2 && i + 1 < count;
                    for (size_t rep = 0; rep < (l2 ? inner : 1); rep++)
                        if (fbx[b])
                            fbx[b](bxpath[b], out[b], m[i][0], xb, m[i][1], w + off, m[i][1], n, 0, m[i][0],
                                   hint ? w + off + here : NULL, hint ? m[i + 1][0] * m[i + 1][1] * 2 : 0);
                        else if (hint)
                            fnext[b](isa, 1, out[b], m[i][0], x, m[i][1], w + off, m[i][1], n, 0, m[i][0], w + off + here,
                                     m[i + 1][0] * m[i + 1][1] * 2);
                        else
                            fn[b](isa, 1, out[b], m[i][0], x, m[i][1], w + off, m[i][1], n, 0, m[i][0]);
                    role[((size_t)b * repeats + r) * 8 + (i == count - 1 && !l3 ? 7 : i % 7)] += (now() - t1) / inner;
                }
            t[b * repeats + r] = (now() - t0) / inner;
        }
    }
    double peak = median(peaks, repeats < 3 ? repeats : 3);
    printf("%zu tokens, %s kernels, %s: %.2f GFLOP over %.1f MB of bf16 weights; FMA-only loop %.1f GFLOP/s\n", n, isa == 2 ? "AVX-512" : "AVX2",
           l2 ? "each of one layer's matrices cut to <= 512 KiB and repeated (weights in L2)"
              : l3 ? "one layer repeated (weights in the last-level cache)" : "a whole step (weights streamed)",
           flops / 1e9, elems * 2 / 1e6, peak);
    for (int b = 0; b < builds; b++) {
        double s = median(t + b * repeats, repeats);
        double diff = 0;
        for (size_t i = 0; i < n * m[count - 1][0]; i++) {
            double e = out[b][i] - out[0][i];
            if (e < 0) e = -e;
            if (e > diff) diff = e;
        }
        const char *name = strrchr(argv[arg + b], '/');
        printf("%-12s median %8.3f ms  %6.1f GFLOP/s  %5.1f%% of the FMA loop  max |diff| %g\n", name ? name + 1 : argv[arg + b],
               s * 1e3, flops / s / 1e9, 100 * flops / s / 1e9 / peak, diff);
        // By role: median ms per step and GFLOP/s (rows × cols of the role's matrix).
        static const char *roles[8] = {"q", "k", "v", "o", "gate", "up", "down", "lm head"};
        printf("%12s", "");
        for (int q = 0; q < (l3 ? 7 : 8); q++) {
            double v[repeats];
            for (int r = 0; r < repeats; r++) v[r] = role[((size_t)b * repeats + r) * 8 + q];
            const double sec = median(v, repeats);
            const size_t *shape = m[q == 7 ? count - 1 : (size_t)q]; // layer 0's matrix, or the lm head
            const double flop = 2.0 * shape[0] * shape[1] * n * (q == 7 ? 1 : nl);
            printf(" %s %.2f ms %.0f GF/s;", roles[q], sec * 1e3, flop / sec / 1e9);
        }
        printf("\n");
    }
    return 0;
}
