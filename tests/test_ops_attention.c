// test_ops_attention.c — RoPE and causal softmax attention (MHA and GQA): forward against a naive
// materialised O(T²) double reference (several T, including T not a multiple of the query block and
// T spanning several blocks), backward against the naive double backward and against central finite
// differences of L = Σ r ⊙ out, and bit-reproducibility across thread counts.
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "attention.h"
#include "common.h"
#include "testutil.h"


// ---------------------------------------------------------------------------------------------------
// RoPE

START_TEST(test_rope) {
    uint64_t rng = 101;
    const int B = 2, T = 70, H = 3, hd = 12;
    const float theta = 10000.0f;
    const size_t n = (size_t)B * T * H * hd;
    float *x = tu_randn_buf(n, 1, &rng), *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    rope_forward(y, B, T, H, hd, theta);
    // Naive: fp32 angles as the spec (and PyTorch) computes them, rotation in double.
    double worst = 0, worst_d = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < hd / 2; j++) {
                    float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
                    double ang = (double)((float)t * inv);
                    double ang_d = t * pow(theta, -2.0 * j / hd);  // exact angle, for a sanity bound
                    size_t i1 = (((size_t)b * T + t) * H + h) * hd + j, i2 = i1 + hd / 2;
                    double r1 = x[i1] * cos(ang) - x[i2] * sin(ang), r2 = x[i2] * cos(ang) + x[i1] * sin(ang);
                    double d1 = x[i1] * cos(ang_d) - x[i2] * sin(ang_d);
                    worst = fmax(worst, fmax(fabs(y[i1] - r1), fabs(y[i2] - r2)));
                    worst_d = fmax(worst_d, fabs(y[i1] - d1));
                }
    printf("  rope forward: max abs error %.2e vs fp32-angle reference, %.2e vs exact angles\n", worst, worst_d);
    ck_assert_msg(worst < 2e-6, "rope forward error %.3e", worst);
    ck_assert_msg(worst_d < 1e-4, "rope forward error vs exact angles %.3e", worst_d);

    // Single-position decoding rotation gives the same values as the batched one.
    for (int t = 0; t < T; t += 13) {
        float row[3 * 12];
        memcpy(row, x + ((size_t)1 * T + t) * H * hd, sizeof row);
        rope_forward_at(row, H, hd, t, theta);
        ck_assert(memcmp(row, y + ((size_t)1 * T + t) * H * hd, sizeof row) == 0);
    }

    // Backward is the transpose: <R x, g> = <x, Rᵀ g>, and Rᵀ R x = x (orthogonal).
    float *g = tu_randn_buf(n, 1, &rng), *gt = xmalloc(n * sizeof(float));
    memcpy(gt, g, n * sizeof(float));
    rope_backward(gt, B, T, H, hd, theta);
    double lhs = tu_dot_rd(y, g, n), rhs = tu_dot_rd(x, gt, n);
    printf("  rope adjoint: <Rx,g> = %.6f, <x,R'g> = %.6f\n", lhs, rhs);
    ck_assert(fabs(lhs - rhs) < 1e-4 * (1 + fabs(lhs)));
    rope_backward(y, B, T, H, hd, theta);
    double back = 0;
    for (size_t i = 0; i < n; i++) back = fmax(back, fabs(y[i] - x[i]));
    printf("  rope backward(forward(x)) - x: max abs %.2e\n", back);
    ck_assert(back < 1e-5);
    free(x); free(y); free(g); free(gt);
}
END_TEST

typedef struct {
    float *x, *y, *r;
    int B, T, H, hd;
    float theta;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    size_t n = (size_t)c->B * c->T * c->H * c->hd;
    memcpy(c->y, c->x, n * sizeof(float));
    rope_forward(c->y, c->B, c->T, c->H, c->hd, c->theta);
    return tu_dot_rd(c->r, c->y, n);
}

