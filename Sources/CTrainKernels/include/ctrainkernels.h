#pragma once
#include <stddef.h>
#include <stdint.h>

// Training kernels (issue 7), in the spirit of llm.c: each forward kernel has a backward one
// that reads the forward in reverse. Row-major, f32, output first, no allocation. Compiled
// with -O3 even in debug builds (so tests stay fast); the SIMD path is chosen at run time.

/// out[r] = x[r] · rstd[r] ⊙ w,  rstd[r] = 1/sqrt(mean(x[r]²) + eps)   for r < rows (x, out: [rows, d]).
/// In PyTorch: LlamaRMSNorm in f32.
void tk_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                        size_t rows, size_t d, float eps);

/// dx[r] += rstd·(dout⊙w) − rstd³/d · x · Σ(dout⊙w⊙x);  dw += Σ_r dout⊙x·rstd  (dw may be NULL).
void tk_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *rstd, size_t rows, size_t d);

/// RoPE (rotate_half) in place on heads of size hd at row stride ld: row r uses
/// cos/sin tables at pos[r] (table row stride hd/2). inverse = 1 rotates by −θ (the backward).
void tk_rope(float *x, size_t rows, size_t ld, size_t heads, size_t hd, const int32_t *pos,
             const float *cos_table, const float *sin_table, int inverse);

/// m = silu(g) ⊙ u  (n elements)
void tk_swiglu_forward(float *m, const float *g, const float *u, size_t n);
/// dg = dm ⊙ u ⊙ silu'(g),  du = dm ⊙ silu(g)
void tk_swiglu_backward(float *dg, float *du, const float *dm, const float *g, const float *u, size_t n);

/// Row-wise causal softmax in place on s [t, t] (row stride ld): s[i][j] = softmax_j≤i(scale·s[i][j]),
/// zero for j > i.
void tk_causal_softmax(float *s, size_t t, size_t ld, float scale);
/// ds[i][j] = p[i][j]·(dp[i][j] − Σ_k p[i][k]·dp[i][k]) · scale, in place over dp (causal rows).
void tk_softmax_backward(float *dp, const float *p, size_t t, size_t ld, float scale);

/// out[r][c] += b[c]
void tk_add_bias(float *out, const float *b, size_t rows, size_t n);
/// db[c] += Σ_r dy[r][c]
void tk_bias_grad(float *db, const float *dy, size_t rows, size_t n);

/// Cross-entropy over rows of logits [n, vocab] (in place: becomes ∂loss/∂logits).
/// Row r contributes weight[r] · (logsumexp − logit[target]); rows with weight 0 get a zero
/// gradient. Returns Σ_r weight[r]·loss_r (in double).
double tk_cross_entropy(float *logits, size_t n, size_t vocab, const int32_t *target, const float *weight);

/// Distillation rows. s: student logits [n, vocab] (in place: becomes ∂loss/∂s); t: teacher
/// logits. Both divided by temperature first. mode 0: forward KL(p_T ‖ p_S); mode 1: reverse
/// KL(p_S ‖ p_T); mode 2: generalized JSD with β (TRL's generalized_jsd_loss:
/// m = (1−β)p_S + βp_T, β·KL(p_T‖m) + (1−β)·KL(p_S‖m)). Returns Σ_r weight[r]·loss_r.
double tk_distill(float *s, const float *t, size_t n, size_t vocab, const float *weight,
                  int mode, float beta, float temperature);

/// AdamW as torch.optim.AdamW's single-tensor path: p ·= 1 − lr·wd; m = lerp(m, g, 1 − β1);
/// v = β2·v + (1 − β2)·g²; p −= step_size · m / (sqrt(v)/bc2_sqrt + eps),
/// step_size = lr/(1 − β1ᵗ), bc2_sqrt = sqrt(1 − β2ᵗ) (computed in double by the caller).
void tk_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
              float beta2, float eps, float weight_decay, float step_size, float bc2_sqrt);

/// tk_adamw on g · grad_scale (gradient clipping fused into the update: the same float
/// product torch's clip_grad_norm_ writes back before its step).
void tk_adamw_scaled(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, float step_size, float bc2_sqrt,
                     float grad_scale);

/// Σ g² in double.
double tk_sum_squares(const float *g, size_t n);
/// acc[i] += |theta[i] · g[i]|  (Seeking's sensitivity).
void tk_accumulate_sensitivity(float *acc, const float *theta, const float *g, size_t n);

/// Name of the SIMD path chosen at run time ("avx2" or "generic").
const char *tk_kernel_name(void);
