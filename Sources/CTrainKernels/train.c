#include "ctrainkernels.h"
#include <math.h>
#include <string.h>

// Hot elementwise loops are written once as always-inline bodies and instantiated twice: a
// generic build and an AVX2+FMA build (per-function target attribute), picked at run time
// from CPUID, so the binary runs on any x86-64 (never -march for the whole build).

#if defined(__x86_64__)
#define TK_HAVE_AVX2_CLONES 1
#define TK_AVX2 __attribute__((target("avx2,fma")))
#else
#define TK_HAVE_AVX2_CLONES 0
#define TK_AVX2
#endif
#define TK_INLINE static inline __attribute__((always_inline))

static int tk_use_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
#if TK_HAVE_AVX2_CLONES
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        cached = 0;
#endif
    }
    return cached;
}

const char *tk_kernel_name(void) { return tk_use_avx2() ? "avx2" : "generic"; }

// ---- RMSNorm -------------------------------------------------------------------------------

TK_INLINE void rmsnorm_forward_body(float *out, float *rstd, const float *x, const float *w,
                                    size_t rows, size_t d, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *o = out + r * d;
        float ss = 0;
        for (size_t i = 0; i < d; i++) ss += xr[i] * xr[i];
        float s = 1.0f / sqrtf(ss / (float)d + eps);
        rstd[r] = s;
        for (size_t i = 0; i < d; i++) o[i] = w[i] * (xr[i] * s);
    }
}
TK_AVX2 static void rmsnorm_forward_avx2(float *out, float *rstd, const float *x, const float *w,
                                         size_t rows, size_t d, float eps) {
    rmsnorm_forward_body(out, rstd, x, w, rows, d, eps);
}
static void rmsnorm_forward_generic(float *out, float *rstd, const float *x, const float *w,
                                    size_t rows, size_t d, float eps) {
    rmsnorm_forward_body(out, rstd, x, w, rows, d, eps);
}
void tk_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                        size_t rows, size_t d, float eps) {
    if (tk_use_avx2()) rmsnorm_forward_avx2(out, rstd, x, w, rows, d, eps);
    else rmsnorm_forward_generic(out, rstd, x, w, rows, d, eps);
}

TK_INLINE void rmsnorm_backward_body(float *dx, float *dw, const float *dout, const float *x,
                                     const float *w, const float *rstd, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *dr = dout + r * d;
        float *dxr = dx + r * d;
        float s = rstd[r];
        float dot = 0;
        for (size_t i = 0; i < d; i++) dot += dr[i] * w[i] * xr[i];
        float c = s * s * s * dot / (float)d;
        for (size_t i = 0; i < d; i++) dxr[i] += s * dr[i] * w[i] - c * xr[i];
        if (dw) for (size_t i = 0; i < d; i++) dw[i] += dr[i] * xr[i] * s;
    }
}
TK_AVX2 static void rmsnorm_backward_avx2(float *dx, float *dw, const float *dout, const float *x,
                                          const float *w, const float *rstd, size_t rows, size_t d) {
    rmsnorm_backward_body(dx, dw, dout, x, w, rstd, rows, d);
}
static void rmsnorm_backward_generic(float *dx, float *dw, const float *dout, const float *x,
                                     const float *w, const float *rstd, size_t rows, size_t d) {
    rmsnorm_backward_body(dx, dw, dout, x, w, rstd, rows, d);
}
void tk_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *rstd, size_t rows, size_t d) {
    if (tk_use_avx2()) rmsnorm_backward_avx2(dx, dw, dout, x, w, rstd, rows, d);
    else rmsnorm_backward_generic(dx, dw, dout, x, w, rstd, rows, d);
}

// ---- RoPE ----------------------------------------------------------------------------------

void tk_rope(float *x, size_t rows, size_t ld, size_t heads, size_t hd, const int32_t *pos,
             const float *cos_table, const float *sin_table, int inverse) {
    size_t half = hd / 2;
    float sign = inverse ? -1.0f : 1.0f;
    for (size_t r = 0; r < rows; r++) {
        const float *cs = cos_table + (size_t)pos[r] * half;
        const float *sn = sin_table + (size_t)pos[r] * half;
        for (size_t h = 0; h < heads; h++) {
            float *p = x + r * ld + h * hd;
            for (size_t i = 0; i < half; i++) {
                float a = p[i], b = p[i + half], s = sign * sn[i];
                p[i] = a * cs[i] - b * s;
                p[i + half] = b * cs[i] + a * s;
            }
        }
    }
}