START_TEST(test_rope_fd) {
    uint64_t rng = 111;
    const int B = 2, T = 9, H = 2, hd = 8;
    size_t n = (size_t)B * T * H * hd;
    RopeCtx c = {tu_randn_buf(n, 1, &rng), tu_zeros(n), tu_randn_buf(n, 1, &rng), B, T, H, hd, 500000.0f};
    float *dx = xmalloc(n * sizeof(float));
    memcpy(dx, c.r, n * sizeof(float));
    rope_backward(dx, B, T, H, hd, c.theta);
    ck_assert(tu_fd_rel_error("rope d x", rope_loss, &c, c.x, dx, n, 1e-2f, 2000, &rng) < 1e-3);
    free(dx); free(c.x); free(c.y); free(c.r);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// attention: naive materialised references in double

typedef struct {
    int B, T, H, Hkv, hd;
    int window;   // sliding window (0 = none)
} Dims;

// Whether key j is visible from query i: causal, and i − j < window under a window.
static bool visible(Dims d, int i, int j) { return j <= i && (d.window <= 0 || i - j < d.window); }

// P (T, T) of one (b, h): softmax over the visible j of scale · q_i·k_j (0 elsewhere); also returns lse per row.
static void naive_probs(double *P, double *lse, const float *q, const float *k, Dims d, int b, int h) {
    int kvh = h / (d.H / d.Hkv);
    double scale = 1.0 / sqrt((double)d.hd);
    for (int i = 0; i < d.T; i++) {
        const float *qi = q + (((size_t)b * d.T + i) * d.H + h) * d.hd;
        double mx = -INFINITY;
        for (int j = 0; j <= i; j++) {
            if (!visible(d, i, j)) continue;
            const float *kj = k + (((size_t)b * d.T + j) * d.Hkv + kvh) * d.hd;
            double s = 0;
            for (int c = 0; c < d.hd; c++) s += (double)qi[c] * kj[c];
            P[(size_t)i * d.T + j] = s * scale;
            mx = fmax(mx, s * scale);
        }
        double sum = 0;
        for (int j = 0; j <= i; j++)
            if (visible(d, i, j)) sum += exp(P[(size_t)i * d.T + j] - mx);
        for (int j = 0; j < d.T; j++)
            P[(size_t)i * d.T + j] = visible(d, i, j) ? exp(P[(size_t)i * d.T + j] - mx) / sum : 0.0;
        lse[i] = mx + log(sum);
    }
}

static void naive_attention(float *out, float *lse_out, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, Dims d) {
    int T = d.T, hd = d.hd;
    double scale = 1.0 / sqrt((double)hd);
    double *P = malloc((size_t)T * T * sizeof(double)), *lse = malloc((size_t)T * sizeof(double));
    double *dP = malloc((size_t)T * sizeof(double));
    size_t nq = (size_t)d.B * T * d.H * hd, nk = (size_t)d.B * T * d.Hkv * hd;
    double *gq = calloc(nq, sizeof(double)), *gk = calloc(nk, sizeof(double)), *gv = calloc(nk, sizeof(double));
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.H; h++) {
            int kvh = h / (d.H / d.Hkv);
            naive_probs(P, lse, q, k, d, b, h);
// flat offsets of query row i of head h and key row j of kv head kvh
#define QIX(i) ((((size_t)b * T + (i)) * d.H + h) * hd)
#define KIX(j) ((((size_t)b * T + (j)) * d.Hkv + kvh) * hd)
#define QI(a, i) ((a) + QIX(i))
#define KJ(a, j) ((a) + KIX(j))
            for (int i = 0; i < T; i++) {
                if (lse_out) lse_out[((size_t)b * d.H + h) * T + i] = (float)lse[i];
                for (int c = 0; c < hd; c++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += P[(size_t)i * T + j] * KJ(v, j)[c];
                    if (out) QI(out, i)[c] = (float)o;
                }
                if (!dout) continue;
                // dP_ij = dO_i · v_j ; dS = P ⊙ (dP − Σ_j P dP)
                double Dsum = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int c = 0; c < hd; c++) s += (double)QI(dout, i)[c] * KJ(v, j)[c];
                    dP[j] = s;
                    Dsum += P[(size_t)i * T + j] * s;
                }
                for (int j = 0; j <= i; j++) {
                    double p = P[(size_t)i * T + j], ds = p * (dP[j] - Dsum);
                    for (int c = 0; c < hd; c++) {
                        gv[KIX(j) + c] += p * QI(dout, i)[c];
                        gq[QIX(i) + c] += scale * ds * KJ(k, j)[c];
                        gk[KIX(j) + c] += scale * ds * QI(q, i)[c];
                    }
                }
            }
