// Weight × activation products for decode and prefill, with weights in their stored dtype
// (f32, bf16, f16) widened to f32 in registers. One kernel family serves every batch size so
// that each output element is always reduced in the same order (batch invariance, DESIGN.md);
// with bf16 weights that order takes each 32-column chunk's even columns, then its odd ones
// ("The bf16 order", below).
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { LEVEL_UNSET = -1 };
static _Atomic int gk_level = LEVEL_UNSET;
// A per-thread override (tests and benchmarks compare ISAs without touching other threads).
static _Thread_local int gk_thread_level = LEVEL_UNSET;

static _Atomic int gk_detected = LEVEL_UNSET;

// CPUID once; every later call is one relaxed load.
static int detect_level(void) {
    int l = atomic_load_explicit(&gk_detected, memory_order_relaxed);
    if (l != LEVEL_UNSET) return l;
    gk_cpu_features f = gk_detect_cpu();
    l = (f.avx512f && f.avx2_fma && f.f16c) ? GK_LEVEL_AVX512 : (f.avx2_fma && f.f16c) ? GK_LEVEL_AVX2 : GK_LEVEL_SCALAR;
    atomic_store_explicit(&gk_detected, l, memory_order_relaxed);
    return l;
}

static inline int level(void) {
    if (gk_thread_level != LEVEL_UNSET) return gk_thread_level;
    int l = atomic_load_explicit(&gk_level, memory_order_relaxed);
    if (l == LEVEL_UNSET) {
        l = detect_level();
        atomic_store_explicit(&gk_level, l, memory_order_relaxed);
    }
    return l;
}

const char *gk_kernel_name(void) {
    switch (level()) {
    case GK_LEVEL_AVX512: return "avx512";
    case GK_LEVEL_AVX2: return "avx2";
    default: return "scalar";
    }
}

int gk_force_kernels(const char *name) {
    int want = name == NULL ? detect_level()
             : strcmp(name, "avx512") == 0 ? GK_LEVEL_AVX512
             : strcmp(name, "avx2") == 0 ? GK_LEVEL_AVX2
             : strcmp(name, "scalar") == 0 ? GK_LEVEL_SCALAR : -2;
    if (want == -2 || want > detect_level()) return 0;
    gk_thread_level = name == NULL ? LEVEL_UNSET : want;
    return 1;
}

int gk_current_level(void) { return level(); }

// ---------------------------------------------------------------------------------------------
// Scalar element access (unaligned-safe).

static inline float bf16_at(const void *p, size_t i) {
    uint16_t h; memcpy(&h, (const char *)p + 2 * i, 2);
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}

static inline float f16_bits_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else { // subnormal: normalise
            int e = -1; do { mant <<= 1; e++; } while (!(mant & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((exp + 112) << 23) | (mant << 13);
    float f; memcpy(&f, &u, 4); return f;
}

static inline float f16_at(const void *p, size_t i) {
    uint16_t h; memcpy(&h, (const char *)p + 2 * i, 2); return f16_bits_to_float(h);
}

static inline float f32_at(const void *p, size_t i) {
    float f; memcpy(&f, (const char *)p + 4 * i, 4); return f;
}

static inline float elem(gk_dtype t, const void *p, size_t i) {
    switch (t) {
    case GK_BF16: return bf16_at(p, i);
    case GK_F16: return f16_at(p, i);
    default: return f32_at(p, i);
    }
}

static inline size_t esize(gk_dtype t) { return t == GK_F32 ? 4 : 2; }

// ---------------------------------------------------------------------------------------------
// Scalar path: 8 interleaved partial sums per element, as the AVX2 lanes do.

static void matmul_scalar(gk_dtype t, float *out, size_t ldo, const float *x, size_t ldx,
                          const void *w, size_t cols, size_t n, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const char *row = (const char *)w + r * cols * esize(t);
        for (size_t j = 0; j < n; j++) {
            const float *xv = x + j * ldx;
            float acc[8] = {0};
            for (size_t k = 0; k < cols; k++) acc[k & 7] = fmaf(elem(t, row, k), xv[k], acc[k & 7]);
            out[j * ldo + r] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 path: 16 lanes, masked tail.

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define INLINE512 static inline __attribute__((always_inline)) T512

INLINE512 __m512 ld512(gk_dtype t, const char *p, __mmask16 m, int masked) {
    if (t == GK_F32)
        return masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
    __m256i h = masked ? _mm256_maskz_loadu_epi16(m, p) : _mm256_loadu_si256((const __m256i *)p);
    if (t == GK_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The direct paths' prefetch of a line P of the next block of rows (BLOCK bytes): into L1 when the
// block is small enough to sit there beside the one being read, else into L2, and then the line
// GK_PF_AHEAD bytes on in the row being read (ROW) into L1. On Zen 4 (a read microbenchmark of 4
// rows in lockstep, 2026-11-25): blocks of 4.6-7 KB 30.8-31.4 GB/s into L1 against 18-23 into
// L2; blocks of 32 KB (7B's 4096 columns) 21.8 into L1 against 28.0 into L2, where L1 (32 KiB)
// cannot hold both blocks; a plain sequential read 28-29. In the kernel on 7B shapes
// (tools/bench_matmul/run --model models/llama2-7b-random --layers 2 --tokens 1) the L2 form took
// a step's matmuls from 62.5 to 49.6 ms, and the rows' lines ahead into L1 to 47.2-47.3 (256 or
// 512 bytes ahead; 1024: 48.6). The limit: 8 KiB against 16 KiB, SmolLM2's down projection
// (12 KB blocks) 2.70 -> 2.43 ms, and the AVX2 kernels' 2-row blocks on 7B shapes (16 KB) 69.8
// -> 41.4 ms.
#ifndef GK_PF_L1_BYTES
#define GK_PF_L1_BYTES (8u << 10)
#endif
#ifndef GK_PF_AHEAD
#define GK_PF_AHEAD 512
#endif
#define PREFETCH_BLOCK(P, BLOCK, ROW)                                                          \
    do {                                                                                       \
        if ((BLOCK) <= GK_PF_L1_BYTES) _mm_prefetch((const char *)(P), _MM_HINT_T0);            \
        else {                                                                                 \
            _mm_prefetch((const char *)(P), _MM_HINT_T2);                                      \
            _mm_prefetch((const char *)(ROW) + GK_PF_AHEAD, _MM_HINT_T0);                      \
        }                                                                                      \
    } while (0)

// One tile of R rows × J tokens; R and J are compile-time constants at each call site.
INLINE512 void tile512(gk_dtype t, int R, int J, float *out, size_t ldo, const float *x,
                       size_t ldx, const char *w, size_t rowbytes, size_t cols, size_t r, const char *pf) {
    __m512 acc[4][4];
    for (int a = 0; a < R; a++) for (int b = 0; b < J; b++) acc[a][b] = _mm512_setzero_ps();
    const size_t es = esize(t);
    size_t k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m512 wv[4];
#ifndef GK_NO_PREFETCH
        // Decode streams the weights from DRAM: ask for the next tile's rows (at pf: the next
        // block, or in the last block the next matrix's start) early so that more cache-line
        // fills are in flight than the hardware prefetcher alone keeps. The next block's R rows
        // are contiguous; they are requested in address order (this step's share, R × 16
        // columns' bytes, from R × k columns in), not row by row at column k: on Zen 4
        // the row-by-row order read 11-12 GB/s where a sequential read gets 24-27, and this order
        // 24-26 (a batch-1 step's matmuls on SmolLM2 22.7 -> 11.3 ms, tools/bench_matmul/run
        // --tokens 1, 2026-11-25).
        for (int a = 0; a < R; a++) PREFETCH_BLOCK(pf + (R * k + 16 * a) * es, R * rowbytes, w + (r + a) * rowbytes + k * es);
#endif
        for (int a = 0; a < R; a++) wv[a] = ld512(t, w + (r + a) * rowbytes + k * es, 0, 0);
        for (int b = 0; b < J; b++) {
            __m512 xv = _mm512_loadu_ps(x + b * ldx + k);
            for (int a = 0; a < R; a++) acc[a][b] = _mm512_fmadd_ps(wv[a], xv, acc[a][b]);
        }
    }
    if (k < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);
        __m512 wv[4];
        for (int a = 0; a < R; a++) wv[a] = ld512(t, w + (r + a) * rowbytes + k * es, m, 1);
        for (int b = 0; b < J; b++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + b * ldx + k);
            for (int a = 0; a < R; a++) acc[a][b] = _mm512_fmadd_ps(wv[a], xv, acc[a][b]);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) out[b * ldo + r + a] = _mm512_reduce_add_ps(acc[a][b]);
}

// The bf16 order. bf16 weights are widened by a shift (even columns) or a mask (odd columns) of
// 32 loaded columns, one single-uop ALU operation per 16 values, where widening 16 in their own
// order takes two (vpmovzxwd and a shift) or the masked vpermw the panel used, which clang
// emits as vpermt2w: beside 16 FMAs, a load, that operation and a store cost 0.26-0.98 cycles
// with a shift or a mask and 1.29-2.15 with vpermt2w (three runs of tools/bench_matmul/widen.c,
// 2026-11-24; the two always 0.9-1.3 cycles apart). So with bf16 weights every path accumulates in chunks of
// 32 columns, lane l taking column 32c + 2l and then 32c + 2l + 1 of each chunk c in turn, the
// columns past the end being zeros; the activations are permuted to match (pack_eo, or in
// registers in the direct path). The 16 lanes are then summed by the same halving tree as
// before. f32 and f16 weights keep the plain order (lane l takes columns 16s + l).
INLINE512 __m512i eo_even_idx(void) {
    return _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
}

// A token's columns [k, k + 32) (`rem` of them left, zeros past the end) as even and odd lanes.
INLINE512 void eo_split_x(const float *xr, size_t rem, __m512 *even, __m512 *odd) {
    __m512 a, b;
    if (rem >= 32) a = _mm512_loadu_ps(xr), b = _mm512_loadu_ps(xr + 16);
    else {
        a = _mm512_maskz_loadu_ps((__mmask16)(rem >= 16 ? 0xFFFFu : (1u << rem) - 1), xr);
        b = _mm512_maskz_loadu_ps((__mmask16)(rem > 16 ? (1u << (rem - 16)) - 1 : 0), xr + 16);
    }
    const __m512i ie = eo_even_idx();
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
}

// A bf16 row's columns [k, k + 32) (`rem` left) as even and odd lanes, widened.
INLINE512 void eo_split_w(const char *wr, size_t rem, __m512 *even, __m512 *odd) {
    __m512i v = rem >= 32 ? _mm512_loadu_si512(wr) : _mm512_maskz_loadu_epi16((__mmask32)((1ull << rem) - 1), wr);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}

// Packs tokens [0, n) (rows ldx floats apart) in the bf16 order, 4 tokens per tile: token j's
// chunk c at xp + (j / 4) * xtile + 128c + 16 (j % 4), even lanes, and 64 floats on, odd lanes;
// that is, the panel's layout of column steps (xtile = 4 × cols rounded up to 32).
INLINE512 void pack_eo(const float *x, size_t ldx, size_t n, size_t cols, float *xp, size_t xtile) {
    for (size_t j = 0; j < n; j++) {
        float *g = xp + j / 4 * xtile + 16 * (j % 4);
        for (size_t k = 0; k < cols; k += 32, g += 128) {
            __m512 e, o;
            eo_split_x(x + j * ldx + k, cols - k, &e, &o);
            _mm512_store_ps(g, e);
            _mm512_store_ps(g + 64, o);
        }
    }
}

// tile512 for bf16 weights in the bf16 order (`t` is GK_BF16): the activations split into even
// and odd lanes in registers, 32 columns per step. With one token the rows go in segments of
// GK_SEG_COLS columns (below).
#ifndef GK_SEG_COLS
#define GK_SEG_COLS 256
#endif
INLINE512 void tile512_eo(gk_dtype t, int R, int J, float *out, size_t ldo, const float *x,
                          size_t ldx, const char *w, size_t rowbytes, size_t cols, size_t r, const char *pf) {
    (void)t;
    __m512 acc[4][4];
    for (int a = 0; a < R; a++) for (int b = 0; b < J; b++) acc[a][b] = _mm512_setzero_ps();
    size_t k = 0;
    // One chunk of `rem` columns (32 in the loop, where the branches fold away; fewer in the tail).
#define EO_CHUNK(REM)                                                                              \
    do {                                                                                           \
        __m512 we[4], wo[4];                                                                       \
        for (int a = 0; a < R; a++) eo_split_w(w + (r + a) * rowbytes + k * 2, (REM), &we[a], &wo[a]); \
        for (int b = 0; b < J; b++) {                                                              \
            __m512 xe, xo;                                                                         \
            eo_split_x(x + b * ldx + k, (REM), &xe, &xo);                                          \
            for (int a = 0; a < R; a++) acc[a][b] = _mm512_fmadd_ps(we[a], xe, acc[a][b]);         \
            for (int a = 0; a < R; a++) acc[a][b] = _mm512_fmadd_ps(wo[a], xo, acc[a][b]);         \
        }                                                                                          \
    } while (0)
    if (J == 1 && R == 4) {
        // One token (batch 1): each row's whole chunks in segments of GK_SEG_COLS columns, row
        // after row within a segment, so that the memory sees runs of 8 lines per row rather
        // than 4 rows' lines interleaved one by one. Each row's accumulator takes its chunks in
        // the same order as below (bit-identical). 7B shapes from huge pages
        // (tools/bench_matmul, weights in MADV_HUGEPAGE memory, --layers 2 --tokens 1, Zen 4):
        // 41.6 -> 36.4-36.7 ms (25.8 -> 29.4 GB/s, a sequential read 31); SmolLM2's 576- and
        // 1536-column rows equal to 5% faster.
        const size_t whole = cols / 32 * 32;
        for (size_t k0 = 0; k0 < whole; k0 += GK_SEG_COLS) {
            const size_t k1 = k0 + GK_SEG_COLS < whole ? k0 + GK_SEG_COLS : whole;
            for (int a = 0; a < R; a++)
                for (size_t c = k0; c < k1; c += 32) {
#ifndef GK_NO_PREFETCH
                    PREFETCH_BLOCK(pf + (R * c + 32 * a) * 2, R * rowbytes, w + (r + a) * rowbytes + c * 2);
#endif
                    __m512 we, wo, xe, xo;
                    eo_split_w(w + (r + a) * rowbytes + c * 2, 32, &we, &wo);
                    eo_split_x(x + c, 32, &xe, &xo);
                    acc[a][0] = _mm512_fmadd_ps(we, xe, acc[a][0]);
                    acc[a][0] = _mm512_fmadd_ps(wo, xo, acc[a][0]);
                }
        }
        k = whole;
    }
    for (; k + 32 <= cols; k += 32) {
#ifndef GK_NO_PREFETCH
        // The next block's rows (pf) in address order, as in tile512: 64 bytes per row per chunk.
        for (int a = 0; a < R; a++) PREFETCH_BLOCK(pf + (R * k + 32 * a) * 2, R * rowbytes, w + (r + a) * rowbytes + k * 2);
#endif
        EO_CHUNK(32);
    }
    if (k < cols) EO_CHUNK(cols - k);
#undef EO_CHUNK
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) out[b * ldo + r + a] = _mm512_reduce_add_ps(acc[a][b]);
}

// Many tokens (prefill, batched decode): the weight rows of a 4-row block are widened once into
// an f32 panel (zero-padded to a multiple of 16 columns, 32 for bf16, and to 4 rows) and reused for every
// token, 4 tokens per tile. Per output element the operations are the ones tile512 does (or,
// for bf16, tile512_eo and eotile): the same 16-lane steps in the same order, the same zeros in
// the tail lanes, and the same
// halving tree over the 16 lanes (i+8, i+4, i+2, i+1, as _mm512_reduce_add_ps), here done for
// 16 elements at once by a transpose-and-add (reduce16), so the result is bit-identical to the
// direct path for any batch.
// The next block's panel is widened while this block's tiles run (double buffering).

// Sums each of v[0..15] over its 16 lanes with the halving tree; lane 4c+i of the result is the
// sum of v[4i+c]. Every add pairs the same lanes that reduce_add's halving pairs (i with i+8,
// then i+4, i+2, i+1) and float addition is commutative, so each sum equals
// _mm512_reduce_add_ps(v[p]) bit for bit.
INLINE512 __m512 reduce16(const __m512 v[16]) {
    __m512 s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; i++) // lanes 0-7: v[2i] (l + l+8); lanes 8-15: v[2i+1]
        s8[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),   // lo256 a, lo256 b
                              _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));  // hi256 a, hi256 b
    for (int i = 0; i < 4; i++) // 128-bit block c: v[4i+c], partials (l + l+4)
        s4[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s8[2 * i], s8[2 * i + 1], 0x88),  // blocks 0,2 | 0,2
                              _mm512_shuffle_f32x4(s8[2 * i], s8[2 * i + 1], 0xDD)); // blocks 1,3 | 1,3
    for (int i = 0; i < 2; i++) // block c: [v[8i+c] (0+2), (1+3), v[8i+4+c] (0+2), (1+3)]
        s2[i] = _mm512_add_ps(_mm512_shuffle_ps(s4[2 * i], s4[2 * i + 1], 0x44),
                              _mm512_shuffle_ps(s4[2 * i], s4[2 * i + 1], 0xEE));
    // block c: [v[c], v[4+c], v[8+c], v[12+c]], each (0+1)
    return _mm512_add_ps(_mm512_shuffle_ps(s2[0], s2[1], 0x88), _mm512_shuffle_ps(s2[0], s2[1], 0xDD));
}