// ---- SwiGLU --------------------------------------------------------------------------------

void tk_swiglu_forward(float *m, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] = gi / (1.0f + expf(-gi)) * u[i];
    }
}

void tk_swiglu_backward(float *dg, float *du, const float *dm, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float sig = 1.0f / (1.0f + expf(-gi));
        float silu = gi * sig;
        du[i] = dm[i] * silu;
        dg[i] = dm[i] * u[i] * sig * (1.0f + gi * (1.0f - sig));
    }
}

// ---- Attention softmax ---------------------------------------------------------------------

void tk_causal_softmax(float *s, size_t t, size_t ld, float scale) {
    for (size_t i = 0; i < t; i++) {
        float *row = s + i * ld;
        float mx = -INFINITY;
        for (size_t j = 0; j <= i; j++) {
            row[j] *= scale;
            if (row[j] > mx) mx = row[j];
        }
        float sum = 0;
        for (size_t j = 0; j <= i; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (size_t j = 0; j <= i; j++) row[j] *= inv;
        for (size_t j = i + 1; j < t; j++) row[j] = 0;
    }
}

void tk_softmax_backward(float *dp, const float *p, size_t t, size_t ld, float scale) {
    for (size_t i = 0; i < t; i++) {
        float *d = dp + i * ld;
        const float *pr = p + i * ld;
        float dot = 0;
        for (size_t j = 0; j <= i; j++) dot += pr[j] * d[j];
        for (size_t j = 0; j <= i; j++) d[j] = pr[j] * (d[j] - dot) * scale;
        for (size_t j = i + 1; j < t; j++) d[j] = 0;
    }
}

// ---- Biases --------------------------------------------------------------------------------

void tk_add_bias(float *out, const float *b, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < n; c++) out[r * n + c] += b[c];
}

void tk_bias_grad(float *db, const float *dy, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < n; c++) db[c] += dy[r * n + c];
}

// ---- Losses --------------------------------------------------------------------------------

double tk_cross_entropy(float *logits, size_t n, size_t vocab, const int32_t *target, const float *weight) {
    double total = 0;
    for (size_t r = 0; r < n; r++) {
        float *z = logits + r * vocab;
        float w = weight[r];
        if (w == 0) {
            memset(z, 0, vocab * sizeof(float));
            continue;
        }
        float mx = -INFINITY;
        for (size_t i = 0; i < vocab; i++) if (z[i] > mx) mx = z[i];
        double sum = 0;
        for (size_t i = 0; i < vocab; i++) sum += exp((double)(z[i] - mx));
        double lse = (double)mx + log(sum);
        total += (double)w * (lse - (double)z[target[r]]);
        for (size_t i = 0; i < vocab; i++) z[i] = (float)(exp((double)z[i] - lse)) * w;
        z[target[r]] -= w;
    }
    return total;
}

