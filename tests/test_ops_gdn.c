// test_ops_gdn.c — the ops around the Gated DeltaNet kernel: per-head L2 norm, the GDN gates
// (β = σ(b), g = −e^{A_log}·softplus(a + dt_bias)) and the λ gate softplus(L ⊙ dl). Forwards against naive
// double references; every backward against central finite differences of L = Σ r ⊙ out.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gates.h"
#include "norm.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// L2 norm

typedef struct {
    float *out, *rstd, *x, *r;
    int64_t N;
    int H, D, ld;
    float scale;
} L2Ctx;

static double l2_loss(void *p) {
    L2Ctx *c = p;
    l2norm_forward(c->out, c->rstd, c->x, c->ld, c->N, c->H, c->D, c->scale, 1e-6f);
    return tu_dot_rd(c->r, c->out, (size_t)c->N * c->H * c->D);
}

START_TEST(test_l2norm) {
    uint64_t rng = 5;
    const int64_t N = 7;
    const int H = 3, D = 20, ld = H * D + 11;   // a column slice of wider rows
    const float scales[] = {1.0f, 0.2236f};
    for (int si = 0; si < 2; si++) {
        L2Ctx c = {tu_zeros(N * H * D), tu_zeros(N * H), tu_randn_buf(N * ld, 1, &rng), tu_randn_buf(N * H * D, 1, &rng),
                   N, H, D, ld, scales[si]};
        l2norm_forward(c.out, c.rstd, c.x, ld, N, H, D, c.scale, 1e-6f);
        float *ref = tu_zeros(N * H * D);
        for (int64_t n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                double ss = 0;
                for (int i = 0; i < D; i++) ss += (double)c.x[n * ld + h * D + i] * c.x[n * ld + h * D + i];
                for (int i = 0; i < D; i++)
                    ref[(n * H + h) * D + i] = (float)(c.scale * c.x[n * ld + h * D + i] / sqrt(ss + 1e-6));
            }
        double v = tu_max_violation(c.out, ref, N * H * D, 1e-7, 1e-5);
        printf("  l2norm forward (scale %g) max violation %.2e\n", (double)c.scale, v);
        ck_assert_msg(v <= 1, "l2norm forward mismatch %.3e", v);
        // the columns outside the slice must not be touched by the backward
        float *dx = tu_zeros(N * ld);
        l2norm_backward(dx, c.r, c.x, c.rstd, ld, N, H, D, c.scale);
        for (int64_t n = 0; n < N; n++)
            for (int i = H * D; i < ld; i++) ck_assert(dx[n * ld + i] == 0.0f);
        ck_assert(tu_fd_rel_error("l2norm d x", l2_loss, &c, c.x, dx, N * ld, 1e-2f, 3000, &rng) < 1e-3);
        free(ref); free(dx);
        free(c.out); free(c.rstd); free(c.x); free(c.r);
    }
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// GDN gates

typedef struct {
    float *beta, *g, *ab, *A_log, *dt_bias, *rb, *rg;
    int64_t rows;
    int H, ld;
} GateCtx;

static double gate_loss(void *p) {
    GateCtx *c = p;
    gdn_gates_forward(c->beta, c->g, c->ab, c->ab + c->H, c->ld, c->A_log, c->dt_bias, c->rows, c->H);
    return tu_dot_rd(c->rb, c->beta, (size_t)c->rows * c->H) + tu_dot_rd(c->rg, c->g, (size_t)c->rows * c->H);
}

START_TEST(test_gdn_gates) {
    uint64_t rng = 9;
    const int64_t rows = 150;   // > 64: the parallel path
    const int H = 5, ld = 2 * H + 3;
    GateCtx c = {tu_zeros(rows * H), tu_zeros(rows * H), tu_randn_buf(rows * ld, 2, &rng), tu_randn_buf(H, 1, &rng),
                 tu_randn_buf(H, 2, &rng), tu_randn_buf(rows * H, 1, &rng), tu_randn_buf(rows * H, 1, &rng), rows, H, ld};
    c.ab[3] = 25.0f;   // above the softplus threshold
    gdn_gates_forward(c.beta, c.g, c.ab, c.ab + H, ld, c.A_log, c.dt_bias, rows, H);
    double worst = 0;
    for (int64_t n = 0; n < rows; n++)
        for (int h = 0; h < H; h++) {
            double a = c.ab[n * ld + h], b = c.ab[n * ld + H + h], u = a + c.dt_bias[h];
            double sp = u > 20 ? u : log1p(exp(u));
            double beta = 1 / (1 + exp(-b)), g = -exp(c.A_log[h]) * sp;
            worst = fmax(worst, fabs(beta - c.beta[n * H + h]) / (1e-7 + 1e-5 * fabs(beta)));
            worst = fmax(worst, fabs(g - c.g[n * H + h]) / (1e-7 + 1e-5 * fabs(g)));
        }
    printf("  gdn gates forward max violation %.2e\n", worst);
    ck_assert_msg(worst <= 1, "gdn gates forward mismatch %.3e", worst);
    float *dab = tu_zeros(rows * ld), *dA = tu_zeros(H), *ddt = tu_zeros(H);
    gdn_gates_backward(dab, dab + H, dA, ddt, c.rb, c.rg, c.beta, c.g, c.ab, ld, c.A_log, c.dt_bias, rows, H);
    ck_assert(tu_fd_rel_error("gdn gates d a, d b", gate_loss, &c, c.ab, dab, rows * ld, 1e-2f, 3000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("gdn gates d A_log", gate_loss, &c, c.A_log, dA, H, 1e-2f, 100, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("gdn gates d dt_bias", gate_loss, &c, c.dt_bias, ddt, H, 1e-2f, 100, &rng) < 1e-3);
    free(dab); free(dA); free(ddt);
    free(c.beta); free(c.g); free(c.ab); free(c.A_log); free(c.dt_bias); free(c.rb); free(c.rg);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// λ gate

typedef struct {
    float *lam, *dl, *L, *r;
    int64_t rows;
    int HL, ld;
} LamCtx;

static double lam_loss(void *p) {
    LamCtx *c = p;
    lambda_forward(c->lam, c->dl, c->ld, c->L, c->rows, c->HL);
    return tu_dot_rd(c->r, c->lam, (size_t)c->rows * c->HL);
}

START_TEST(test_lambda_gate) {
    uint64_t rng = 13;
    const int64_t rows = 90;
    const int HL = 12, ld = HL + 5;
    LamCtx c = {tu_zeros(rows * HL), tu_randn_buf(rows * ld, 1.5f, &rng), tu_randn_buf(HL, 1, &rng),
                tu_randn_buf(rows * HL, 1, &rng), rows, HL, ld};
    lambda_forward(c.lam, c.dl, ld, c.L, rows, HL);
    double worst = 0;
    for (int64_t n = 0; n < rows; n++)
        for (int j = 0; j < HL; j++) {
            double u = (double)c.L[j] * c.dl[n * ld + j], ref = u > 20 ? u : log1p(exp(u));
            worst = fmax(worst, fabs(ref - c.lam[n * HL + j]) / (1e-7 + 1e-5 * fabs(ref)));
        }
    printf("  lambda gate forward max violation %.2e\n", worst);
    ck_assert_msg(worst <= 1, "lambda forward mismatch %.3e", worst);
    float *ddl = tu_zeros(rows * ld), *dL = tu_zeros(HL);
    lambda_backward(ddl, ld, dL, c.r, c.dl, ld, c.L, rows, HL);
    ck_assert(tu_fd_rel_error("lambda d dl", lam_loss, &c, c.dl, ddl, rows * ld, 1e-2f, 3000, &rng) < 1e-3);
    ck_assert(tu_fd_rel_error("lambda d L", lam_loss, &c, c.L, dL, HL, 1e-3f, 100, &rng) < 1e-3);
    free(ddl); free(dL);
    free(c.lam); free(c.dl); free(c.L); free(c.r);
}
END_TEST

static Suite *ops_gdn_suite(void) {
    const TuNamedTest tests[] = {
        {"l2norm", test_l2norm},
        {"gdn_gates", test_gdn_gates},
        {"lambda_gate", test_lambda_gate},
    };
    return tu_suite_of("ops_gdn", tests, sizeof tests / sizeof tests[0], 60);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    return tu_run_suite(ops_gdn_suite());
}