#undef QI
#undef KJ
#undef QIX
#undef KIX
        }
    if (dout) {
        for (size_t i = 0; i < nq; i++) dq[i] = (float)gq[i];
        for (size_t i = 0; i < nk; i++) { dk[i] = (float)gk[i]; dv[i] = (float)gv[i]; }
    }
    free(P); free(lse); free(dP); free(gq); free(gk); free(gv);
}

static const Dims kConfigs[] = {
    {2, 1, 2, 2, 8, 0}, // a single token
    {1, 5, 4, 2, 8, 0}, // GQA, tiny
    {2, 127, 4, 4, 16, 0}, // just under one block of 128
    {1, 128, 2, 1, 8, 0}, // exactly one block, all query heads on one kv head (MQA)
    {1, 129, 4, 2, 8, 0}, // one row into the second block
    {2, 300, 4, 2, 16, 0}, // three blocks, the last partial
    // sliding windows: within one block, across block edges (lo > 0 from the second block), window 1
    {1, 20, 2, 1, 8, 5},
    {2, 300, 4, 2, 8, 100},
    {1, 260, 2, 2, 8, 129},
    {1, 40, 2, 2, 8, 1},
    // the backward's segments of query blocks: one per (batch, kv head) when B·Hkv >= 48 (dk/dv added
    // directly), else several, each of one or more blocks, with and without a window
    {4, 260, 12, 12, 8, 0},
    {1, 1100, 8, 8, 8, 0},
    {1, 1100, 8, 4, 8, 300},
};

START_TEST(test_attention_vs_naive) {
    uint64_t rng = 121;
    for (size_t ci = 0; ci < sizeof kConfigs / sizeof kConfigs[0]; ci++) {
        Dims d = kConfigs[ci];
        size_t nq = (size_t)d.B * d.T * d.H * d.hd, nk = (size_t)d.B * d.T * d.Hkv * d.hd;
        size_t nl = (size_t)d.B * d.H * d.T;
        float *q = tu_randn_buf(nq, 1, &rng), *k = tu_randn_buf(nk, 1, &rng), *v = tu_randn_buf(nk, 1, &rng);
        float *dout = tu_randn_buf(nq, 1, &rng);
        float *out = tu_zeros(nq), *lse = tu_zeros(nl), *rout = tu_zeros(nq), *rlse = tu_zeros(nl);
        float *dq = tu_zeros(nq), *dk = tu_zeros(nk), *dv = tu_zeros(nk);
        float *rdq = tu_zeros(nq), *rdk = tu_zeros(nk), *rdv = tu_zeros(nk);
        float *scratch = xmalloc(attention_scratch_floats(d.B, d.T, d.H, d.Hkv, d.hd, d.window) * sizeof(float));
        attention_forward(out, lse, q, k, v, d.B, d.T, d.H, d.Hkv, d.hd, d.window, scratch);
        attention_backward(dq, dk, dv, dout, q, k, v, out, lse, d.B, d.T, d.H, d.Hkv, d.hd, d.window, scratch);
        naive_attention(rout, rlse, rdq, rdk, rdv, dout, q, k, v, d);
        double eo = tu_max_violation(out, rout, nq, 1e-5, 1e-4), el = tu_max_violation(lse, rlse, nl, 1e-5, 1e-5);
        // Gradients: elementwise |a − b| <= 1e-5 + 1e-4 |b| (an absolute floor because for T = 1 the
        // exact dq and dk are 0 and only rounding noise remains).
        double eq = tu_max_violation(dq, rdq, nq, 1e-5, 1e-4), ek = tu_max_violation(dk, rdk, nk, 1e-5, 1e-4);
        double ev = tu_max_violation(dv, rdv, nk, 1e-5, 1e-4);
        printf("  attention B=%d T=%3d H=%d Hkv=%d hd=%2d window=%3d: max violation out %.2f lse %.2f dq %.2f dk %.2f "
               "dv %.2f; rel error dq %.1e dk %.1e dv %.1e\n", d.B, d.T, d.H, d.Hkv, d.hd, d.window, eo, el, eq, ek, ev,
               tu_rel_error(dq, rdq, nq), tu_rel_error(dk, rdk, nk), tu_rel_error(dv, rdv, nk));
        ck_assert_msg(eo <= 1 && el <= 1, "attention forward mismatch T=%d", d.T);
        ck_assert_msg(eq <= 1 && ek <= 1 && ev <= 1, "attention backward mismatch T=%d", d.T);
        free(q); free(k); free(v); free(dout); free(out); free(lse); free(rout); free(rlse);
        free(dq); free(dk); free(dv); free(rdq); free(rdk); free(rdv); free(scratch);
    }
}
END_TEST