// A 4-row × 4-token tile's 16 accumulators (acc[4a + b]: row a, token b) over one K block: zero
// in the first block, else loaded from `save`.
INLINE512 void tile_acc_start(__m512 acc[16], int first, const __m512 *save) {
    if (first) for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    else for (int i = 0; i < 16; i++) acc[i] = _mm512_load_ps((const float *)(save + i));
}

// After the tile's K block: saved for the next block, or after the last one summed (reduce16)
// and the first `rows` rows of the first J tokens stored (token b at out + b * ldo).
INLINE512 void tile_acc_finish(const __m512 acc[16], int last, __m512 *save, float *out, size_t ldo, int rows, int J) {
    if (!last) {
        for (int i = 0; i < 16; i++) _mm512_store_ps((float *)(save + i), acc[i]);
        return;
    }
    float sums[16] __attribute__((aligned(64)));
    _mm512_store_ps(sums, reduce16(acc)); // lane 4b + a: acc[4a + b]
    __mmask8 rm = (__mmask8)((1u << rows) - 1);
    for (int b = 0; b < J; b++) _mm_mask_storeu_ps(out + b * ldo, rm, _mm_load_ps(sums + 4 * b));
}

// Widens rows [a0, a1) of a 4-row block's columns [0, kw) (`w` points at the block's first
// column) into its panel, which interleaves the 4 rows one 16-lane column step at a time: row
// a's step s at panel + (4s + a) * 16, so that a tile's k step reads 256 consecutive bytes. Step
// s is columns [16s, 16s + 16), or for bf16 the even (s even) or odd columns of chunk s / 2 (the
// bf16 order, above). Columns up to the next multiple of 16 (32 for bf16), and rows past the
// matrix's end (`rows` and up), are zeros. Each tile run of a block widens its share of the next block's rows before its k loop
// (double buffering), so the FMAs do not wait for a widening.
INLINE512 void widen_rows(gk_dtype t, const char *w, size_t rb, int rows, float *panel, size_t kw,
                          int a0, int a1) {
    const size_t es = esize(t), kp = t == GK_BF16 ? (kw + 31) & ~(size_t)31 : (kw + 15) & ~(size_t)15;
    for (int a = a0; a < a1; a++) {
        float *d = panel + a * 16; // column step s of row a at d + 64s
        size_t k = 0;
        if (a >= rows) {
            for (; k < kp; k += 16) _mm512_store_ps(d + 4 * k, _mm512_setzero_ps());
            continue;
        }
        const char *src = w + a * rb;
        if (t == GK_BF16) {
            // The bf16 order: chunk c's even columns are step 2c, its odd columns step 2c + 1.
            for (; k < kw; k += 32) {
                __m512 e, o;
                eo_split_w(src + k * 2, kw - k, &e, &o);
                _mm512_store_ps(d + 4 * k, e);
                _mm512_store_ps(d + 4 * k + 64, o);
            }
            continue;
        }
        for (; k + 16 <= kw; k += 16) _mm512_store_ps(d + 4 * k, ld512(t, src + k * es, 0, 0));
        if (k < kw) _mm512_store_ps(d + 4 * k, ld512(t, src + k * es, (__mmask16)((1u << (kw - k)) - 1), 1));
    }
}

// 4 panel rows × J ≤ 4 tokens over one K block of kw columns (`panel` at its first column, `x`
// at token 0's): 16 accumulators, zero in the first block, else loaded from `save`; after the
// last block one reduce16 and 4 rows stored per token, else saved. Token b's 16 columns of a k
// step are at x + xs * b, and the next step's xk floats on: xs = 16, xk = 64 for packed
// activations, xs = ldx, xk = 16 for x read in place. The masked tail reads the columns
// past kw as zeros, as tile512 does (they are zeros in packed activations anyway). Prefetches
// the pfn lines from pf into L2, one per k step (a run has at most as many lines as k steps
// from 6 tokens on with 2-byte weights; the rest, for f32 weights, after the loop). One compare
// per step kept the loop free of spills: 1-4% faster than a spread of ceil(pfn/steps) per step
// on 7B shapes, 2-14% on SmolLM2's (tools/bench_matmul/run, streamed and --l2).
INLINE512 void ptile512(int J, float *out, size_t ldo, const float *x, size_t xs, size_t xk,
                        const float *panel, size_t kw, int rows, int first, int last,
                        __m512 *save, const char *pf, size_t pfn) {
    __m512 acc[16];
    tile_acc_start(acc, first, save);
    const size_t steps = kw / 16;
    const float *p = panel, *xq = x;
    for (size_t i = 0; i < steps; i++, p += 64, xq += xk) {
#ifndef GK_NO_PREFETCH
        if (i < pfn) _mm_prefetch(pf + 64 * i, _MM_HINT_T2);
#endif
        __m512 w0 = _mm512_load_ps(p), w1 = _mm512_load_ps(p + 16);
        __m512 w2 = _mm512_load_ps(p + 32), w3 = _mm512_load_ps(p + 48);
        for (int b = 0; b < J; b++) {
            __m512 xv = _mm512_loadu_ps(xq + xs * b);
            acc[b] = _mm512_fmadd_ps(w0, xv, acc[b]);
            acc[4 + b] = _mm512_fmadd_ps(w1, xv, acc[4 + b]);
            acc[8 + b] = _mm512_fmadd_ps(w2, xv, acc[8 + b]);
            acc[12 + b] = _mm512_fmadd_ps(w3, xv, acc[12 + b]);
        }
    }
#ifndef GK_NO_PREFETCH
    for (size_t q = steps; q < pfn; q++) _mm_prefetch(pf + 64 * q, _MM_HINT_T2);
#endif
    if (steps * 16 < kw) { // the masked tail (last block only)
        __mmask16 m = (__mmask16)((1u << (kw - steps * 16)) - 1);
        __m512 w0 = _mm512_load_ps(p), w1 = _mm512_load_ps(p + 16);
        __m512 w2 = _mm512_load_ps(p + 32), w3 = _mm512_load_ps(p + 48);
        for (int b = 0; b < J; b++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, xq + xs * b);
            acc[b] = _mm512_fmadd_ps(w0, xv, acc[b]);
            acc[4 + b] = _mm512_fmadd_ps(w1, xv, acc[4 + b]);
            acc[8 + b] = _mm512_fmadd_ps(w2, xv, acc[8 + b]);
            acc[12 + b] = _mm512_fmadd_ps(w3, xv, acc[12 + b]);
        }
    }
    tile_acc_finish(acc, last, save, out, ldo, rows, J);
}

#ifndef GK_XBLOCK_BYTES
#define GK_XBLOCK_BYTES 24576
#endif
#ifndef GK_STRIP_BYTES
#define GK_STRIP_BYTES (64 * 1024)
#endif
#ifndef GK_KBLOCK
#define GK_KBLOCK 768
#endif

