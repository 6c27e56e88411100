// test_ops.c — the elementwise / row-wise ops and the LM head: linear, RMSNorm, gated RMSNorm, SwiGLU,
// causal conv1d + SiLU (and its decoding step), embedding, fused LM head + cross-entropy, and the
// shared activations. Every backward is checked against central finite differences of a scalar loss
// L = Σ r ⊙ out (random r, accumulated in double), and forwards against naive double references.
// Attention and RoPE are in test_ops_attention.c.
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "activations.h"
#include "common.h"
#include "conv.h"
#include "linear.h"
#include "lm_head.h"
#include "norm.h"
#include "ssd_chunk.h"
#include "swiglu.h"
#include "testutil.h"


// ---------------------------------------------------------------------------------------------------
// activations

START_TEST(test_activations) {
    // silu' and softplus' against double central differences of the float functions' definitions.
    double worst = 0;
    for (int i = -60; i <= 60; i++) {
        float x = 0.25f * (float)i;
        double h = 1e-3;
        double ds = (x + h) / (1 + exp(-(x + h))) - (x - h) / (1 + exp(-(x - h)));
        double e1 = fabs(act_silu_grad(x) - ds / (2 * h));
        double sp = log1p(exp(x + h)) - log1p(exp(x - h));
        double e2 = fabs(act_softplus_grad(x) - sp / (2 * h));
        worst = fmax(worst, fmax(e1, e2));
    }
    printf("  activations: max |analytic - FD| derivative error %.2e\n", worst);
    ck_assert_msg(worst < 1e-5, "activation derivative error %.3e", worst);
    // PyTorch's threshold: identity above 20, and no inf/NaN at the extremes.
    ck_assert(act_softplus(25.0f) == 25.0f && act_softplus_grad(25.0f) == 1.0f);
    ck_assert(fabsf(act_softplus(20.0f) - 20.0f) < 1e-6f);
    ck_assert(act_sigmoid(-200.0f) == 0.0f && act_sigmoid(200.0f) == 1.0f);
    ck_assert(act_silu(-200.0f) == 0.0f && act_silu_grad(-200.0f) == 0.0f);
    ck_assert(act_softplus(-200.0f) >= 0.0f && act_softplus(-200.0f) < 1e-30f);
    ck_assert(isfinite(act_silu_grad(100.0f)) && fabsf(act_silu_grad(100.0f) - 1.0f) < 1e-6f);
}
END_TEST

// The vectorised exp: ulp error against double exp over the normal range, IEEE edge cases, and the
// array helpers (tails of every length) against the scalar version.
START_TEST(test_expf) {
    const int n = 200000;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = -87.3f + (88.72f + 87.3f) * (float)i / (float)n;
    act_exp_shift(y, x, n, 0.0f);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = exp((double)x[i]);
        double ulp = nextafterf((float)e, INFINITY) - (float)e;
        worst = fmax(worst, fabs(y[i] - e) / ulp);
    }
    printf("  act_expf: max error %.2f ulp over [-87.3, 88.72]\n", worst);
    ck_assert_msg(worst < 2.0, "act_expf error %.2f ulp", worst);
    ck_assert(isnan(act_expf(NAN)));
    ck_assert(act_expf(INFINITY) == INFINITY && act_expf(89.0f) == INFINITY);
    ck_assert(act_expf(-INFINITY) == 0.0f && act_expf(-100.0f) == 0.0f);
    ck_assert(act_expf(0.0f) == 1.0f && isfinite(act_expf(88.72f)));
    // The scans' scalar exp is the same polynomial: bit for bit act_expf of its clamped argument.
    for (int i = 0; i <= n; i++) {
        const float xs = -90.0f + 91.0f * (float)i / (float)n;
        const float xc = xs > 0.0f ? 0.0f : xs < -87.3f ? -87.3f : xs;
        const float a = scan_exp(xs), b = act_expf(xc);
        ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "scan_exp(%.9g) = %.9g, act_expf = %.9g", xs, a, b);
    }
    // Array versions: every length 0..20 (vector body + tail), in place, sum and max.
    float buf[20], ref[20];
    uint64_t rng = 5;
    for (int len = 0; len <= 20; len++) {
        tu_fill_randn(buf, 20, 3.0f, &rng);
        double rsum = 0;
        float rmax = -INFINITY;
        for (int i = 0; i < len; i++) {
            ref[i] = act_expf(buf[i] - 0.5f);
            rsum += ref[i];
            rmax = fmaxf(rmax, buf[i]);
        }
        ck_assert(act_max(buf, len) == rmax);
        float s = act_exp_shift_sum(buf, buf, len, 0.5f);
        ck_assert(fabs(s - rsum) <= 1e-6 * (1 + rsum));
        ck_assert(memcmp(buf, ref, (size_t)len * sizeof(float)) == 0);
    }
    buf[3] = NAN;  // a NaN is skipped by the max but poisons the sum
    ck_assert(!isnan(act_max(buf, 20)));
    ck_assert(isnan(act_exp_shift_sum(buf, buf, 20, 0.0f)));
    free(x);
    free(y);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// linear