typedef struct {
    float *out, *lse, *q, *k, *v, *r, *scratch;
    Dims d;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    Dims d = c->d;
    attention_forward(c->out, c->lse, c->q, c->k, c->v, d.B, d.T, d.H, d.Hkv, d.hd, d.window, c->scratch);
    return tu_dot_rd(c->r, c->out, (size_t)d.B * d.T * d.H * d.hd);
}

START_TEST(test_attention_fd) {
    uint64_t rng = 131;
    // One block with every coordinate checked, then several blocks with a random sample. The FD noise
    // of the float forward is ~1e-4 of the (small) dk entries, hence 3e-3; the tight check is the
    // comparison with the double reference above (~3e-7).
    const Dims dims[3] = {{1, 37, 4, 2, 8, 0}, {1, 150, 2, 1, 8, 0}, {1, 150, 2, 1, 8, 40}};
    const size_t checks[3] = {100000, 400, 400};
    for (int di = 0; di < 3; di++) {
        Dims d = dims[di];
        size_t nq = (size_t)d.B * d.T * d.H * d.hd, nk = (size_t)d.B * d.T * d.Hkv * d.hd;
        AttCtx c = {tu_zeros(nq), tu_zeros((size_t)d.B * d.H * d.T), tu_randn_buf(nq, 1, &rng), tu_randn_buf(nk, 1, &rng),
                    tu_randn_buf(nk, 1, &rng), tu_randn_buf(nq, 1, &rng),
                    xmalloc(attention_scratch_floats(d.B, d.T, d.H, d.Hkv, d.hd, d.window) * sizeof(float)), d};
        float *dq = tu_zeros(nq), *dk = tu_zeros(nk), *dv = tu_zeros(nk);
        // Start the grads at 1 to check that backward accumulates.
        for (size_t i = 0; i < nq; i++) dq[i] = 1.0f;
        for (size_t i = 0; i < nk; i++) dk[i] = dv[i] = 1.0f;
        att_loss(&c);
        attention_backward(dq, dk, dv, c.r, c.q, c.k, c.v, c.out, c.lse, d.B, d.T, d.H, d.Hkv, d.hd, d.window, c.scratch);
        for (size_t i = 0; i < nq; i++) dq[i] -= 1.0f;
        for (size_t i = 0; i < nk; i++) { dk[i] -= 1.0f; dv[i] -= 1.0f; }
        char name[96];
        snprintf(name, sizeof name, "attention d q (T=%d H=%d Hkv=%d W=%d)", d.T, d.H, d.Hkv, d.window);
        ck_assert(tu_fd_rel_error(name, att_loss, &c, c.q, dq, nq, 1e-2f, checks[di], &rng) < 3e-3);
        snprintf(name, sizeof name, "attention d k (T=%d H=%d Hkv=%d W=%d)", d.T, d.H, d.Hkv, d.window);
        ck_assert(tu_fd_rel_error(name, att_loss, &c, c.k, dk, nk, 1e-2f, checks[di], &rng) < 3e-3);
        snprintf(name, sizeof name, "attention d v (T=%d H=%d Hkv=%d W=%d)", d.T, d.H, d.Hkv, d.window);
        ck_assert(tu_fd_rel_error(name, att_loss, &c, c.v, dv, nk, 1e-2f, checks[di], &rng) < 3e-3);
        free(dq); free(dk); free(dv);
        free(c.out); free(c.lse); free(c.q); free(c.k); free(c.v); free(c.r); free(c.scratch);
    }
}
END_TEST