double tk_distill(float *s, const float *t, size_t n, size_t vocab, const float *weight,
                  int mode, float beta, float temperature) {
    double total = 0;
    // Two rows of double scratch on the stack would overflow for 152k vocabularies: recompute
    // instead, one pass for each quantity (the row lives in cache).
    for (size_t r = 0; r < n; r++) {
        float *z = s + r * vocab;
        const float *y = t + r * vocab;
        double w = weight[r];
        if (w == 0) {
            memset(z, 0, vocab * sizeof(float));
            continue;
        }
        // log-sum-exps of student and teacher at this temperature.
        double ms = -INFINITY, mt = -INFINITY;
        for (size_t i = 0; i < vocab; i++) {
            double a = (double)z[i] / temperature, b = (double)y[i] / temperature;
            if (a > ms) ms = a;
            if (b > mt) mt = b;
        }
        double ss = 0, st = 0;
        for (size_t i = 0; i < vocab; i++) {
            ss += exp((double)z[i] / temperature - ms);
            st += exp((double)y[i] / temperature - mt);
        }
        double lses = ms + log(ss), lset = mt + log(st);
        // g_i = ∂loss/∂p_i (up to a constant that the softmax Jacobian cancels); then
        // ∂loss/∂z_j = p_j (g_j − Σ p_i g_i) / T.
        double loss = 0, pg = 0;
        double lb = log((double)beta), l1b = log(1.0 - (double)beta);
        for (size_t i = 0; i < vocab; i++) {
            double ls = (double)z[i] / temperature - lses, lt = (double)y[i] / temperature - lset;
            double ps = exp(ls), pt = exp(lt), g;
            if (mode == 0) {            // KL(p_T ‖ p_S): ∂/∂z = p_S − p_T directly
                loss += pt * (lt - ls);
                g = 0;
            } else if (mode == 1) {     // KL(p_S ‖ p_T)
                loss += ps * (ls - lt);
                g = ls - lt;
            } else {                    // generalized JSD
                double a = ls + l1b, b = lt + lb;
                double lm = (a > b ? a : b) + log1p(exp(-fabs(a - b)));
                loss += (double)beta * pt * (lt - lm) + (1.0 - (double)beta) * ps * (ls - lm);
                g = (1.0 - (double)beta) * (ls - lm);
            }
            pg += ps * g;
        }
        total += w * loss;
        for (size_t i = 0; i < vocab; i++) {
            double ls = (double)z[i] / temperature - lses;
            double ps = exp(ls), grad;
            if (mode == 0) {
                double pt = exp((double)y[i] / temperature - lset);
                grad = ps - pt;
            } else if (mode == 1) {
                double lt = (double)y[i] / temperature - lset;
                grad = ps * ((ls - lt) - pg);
            } else {
                double lt = (double)y[i] / temperature - lset;
                double a = ls + l1b, b = lt + lb;
                double lm = (a > b ? a : b) + log1p(exp(-fabs(a - b)));
                grad = ps * ((1.0 - (double)beta) * (ls - lm) - pg);
            }
            z[i] = (float)(w * grad / temperature);
        }
    }
    return total;
}

// ---- Optimizer -----------------------------------------------------------------------------

TK_INLINE void adamw_body(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float step_size, float bc2_sqrt,
                          float gscale) {
    float decay = 1.0f - lr * wd;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        p[i] *= decay;
        m[i] += (1.0f - beta1) * (gi - m[i]);
        v[i] = v[i] * beta2 + (1.0f - beta2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] += -step_size * (m[i] / denom);
    }
}
TK_AVX2 static void adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, float lr,
                               float beta1, float beta2, float eps, float wd, float step_size, float bc2_sqrt,
                               float gscale) {
    adamw_body(p, g, m, v, n, lr, beta1, beta2, eps, wd, step_size, bc2_sqrt, gscale);
}
static void adamw_generic(float *p, const float *g, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float step_size, float bc2_sqrt,
                          float gscale) {
    adamw_body(p, g, m, v, n, lr, beta1, beta2, eps, wd, step_size, bc2_sqrt, gscale);
}
void tk_adamw_scaled(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, float step_size, float bc2_sqrt,
                     float grad_scale) {
    if (tk_use_avx2()) adamw_avx2(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, grad_scale);
    else adamw_generic(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, grad_scale);
}
void tk_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
              float beta2, float eps, float weight_decay, float step_size, float bc2_sqrt) {
    tk_adamw_scaled(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, 1.0f);
}

// Σ g² in double: four double lanes (a fixed order for a given n), converted from float.
TK_INLINE double sum_squares_body(const float *g, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    }
    for (; i < n; i++) acc[0] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}
TK_AVX2 static double sum_squares_avx2(const float *g, size_t n) { return sum_squares_body(g, n); }
static double sum_squares_generic(const float *g, size_t n) { return sum_squares_body(g, n); }
double tk_sum_squares(const float *g, size_t n) {
    return tk_use_avx2() ? sum_squares_avx2(g, n) : sum_squares_generic(g, n);
}

void tk_accumulate_sensitivity(float *acc, const float *theta, const float *g, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i] += fabsf(theta[i] * g[i]);
}