typedef struct {
    float *out, *inp, *W, *bias, *r;
    int64_t N;
    int IC, OC;
} LinCtx;

static double lin_loss(void *p) {
    LinCtx *c = p;
    linear_forward(c->out, c->inp, c->W, c->bias, c->N, c->IC, c->OC);
    return tu_dot_rd(c->r, c->out, (size_t)c->N * c->OC);
}

START_TEST(test_linear) {
    uint64_t rng = 11;
    const int64_t N = 23;
    const int IC = 17, OC = 13;
    LinCtx c = {tu_zeros(N * OC), tu_randn_buf(N * IC, 1, &rng), tu_randn_buf((size_t)OC * IC, 0.5f, &rng),
                tu_randn_buf(OC, 1, &rng), tu_randn_buf(N * OC, 1, &rng), N, IC, OC};
    // Forward vs naive double, with and without bias.
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        float *bias = with_bias ? c.bias : NULL;
        linear_forward(c.out, c.inp, c.W, bias, N, IC, OC);
        float *ref = tu_zeros(N * OC);
        for (int64_t n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double s = bias ? bias[o] : 0.0;
                for (int i = 0; i < IC; i++) s += (double)c.inp[n * IC + i] * c.W[o * IC + i];
                ref[n * OC + o] = (float)s;
            }
        double v = tu_max_violation(c.out, ref, N * OC, 1e-5, 1e-5);
        printf("  linear forward (bias=%d) max violation %.2e\n", with_bias, v);
        ck_assert_msg(v <= 1, "linear forward mismatch %.3e", v);
        free(ref);
    }
    // Backward: grads start from a non-zero value to check accumulation (+=).
    float *dinp = tu_zeros(N * IC), *dW = tu_zeros((size_t)OC * IC), *db = tu_zeros(OC);
    for (int64_t i = 0; i < N * IC; i++) dinp[i] = 1.0f;
    for (int i = 0; i < OC * IC; i++) dW[i] = 1.0f;
    for (int i = 0; i < OC; i++) db[i] = 1.0f;
    linear_backward(dinp, dW, db, c.r, c.inp, c.W, N, IC, OC);
    for (int64_t i = 0; i < N * IC; i++) dinp[i] -= 1.0f;
    for (int i = 0; i < OC * IC; i++) dW[i] -= 1.0f;
    for (int i = 0; i < OC; i++) db[i] -= 1.0f;
    ck_assert(tu_fd_rel_error("linear d inp", lin_loss, &c, c.inp, dinp, N * IC, 1e-2f, 2000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("linear d W", lin_loss, &c, c.W, dW, (size_t)OC * IC, 1e-2f, 2000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("linear d bias", lin_loss, &c, c.bias, db, OC, 1e-2f, 2000, &rng) < 1e-3);
    // NULL dinp / dbias give the same dW.
    float *dW2 = tu_zeros((size_t)OC * IC);
    linear_backward(NULL, dW2, NULL, c.r, c.inp, c.W, N, IC, OC);
    ck_assert(tu_max_violation(dW2, dW, (size_t)OC * IC, 1e-5, 1e-5) <= 1);
    free(dW2); free(dinp); free(dW); free(db);
    free(c.out); free(c.inp); free(c.W); free(c.bias); free(c.r);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// RMSNorm and gated RMSNorm

typedef struct {
    float *out, *rstd, *x, *z, *w, *r;
    int64_t N;
    int C, ld_z;
    float eps;
    int groups;   // gated norm: normalised separately over each of `groups` slices of C
} NormCtx;

static double rms_loss(void *p) {
    NormCtx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, c->eps);
    return tu_dot_rd(c->r, c->out, (size_t)c->N * c->C);
}

static double grms_loss(void *p) {
    NormCtx *c = p;
    gated_rmsnorm_forward(c->out, c->rstd, c->x, c->z, c->ld_z, c->w, c->N, c->C, c->groups, c->eps);
    return tu_dot_rd(c->r, c->out, (size_t)c->N * c->C);
}

START_TEST(test_rmsnorm) {
    uint64_t rng = 21;
    const int64_t N = 19;
    const int C = 24;
    NormCtx c = {tu_zeros(N * C), tu_zeros(N), tu_randn_buf(N * C, 1, &rng), NULL, tu_randn_buf(C, 1, &rng),
                 tu_randn_buf(N * C, 1, &rng), N, C, 0, 1e-5f, 1};
    for (int i = 0; i < C; i++) c.w[i] += 1.0f;
    rmsnorm_forward(c.out, c.rstd, c.x, c.w, N, C, c.eps);
    float *ref = tu_zeros(N * C);
    for (int64_t n = 0; n < N; n++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)c.x[n * C + i] * c.x[n * C + i];
        double r = 1.0 / sqrt(ss / C + c.eps);
        for (int i = 0; i < C; i++) ref[n * C + i] = (float)(c.x[n * C + i] * r * c.w[i]);
    }
    double v = tu_max_violation(c.out, ref, N * C, 1e-6, 1e-5);
    printf("  rmsnorm forward max violation %.2e\n", v);
    ck_assert_msg(v <= 1, "rmsnorm forward mismatch %.3e", v);
    float *dx = tu_zeros(N * C), *dw = tu_zeros(C);
    rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, N, C);
    ck_assert(tu_fd_rel_error("rmsnorm d x", rms_loss, &c, c.x, dx, N * C, 1e-2f, 2000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("rmsnorm d w", rms_loss, &c, c.w, dw, C, 1e-2f, 2000, &rng) < 1e-3);
    free(ref); free(dx); free(dw);
    free(c.out); free(c.rstd); free(c.x); free(c.w); free(c.r);
}
END_TEST

