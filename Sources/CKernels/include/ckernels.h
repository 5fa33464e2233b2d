#pragma once
#include <stddef.h>
#include <stdint.h>

/// CPU features that select kernels at run time (never at build time: the next machine differs).
typedef struct {
    int avx2_fma;
    int avx512f;
    int avx512bf16;
    int f16c;
} gk_cpu_features;

gk_cpu_features gk_detect_cpu(void);
/// Name of the kernel family chosen for this CPU ("avx512", "avx2", "scalar").
const char *gk_kernel_name(void);
/// Force a kernel family on the calling thread ("avx512", "avx2", "scalar"; NULL = back to the
/// detected one). Returns 0 when the CPU lacks it. For tests and benchmarks that compare paths;
/// other threads are unaffected (pass `gk_current_level()` to `gk_matmul_at` on workers).
int gk_force_kernels(const char *name);
/// Kernel levels, as gk_current_level returns them and gk_matmul_at takes them.
enum { GK_LEVEL_SCALAR = 0, GK_LEVEL_AVX2 = 1, GK_LEVEL_AVX512 = 2 };
/// The kernel level the calling thread uses (its override, or the detected one).
int gk_current_level(void);

/// Weight element types understood by the matmul kernels.
typedef enum { GK_F32 = 0, GK_BF16 = 1, GK_F16 = 2 } gk_dtype;

/// out[t*ldo + r] = Σ_k x[t*ldx + k] · W[r*cols + k]   for t < n, r0 ≤ r < r1.
/// W (rows, cols) row-major in its stored dtype, widened to f32 in registers; x, out f32.
/// Batch invariance: every output element is reduced in the same order whatever n, r0, r1
/// (lane-wise FMA over k in fixed chunks, then one fixed horizontal sum), so a row of x gives
/// bit-identical outputs alone or in any batch. W may be unaligned.
void gk_matmul(gk_dtype dtype, float *out, size_t ldo, const float *x, size_t ldx,
               const void *w, size_t cols, size_t n, size_t r0, size_t r1);

/// gk_matmul at an explicit kernel level (from gk_current_level on the submitting thread).
void gk_matmul_at(int level, gk_dtype dtype, float *out, size_t ldo, const float *x, size_t ldx,
                  const void *w, size_t cols, size_t n, size_t r0, size_t r1);

/// gk_matmul_at, told that the next product on this thread reads `next_bytes` from `next` (the
/// rows of the next weight matrix this thread will take): the strip paths (5 tokens and more)
/// request the first of those lines into L2 during their last strip, as they do each next strip
/// of this matrix, so the next product does not start on a cold stream. A hint only: nothing is
/// read through it, results are those of gk_matmul_at, and a wrong or NULL `next` costs at most
/// the prefetched lines.
void gk_matmul_next(int level, gk_dtype dtype, float *out, size_t ldo, const float *x, size_t ldx,
                    const void *w, size_t cols, size_t n, size_t r0, size_t r1, const void *next, size_t next_bytes);

/// bf16 activations: out[t*ldo + r] = Σ_k x[t*ldx + k] · W[r*cols + k] for t < n, r0 ≤ r < r1,
/// with W bf16 and x already rounded to bf16 (gk_round_bf16), in the order of AVX-512 BF16's
/// dot-product instruction (matmul.c, "bf16 activations"): with it where the CPU has it, else
/// emulated bit for bit (AVX-512, or scalar code below that), so every path, batch size and
/// thread split gives the same bits. `path`: gk_bf16x_path on the submitting thread (workers take
/// the same); `next`, `next_bytes`: as gk_matmul_next.
void gk_matmul_bf16x(int path, float *out, size_t ldo, const uint16_t *x, size_t ldx, const void *w, size_t cols,
                     size_t n, size_t r0, size_t r1, const void *next, size_t next_bytes);
/// How gk_matmul_bf16x computes at a kernel level on the calling thread (its emulation override
/// included).
enum { GK_BF16X_SCALAR = 0, GK_BF16X_AVX512 = 1, GK_BF16X_DPBF16 = 2 };
int gk_bf16x_path(int level);
/// Tests: the calling thread emulates the dot-product instruction even where the CPU has it
/// (on != 0) or goes back to it (0).
int gk_force_bf16x_emulation(int on);

/// dst[i] = (float)src[i] for i < n (embedding rows, norms).
void gk_widen(gk_dtype dtype, float *dst, const void *src, size_t n);

/// dst[i] = src[i] rounded to bfloat16, to nearest with ties to even (PyTorch's rounding);
/// overflow gives ±inf, NaN stays NaN.
void gk_round_bf16(uint16_t *dst, const float *src, size_t n);

/// out = x / sqrt(mean(x²) + eps) ⊙ weight   (Llama RMSNorm; weight in its stored dtype).
void gk_rmsnorm(float *out, const float *x, const void *weight, gk_dtype wdtype, size_t n, float eps);