// What a strip path prefetches during the strip of rows [.., s1) (the next strip is [s1, s2),
// rows rb bytes): the next strip's lines, or in the last strip (s1 = r1) the start of what the
// caller says the next product reads (gk_matmul_next: `nx`, `nxb` bytes), up to a strip's worth,
// and none without. Returns the first line; *lines is their count.
static inline const char *strip_prefetch(const char *w, size_t rb, size_t s1, size_t s2, size_t r1, const char *nx,
                                         size_t nxb, size_t *lines) {
    if (s1 < r1) {
        *lines = ((s2 - s1) * rb + 63) / 64;
        return w + s1 * rb;
    }
    *lines = nx ? ((nxb < GK_STRIP_BYTES ? nxb : GK_STRIP_BYTES) + 63) / 64 : 0;
    return nx;
}

// The order of the work, for a weight matrix streamed from memory once per step:
// - strips of S rows (about GK_STRIP_BYTES of weights, so that a strip and the next, which is
//   prefetched into L2 while this one runs, fit in L2 together);
// - in a strip, token blocks of tb tokens (their activations within about 1 MiB of L2);
// - in a token block, K blocks of kbw columns: the token block's activations for one K block
//   (about GK_XBLOCK_BYTES) stay in L1 while every 4-row block of the strip uses them;
// - in a K block, 4-row blocks, each widened into an f32 panel and used by every 4-token tile.
// With bf16 weights (from 17 tokens; up to 16 eo512 serves them) the activations are always
// packed, by pack_eo in the bf16 order. Otherwise, up to 16 tokens, the activations are first
// packed, 4 tokens at a time, in the panels' layout (by widen_rows, as f32 rows: a token's
// activations are a row of `cols` floats), once per call: a tile's k step then reads two runs of 256 consecutive bytes, where
// in place it read the 4 tokens' rows (on 7B shapes 16 KiB apart: the same L1 sets) through
// pointers the compiler kept on the stack. On Llama-2-7B shapes at 16 tokens, a step's matmuls
// went 82-104 → 80-112 GFLOP/s (+6 to +12% in 8 of 10 alternating pairs, −2% and +1% in one
// disturbed run; streamed); the panels' interleaved layout alone (activations in place, from 17
// tokens) gave +5-7% at 64 tokens.
// A tile's accumulators are kept in `saved` from one K block to the next. Each lane still sees
// its column steps in the same order, so the K blocks do not change any result.
// Prefetch: the next strip's cache lines are requested into L2, spread over this strip's tile
// runs so that the stream from DRAM goes on during the FMAs (without it a batch-16 step's
// matmuls took 14% longer on 7B shapes, 36% on SmolLM2's; tools/bench_matmul/run).
// Against the order before 2026-11-24 (4-row blocks streamed down the whole matrix, every K
// block of the activations read from L2 for each block): a batch-16 step's matmuls on
// Llama-2-7B shapes 80 → 100 GFLOP/s, 64 tokens +14%, SmolLM2 +0-8%.
// In the last strip the prefetch takes the start of the next product's weights instead, when the
// caller names them (gk_matmul_next): a small matrix is mostly its first strip, which otherwise
// comes from memory with nothing requested ahead (SmolLM2's k and v at batch 16: 93-95 → 109-117
// GFLOP/s, the step 3% shorter).

// Returns 0, having written nothing, when its scratch cannot be allocated (it used to return
// leaving the outputs unwritten); the caller then takes the direct path, which needs none.
INLINE512 int panel512(gk_dtype t, float *out, size_t ldo, const float *x, size_t ldx,
                        const char *w, size_t cols, size_t n, size_t r0, size_t r1, const char *nx, size_t nxb) {
    const size_t es = esize(t), rb = cols * es;
    size_t tb = (1u << 20) / (cols * sizeof(float));
    tb = tb < 4 ? 4 : tb > 96 ? 96 : tb - tb % 4;
    const size_t maxtiles = (tb + 3) / 4, tbn = n < tb ? n : tb;
    // K block: a multiple of 16 columns (32 for bf16); the rows' columns split into nkb nearly
    // equal blocks.
    // Up to 16 tokens, a K block's activations stay in L1 (the weight stream from memory keeps
    // L2 busy); with more, each weight is used often enough that reading them from L2 is fine,
    // and longer K blocks and strips save the accumulators' trips.
    const int few = tbn <= 16;
    size_t kbw = few ? GK_XBLOCK_BYTES / (tbn * sizeof(float)) : GK_KBLOCK;
    // bf16 (its order, above): K blocks, and the packed activations, in whole 32-column chunks.
    const int eo = t == GK_BF16;
    const size_t al = eo ? 32 : 16;
    const size_t nkb = (cols + kbw - 1) / kbw;
    kbw = ((cols + nkb - 1) / nkb + al - 1) & ~(al - 1);
    // Strip: a multiple of 4 rows; its tiles' saved accumulators within 256 KiB.
    size_t S = (few ? GK_STRIP_BYTES : 4 * GK_STRIP_BYTES) / rb;
    if (nkb > 1 && S > 1024 / maxtiles) S = 1024 / maxtiles;
    S = S < 4 ? 4 : S > 256 ? 256 : S - S % 4;
    // Two panels (4 rows × kbw columns), the packed activations (4 tokens × cols, rounded up to
    // 16 columns, 32 for bf16, per tile) and the saved accumulators.
    const size_t ps = 4 * kbw, nsaved = nkb > 1 ? S / 4 * maxtiles * 16 : 0;
    const int packed = eo || n <= 16;
    const size_t xtile = packed ? 4 * ((cols + al - 1) & ~(al - 1)) : 0, ntiles = packed ? (n + 3) / 4 : 0;
    float *panels = aligned_alloc(64, (2 * ps + ntiles * xtile) * sizeof(float) + nsaved * sizeof(__m512));
    if (!panels) return 0; // the caller falls back to the direct path
    float *cur = panels, *next = panels + ps, *xp = panels + 2 * ps;
    __m512 *saved = (__m512 *)(xp + ntiles * xtile);
    if (eo)
        pack_eo(x, ldx, n, cols, xp, xtile);
    else if (packed)
        for (size_t j = 0; j < n; j += 4)
            widen_rows(GK_F32, (const char *)(x + j * ldx), ldx * sizeof(float), n - j < 4 ? (int)(n - j) : 4, xp + j / 4 * xtile, cols, 0, 4);
    widen_rows(t, w + r0 * rb, rb, r1 - r0 < 4 ? (int)(r1 - r0) : 4, cur, kbw < cols ? kbw : cols, 0, 4);
    for (size_t s0 = r0; s0 < r1; s0 += S) {
        const size_t s1 = s0 + S < r1 ? s0 + S : r1, s2 = s1 + S < r1 ? s1 + S : r1;
        const size_t blocks = (s1 - s0 + 3) / 4;
        // The next strip's lines (in the last strip, the next product's), requested over this
        // strip's first token block.
        size_t lines;
        const char *pf = strip_prefetch(w, rb, s1, s2, r1, nx, nxb, &lines);
        for (size_t j0 = 0; j0 < n; j0 += tb) {
            const size_t jn = n - j0 < tb ? n - j0 : tb;
            const int tiles = (int)((jn + 3) / 4);
            const size_t runs = nkb * blocks * (size_t)tiles;
            for (size_t kb = 0; kb < nkb; kb++) {
                const size_t k0 = kb * kbw, kw = cols - k0 < kbw ? cols - k0 : kbw;
                // bf16: the last block's panel and activations are zeros up to its next chunk.
                const size_t kwt = eo ? (kw + 31) & ~(size_t)31 : kw;
                for (size_t bi = 0; bi < blocks; bi++) {
                    const size_t r = s0 + 4 * bi;
                    const int rows = s1 - r < 4 ? (int)(s1 - r) : 4;
                    // The block after this one: the next rows of the strip, or the strip's first
                    // rows in the next K block, next token block or next strip; or none.
                    size_t rn = r1, kn = 0;
                    if (r + 4 < s1) rn = r + 4, kn = k0;
                    else if (kb + 1 < nkb) rn = s0, kn = k0 + kbw;
                    else if (j0 + tb < n) rn = s0;
                    else if (s1 < r1) rn = s1;
                    const size_t sn = rn < s1 ? s1 : s2; // the end of the next block's strip
                    const int nrows = rn < r1 ? (sn - rn < 4 ? (int)(sn - rn) : 4) : 0;
                    const size_t knw = cols - kn < kbw ? cols - kn : kbw;
                    for (int ti = 0; ti < tiles; ti++) {
                        const size_t run = (kb * blocks + bi) * (size_t)tiles + (size_t)ti;
                        if (rn < r1)
                            widen_rows(t, w + rn * rb + kn * es, rb, nrows, next, knw, 4 * ti / tiles, 4 * (ti + 1) / tiles);
                        const size_t j = j0 + 4 * (size_t)ti;
                        const int J = j0 + jn - j < 4 ? (int)(j0 + jn - j) : 4;
                        float *o = out + j * ldo + r;
                        const float *xj = packed ? xp + j / 4 * xtile + 4 * k0 : x + j * ldx + k0;
                        __m512 *sv = saved + ((r - s0) / 4 * maxtiles + (size_t)ti) * 16;
                        const size_t l0 = j0 == 0 ? lines * run / runs : 0, l1 = j0 == 0 ? lines * (run + 1) / runs : 0;
                        const int first = kb == 0, last = kb + 1 == nkb;
                        // J and the activations' strides are constants in each inlined tile.
#define PTILE(J)                                                                                       \
    (packed ? ptile512(J, o, ldo, xj, 16, 64, cur, kwt, rows, first, last, sv, pf + 64 * l0, l1 - l0)     \
            : ptile512(J, o, ldo, xj, ldx, 16, cur, kw, rows, first, last, sv, pf + 64 * l0, l1 - l0))
                        switch (J) {
                        case 4: PTILE(4); break;
                        case 3: PTILE(3); break;
                        case 2: PTILE(2); break;
                        default: PTILE(1); break;
                        }
#undef PTILE
                    }
                    float *sw = cur; cur = next; next = sw;
                }
            }
        }
    }
    free(panels);
    return 1;
}

// Batched decode (5 to 16 tokens) with bf16 weights: no panel. A tile is 4 rows × 4 tokens, and
// each k step widens the rows' next 32 columns in registers (one shift or mask per 16 values,
// the bf16 order) and uses them for the tile's 4 tokens, whose activations are packed by
// pack_eo: 8 ALU operations and 12 loads per 32 FMAs, and no stores. The panel path at 16 tokens
// spent a sixth of its time widening rows into the panel (never re-widening it gave back 16%
// streamed, 18% with the weights in L2; removing only the stores, or only the loads of the
// rows, about 10% each in L2, 3% and 6% streamed; tools/bench_matmul/run, 7B shapes, patched
// copies as bounds). A step's matmuls at 16 tokens went 148-159 -> 135-138 ms on 7B shapes and
// 36.2 -> 33.3 ms on SmolLM2's. This path reads each row's chunk once per 4-token tile,
// from L2 for the first and L1 for the rest. The work order is the panel path's: strips of
// about GK_STRIP_BYTES of rows (the next one prefetched into L2), K blocks whose packed
// activations (about GK_EO_XBYTES) stay in L1 for every row block of the strip, each tile's
// accumulators saved from one K block to the next.
#ifndef GK_EO_XBYTES
#define GK_EO_XBYTES 32768
#endif
// R ≤ 4 rows × J ≤ 4 tokens over nch chunks of 32 columns (`xq` at the tile's first chunk of
// packed activations, `w` at row 0's first column); the last chunk has tailw columns when tailw
// is not 0. Accumulators as in ptile512 (tile_acc_start, tile_acc_finish).
INLINE512 void eotile(int R, int J, float *out, size_t ldo, const float *xq, const char *w, size_t rb,
                      size_t nch, int tailw, int first, int last, __m512 *save, const char *pf, size_t pfn) {
    __m512 acc[16];
    tile_acc_start(acc, first, save);
    const size_t full = tailw ? nch - 1 : nch;
    size_t i = 0;
#define EO_TILE_CHUNK(REM)                                                                         \
    do {                                                                                           \
        __m512 we[4], wo[4];                                                                       \
        for (int a = 0; a < R; a++) eo_split_w(w + a * rb + 64 * i, (REM), &we[a], &wo[a]);       \
        const float *xc = xq + 128 * i;                                                            \
        for (int b = 0; b < J; b++) {                                                              \
            __m512 e = _mm512_load_ps(xc + 16 * b);                                                \
            for (int a = 0; a < R; a++) acc[4 * a + b] = _mm512_fmadd_ps(we[a], e, acc[4 * a + b]); \
        }                                                                                          \
        for (int b = 0; b < J; b++) {                                                              \
            __m512 o = _mm512_load_ps(xc + 64 + 16 * b);                                           \
            for (int a = 0; a < R; a++) acc[4 * a + b] = _mm512_fmadd_ps(wo[a], o, acc[4 * a + b]); \
        }                                                                                          \
    } while (0)
    for (; i < full; i++) {
#ifndef GK_NO_PREFETCH
        if (i < pfn) _mm_prefetch(pf + 64 * i, _MM_HINT_T2);
#endif
        EO_TILE_CHUNK(32);
    }
#ifndef GK_NO_PREFETCH
    for (size_t q = i; q < pfn; q++) _mm_prefetch(pf + 64 * q, _MM_HINT_T2);
#endif
    if (i < nch) EO_TILE_CHUNK((size_t)tailw);
#undef EO_TILE_CHUNK
    tile_acc_finish(acc, last, save, out, ldo, R, J);
}