START_TEST(test_gated_rmsnorm) {
    uint64_t rng = 31;
    const int64_t N = 17;
    const int C = 20, ld_z = 27;  // z is a column slice of wider rows
    const int group_counts[] = {1, 4};   // the whole row (log-linear Mamba-2) and mamba_ssm's n_groups slices
    for (int gc = 0; gc < 2; gc++) {
        const int G = group_counts[gc], Cg = C / G;
        NormCtx c = {tu_zeros(N * C), tu_zeros(N * G), tu_randn_buf(N * C, 1, &rng), tu_randn_buf(N * ld_z, 1.5f, &rng),
                     tu_randn_buf(C, 0.5f, &rng), tu_randn_buf(N * C, 1, &rng), N, C, ld_z, 1e-5f, G};
        for (int i = 0; i < C; i++) c.w[i] += 1.0f;
        gated_rmsnorm_forward(c.out, c.rstd, c.x, c.z, ld_z, c.w, N, C, G, c.eps);
        // Naive double: y = RMSNorm(x ⊙ silu(z)) ⊙ w over each group of C/G channels.
        float *ref = tu_zeros(N * C);
        for (int64_t n = 0; n < N; n++)
            for (int g = 0; g < G; g++) {
                double u[64], ss = 0;
                for (int i = g * Cg; i < (g + 1) * Cg; i++) {
                    double z = c.z[n * ld_z + i];
                    u[i] = c.x[n * C + i] * z / (1 + exp(-z));
                    ss += u[i] * u[i];
                }
                double r = 1.0 / sqrt(ss / Cg + c.eps);
                for (int i = g * Cg; i < (g + 1) * Cg; i++) ref[n * C + i] = (float)(u[i] * r * c.w[i]);
            }
        double v = tu_max_violation(c.out, ref, N * C, 1e-6, 1e-5);
        printf("  gated rmsnorm (%d groups) forward max violation %.2e\n", G, v);
        ck_assert_msg(v <= 1, "gated rmsnorm forward mismatch %.3e", v);

        float *dx = tu_zeros(N * C), *dz = tu_zeros(N * ld_z), *dw = tu_zeros(C);
        for (int64_t i = 0; i < N * ld_z; i++) dz[i] = 7.0f;  // sentinel: columns >= C must stay 7
        gated_rmsnorm_backward(dx, dz, dw, c.r, c.x, c.z, ld_z, c.w, c.rstd, N, C, G);
        for (int64_t n = 0; n < N; n++)
            for (int i = 0; i < ld_z; i++) {
                if (i >= C) ck_assert_msg(dz[n * ld_z + i] == 7.0f, "dz column %d outside C written", i);
                dz[n * ld_z + i] -= 7.0f;
            }
        ck_assert(tu_fd_rel_error("gated rmsnorm d x", grms_loss, &c, c.x, dx, N * C, G > 1 ? 3e-3f : 1e-2f, 2000, &rng) < 1e-3);
        ck_assert(tu_fd_rel_error("gated rmsnorm d z (ld_z > C)", grms_loss, &c, c.z, dz, N * ld_z, 1e-2f, 2000,
                               &rng) < 1e-3);
        ck_assert(tu_fd_rel_error("gated rmsnorm d w", grms_loss, &c, c.w, dw, C, 1e-2f, 2000, &rng) < 1e-3);
        free(ref); free(dx); free(dz); free(dw);
        free(c.out); free(c.rstd); free(c.x); free(c.z); free(c.w); free(c.r);
    }
}
END_TEST