/// Dot product of two f32 vectors, fixed reduction order.
float gk_dot(const float *a, const float *b, size_t n);

/// y += a · x
void gk_axpy(float *y, float a, const float *x, size_t n);
/// Asks for bytes [p, p + n) to be brought into L2 (software prefetch of each line; a hint only,
/// nothing is read through it).
void gk_prefetch_l2(const void *p, size_t n);

/// RoPE (rotate_half) in place on nheads heads of hd floats: (a, b) = (p[i], p[i + hd/2]) →
/// (a·cos_i − b·sin_i, b·cos_i + a·sin_i), products and sums rounded separately.
void gk_rope(float *p, size_t nheads, size_t hd, const float *cs, const float *sn);

/// gate[i] = silu(gate[i]) · up[i]   (SwiGLU; in PyTorch: act_fn(gate_proj(x)) * up_proj(x)).
void gk_swiglu(float *gate, const float *up, size_t n);

/// Reads n bytes (a multiple of 64) with the widest loads this CPU has and returns a checksum
/// (so the reads cannot be optimised away): the memory-bandwidth probe of the benchmarks.
float gk_read_bytes(const void *p, size_t n);
/// The same read as `streams` equal parts in lockstep (at most 8), each prefetching `prefetch`
/// bytes ahead (0: none); AVX-512 only, else gk_read_bytes. Bytes read: n rounded down to a
/// multiple of 256·streams.
float gk_read_bytes_streams(const void *p, size_t n, int streams, size_t prefetch);

/// GFLOP/s of an FMA-only loop (12 independent chains, nothing else: the core's f32 FMA rate) on
/// the calling thread, at its kernel level's width (zmm for AVX-512, ymm for AVX2); 0 for the
/// scalar kernels. About 0.05 s. The compute reference of batched decode in the benchmarks.
double gk_fma_rate(void);
/// GFLOP/s of the same loop on AVX-512 BF16's dot-product instruction (4 FLOP per lane: two
/// multiply-adds) where gk_matmul_bf16x uses it on this thread, else 0: the compute reference of
/// batched decode with bf16 activations.
double gk_dpbf16_rate(void);

/// The host's worker pool (the caller plus threads-1 workers). Not reentrant: one task at a
/// time per pool, submitted from one thread.
typedef struct gk_pool gk_pool;
typedef void (*gk_task_fn)(void *ctx, int chunk);
gk_pool *gk_pool_create(int threads);
void gk_pool_destroy(gk_pool *pool);
int gk_pool_threads(const gk_pool *pool);
/// Runs fn(ctx, c) for c in [0, chunks) across the pool; returns when all have run.
void gk_pool_run(gk_pool *pool, gk_task_fn fn, void *ctx, int chunks);
/// Whether the calling thread is running a pool chunk (nested loops then run serially).
int gk_pool_in_task(void);

/// Causal attention of one query head: scores[j] = (q·k_j)·scale for j < n (k_j = keys + j·stride,
/// each dot as gk_dot), softmax with the max subtracted (expf, sum in order), then
/// out[hd] = Σ_j (e_j / sum)·v_j accumulated over j in order with fused multiply-adds (as
/// gk_axpy). `scores` (n floats) holds the attention weights e_j / sum on return. Depends only
/// on this query and its sequence's cache.
void gk_attend(float *out, const float *q, const float *keys, const float *values, size_t stride,
               size_t n, size_t hd, float scale, float *scores);

/// gk_attend for g query heads sharing one key/value head (grouped-query attention): head h's
/// query at q + h·hd, its output at out + h·hd and its weights at scores + h·n; each head's
/// results are gk_attend's bit for bit, with each key and value row read once for up to 4 heads.
/// `next_keys`, `next_values` (NULL: none): next_bytes of each the caller reads next (the next
/// job's cache rows), requested into L2 over the keys' and values' loops; a hint only.
void gk_attend_group(float *out, const float *q, size_t g, const float *keys, const float *values, size_t stride,
                     size_t n, size_t hd, float scale, float *scores, const void *next_keys, const void *next_values,
                     size_t next_bytes);
/// gk_attend_group over a bf16 cache (as gk_attend_bf16).
void gk_attend_group_bf16(float *out, const float *q, size_t g, const uint16_t *keys, const uint16_t *values,
                          size_t stride, size_t n, size_t hd, float scale, float *scores, const void *next_keys,
                          const void *next_values, size_t next_bytes);

/// gk_attend over a bf16 cache: keys and values bf16, widened exactly in registers; the result
/// is gk_attend's over f32 rows holding the widened values, bit for bit.
void gk_attend_bf16(float *out, const float *q, const uint16_t *keys, const uint16_t *values, size_t stride,
                    size_t n, size_t hd, float scale, float *scores);