// One tile run of eo512: rows [r, r + 4) ∩ the strip's [.., s1) for token group g over K block kb
// (its nc chunks from chunk c0), prefetching lines [l0, l1) of pf.
INLINE512 void eo_run(float *out, size_t ldo, const float *xq, size_t xtile, const char *w, size_t rb, size_t n,
                      size_t C, size_t kbc, size_t nkb, int tailw, __m512 *saved, size_t G, size_t s0, size_t s1,
                      size_t g, size_t kb, size_t bi, const char *pf, size_t l0, size_t l1) {
    const size_t c0 = kb * kbc, nc = C - c0 < kbc ? C - c0 : kbc;
    const int tw = c0 + nc == C ? tailw : 0, first = kb == 0, last = kb + 1 == nkb;
    const size_t r = s0 + 4 * bi;
    const int R = s1 - r < 4 ? (int)(s1 - r) : 4;
    const int J = n - 4 * g < 4 ? (int)(n - 4 * g) : 4;
    float *o = out + 4 * g * ldo + r;
    const float *xg = xq + g * xtile + 128 * c0;
    const char *wr = w + r * rb + 64 * c0;
    __m512 *sv = saved + (bi * G + g) * 16;
    // R and J are constants in each inlined tile.
#define EOT(RR, JJ) eotile(RR, JJ, o, ldo, xg, wr, rb, nc, tw, first, last, sv, pf + 64 * l0, l1 - l0)
#define EOJ(RR)                                                                                    \
    switch (J) {                                                                                   \
    case 4: EOT(RR, 4); break;                                                                     \
    case 3: EOT(RR, 3); break;                                                                     \
    case 2: EOT(RR, 2); break;                                                                     \
    default: EOT(RR, 1); break;                                                                    \
    }
    switch (R) {
    case 4: EOJ(4) break;
    case 3: EOJ(3) break;
    case 2: EOJ(2) break;
    default: EOJ(1) break;
    }
#undef EOJ
#undef EOT
}

// Returns 0, having written nothing, when its scratch cannot be allocated.
INLINE512 int eo512(float *out, size_t ldo, const float *x, size_t ldx, const char *w, size_t cols, size_t n,
                    size_t r0, size_t r1, const char *nx, size_t nxb) {
    const size_t rb = cols * 2, C = (cols + 31) / 32, G = (n + 3) / 4, xtile = 128 * C;
    // K blocks of every token group's activations within the budget, the groups innermost, so
    // that a 4-row block's weights come from L2 once and serve every group from L1. But when
    // that needs K blocks and one group's whole rows fit the budget (SmolLM2's 576 and 1536
    // columns at 13-16 tokens, not 7B's 4096), the groups go outermost and there are none: a
    // group's activations stay in L1 while the strip's row blocks pass, the strip coming from L2
    // once per group, and each run covers whole rows (no accumulators saved and reloaded).
    // tools/bench_matmul/run, SmolLM2 at 16 tokens, five alternating pairs: 34.8-37.9 →
    // 33.8-35.2 ms in four, 36.5 → 38.2 in one; 5, 8 and 12 tokens (no change of order there)
    // equal. Groups outermost with K blocks (7B shapes) or without the first condition (5 and 8
    // tokens, where the strip's extra passes cost more than the K blocks saved) was slower.
    const size_t kball = GK_EO_XBYTES / (G * 512); // chunks per K block: 512 bytes per chunk and tile
    const int gout = C > kball && C <= GK_EO_XBYTES / 512;
    size_t kbc = gout ? C : kball;
    kbc = kbc < 1 ? 1 : kbc;
    const size_t nkb = (C + kbc - 1) / kbc;
    kbc = (C + nkb - 1) / nkb;
    size_t S = GK_STRIP_BYTES / rb; // strip rows: a multiple of 4
    S = S < 4 ? 4 : S > 256 ? 256 : S - S % 4;
    const size_t blocks = S / 4;
    float *xq = aligned_alloc(64, G * xtile * sizeof(float) + (nkb > 1 ? blocks * G * 16 * sizeof(__m512) : 0));
    if (!xq) return 0;
    __m512 *saved = (__m512 *)(xq + G * xtile);
    pack_eo(x, ldx, n, cols, xq, xtile);
    const int tailw = (int)(cols % 32);
    for (size_t s0 = r0; s0 < r1; s0 += S) {
        const size_t s1 = s0 + S < r1 ? s0 + S : r1, s2 = s1 + S < r1 ? s1 + S : r1;
        const size_t nb = (s1 - s0 + 3) / 4;
        // The next strip's lines (in the last strip, the next product's), requested over this
        // strip's tile runs.
        size_t lines;
        const char *pf = strip_prefetch(w, rb, s1, s2, r1, nx, nxb, &lines);
        const size_t runs = nkb * nb * G;
#define EO_RUN(G_, KB, BI, RUN)                                                                    \
    eo_run(out, ldo, xq, xtile, w, rb, n, C, kbc, nkb, tailw, saved, G, s0, s1, (G_), (KB), (BI), pf, \
           lines * (RUN) / runs, lines * ((RUN) + 1) / runs)
        if (gout) {
            for (size_t g = 0; g < G; g++)
                for (size_t bi = 0; bi < nb; bi++) EO_RUN(g, 0, bi, g * nb + bi);
        } else {
            for (size_t kb = 0; kb < nkb; kb++)
                for (size_t bi = 0; bi < nb; bi++)
                    for (size_t g = 0; g < G; g++) EO_RUN(g, kb, bi, (kb * nb + bi) * G + g);
        }
#undef EO_RUN
    }
    free(xq);
    return 1;
}

// Tokens [J0, J1) in tiles of up to 4 over R rows from row R0 (R and the tile's token count are
// compile-time constants in each call of TILE); the rows stay in L1 from one tile to the next.
#define TOKEN_TILES(TILE, T, R, J0, J1, R0, PF)                                                \
    for (size_t j = (J0); j < (J1); j += 4) {                                                  \
        float *o = out + j * ldo;                                                              \
        const float *xj = x + j * ldx;                                                         \
        switch ((J1) - j < 4 ? (J1) - j : 4) {                                                 \
        case 4: TILE(T, R, 4, o, ldo, xj, ldx, w, rb, cols, R0, PF); break;                    \
        case 3: TILE(T, R, 3, o, ldo, xj, ldx, w, rb, cols, R0, PF); break;                    \
        case 2: TILE(T, R, 2, o, ldo, xj, ldx, w, rb, cols, R0, PF); break;                    \
        default: TILE(T, R, 1, o, ldo, xj, ldx, w, rb, cols, R0, PF); break;                   \
        }                                                                                      \
    }

// Few tokens (decode): weights widened in registers straight from memory, 4 rows at a time,
// each 4-row block (in L1 after its first tile) used by every 4-token tile. Up to 5 tokens
// this beats the panel path (a step's matmuls at 4 tokens: 7B shapes 134-146 -> 89-90 ms,
// SmolLM2 25.5-28.8 -> 22.1-26.7 ms; at 5: 131-163 -> 111-127 and 26.9 -> 26.0 ms); from 6
// it depends on the shape (7B 7-10% faster direct, SmolLM2 5-9% slower), so the panel path;
// with bf16 weights eo512 from 5 to 16 tokens (a step's matmuls at 5 tokens: 7B shapes 96 -> 86
// ms, SmolLM2 24.2 -> 21.3 ms; at 4 the direct path stays ahead, 76 against 101 ms).
#ifndef GK_DIRECT_MAX
#define GK_DIRECT_MAX 5
#endif
#ifndef GK_EO_MIN
#define GK_EO_MIN 5
#endif
// What the direct path's block of R rows at r prefetches: the block GK_PF_BLOCKS blocks on, or
// past the chunk's end the next product's weights when the caller named them (as many of their
// bytes as it has), as if they followed. 3 blocks on against 1: SmolLM2's batch-1 step 12.9-13.2
// against 13.2-13.5 ms in seven of seven alternating graft bench runs (each matrix starts a new
// stream there: the forward's order is not the file's); the kernels alone
// (tools/bench_matmul/run, matrices back to back) equal, 7B shapes and AVX2 too.
#ifndef GK_PF_BLOCKS
#define GK_PF_BLOCKS 3
#endif
#define DIRECT_PF(R) direct_pf(w, rb, r + GK_PF_BLOCKS * (R), r1, nx, nxb, (R) * rb)
static inline const char *direct_pf(const char *w, size_t rb, size_t ra, size_t r1, const char *nx, size_t nxb,
                                    size_t block) {
    if (ra < r1 || !nx) return w + ra * rb;
    const size_t off = (ra - r1) * rb;
    return off + block <= nxb ? nx + off : w + ra * rb;
}
#define DEF512(NAME, T)                                                                        \
    T512 static void NAME(float *out, size_t ldo, const float *x, size_t ldx, const void *wp,   \
                          size_t cols, size_t n, size_t r0, size_t r1, const char *nx, size_t nxb) { \
        const char *w = (const char *)wp;                                                      \
        if (T == GK_BF16 && n >= GK_EO_MIN && n <= 16 && eo512(out, ldo, x, ldx, w, cols, n, r0, r1, nx, nxb)) \
            return;                                                                            \
        if (n > GK_DIRECT_MAX && panel512(T, out, ldo, x, ldx, w, cols, n, r0, r1, nx, nxb)) return; \
        const size_t rb = cols * esize(T);                                                     \
        size_t r = r0;                                                                         \
        if (T == GK_BF16) {                                                                    \
            for (; r + 4 <= r1; r += 4) TOKEN_TILES(tile512_eo, T, 4, 0, n, r, DIRECT_PF(4));  \
            for (; r < r1; r++) TOKEN_TILES(tile512_eo, T, 1, 0, n, r, DIRECT_PF(1));          \
            return;                                                                            \
        }                                                                                      \
        for (; r + 4 <= r1; r += 4) TOKEN_TILES(tile512, T, 4, 0, n, r, DIRECT_PF(4));         \
        for (; r < r1; r++) TOKEN_TILES(tile512, T, 1, 0, n, r, DIRECT_PF(1));                 \
    }
DEF512(mm512_f32, GK_F32)
DEF512(mm512_bf16, GK_BF16)
DEF512(mm512_f16, GK_F16)

// ---------------------------------------------------------------------------------------------
// AVX2 path: 8 lanes; the tail goes through a zero-padded copy.

#define T256 __attribute__((target("avx2,fma,f16c")))
#define INLINE256 static inline __attribute__((always_inline)) T256

INLINE256 __m256 ld256(gk_dtype t, const char *p) {
    if (t == GK_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (t == GK_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE256 float hsum256(__m256 v) {
    // Same association as the scalar path: ((0+4)+(2+6)) + ((1+5)+(3+7)).
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);                 // [0+4, 1+5, 2+6, 3+7]
    __m128 t2 = _mm_add_ps(s, _mm_movehl_ps(s, s)); // [(0+4)+(2+6), (1+5)+(3+7), ...]
    __m128 u = _mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1));
    return _mm_cvtss_f32(u);
}