// The parameter-gradient reductions must not depend on the thread count (bit-exact).
START_TEST(test_norm_determinism) {
    uint64_t rng = 41;
    const int64_t N = 301;
    const int C = 67, ld_z = 70;
    float *x = tu_randn_buf(N * C, 1, &rng), *z = tu_randn_buf(N * ld_z, 1, &rng), *w = tu_randn_buf(C, 1, &rng);
    float *dout = tu_randn_buf(N * C, 1, &rng), *out = tu_zeros(N * C), *rstd = tu_zeros(N);
    float *dw[3], *gdw[3], *dx[3], *dz[3];
    int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(threads[t]);
        dw[t] = tu_zeros(C); gdw[t] = tu_zeros(C); dx[t] = tu_zeros(N * C); dz[t] = tu_zeros(N * ld_z);
        rmsnorm_forward(out, rstd, x, w, N, C, 1e-6f);
        rmsnorm_backward(dx[t], dw[t], dout, x, w, rstd, N, C);
        gated_rmsnorm_forward(out, rstd, x, z, ld_z, w, N, C, 1, 1e-5f);
        gated_rmsnorm_backward(dx[t], dz[t], gdw[t], dout, x, z, ld_z, w, rstd, N, C, 1);
    }
    // The weight gradients over 5 tiles of rows against a double sum (rstd is the gated forward's).
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double g = 0;
        for (int64_t n = 0; n < N; n++) {
            double zz = z[n * ld_z + c];
            g += (double)dout[n * C + c] * x[n * C + c] * (zz / (1 + exp(-zz))) * rstd[n];
        }
        worst = fmax(worst, fabs(gdw[0][c] - g) / (1e-5 + 1e-4 * fabs(g)));
    }
    printf("  gated rmsnorm dw over %lld rows vs double: max violation %.2e\n", (long long)N, worst);
    ck_assert(worst <= 1);
    for (int t = 1; t < 3; t++) {
        ck_assert_msg(memcmp(dw[0], dw[t], C * sizeof(float)) == 0, "rmsnorm dw differs with %d threads",
                      threads[t]);
        ck_assert_msg(memcmp(gdw[0], gdw[t], C * sizeof(float)) == 0, "gated dw differs with %d threads",
                      threads[t]);
        ck_assert(memcmp(dx[0], dx[t], N * C * sizeof(float)) == 0);
        ck_assert(memcmp(dz[0], dz[t], N * ld_z * sizeof(float)) == 0);
    }
    for (int t = 0; t < 3; t++) { free(dw[t]); free(gdw[t]); free(dx[t]); free(dz[t]); }
    free(x); free(z); free(w); free(dout); free(out); free(rstd);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// SwiGLU

typedef struct {
    float *out, *gate, *up, *r;
    int64_t n;
} SwiCtx;

static double swi_loss(void *p) {
    SwiCtx *c = p;
    swiglu_forward(c->out, c->gate, c->up, c->n);
    return tu_dot_rd(c->r, c->out, (size_t)c->n);
}