START_TEST(test_attention_determinism) {
    uint64_t rng = 141;
    const Dims d = {2, 700, 4, 2, 8, 0};   // 6 segments per (batch, kv head)
    size_t nq = (size_t)d.B * d.T * d.H * d.hd, nk = (size_t)d.B * d.T * d.Hkv * d.hd;
    float *q = tu_randn_buf(nq, 1, &rng), *k = tu_randn_buf(nk, 1, &rng), *v = tu_randn_buf(nk, 1, &rng);
    float *dout = tu_randn_buf(nq, 1, &rng), *lse = tu_zeros((size_t)d.B * d.H * d.T);
    float *out[3], *dq[3], *dk[3], *dv[3];
    omp_set_num_threads(3);
    float *scratch = xmalloc(attention_scratch_floats(d.B, d.T, d.H, d.Hkv, d.hd, d.window) * sizeof(float));
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        out[t] = tu_zeros(nq); dq[t] = tu_zeros(nq); dk[t] = tu_zeros(nk); dv[t] = tu_zeros(nk);
        attention_forward(out[t], lse, q, k, v, d.B, d.T, d.H, d.Hkv, d.hd, d.window, scratch);
        attention_backward(dq[t], dk[t], dv[t], dout, q, k, v, out[t], lse, d.B, d.T, d.H, d.Hkv, d.hd, d.window, scratch);
    }
    for (int t = 1; t < 3; t++) {
        ck_assert_msg(memcmp(out[0], out[t], nq * sizeof(float)) == 0, "out differs with %d threads", t + 1);
        ck_assert_msg(memcmp(dq[0], dq[t], nq * sizeof(float)) == 0, "dq differs with %d threads", t + 1);
        ck_assert_msg(memcmp(dk[0], dk[t], nk * sizeof(float)) == 0, "dk differs with %d threads", t + 1);
        ck_assert_msg(memcmp(dv[0], dv[t], nk * sizeof(float)) == 0, "dv differs with %d threads", t + 1);
    }
    for (int t = 0; t < 3; t++) { free(out[t]); free(dq[t]); free(dk[t]); free(dv[t]); }
    free(q); free(k); free(v); free(dout); free(lse); free(scratch);
}
END_TEST

static Suite *attention_suite(void) {
    // One test case per test, so CK_RUN_CASE=<name> runs a single one.
    const TuNamedTest tests[] = {
        {"rope", test_rope},
        {"rope_fd", test_rope_fd},
        {"attention_vs_naive", test_attention_vs_naive},
        {"attention_fd", test_attention_fd},
        {"attention_determinism", test_attention_determinism},
    };
    return tu_suite_of("ops_attention", tests, sizeof tests / sizeof tests[0], 60);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // keep the measured errors even when a forked test dies
    return tu_run_suite(attention_suite());
}