INLINE256 void tile256(gk_dtype t, int R, int J, float *out, size_t ldo, const float *x,
                       size_t ldx, const char *w, size_t rowbytes, size_t cols, size_t r, const char *pf) {
    __m256 acc[4][4];
    for (int a = 0; a < R; a++) for (int b = 0; b < J; b++) acc[a][b] = _mm256_setzero_ps();
    const size_t es = esize(t);
    size_t k = 0;
    for (; k + 8 <= cols; k += 8) {
        __m256 wv[4];
#ifndef GK_NO_PREFETCH
        // The next block's rows (pf) in address order, as in tile512 (R × 8 columns' bytes per
        // step): without it the two rows read in step ran at 8.6 GB/s on Zen 4 (a
        // batch-1 step's matmuls on SmolLM2 31.3 ms, tools/bench_matmul/run --avx2 --tokens 1).
        for (int a = 0; a < R; a++) PREFETCH_BLOCK(pf + (R * k + 8 * a) * es, R * rowbytes, w + (r + a) * rowbytes + k * es);
#endif
        for (int a = 0; a < R; a++) wv[a] = ld256(t, w + (r + a) * rowbytes + k * es);
        for (int b = 0; b < J; b++) {
            __m256 xv = _mm256_loadu_ps(x + b * ldx + k);
            for (int a = 0; a < R; a++) acc[a][b] = _mm256_fmadd_ps(wv[a], xv, acc[a][b]);
        }
    }
    if (k < cols) {
        size_t rem = cols - k;
        __m256 wv[4];
        for (int a = 0; a < R; a++) {
            char buf[32] = {0};
            memcpy(buf, w + (r + a) * rowbytes + k * es, rem * es);
            wv[a] = ld256(t, buf);
        }
        for (int b = 0; b < J; b++) {
            float xb[8] = {0};
            memcpy(xb, x + b * ldx + k, rem * 4);
            __m256 xv = _mm256_loadu_ps(xb);
            for (int a = 0; a < R; a++) acc[a][b] = _mm256_fmadd_ps(wv[a], xv, acc[a][b]);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) out[b * ldo + r + a] = hsum256(acc[a][b]);
}

// Each 2-row block is used by every 4-token tile of a token block (activations within about
// 1 MiB) while it is in L1, so the weights are streamed once per token block, not once per
// tile (AVX2 kernels timed on an AVX-512 machine, tools/bench_matmul/run --avx2: a step's
// matmuls at 16 tokens 131-133 against 144-154 ms, at 64 tokens 309 against 384 ms).
#ifndef GK_TB256_BYTES
#define GK_TB256_BYTES (1u << 20)
#endif
#define DEF256(NAME, T)                                                                        \
    T256 static void NAME(float *out, size_t ldo, const float *x, size_t ldx, const void *wp,   \
                          size_t cols, size_t n, size_t r0, size_t r1) {                       \
        const char *w = (const char *)wp;                                                      \
        const size_t rb = cols * esize(T);                                                     \
        size_t tb = (GK_TB256_BYTES) / (cols * sizeof(float));                                 \
        tb = tb < 4 ? 4 : tb - tb % 4;                                                         \
        for (size_t j0 = 0; j0 < n; j0 += tb) {                                                \
            const size_t j1 = n - j0 < tb ? n : j0 + tb;                                       \
            size_t r = r0;                                                                     \
            for (; r + 2 <= r1; r += 2) TOKEN_TILES(tile256, T, 2, j0, j1, r, w + (r + 2) * rb); \
            for (; r < r1; r++) TOKEN_TILES(tile256, T, 1, j0, j1, r, w + (r + 1) * rb);       \
        }                                                                                      \
    }
DEF256(mm256_f32, GK_F32)
DEF256(mm256_bf16, GK_BF16)
DEF256(mm256_f16, GK_F16)

void gk_matmul(gk_dtype t, float *out, size_t ldo, const float *x, size_t ldx,
               const void *w, size_t cols, size_t n, size_t r0, size_t r1) {
    gk_matmul_at(level(), t, out, ldo, x, ldx, w, cols, n, r0, r1);
}

void gk_matmul_at(int lvl, gk_dtype t, float *out, size_t ldo, const float *x, size_t ldx,
                  const void *w, size_t cols, size_t n, size_t r0, size_t r1) {
    gk_matmul_next(lvl, t, out, ldo, x, ldx, w, cols, n, r0, r1, NULL, 0);
}

void gk_matmul_next(int lvl, gk_dtype t, float *out, size_t ldo, const float *x, size_t ldx,
                    const void *w, size_t cols, size_t n, size_t r0, size_t r1, const void *next, size_t next_bytes) {
    if (n == 0 || r1 <= r0) return;
    const char *nx = (const char *)next;
    if (lvl > detect_level() || lvl < GK_LEVEL_SCALAR) lvl = detect_level();
    switch (lvl) {
    case GK_LEVEL_AVX512:
        switch (t) {
        case GK_BF16: mm512_bf16(out, ldo, x, ldx, w, cols, n, r0, r1, nx, next_bytes); return;
        case GK_F16: mm512_f16(out, ldo, x, ldx, w, cols, n, r0, r1, nx, next_bytes); return;
        default: mm512_f32(out, ldo, x, ldx, w, cols, n, r0, r1, nx, next_bytes); return;
        }
    case GK_LEVEL_AVX2:
        switch (t) {
        case GK_BF16: mm256_bf16(out, ldo, x, ldx, w, cols, n, r0, r1); return;
        case GK_F16: mm256_f16(out, ldo, x, ldx, w, cols, n, r0, r1); return;
        default: mm256_f32(out, ldo, x, ldx, w, cols, n, r0, r1); return;
        }
    default:
        matmul_scalar(t, out, ldo, x, ldx, w, cols, n, r0, r1);
    }
}

// ---------------------------------------------------------------------------------------------
// bf16 activations (gk_matmul_bf16x): products of bf16 weights with activations rounded to bf16,
// on AVX-512 BF16's dot-product instruction where the CPU has it (vdpbf16ps: 32 products per
// instruction, twice the f32 FMA's rate), else emulated bit for bit. The order is the
// instruction's: lane l of a 16-lane accumulator takes, for each 32-column chunk c in turn,
// column 32c + 2l + 1's product and then column 32c + 2l's, each added as an FMA rounding to
// nearest with denormal inputs read as zero and denormal results flushed to zero (the
// instruction's definition in Intel's SDM; measured on Zen 4 against the emulation below over
// 32 million lanes of random bits and of near-underflow values: no difference, while the other
// orders differed in 1-11% of lanes). Columns past the end are zeros; the 16 lanes are summed by
// the halving tree of _mm512_reduce_add_ps (reduce16 for whole 4 × 4 tiles). One order for every
// batch size, path and thread split, so the batch invariance of gk_matmul holds here too.

#define T512BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))
#define INLINE512BF static inline __attribute__((always_inline)) T512BF

static _Atomic int gk_bf16_hw = -1;
static _Thread_local int gk_bf16x_emulate = 0;

static int bf16_hw(void) {
    int h = atomic_load_explicit(&gk_bf16_hw, memory_order_relaxed);
    if (h < 0) {
        h = gk_detect_cpu().avx512bf16 && detect_level() >= GK_LEVEL_AVX512;
        atomic_store_explicit(&gk_bf16_hw, h, memory_order_relaxed);
    }
    return h;
}

int gk_bf16x_path(int lvl) {
    if (lvl > detect_level() || lvl < GK_LEVEL_SCALAR) lvl = detect_level();
    if (lvl < GK_LEVEL_AVX512) return GK_BF16X_SCALAR;
    return bf16_hw() && !gk_bf16x_emulate ? GK_BF16X_DPBF16 : GK_BF16X_AVX512;
}

int gk_force_bf16x_emulation(int on) {
    gk_bf16x_emulate = on != 0;
    return 1;
}

// Scalar: the definition, one lane at a time (also the reference the SIMD emulation follows).
static inline float bx_flush(float v) { // a denormal becomes a zero of its sign
    uint32_t u; memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    memcpy(&v, &u, 4); return v;
}

static void bx_scalar(float *out, size_t ldo, const uint16_t *x, size_t ldx, const char *w, size_t cols, size_t n,
                      size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const char *row = w + r * cols * 2;
        for (size_t j = 0; j < n; j++) {
            const uint16_t *xr = x + j * ldx;
            float acc[16] = {0};
            for (size_t c = 0; c < cols; c += 32)
                for (int l = 0; l < 16; l++)
                    for (int half = 1; half >= 0; half--) { // the odd column first
                        // Columns past the end are +0 (acc + 0·0: a -0 accumulator becomes +0).
                        size_t k = c + 2 * (size_t)l + (size_t)half;
                        uint32_t xu = k < cols ? (uint32_t)xr[k] << 16 : 0;
                        float xv, wv = k < cols ? bf16_at(row, k) : 0.0f;
                        memcpy(&xv, &xu, 4);
                        acc[l] = bx_flush(fmaf(bx_flush(wv), bx_flush(xv), acc[l]));
                    }
            for (int h = 8; h >= 1; h /= 2)
                for (int l = 0; l < h; l++) acc[l] = acc[l] + acc[l + h];
            out[j * ldo + r] = acc[0];
        }
    }
}

// 32 bf16 values from p (`rem` of them; zeros past rem < 32).
INLINE512BF __m512i bx_load(const void *p, size_t rem) {
    return rem >= 32 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16((__mmask32)((1ull << rem) - 1), p);
}

// Widened bf16 bits (f32 lanes) with denormals made zeros of their sign.
INLINE512BF __m512 bx_flush16(__m512i u) {
    const __m512i expo = _mm512_set1_epi32(0x7f800000), sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_mask_and_epi32(u, _mm512_testn_epi32_mask(u, expo), u, sign));
}

// acc + the pairs of w and x: the instruction, or (emu) its definition with two FMAs.
INLINE512BF __m512 bx_dp(int emu, __m512 acc, __m512i w, __m512i x) {
    if (!emu) return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    acc = _mm512_fmadd_ps(bx_flush16(_mm512_and_si512(w, hi)), bx_flush16(_mm512_and_si512(x, hi)), acc);
    acc = bx_flush16(_mm512_castps_si512(acc));
    acc = _mm512_fmadd_ps(bx_flush16(_mm512_slli_epi32(w, 16)), bx_flush16(_mm512_slli_epi32(x, 16)), acc);
    return bx_flush16(_mm512_castps_si512(acc));
}

#ifndef GK_BX_SEG_COLS
#define GK_BX_SEG_COLS 64
#endif
// R ≤ 4 rows from r × J ≤ 4 tokens, straight from memory. Few tokens (pfl == 0): pf is the next
// block's R rows (NULL: no prefetch), requested in address order over the k loop as tile512 does.
// Batched (pfl > 0): the pfl lines from pf are requested into L2, spread evenly over the k loop.
INLINE512BF void bxtile(int emu, int R, int J, float *out, size_t ldo, const uint16_t *x, size_t ldx,
                        const char *w, size_t rb, size_t cols, size_t r, const char *pf, size_t pfl) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    size_t k = 0;
    if (J == 1 && R == 4) {
        // One token: each row's whole chunks in segments of GK_BX_SEG_COLS columns, row after
        // row within a segment, as tile512_eo reads them (each accumulator's order unchanged).
        // A step's products (tools/bench_matmul/run --tokens 1, BUILD@bf16x, 2026-11-25, Zen 4):
        // SmolLM2 13.2 ms in lockstep (one chunk per row), 12.0 in segments of 64 columns, 12.7
        // of 128, 14.0 of 256 and 15.5 of 1024 (the f32 activations' kernel 12.3); 7B shapes
        // (--layers 2) 45.3 at 64, 46.5 at 128, 44.4 at 256 (f32 activations 46.9). Longer runs
        // of one row chain more dot products on one accumulator.
        const size_t whole = cols / 32 * 32;
        for (size_t k0 = 0; k0 < whole; k0 += GK_BX_SEG_COLS) {
            const size_t k1 = k0 + GK_BX_SEG_COLS < whole ? k0 + GK_BX_SEG_COLS : whole;
            for (int a = 0; a < R; a++)
                for (size_t c = k0; c < k1; c += 32) {
#ifndef GK_NO_PREFETCH
                    if (pf) PREFETCH_BLOCK(pf + (R * c + 32 * a) * 2, R * rb, w + (r + a) * rb + c * 2);
#endif
                    acc[4 * a] = bx_dp(emu, acc[4 * a], _mm512_loadu_si512(w + (r + a) * rb + c * 2), _mm512_loadu_si512(x + c));
                }
        }
        k = whole;
    }
    const size_t steps = cols / 32;
    size_t q = 0; // lines of pf requested so far (batched)
    for (; k + 32 <= cols; k += 32) {
#ifndef GK_NO_PREFETCH
        if (pfl)
            for (; q < pfl && q * steps < pfl * (k / 32 + 1); q++) _mm_prefetch(pf + 64 * q, _MM_HINT_T2);
        else if (pf)
            for (int a = 0; a < R; a++) PREFETCH_BLOCK(pf + (R * k + 32 * a) * 2, R * rb, w + (r + a) * rb + k * 2);
#endif
        __m512i wv[4];
        for (int a = 0; a < R; a++) wv[a] = _mm512_loadu_si512(w + (r + a) * rb + k * 2);
        for (int b = 0; b < J; b++) {
            __m512i xv = _mm512_loadu_si512(x + b * ldx + k);
            for (int a = 0; a < R; a++) acc[4 * a + b] = bx_dp(emu, acc[4 * a + b], wv[a], xv);
        }
    }