START_TEST(test_swiglu) {
    uint64_t rng = 51;
    const int64_t n = 333;
    SwiCtx c = {tu_zeros(n), tu_randn_buf(n, 2, &rng), tu_randn_buf(n, 1, &rng), tu_randn_buf(n, 1, &rng), n};
    swiglu_forward(c.out, c.gate, c.up, n);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = c.gate[i], ref = g / (1 + exp(-g)) * c.up[i];
        worst = fmax(worst, fabs(c.out[i] - ref) / (1e-6 + 1e-5 * fabs(ref)));
    }
    printf("  swiglu forward max violation %.2e\n", worst);
    ck_assert(worst <= 1);
    float *dg = tu_zeros(n), *du = tu_zeros(n);
    swiglu_backward(dg, du, c.r, c.gate, c.up, n);
    ck_assert(tu_fd_rel_error("swiglu d gate", swi_loss, &c, c.gate, dg, n, 1e-2f, 2000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("swiglu d up", swi_loss, &c, c.up, du, n, 1e-2f, 2000, &rng) < 1e-3);
    free(dg); free(du); free(c.out); free(c.gate); free(c.up); free(c.r);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// causal depthwise conv1d + SiLU

typedef struct {
    float *out, *pre, *inp, *w, *bias, *r;
    int B, T, C, K, ld_in, ld_out;
} ConvCtx;

static double conv_loss(void *p) {
    ConvCtx *c = p;
    conv1d_silu_forward(c->out, c->pre, c->inp, c->w, c->bias, c->B, c->T, c->C, c->K, c->ld_in, c->ld_out);
    double s = 0;
    for (int64_t bt = 0; bt < (int64_t)c->B * c->T; bt++)
        for (int i = 0; i < c->C; i++) s += (double)c->r[bt * c->ld_out + i] * c->out[bt * c->ld_out + i];
    return s;
}

// The pre-activation of channel ch at (b, t), in double: bias + Σ_k w_k x[t − (K−1) + k].
static double conv_ref_pre(const ConvCtx *c, int b, int t, int ch) {
    double p = c->bias ? c->bias[ch] : 0.0;
    for (int k = 0; k < c->K; k++) {
        int tt = t - (c->K - 1) + k;
        if (tt >= 0) p += (double)c->w[ch * c->K + k] * c->inp[((int64_t)b * c->T + tt) * c->ld_in + ch];
    }
    return p;
}

// One shape: forward and backward against a double reference, decoding steps, FD checks (`checks`
// sampled coordinates per tensor).
static void conv_case(int B, int T, int C, int K, int ld_in, int ld_out, int with_bias, int checks, uint64_t *rng) {
    ConvCtx c = {tu_zeros((size_t)B * T * ld_out), tu_zeros((size_t)B * T * C),
                 tu_randn_buf((size_t)B * T * ld_in, 1, rng), tu_randn_buf((size_t)C * K, 0.7f, rng),
                 with_bias ? tu_randn_buf(C, 0.5f, rng) : NULL, tu_randn_buf((size_t)B * T * ld_out, 1, rng),
                 B, T, C, K, ld_in, ld_out};
    conv_loss(&c);
    // Naive double reference.
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int ch = 0; ch < C; ch++) {
                double p = conv_ref_pre(&c, b, t, ch);
                double ref = p / (1 + exp(-p));
                double got = c.out[((int64_t)b * T + t) * ld_out + ch];
                worst = fmax(worst, fabs(got - ref) / (1e-6 + 1e-5 * fabs(ref)));
            }
    printf("  conv forward (bias=%d) max violation %.2e\n", with_bias, worst);
    ck_assert(worst <= 1);

    // Decoding steps reproduce the forward exactly (same summation order).
    float *state = tu_zeros((size_t)C * (K - 1)), *o = tu_zeros(C);
    for (int b = 0; b < B; b++) {
        memset(state, 0, (size_t)C * (K - 1) * sizeof(float));
        for (int t = 0; t < T; t++) {
            conv1d_silu_step(o, state, c.inp + ((int64_t)b * T + t) * ld_in, c.w, c.bias, C, K);
            for (int ch = 0; ch < C; ch++)
                ck_assert_msg(o[ch] == c.out[((int64_t)b * T + t) * ld_out + ch],
                              "conv step != forward at b=%d t=%d c=%d", b, t, ch);
        }
    }
    free(state); free(o);

    float *dinp = tu_zeros((size_t)B * T * ld_in), *dw = tu_zeros((size_t)C * K), *db = tu_zeros(C);
    for (int64_t i = 0; i < (int64_t)B * T * ld_in; i++) dinp[i] = 3.0f;  // accumulate + sentinel
    conv1d_silu_backward(dinp, dw, with_bias ? db : NULL, c.r, c.pre, c.inp, c.w, B, T, C, K, ld_in,
                         ld_out);
    for (int64_t row = 0; row < (int64_t)B * T; row++)
        for (int i = 0; i < ld_in; i++) {
            if (i >= C) ck_assert_msg(dinp[row * ld_in + i] == 3.0f, "conv dinp column %d written", i);
            dinp[row * ld_in + i] -= 3.0f;
        }
    // Double reference of the backward: dpre = r ⊙ silu'(pre), dinp[t'] = Σ_k w_k dpre[t' + K−1−k],
    // dw[c, k] = Σ_t dpre[t] x[t − K+1+k], dbias = Σ_t dpre[t].
    double wb = 0;
    double *dwr = calloc((size_t)C * K, sizeof(double)), *dbr = calloc(C, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++) {
            double dx_ref[T];
            for (int t = 0; t < T; t++) dx_ref[t] = 0;
            for (int t = 0; t < T; t++) {
                double p = conv_ref_pre(&c, b, t, ch);
                double sg = 1 / (1 + exp(-p)), dp = c.r[((int64_t)b * T + t) * ld_out + ch] * sg * (1 + p * (1 - sg));
                dbr[ch] += dp;
                for (int k = 0; k < K; k++) {
                    int tt = t - (K - 1) + k;
                    if (tt < 0) continue;
                    dwr[ch * K + k] += dp * c.inp[((int64_t)b * T + tt) * ld_in + ch];
                    dx_ref[tt] += c.w[ch * K + k] * dp;
                }
            }
            for (int t = 0; t < T; t++)
                wb = fmax(wb, fabs(dinp[((int64_t)b * T + t) * ld_in + ch] - dx_ref[t]) / (1e-5 + 1e-4 * fabs(dx_ref[t])));
        }
    for (int i = 0; i < C * K; i++) wb = fmax(wb, fabs(dw[i] - dwr[i]) / (1e-5 + 1e-4 * fabs(dwr[i])));
    if (with_bias)
        for (int i = 0; i < C; i++) wb = fmax(wb, fabs(db[i] - dbr[i]) / (1e-5 + 1e-4 * fabs(dbr[i])));
    printf("  conv backward B=%d T=%d C=%d (bias=%d) max violation vs double %.2e\n", B, T, C, with_bias, wb);
    ck_assert(wb <= 1);
    free(dwr); free(dbr);
    ck_assert(tu_fd_rel_error(with_bias ? "conv d inp" : "conv d inp (no bias)", conv_loss, &c, c.inp, dinp,
                           (size_t)B * T * ld_in, 1e-2f, checks, rng) < 1e-3);
    ck_assert(tu_fd_rel_error("conv d w", conv_loss, &c, c.w, dw, (size_t)C * K, 1e-2f, checks, rng) < 1e-3);
    if (with_bias) ck_assert(tu_fd_rel_error("conv d bias", conv_loss, &c, c.bias, db, C, 1e-2f, checks, rng) < 1e-3);
    free(dinp); free(dw); free(db);
    free(c.out); free(c.pre); free(c.inp); free(c.w); free(c.bias); free(c.r);
}

START_TEST(test_conv) {
    uint64_t rng = 61;
    // ld_in/ld_out > C exercise the strides; T = 70 spans two time tiles of 64 (the second reads the
    // first's last K−1 rows), C = 1030 two channel slabs of 1024, K = 3 a kernel other than 4.
    for (int with_bias = 1; with_bias >= 0; with_bias--) conv_case(2, 9, 70, 4, 75, 73, with_bias, 3000, &rng);
    conv_case(2, 70, 1030, 4, 1035, 1033, 1, 300, &rng);
    conv_case(1, 131, 20, 3, 20, 24, 0, 1000, &rng);
}
END_TEST

START_TEST(test_conv_determinism) {
    uint64_t rng = 71;
    const int B = 3, T = 150, C = 1100, K = 4;   // 3 tiles x 2 slabs per sequence
    float *inp = tu_randn_buf((size_t)B * T * C, 1, &rng), *w = tu_randn_buf((size_t)C * K, 1, &rng);
    float *bias = tu_randn_buf(C, 1, &rng), *dout = tu_randn_buf((size_t)B * T * C, 1, &rng);
    float *out = tu_zeros((size_t)B * T * C), *pre = tu_zeros((size_t)B * T * C);
    conv1d_silu_forward(out, pre, inp, w, bias, B, T, C, K, C, C);
    float *dw[2], *db[2], *dx[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : 5);
        dw[t] = tu_zeros((size_t)C * K); db[t] = tu_zeros(C); dx[t] = tu_zeros((size_t)B * T * C);
        conv1d_silu_backward(dx[t], dw[t], db[t], dout, pre, inp, w, B, T, C, K, C, C);
    }
    ck_assert(memcmp(dw[0], dw[1], (size_t)C * K * sizeof(float)) == 0);
    ck_assert(memcmp(db[0], db[1], (size_t)C * sizeof(float)) == 0);
    ck_assert(memcmp(dx[0], dx[1], (size_t)B * T * C * sizeof(float)) == 0);
    for (int t = 0; t < 2; t++) { free(dw[t]); free(db[t]); free(dx[t]); }
    free(inp); free(w); free(bias); free(dout); free(out); free(pre);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// embedding

typedef struct {
    float *out, *E, *r;
    int32_t *tok;
    int64_t N;
    int d;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    embedding_forward(c->out, c->tok, c->E, c->N, c->d);
    return tu_dot_rd(c->r, c->out, (size_t)c->N * c->d);
}