#ifndef GK_NO_PREFETCH
    for (; q < pfl; q++) _mm_prefetch(pf + 64 * q, _MM_HINT_T2);
#endif
    if (k < cols) {
        __m512i wv[4];
        for (int a = 0; a < R; a++) wv[a] = bx_load(w + (r + a) * rb + k * 2, cols - k);
        for (int b = 0; b < J; b++) {
            __m512i xv = bx_load(x + b * ldx + k, cols - k);
            for (int a = 0; a < R; a++) acc[4 * a + b] = bx_dp(emu, acc[4 * a + b], wv[a], xv);
        }
    }
    if (R == 4 && J == 4) { tile_acc_finish(acc, 1, NULL, out + r, ldo, 4, 4); return; }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < J; b++) out[b * ldo + r + a] = _mm512_reduce_add_ps(acc[4 * a + b]);
}

// One tile of R rows from r × the tokens from j (up to 4), with bxtile's prefetch arguments.
#define BX_TILE(EMU, R, j, p, pl)                                                               \
    do {                                                                                       \
        float *o_ = out + (j) * ldo;                                                           \
        const uint16_t *x_ = x + (j) * ldx;                                                    \
        switch (n - (j) < 4 ? n - (j) : 4) {                                                   \
        case 4: bxtile(EMU, R, 4, o_, ldo, x_, ldx, w, rb, cols, r, p, pl); break;             \
        case 3: bxtile(EMU, R, 3, o_, ldo, x_, ldx, w, rb, cols, r, p, pl); break;             \
        case 2: bxtile(EMU, R, 2, o_, ldo, x_, ldx, w, rb, cols, r, p, pl); break;             \
        default: bxtile(EMU, R, 1, o_, ldo, x_, ldx, w, rb, cols, r, p, pl); break;            \
        }                                                                                      \
    } while (0)

// Up to 4 tokens (memory-bound): each block of 4 rows serves its one token tile, prefetching
// the block GK_PF_BLOCKS on as the f32 kernels do. More tokens (compute-bound): when every
// token's activations fit in L1 beside a block of rows (GK_BX_X_L1 bytes), each 4-row block
// serves every token tile from L1; else the rows go in strips of GK_BX_STRIP_BYTES, each token
// tile passing over the whole strip (its activations in L1, the strip in L2). Either way the
// rows read next (the block GK_PF_BLOCKS on, or the same block of the next strip) are requested
// into L2 a share per token tile, so that the stream is spread over all the block's (or
// strip's) compute. The next product's rows follow the last ones (direct_pf).
// Measured (tools/bench_matmul/run --tokens 16, BUILD@bf16x, 2026-11-25, Zen 4): SmolLM2 at 16
// tokens, rows reused from L1 with the prefetch into L1 in the first tile 41 ms per step, into
// L2 30 ms (graft bench), in the first tile only 24.1 ms and spread over the tiles 22.7
// (tools/bench_matmul); its down projection (48 KB of activations) 141 -> 156-161 GFLOP/s in
// strips, 185 with the spread prefetch. At 64 tokens 84.6 -> 80.7 ms (213 GFLOP/s, 91% of the
// dot-product loop). 7B shapes (--layers 2) 119.2 -> 116.8 ms, 147 GFLOP/s: with the weights in
// L2 (--l2) they run at 190-198, SmolLM2's at 216-226. K blocks within strips (accumulators
// saved between them) made 7B shapes slower: 116.7 -> 120.6 ms (1024 columns), 123.6 (512).
#ifndef GK_BX_X_L1
#define GK_BX_X_L1 (20u << 10)
#endif
#ifndef GK_BX_STRIP_BYTES
#define GK_BX_STRIP_BYTES (128u << 10)
#endif
INLINE512BF void bx512(int emu, float *out, size_t ldo, const uint16_t *x, size_t ldx, const char *w, size_t cols,
                       size_t n, size_t r0, size_t r1, const char *nx, size_t nxb) {
    const size_t rb = cols * 2, G = (n + 3) / 4;
    if (n <= 4) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) BX_TILE(emu, 4, 0, DIRECT_PF(4), 0);
        for (; r < r1; r++) BX_TILE(emu, 1, 0, DIRECT_PF(1), 0);
        return;
    }
    // Lines of the R-row block at `ra` (past r1: the next product's) that token tile g requests.
#define BX_SHARE(ra, R, g) (direct_pf(w, rb, (ra), r1, nx, nxb, (R) * rb) + 64 * ((R) * rb / 64 * (g) / G))
#define BX_LINES(R, g) ((R) * rb / 64 * ((g) + 1) / G - (R) * rb / 64 * (g) / G)
    if (n * rb <= GK_BX_X_L1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4)
            for (size_t j = 0; j < n; j += 4)
                BX_TILE(emu, 4, j, BX_SHARE(r + GK_PF_BLOCKS * 4, 4, j / 4), BX_LINES(4, j / 4));
        for (; r < r1; r++)
            for (size_t j = 0; j < n; j += 4)
                BX_TILE(emu, 1, j, BX_SHARE(r + GK_PF_BLOCKS, 1, j / 4), BX_LINES(1, j / 4));
        return;
    }
    size_t S = GK_BX_STRIP_BYTES / rb;
    S = S < 4 ? 4 : S - S % 4;
    for (size_t s0 = r0; s0 < r1; s0 += S) {
        const size_t s1 = s0 + S < r1 ? s0 + S : r1;
        for (size_t j = 0; j < n; j += 4) {
            size_t r = s0;
            for (; r + 4 <= s1; r += 4) BX_TILE(emu, 4, j, BX_SHARE(r + S, 4, j / 4), BX_LINES(4, j / 4));
            for (; r < s1; r++) BX_TILE(emu, 1, j, BX_SHARE(r + S, 1, j / 4), BX_LINES(1, j / 4));
        }
    }
#undef BX_SHARE
#undef BX_LINES
}
#undef BX_TILE

T512BF static void bx512_hw(float *out, size_t ldo, const uint16_t *x, size_t ldx, const char *w, size_t cols,
                            size_t n, size_t r0, size_t r1, const char *nx, size_t nxb) {
    bx512(0, out, ldo, x, ldx, w, cols, n, r0, r1, nx, nxb);
}

T512BF static void bx512_emu(float *out, size_t ldo, const uint16_t *x, size_t ldx, const char *w, size_t cols,
                             size_t n, size_t r0, size_t r1, const char *nx, size_t nxb) {
    bx512(1, out, ldo, x, ldx, w, cols, n, r0, r1, nx, nxb);
}

void gk_matmul_bf16x(int path, float *out, size_t ldo, const uint16_t *x, size_t ldx, const void *w, size_t cols,
                     size_t n, size_t r0, size_t r1, const void *next, size_t next_bytes) {
    if (n == 0 || r1 <= r0) return;
    if (path == GK_BF16X_DPBF16 && !bf16_hw()) path = GK_BF16X_AVX512;   // never more than the CPU has
    if (path == GK_BF16X_AVX512 && detect_level() < GK_LEVEL_AVX512) path = GK_BF16X_SCALAR;
    switch (path) {
    case GK_BF16X_DPBF16: bx512_hw(out, ldo, x, ldx, (const char *)w, cols, n, r0, r1, (const char *)next, next_bytes); return;
    case GK_BF16X_AVX512: bx512_emu(out, ldo, x, ldx, (const char *)w, cols, n, r0, r1, (const char *)next, next_bytes); return;
    default: bx_scalar(out, ldo, x, ldx, (const char *)w, cols, n, r0, r1);
    }
}

// ---------------------------------------------------------------------------------------------
// Small vector kernels. Plain C: the compiler vectorises them for the baseline ISA, and their
// cost is negligible beside the matmuls.

void gk_widen(gk_dtype t, float *dst, const void *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = elem(t, src, i);
}

// gk_round_bf16's rounding 16 values at a time (integer operations: the same bits); returns
// how many it did (whole groups of 16).
T512 static size_t round_bf16_512(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512(src + i);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
        __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                                       _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    return i;
}