START_TEST(test_embedding) {
    uint64_t rng = 81;
    const int64_t N = 50;
    const int d = 19, V = 7;  // 50 tokens over 7 ids: every id repeats many times
    EmbCtx c = {tu_zeros(N * d), tu_randn_buf((size_t)V * d, 1, &rng), tu_randn_buf(N * d, 1, &rng),
                xmalloc(N * sizeof(int32_t)), N, d};
    for (int64_t n = 0; n < N; n++) c.tok[n] = (int32_t)(tu_next(&rng) % V);
    c.tok[0] = c.tok[1] = c.tok[2] = 3;
    embedding_forward(c.out, c.tok, c.E, N, d);
    for (int64_t n = 0; n < N; n++) ck_assert(memcmp(c.out + n * d, c.E + c.tok[n] * d, d * sizeof(float)) == 0);
    float *dE = tu_zeros((size_t)V * d);
    embedding_backward(dE, c.tok, c.r, N, d);
    float *ref = tu_zeros((size_t)V * d);
    for (int64_t n = 0; n < N; n++)
        for (int i = 0; i < d; i++) ref[c.tok[n] * d + i] += c.r[n * d + i];  // serial, same order
    ck_assert_msg(memcmp(dE, ref, (size_t)V * d * sizeof(float)) == 0, "embedding backward != serial sum");
    ck_assert(tu_fd_rel_error("embedding d E (repeated tokens)", emb_loss, &c, c.E, dE, (size_t)V * d, 1e-2f, 2000,
                           &rng) < 1e-4);
    free(dE); free(ref); free(c.out); free(c.E); free(c.r); free(c.tok);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// LM head + cross-entropy

// Naive double reference: full logits, sum of losses, grads of grad_scale · sum.
static double lm_ref(double *dx, double *dW, int64_t *count, const float *x, const float *W,
                     const int32_t *tg, int64_t N, int d, int V, double gs) {
    double total = 0;
    int64_t cnt = 0;
    double *lg = malloc((size_t)V * sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        if (tg[n] < 0) continue;
        cnt++;
        double mx = -INFINITY;
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += (double)x[n * d + i] * W[(int64_t)v * d + i];
            lg[v] = s;
            mx = fmax(mx, s);
        }
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
        double lse = mx + log(sum);
        total += lse - lg[tg[n]];
        for (int v = 0; v < V; v++) {
            double g = gs * (exp(lg[v] - lse) - (v == tg[n] ? 1.0 : 0.0));
            for (int i = 0; i < d; i++) {
                dx[n * d + i] += g * W[(int64_t)v * d + i];
                dW[(int64_t)v * d + i] += g * x[n * d + i];
            }
        }
    }
    free(lg);
    *count = cnt;
    return total;
}

typedef struct {
    float *x, *W, *scratch;
    int32_t *tg;
    int64_t N;
    int d, V, chunk;
} LmCtx;

static double lm_loss(void *p) {
    LmCtx *c = p;
    int64_t cnt;
    return lm_head_loss(NULL, NULL, &cnt, NULL, c->x, c->W, c->tg, c->N, c->d, c->V, 1.0f, c->scratch, c->chunk);
}

static float *to_float(const double *a, size_t n) {
    float *f = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = (float)a[i];
    return f;
}