// Round to nearest, ties to even, as PyTorch's float → bfloat16 (c10::round_to_nearest_even):
// finite values that round past the largest bf16 become ±inf; NaN stays a (quiet) NaN.
void gk_round_bf16(uint16_t *dst, const float *src, size_t n) {
    size_t i0 = detect_level() >= GK_LEVEL_AVX512 ? round_bf16_512(dst, src, n) : 0;
    for (size_t i = i0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { dst[i] = (uint16_t)((u >> 16) | 0x0040u); continue; }
        dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

// gk_dot and gk_axpy: the AVX2 versions do exactly the scalar versions' operations (8 lane
// partial sums with fused multiply-adds, the same final association), so results do not depend
// on the CPU; the scalar fallback's fmaf is a libcall on baseline x86-64, hence the SIMD path.
T256 static float dot256(const float *a, const float *b, size_t n) {
    __m256 acc = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (; k < n; k++) lanes[k & 7] = fmaf(a[k], b[k], lanes[k & 7]);
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
}

T256 static void axpy256(float *y, float a, const float *x, size_t n) {
    __m256 av = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

float gk_dot(const float *a, const float *b, size_t n) {
    if (detect_level() >= GK_LEVEL_AVX2) return dot256(a, b, n);
    float acc[8] = {0};
    for (size_t k = 0; k < n; k++) acc[k & 7] = fmaf(a[k], b[k], acc[k & 7]);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void gk_prefetch_l2(const void *p, size_t n) {
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63), *end = (const char *)p + n;
    for (; c < end; c += 64) _mm_prefetch(c, _MM_HINT_T2);
}

void gk_axpy(float *y, float a, const float *x, size_t n) {
    if (detect_level() >= GK_LEVEL_AVX2) { axpy256(y, a, x, n); return; }
    for (size_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

void gk_rmsnorm(float *out, const float *x, const void *weight, gk_dtype wt, size_t n, float eps) {
    // In PyTorch: hidden_states.pow(2).mean(-1) in f32; f64 here is closer to exact. Each
    // square is exact in f64; eight partial sums (element i into sum i mod 8, then a fixed
    // tree) instead of one chain, so the adds do not wait on each other. Same order on every CPU.
    double part[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) part[l] += (double)x[i + l] * x[i + l];
    for (; i < n; i++) part[i & 7] += (double)x[i] * x[i];
    double ss = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
    float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (size_t i = 0; i < n; i++) out[i] = elem(wt, weight, i) * (x[i] * inv);
}

// RoPE, rotate_half convention, on nheads heads of hd floats at p: (a, b) = (p[i], p[i + hd/2])
// → (a·cos − b·sin, b·cos + a·sin) with cs, sn the position's hd/2 cosines and sines. Products
// and the sum rounded separately (no fused multiply-add), as the Swift loop this replaces did.
void gk_rope(float *p, size_t nheads, size_t hd, const float *cs, const float *sn) {
#pragma clang fp contract(off)
    const size_t half = hd / 2;
    for (size_t h = 0; h < nheads; h++) {
        float *a = p + h * hd, *b = a + half;
        for (size_t i = 0; i < half; i++) {
            float x1 = a[i], x2 = b[i];
            float c = cs[i], s = sn[i];
            float m1 = x1 * c, m2 = x2 * s, m3 = x2 * c, m4 = x1 * s;
            a[i] = m1 - m2;
            b[i] = m3 + m4;
        }
    }
}

// SwiGLU needs expf of every gate value (16 × 1536 × 30 per batch-16 step of SmolLM2: several
// ms as libm calls). glibc's expf (2.28 on; its ifunc picks the FMA build on CPUs with FMA and
// AVX2) is computed in double from a 32-entry table; expf8 does those operations, with the FMA
// build's contractions, eight lanes at a time, so results are the libm call's bit for bit
// (checked over all 2^32 inputs against glibc 2.36). Lanes where glibc takes its special path
// (|x| >= 88, inf, nan) go to libm.
static const uint64_t expf_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

INLINE512 __m256 expf8(__m256 x) {
    const __m512d invln2n = _mm512_castsi512_pd(_mm512_set1_epi64(0x40471547652b82fe));
    const __m512d shift = _mm512_castsi512_pd(_mm512_set1_epi64(0x4338000000000000));
    const __m512d c0 = _mm512_castsi512_pd(_mm512_set1_epi64(0x3ebc6af84b912394));
    const __m512d c1 = _mm512_castsi512_pd(_mm512_set1_epi64(0x3f2ebfce50fac4f3));
    const __m512d c2 = _mm512_castsi512_pd(_mm512_set1_epi64(0x3f962e42ff0c52d6));
    __m512d xd = _mm512_cvtps_pd(x);
    __m512d kds = _mm512_fmadd_pd(invln2n, xd, shift);           // z + shift, z = x·N/ln2
    __m512i ki = _mm512_castpd_si512(kds);
    __m512d kd = _mm512_sub_pd(kds, shift);
    __m512d r = _mm512_fmsub_pd(invln2n, xd, kd);                // z - k
    __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    __m512d lo = _mm512_permutex2var_pd(_mm512_loadu_pd((const double *)expf_tab), idx, _mm512_loadu_pd((const double *)expf_tab + 8));
    __m512d hi = _mm512_permutex2var_pd(_mm512_loadu_pd((const double *)expf_tab + 16), idx, _mm512_loadu_pd((const double *)expf_tab + 24));
    __mmask8 upper = _mm512_test_epi64_mask(idx, _mm512_set1_epi64(16));
    __m512i t = _mm512_castpd_si512(_mm512_mask_blend_pd(upper, lo, hi));
    __m512d sc = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64(ki, 47)));
    __m512d z = _mm512_fmadd_pd(r, c0, c1);
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d y = _mm512_fmadd_pd(r, c2, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, r2, y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, sc));
}

// gate = (g / (1 + expf(-g))) · up, the scalar loop's float operations, 16 lanes at a time.
T512 static void swiglu512(float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 x = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u)));
        __m512i top = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(x), 20), _mm512_set1_epi32(0x7ff));
        if (_mm512_cmpgt_epi32_mask(top, _mm512_set1_epi32(0x42a))) break;   // libm's special path: scalar from here
        __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(expf8(_mm512_castps512_ps256(x))),
                                      expf8(_mm512_extractf32x8_ps(x, 1)), 1);
        __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(_mm512_div_ps(g, d), _mm512_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

// Whether expf8 gives this process's libm expf bit for bit (another libm, or glibc's non-FMA
// build, need not): checked once on 2^16 inputs spread over expf's whole domain.
static _Atomic int gk_expf8_ok = -1;
T512 static int expf8_matches_libm(void) {
    int ok = atomic_load_explicit(&gk_expf8_ok, memory_order_relaxed);
    if (ok >= 0) return ok;
    ok = 1;
    for (uint32_t i = 0; i < 65536 && ok; i += 8) {
        float in[8], got[8];
        for (int l = 0; l < 8; l++) {
            uint32_t u = (i + (uint32_t)l) * 2654435761u;            // spread over all bit patterns
            memcpy(&in[l], &u, 4);
            uint32_t top = (u >> 20) & 0x7ff;
            if (top > 0x42a) in[l] = (float)(int)(u % 176) - 88.0f;  // keep to the fast path
        }
        _mm256_storeu_ps(got, expf8(_mm256_loadu_ps(in)));
        for (int l = 0; l < 8; l++) {
            float want = expf(in[l]);
            if (memcmp(&want, &got[l], 4) != 0) ok = 0;
        }
    }
    atomic_store_explicit(&gk_expf8_ok, ok, memory_order_relaxed);
    return ok;
}

void gk_swiglu(float *gate, const float *up, size_t n) {
    if (detect_level() >= GK_LEVEL_AVX512 && expf8_matches_libm()) { swiglu512(gate, up, n); return; }
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

// ---------------------------------------------------------------------------------------------
// Attention of one query head over n cached positions: the operations of gk_dot, expf and gk_axpy
// in the order Model.forward did them one call at a time (so results are unchanged), with eight
// keys' dot products interleaved (independent FMA chains, one transposed reduction) and the
// output kept in registers.

// sc[j] = expf(sc[j] - m) for j below the returned count (whole groups of 8 with no lane on
// libm's special path), eight at a time with expf8.
T512 static size_t exp_shifted512(float *sc, size_t n, float m) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(sc + j), _mm256_set1_ps(m));
        __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 20), _mm256_set1_epi32(0x7ff));
        if (_mm256_cmpgt_epi32_mask(top, _mm256_set1_epi32(0x42a))) {
            for (size_t i = j; i < j + 8; i++) sc[i] = expf(sc[i] - m);
            continue;
        }
        _mm256_storeu_ps(sc + j, expf8(x));
    }
    return j;
}

// Keys and values are f32 or bf16 (`t`), loaded with the matmuls' ld256/ld512 (bf16 widened
// exactly: the bits move up 16 places). A whole row of n as f32, for the tails: a bf16 row goes
// through `tmp`.
INLINE256 const float *kvrow(gk_dtype t, const char *p, size_t n, float *tmp) {
    if (t == GK_F32) return (const float *)p;
    gk_widen(t, tmp, p, n);
    return tmp;
}

// The weighted sum of values with 16-lane vectors: each element's operations are those of the
// 8-lane loop of vmix256 (one FMA per position, in order, from zero), so the results are
// bit-identical; half the instructions, and a bf16 cache's widening costs half as much.
INLINE512 void vmix512(gk_dtype t, float *out, const float *sc, const char *values, size_t rs, size_t n, size_t hd,
                       float *tmp) {
    const size_t es = esize(t);
    size_t k0 = 0;
    for (; k0 + 64 <= hd; k0 += 64) {
        __m512 o[4];
        for (int i = 0; i < 4; i++) o[i] = _mm512_setzero_ps();
        for (size_t j = 0; j < n; j++) {
            __m512 a = _mm512_set1_ps(sc[j]);
            const char *v = values + j * rs + k0 * es;
            for (int i = 0; i < 4; i++) o[i] = _mm512_fmadd_ps(a, ld512(t, v + 16 * i * es, 0, 0), o[i]);
        }
        for (int i = 0; i < 4; i++) _mm512_storeu_ps(out + k0 + 16 * i, o[i]);
    }
    for (; k0 + 16 <= hd; k0 += 16) {
        __m512 o = _mm512_setzero_ps();
        for (size_t j = 0; j < n; j++) o = _mm512_fmadd_ps(_mm512_set1_ps(sc[j]), ld512(t, values + j * rs + k0 * es, 0, 0), o);
        _mm512_storeu_ps(out + k0, o);
    }
    if (k0 < hd) {
        for (size_t i = k0; i < hd; i++) out[i] = 0;
        for (size_t j = 0; j < n; j++) axpy256(out + k0, sc[j], kvrow(t, values + j * rs + k0 * es, hd - k0, tmp), hd - k0);
    }
}

INLINE256 void softmax_tail(float *sc, size_t n, float maxs);

// sc[j] = the attention weights of q over the n keys (rows `stride` elements apart): scaled dot
// products, softmax with the max subtracted, divided by the sum. `tmp`: hd floats.
INLINE256 void scores256_t(gk_dtype t, const float *q, const char *keys, size_t stride, size_t n, size_t hd, float scale,
                           float *sc, float *tmp) {
    const size_t es = esize(t), rs = stride * es;
    float maxs = -INFINITY;
    size_t j = 0;
    if (hd % 8 == 0) {
        // Eight keys at a time; their eight 8-lane sums are reduced together with the pairs of
        // dot256's final sum ((l, l+4), then (l, l+2), then (l, l+1)), landing as keys 0,2,4,6,1,3,5,7.
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; j + 8 <= n; j += 8) {
            const char *k0 = keys + j * rs;
            __m256 a[8];
            for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
            for (size_t k = 0; k < hd; k += 8) {
                __m256 qv = _mm256_loadu_ps(q + k);
                for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(qv, ld256(t, k0 + i * rs + k * es), a[i]);
            }
            __m256 s4[4], s2[2];
            for (int i = 0; i < 4; i++)
                s4[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                                      _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
            for (int i = 0; i < 2; i++)
                s2[i] = _mm256_add_ps(_mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], 0x44),
                                      _mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], 0xEE));
            __m256 d = _mm256_add_ps(_mm256_shuffle_ps(s2[0], s2[1], 0x88), _mm256_shuffle_ps(s2[0], s2[1], 0xDD));
            _mm256_storeu_ps(sc + j, _mm256_mul_ps(_mm256_permutevar8x32_ps(d, order), _mm256_set1_ps(scale)));
            for (int i = 0; i < 8; i++) maxs = sc[j + i] >= maxs ? sc[j + i] : maxs;
        }
    }
    for (; j < n; j++) {
        sc[j] = dot256(q, kvrow(t, keys + j * rs, hd, tmp), hd) * scale;
        maxs = sc[j] >= maxs ? sc[j] : maxs;
    }
    softmax_tail(sc, n, maxs);
}

// The softmax of n scaled scores whose largest is maxs, in place: expf(sc[j] - maxs), their sum
// in order, each divided by it.
INLINE256 void softmax_tail(float *sc, size_t n, float maxs) {
    float sum = 0;
    size_t j = 0;
    if (detect_level() >= GK_LEVEL_AVX512 && expf8_matches_libm()) j = exp_shifted512(sc, n, maxs);
    for (; j < n; j++) sc[j] = expf(sc[j] - maxs);
    for (j = 0; j < n; j++) sum += sc[j];
    // The weights sc[j] / sum, eight divisions at a time (each exactly rounded, as one by one);
    // they stay in sc for the caller (traces).
    j = 0;
    for (__m256 vs = _mm256_set1_ps(sum); j + 8 <= n; j += 8) _mm256_storeu_ps(sc + j, _mm256_div_ps(_mm256_loadu_ps(sc + j), vs));
    for (; j < n; j++) sc[j] = sc[j] / sum;
}

// out = Σ_j sc[j]·v_j, each element accumulated over j in order with fused multiply-adds.
INLINE256 void vmix256(gk_dtype t, float *out, const float *sc, const char *values, size_t rs, size_t n, size_t hd,
                       float *tmp) {
    const size_t es = esize(t);
    size_t j;
    size_t k0 = 0;
    for (; k0 + 64 <= hd; k0 += 64) {
        __m256 o[8];
        for (int i = 0; i < 8; i++) o[i] = _mm256_setzero_ps();
        for (j = 0; j < n; j++) {
            __m256 a = _mm256_set1_ps(sc[j]);
            const char *v = values + j * rs + k0 * es;
            for (int i = 0; i < 8; i++) o[i] = _mm256_fmadd_ps(a, ld256(t, v + 8 * i * es), o[i]);
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + k0 + 8 * i, o[i]);
    }
    if (k0 < hd) {
        for (size_t i = k0; i < hd; i++) out[i] = 0;
        for (j = 0; j < n; j++) axpy256(out + k0, sc[j], kvrow(t, values + j * rs + k0 * es, hd - k0, tmp), hd - k0);
    }
}