START_TEST(test_lm_head) {
    uint64_t rng = 91;
    const int64_t N = 37;
    const int d = 16, V = 50, chunks[3] = {8, 37, 100};  // 8 does not divide 37; 100 > N
    float *x = tu_randn_buf(N * d, 1, &rng), *W = tu_randn_buf((size_t)V * d, 0.5f, &rng);
    int32_t *tg = xmalloc(N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) tg[n] = (int32_t)(tu_next(&rng) % V);
    tg[0] = -100; tg[9] = -1; tg[N - 1] = -100;  // ignored targets, including the last row
    const float gs = 0.37f;

    double *rdx = calloc(N * d, sizeof(double)), *rdW = calloc((size_t)V * d, sizeof(double));
    int64_t rcount;
    double rloss = lm_ref(rdx, rdW, &rcount, x, W, tg, N, d, V, gs);
    float *rdxf = to_float(rdx, N * d), *rdWf = to_float(rdW, (size_t)V * d);
    ck_assert_int_eq(rcount, N - 3);

    for (int ci = 0; ci < 3; ci++) {
        int chunk = chunks[ci];
        float *scratch = xmalloc(lm_head_scratch_floats(chunk, V) * sizeof(float));
        float *dx = tu_zeros(N * d), *dW = tu_zeros((size_t)V * d);
        int64_t count = -1;
        double loss = lm_head_loss(dx, dW, &count, NULL, x, W, tg, N, d, V, gs, scratch, chunk);
        double ex = tu_rel_error(dx, rdxf, N * d), eW = tu_rel_error(dW, rdWf, (size_t)V * d);
        printf("  lm_head chunk %3d: loss %.6f vs ref %.6f (rel %.1e), dx rel %.1e, dW rel %.1e\n", chunk, loss,
               rloss, fabs(loss - rloss) / rloss, ex, eW);
        ck_assert_int_eq(count, rcount);
        ck_assert(fabs(loss - rloss) <= 1e-5 * fabs(rloss));
        ck_assert(ex < 1e-5 && eW < 1e-5);
        // Without gradients: same loss, and dx-only works.
        int64_t c2;
        ck_assert(fabs(lm_head_loss(NULL, NULL, &c2, NULL, x, W, tg, N, d, V, gs, scratch, chunk) - loss) == 0);
        // per-row losses: 0 on ignored rows, and they add up to the total
        float *rows = tu_zeros((size_t)N);
        lm_head_loss(NULL, NULL, &c2, rows, x, W, tg, N, d, V, gs, scratch, chunk);
        double row_sum = 0;
        for (int64_t r = 0; r < N; r++) {
            if (tg[r] < 0) ck_assert(rows[r] == 0.0f);
            row_sum += rows[r];
        }
        ck_assert_msg(fabs(row_sum - loss) < 1e-5 * fabs(loss), "row losses sum %g vs %g", row_sum, loss);
        free(rows);
        float *dx2 = tu_zeros(N * d);
        lm_head_loss(dx2, NULL, &c2, NULL, x, W, tg, N, d, V, gs, scratch, chunk);
        ck_assert(memcmp(dx2, dx, N * d * sizeof(float)) == 0);
        free(dx2); free(scratch); free(dx); free(dW);
    }

    // Finite differences of the returned sum (grad_scale = 1) w.r.t. x and W.
    LmCtx c = {x, W, xmalloc(lm_head_scratch_floats(8, V) * sizeof(float)), tg, N, d, V, 8};
    float *dx = tu_zeros(N * d), *dW = tu_zeros((size_t)V * d);
    int64_t cnt;
    lm_head_loss(dx, dW, &cnt, NULL, x, W, tg, N, d, V, 1.0f, c.scratch, 8);
    ck_assert(tu_fd_rel_error("lm_head_loss d x", lm_loss, &c, x, dx, N * d, 1e-2f, 600, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("lm_head_loss d W", lm_loss, &c, W, dW, (size_t)V * d, 1e-2f, 600, &rng) < 1e-3);

    // Single-position logits.
    float *lg = tu_zeros(V);
    lm_head_logits(lg, x + 5 * d, W, d, V);
    for (int v = 0; v < V; v++) {
        double s = 0;
        for (int i = 0; i < d; i++) s += (double)x[5 * d + i] * W[v * d + i];
        ck_assert(fabs(lg[v] - s) < 1e-5 * (1 + fabs(s)));
    }

    // Non-finite values propagate into the sum; a target >= V gives NaN instead of reading past W.
    float saved = x[3 * d + 2];
    x[3 * d + 2] = NAN;
    double bad = lm_head_loss(NULL, NULL, &cnt, NULL, x, W, tg, N, d, V, 1.0f, c.scratch, 8);
    ck_assert_msg(isnan(bad), "NaN input gave loss %f", bad);
    x[3 * d + 2] = INFINITY;
    bad = lm_head_loss(dx, dW, &cnt, NULL, x, W, tg, N, d, V, 1.0f, c.scratch, 8);
    ck_assert_msg(!isfinite(bad), "inf input gave loss %f", bad);
    x[3 * d + 2] = saved;
    int32_t t4 = tg[4];
    tg[4] = V;
    ck_assert(isnan(lm_head_loss(NULL, NULL, &cnt, NULL, x, W, tg, N, d, V, 1.0f, c.scratch, 8)));
    tg[4] = t4;
    // The ignored rows alone: NaN there does not count.
    saved = x[0];
    x[0] = NAN;
    ck_assert(isfinite(lm_head_loss(NULL, NULL, &cnt, NULL, x, W, tg, N, d, V, 1.0f, c.scratch, 8)));
    x[0] = saved;

    free(lg); free(dx); free(dW); free(c.scratch);
    free(rdx); free(rdW); free(rdxf); free(rdWf); free(x); free(W); free(tg);
}
END_TEST

static Suite *ops_suite(void) {
    // One test case per test, so CK_RUN_CASE=<name> runs a single one.
    const TuNamedTest tests[] = {
        {"activations", test_activations},
        {"expf", test_expf},
        {"linear", test_linear},
        {"rmsnorm", test_rmsnorm},
        {"gated_rmsnorm", test_gated_rmsnorm},
        {"norm_determinism", test_norm_determinism},
        {"swiglu", test_swiglu},
        {"conv", test_conv},
        {"conv_determinism", test_conv_determinism},
        {"embedding", test_embedding},
        {"lm_head", test_lm_head},
    };
    return tu_suite_of("ops", tests, sizeof tests / sizeof tests[0], 60);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // keep the measured errors even when a forked test dies
    return tu_run_suite(ops_suite());
}