// `keys`, `values`: elements of type DT, rows `stride` elements apart. Over a bf16 cache every
// operation is the one over an f32 cache holding the widened values.
#define ATTEND(NAME, T, DT, KT, MIX)                                                                \
    T static void NAME(float *out, const float *q, const KT *keys, const KT *values, size_t stride,  \
                       size_t n, size_t hd, float scale, float *sc) {                                \
        float tmp[hd];                                                                               \
        scores256_t(DT, q, (const char *)keys, stride, n, hd, scale, sc, tmp);                       \
        MIX(DT, out, sc, (const char *)values, stride * esize(DT), n, hd, tmp);                      \
    }
ATTEND(attend256, T256, GK_F32, float, vmix256)
ATTEND(attend256_bf16, T256, GK_BF16, uint16_t, vmix256)
// AVX-512: the same scores (8-lane code), the values' weighted sum 16 lanes wide.
ATTEND(attend512, T512, GK_F32, float, vmix512)
ATTEND(attend512_bf16, T512, GK_BF16, uint16_t, vmix512)

// The 8-lane sums of four keys' accumulators with hsum256's pairs ((l, l+4), then (l, l+2),
// then (l, l+1)), the four reduced together as scores256_t reduces eight.
INLINE512 void group_sums4(const __m256 a[4], float v[4]) {
    __m256 s4a = _mm256_add_ps(_mm256_permute2f128_ps(a[0], a[1], 0x20), _mm256_permute2f128_ps(a[0], a[1], 0x31));
    __m256 s4b = _mm256_add_ps(_mm256_permute2f128_ps(a[2], a[3], 0x20), _mm256_permute2f128_ps(a[2], a[3], 0x31));
    __m256 s2 = _mm256_add_ps(_mm256_shuffle_ps(s4a, s4b, 0x44), _mm256_shuffle_ps(s4a, s4b, 0xEE));
    __m256 d = _mm256_add_ps(_mm256_shuffle_ps(s2, s2, 0x88), _mm256_shuffle_ps(s2, s2, 0xDD));
    float lanes[8];
    _mm256_storeu_ps(lanes, d);   // keys 0, 2 in lanes 0, 1; keys 1, 3 in lanes 4, 5
    v[0] = lanes[0], v[1] = lanes[4], v[2] = lanes[1], v[3] = lanes[5];
}

#ifndef GK_ATT_AHEAD
#define GK_ATT_AHEAD 16
#endif
// Grouped-query attention: G ≤ 4 query heads (queries hd floats apart, outputs too, weights n
// floats apart) over one key/value head, each row of keys and values loaded once for all G, the
// rows GK_ATT_AHEAD on requested into L1 and the nb bytes at nk and nv (the next job's) spread
// into L2 over the loops. Every head's operations are attend512's: per key the lane-wise FMAs
// over the head dimension in order and dot256's final sum (hsum256's pairs, as the eight-key
// reduction), times scale; the max in key order; softmax_tail; per value element the FMAs from
// zero in key order. So each head's results are attend512's bit for bit. Needs hd a multiple of
// 64.
INLINE512 void attend_group512(gk_dtype t, int G, float *out, const float *q, const char *keys, const char *values,
                               size_t stride, size_t n, size_t hd, float scale, float *sc, const char *nk,
                               const char *nv, size_t nb) {
    const size_t es = esize(t), rs = stride * es, nl = nk ? nb / 64 : 0;
    float maxs[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    size_t j = 0, pk = 0, pv = 0; // lines of nk and nv requested so far
    // Four keys at a time (then one): G × 4 accumulators, the four keys' rows loaded once.
#define GROUP_KEYS(NK)                                                                             \
    do {                                                                                           \
        __m256 a[4][4];                                                                            \
        for (int h = 0; h < G; h++) for (int i = 0; i < (NK); i++) a[h][i] = _mm256_setzero_ps();   \
        const char *k0 = keys + j * rs;                                                            \
        for (int i = 0; i < (NK); i++)                                                             \
            for (size_t l = 0; l < hd * es; l += 64) _mm_prefetch(k0 + (GK_ATT_AHEAD + i) * rs + l, _MM_HINT_T0); \
        for (; pk < nl * (j + (NK)) / n; pk++) _mm_prefetch(nk + 64 * pk, _MM_HINT_T2);            \
        for (size_t k = 0; k < hd; k += 8) {                                                       \
            __m256 kv[4];                                                                          \
            for (int i = 0; i < (NK); i++) kv[i] = ld256(t, k0 + i * rs + k * es);                 \
            for (int h = 0; h < G; h++) {                                                          \
                __m256 qv = _mm256_loadu_ps(q + h * hd + k);                                       \
                for (int i = 0; i < (NK); i++) a[h][i] = _mm256_fmadd_ps(qv, kv[i], a[h][i]);      \
            }                                                                                      \
        }                                                                                          \
        for (int h = 0; h < G; h++) {                                                              \
            float v[4];                                                                            \
            if ((NK) == 4) group_sums4(a[h], v);                                                   \
            else v[0] = hsum256(a[h][0]);                                                          \
            for (int i = 0; i < (NK); i++) {                                                       \
                v[i] *= scale;                                                                     \
                sc[h * n + j + i] = v[i];                                                          \
                maxs[h] = v[i] >= maxs[h] ? v[i] : maxs[h];                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    for (; j + 4 <= n; j += 4) GROUP_KEYS(4);
    for (; j < n; j++) GROUP_KEYS(1);
#undef GROUP_KEYS
    for (int h = 0; h < G; h++) softmax_tail(sc + h * n, n, maxs[h]);
    // The values' weighted sums, 64 elements of every head at a time.
    for (size_t k0 = 0; k0 < hd; k0 += 64) {
        __m512 o[4][4];
        for (int h = 0; h < G; h++) for (int i = 0; i < 4; i++) o[h][i] = _mm512_setzero_ps();
        for (j = 0; j < n; j++) {
            const char *v = values + j * rs + k0 * es;
            for (size_t l = 0; l < 64 * es; l += 64) _mm_prefetch(v + GK_ATT_AHEAD * rs + l, _MM_HINT_T0);
            for (; k0 == 0 && pv < nl * (j + 1) / n; pv++) _mm_prefetch(nv + 64 * pv, _MM_HINT_T2);
            __m512 vv[4];
            for (int i = 0; i < 4; i++) vv[i] = ld512(t, v + 16 * i * es, 0, 0);
            for (int h = 0; h < G; h++) {
                __m512 w = _mm512_set1_ps(sc[h * n + j]);
                for (int i = 0; i < 4; i++) o[h][i] = _mm512_fmadd_ps(w, vv[i], o[h][i]);
            }
        }
        for (int h = 0; h < G; h++) for (int i = 0; i < 4; i++) _mm512_storeu_ps(out + h * hd + k0 + 16 * i, o[h][i]);
    }
}

#define ATTEND_GROUP(NAME, DT)                                                                      \
    T512 static void NAME(int G, float *out, const float *q, const void *keys, const void *values, size_t stride, \
                          size_t n, size_t hd, float scale, float *sc, const char *nk, const char *nv, size_t nb) { \
        switch (G) {                                                                                 \
        case 4: attend_group512(DT, 4, out, q, keys, values, stride, n, hd, scale, sc, nk, nv, nb); break; \
        case 3: attend_group512(DT, 3, out, q, keys, values, stride, n, hd, scale, sc, nk, nv, nb); break; \
        case 2: attend_group512(DT, 2, out, q, keys, values, stride, n, hd, scale, sc, nk, nv, nb); break; \
        default: attend_group512(DT, 1, out, q, keys, values, stride, n, hd, scale, sc, nk, nv, nb); break; \
        }                                                                                            \
    }
ATTEND_GROUP(attend_group512_f32, GK_F32)
ATTEND_GROUP(attend_group512_bf16, GK_BF16)
#undef ATTEND_GROUP

static void attend_scalar(float *out, const float *q, const float *keys, const float *values, size_t stride,
               size_t n, size_t hd, float scale, float *scores) {
    float maxs = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        scores[j] = gk_dot(q, keys + j * stride, hd) * scale;
        maxs = scores[j] >= maxs ? scores[j] : maxs;
    }
    float sum = 0;
    for (size_t j = 0; j < n; j++) {
        float e = expf(scores[j] - maxs);
        scores[j] = e;
        sum += e;
    }
    for (size_t j = 0; j < n; j++) scores[j] /= sum;
    for (size_t i = 0; i < hd; i++) out[i] = 0;
    for (size_t j = 0; j < n; j++) gk_axpy(out, scores[j], values + j * stride, hd);
}

void gk_attend(float *out, const float *q, const float *keys, const float *values, size_t stride,
               size_t n, size_t hd, float scale, float *scores) {
    int l = level();
    if (l >= GK_LEVEL_AVX512) { attend512(out, q, keys, values, stride, n, hd, scale, scores); return; }
    if (l >= GK_LEVEL_AVX2) { attend256(out, q, keys, values, stride, n, hd, scale, scores); return; }
    attend_scalar(out, q, keys, values, stride, n, hd, scale, scores);
}

void gk_attend_bf16(float *out, const float *q, const uint16_t *keys, const uint16_t *values, size_t stride,
                    size_t n, size_t hd, float scale, float *scores) {
    int l = level();
    if (l >= GK_LEVEL_AVX512) { attend512_bf16(out, q, keys, values, stride, n, hd, scale, scores); return; }
    if (l >= GK_LEVEL_AVX2) { attend256_bf16(out, q, keys, values, stride, n, hd, scale, scores); return; }
    // No AVX2: the scalar path over widened copies (the same operations on the same values).
    float *kw = malloc(2 * (n ? n : 1) * hd * sizeof(float));
    if (!kw) abort();
    float *vw = kw + n * hd;
    for (size_t j = 0; j < n; j++) {
        gk_widen(GK_BF16, kw + j * hd, keys + j * stride, hd);
        gk_widen(GK_BF16, vw + j * hd, values + j * stride, hd);
    }
    attend_scalar(out, q, kw, vw, hd, n, hd, scale, scores);
    free(kw);
}

// g heads at a time through attend_group512 (groups of at most 4) where the kernels are AVX-512
// and hd a multiple of 64, else one head at a time: the same bits either way.
static void attend_group(gk_dtype t, float *out, const float *q, size_t g, const void *keys, const void *values,
                         size_t stride, size_t n, size_t hd, float scale, float *scores, const void *next_keys,
                         const void *next_values, size_t next_bytes) {
    if (level() >= GK_LEVEL_AVX512 && hd % 64 == 0 && n > 0) {
        for (size_t h = 0; h < g; h += 4) {
            const int G = g - h < 4 ? (int)(g - h) : 4;
            // The next job's rows, a share per pass.
            const size_t passes = (g + 3) / 4, p = h / 4, b0 = next_bytes * p / passes, b1 = next_bytes * (p + 1) / passes;
            const char *nk = next_keys ? (const char *)next_keys + b0 : NULL, *nv = next_values ? (const char *)next_values + b0 : NULL;
            if (t == GK_BF16) attend_group512_bf16(G, out + h * hd, q + h * hd, keys, values, stride, n, hd, scale, scores + h * n, nk, nv, b1 - b0);
            else attend_group512_f32(G, out + h * hd, q + h * hd, keys, values, stride, n, hd, scale, scores + h * n, nk, nv, b1 - b0);
        }
        return;
    }
    for (size_t h = 0; h < g; h++) {
        if (t == GK_BF16)
            gk_attend_bf16(out + h * hd, q + h * hd, keys, values, stride, n, hd, scale, scores + h * n);
        else
            gk_attend(out + h * hd, q + h * hd, keys, values, stride, n, hd, scale, scores + h * n);
    }
}

void gk_attend_group(float *out, const float *q, size_t g, const float *keys, const float *values, size_t stride,
                     size_t n, size_t hd, float scale, float *scores, const void *next_keys, const void *next_values,
                     size_t next_bytes) {
    attend_group(GK_F32, out, q, g, keys, values, stride, n, hd, scale, scores, next_keys, next_values, next_bytes);
}

void gk_attend_group_bf16(float *out, const float *q, size_t g, const uint16_t *keys, const uint16_t *values,
                          size_t stride, size_t n, size_t hd, float scale, float *scores, const void *next_keys,
                          const void *next_values, size_t next_bytes) {
    attend_group(GK_BF16, out, q, g, keys, values, stride, n, hd, scale, scores, next_keys, next_values, next_bytes);
}
