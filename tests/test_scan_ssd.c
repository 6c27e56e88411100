// test_scan_ssd.c — the Mamba-2 SSD scan against references written here: the materialized O(T²) form
// y = (C Bᵀ ⊙ decay mask) (dt·x) + D x in double, its analytic backward in double (itself checked against
// central finite differences), and the token-by-token recurrence (ssd_step).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scan_common.h"
#include "scan_ssd.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Test problems

typedef struct {
    ScanDims d;
    float *x, *dt, *A, *Bm, *Cm, *D;  // layouts of scan_ssd.h (x and B/C padded rows)
    size_t nx, nbc, ndt;              // float counts of x, Bm (= Cm), dt
} Prob;

static Prob prob_make(int B, int T, int H, int P, int G, int N, int chunk, int pad_x, int pad_bc, float dt_lo,
                      float dt_hi, float A_lo, float A_hi, uint64_t seed) {
    Prob p;
    memset(&p, 0, sizeof p);
    p.d = (ScanDims){.B = B, .T = T, .H = H, .P = P, .G = G, .N = N, .chunk = chunk, .ld_x = H * P + pad_x,
                     .ld_bc = G * N + pad_bc, .levels = 0};
    p.nx = (size_t)B * T * p.d.ld_x;
    p.nbc = (size_t)B * T * p.d.ld_bc;
    p.ndt = (size_t)B * T * H;
    p.x = malloc(sizeof(float) * p.nx);
    p.Bm = malloc(sizeof(float) * p.nbc);
    p.Cm = malloc(sizeof(float) * p.nbc);
    p.dt = malloc(sizeof(float) * p.ndt);
    p.A = malloc(sizeof(float) * H);
    p.D = malloc(sizeof(float) * H);
    uint64_t s = seed;
    tu_fill_randn(p.x, p.nx, 1.0f, &s);
    tu_fill_randn(p.Bm, p.nbc, 0.5f, &s);
    tu_fill_randn(p.Cm, p.nbc, 0.5f, &s);
    for (size_t i = 0; i < p.ndt; i++) p.dt[i] = dt_lo + (dt_hi - dt_lo) * (float)tu_uniform(&s);
    for (int h = 0; h < H; h++) p.A[h] = A_lo + (A_hi - A_lo) * (float)tu_uniform(&s);
    tu_fill_randn(p.D, H, 1.0f, &s);
    return p;
}

static void prob_free(Prob *p) {
    free(p->x); free(p->Bm); free(p->Cm); free(p->dt); free(p->A); free(p->D);
}

// Scratch filled with NaN: reading any scratch value the kernels did not write first shows up as NaN.
static float *scratch_for(const ScanDims *d) {
    size_t n = ssd_scratch_floats(d);
    float *s = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) s[i] = NAN;
    return s;
}

// ---------------------------------------------------------------------------------------------------
// Materialized reference in double (inputs as double copies, same layouts)

typedef struct {
    double *x, *dt, *A, *Bm, *Cm, *D;
} DProb;

static double *to_double(const float *a, size_t n) {
    double *o = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) o[i] = a[i];
    return o;
}

static DProb dprob_make(const Prob *p) {
    DProb q = {to_double(p->x, p->nx), to_double(p->dt, p->ndt), to_double(p->A, p->d.H),
               to_double(p->Bm, p->nbc), to_double(p->Cm, p->nbc), to_double(p->D, p->d.H)};
    return q;
}

static void dprob_free(DProb *q) {
    free(q->x); free(q->dt); free(q->A); free(q->Bm); free(q->Cm); free(q->D);
}

// y (B,T,H,P) = Σ_{s≤t} (q_t·k_s) exp(G_t - G_s) dt_s x_s + D x_t,  G = cumsum(dt·A) over the sequence.
static void ref_forward(double *y, const DProb *q, const ScanDims *d) {
    const int T = d->T, H = d->H, P = d->P, N = d->N, Hg = d->H / d->G;
    double *Gc = malloc(sizeof(double) * T);
    for (int b = 0; b < d->B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / Hg;
            double acc = 0;
            for (int t = 0; t < T; t++) Gc[t] = (acc += q->dt[((size_t)b * T + t) * H + h] * q->A[h]);
            for (int t = 0; t < T; t++) {
                const double *qt = q->Cm + ((size_t)b * T + t) * d->ld_bc + g * N;
                const double *xt = q->x + ((size_t)b * T + t) * d->ld_x + h * P;
                double *yt = y + (((size_t)b * T + t) * H + h) * P;
                for (int p = 0; p < P; p++) yt[p] = q->D[h] * xt[p];
                for (int s = 0; s <= t; s++) {
                    const double *ks = q->Bm + ((size_t)b * T + s) * d->ld_bc + g * N;
                    const double *xs = q->x + ((size_t)b * T + s) * d->ld_x + h * P;
                    double qk = 0;
                    for (int n = 0; n < N; n++) qk += qt[n] * ks[n];
                    const double w = qk * exp(Gc[t] - Gc[s]) * q->dt[((size_t)b * T + s) * H + h];
                    for (int p = 0; p < P; p++) yt[p] += w * xs[p];
                }
            }
        }
    }
    free(Gc);
}

typedef struct {
    double *x, *dt, *A, *Bm, *Cm, *D;
} DGrad;

static DGrad dgrad_make(const Prob *p) {
    DGrad g = {calloc(p->nx, sizeof(double)), calloc(p->ndt, sizeof(double)), calloc(p->d.H, sizeof(double)),
               calloc(p->nbc, sizeof(double)), calloc(p->nbc, sizeof(double)), calloc(p->d.H, sizeof(double))};
    return g;
}

static void dgrad_free(DGrad *g) {
    free(g->x); free(g->dt); free(g->A); free(g->Bm); free(g->Cm); free(g->D);
}

// Analytic backward of ref_forward, in double (loglinear-attention.md §4.4 with λ = 1):
//   P_ts = (q_t·k_s) e^{G_t-G_s};  dv_s = Σ_t P_ts dy_t;  dM_ts = dy_t·v_s;  dq_t = Σ_s dM_ts e^{..} k_s;
//   dk_s = Σ_t dM_ts e^{..} q_t;  R_ts = dM_ts P_ts;  dG_t += R_ts, dG_s -= R_ts;  dg_r = Σ_{t≥r} dG_t.
static void ref_backward(DGrad *gr, const double *dy, const DProb *q, const ScanDims *d) {
    const int T = d->T, H = d->H, P = d->P, N = d->N, Hg = d->H / d->G;
    double *Gc = malloc(sizeof(double) * T), *dG = malloc(sizeof(double) * T);
    for (int b = 0; b < d->B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / Hg;
            double acc = 0;
            for (int t = 0; t < T; t++) {
                Gc[t] = (acc += q->dt[((size_t)b * T + t) * H + h] * q->A[h]);
                dG[t] = 0;
            }
            for (int t = 0; t < T; t++) {
                const size_t rt = (size_t)b * T + t;
                const double *qt = q->Cm + rt * d->ld_bc + g * N;
                const double *xt = q->x + rt * d->ld_x + h * P;
                const double *dyt = dy + (rt * H + h) * P;
                for (int p = 0; p < P; p++) {
                    gr->D[h] += dyt[p] * xt[p];
                    gr->x[rt * d->ld_x + h * P + p] += q->D[h] * dyt[p];
                }
                for (int s = 0; s <= t; s++) {
                    const size_t rs = (size_t)b * T + s;
                    const double *ks = q->Bm + rs * d->ld_bc + g * N;
                    const double *xs = q->x + rs * d->ld_x + h * P;
                    const double dts = q->dt[rs * H + h];
                    double qk = 0, dyx = 0;
                    for (int n = 0; n < N; n++) qk += qt[n] * ks[n];
                    for (int p = 0; p < P; p++) dyx += dyt[p] * xs[p];
                    const double e = exp(Gc[t] - Gc[s]);
                    const double Pts = qk * e;
                    // dv_s = P_ts dy_t -> dx_s += dt_s dv_s, ddt_s += x_s·dv_s
                    for (int p = 0; p < P; p++) gr->x[rs * d->ld_x + h * P + p] += dts * Pts * dyt[p];
                    gr->dt[rs * H + h] += Pts * dyx;
                    const double dM = dyx * dts;
                    for (int n = 0; n < N; n++) {
                        gr->Cm[rt * d->ld_bc + g * N + n] += dM * e * ks[n];
                        gr->Bm[rs * d->ld_bc + g * N + n] += dM * e * qt[n];
                    }
                    const double R = dM * Pts;
                    dG[t] += R;
                    dG[s] -= R;
                }
            }
            double suf = 0;
            for (int r = T - 1; r >= 0; r--) {
                suf += dG[r];
                const size_t i = ((size_t)b * T + r) * H + h;
                gr->dt[i] += q->A[h] * suf;
                gr->A[h] += q->dt[i] * suf;
            }
        }
    }
    free(Gc);
    free(dG);
}

static double ref_loss(const DProb *q, const ScanDims *d, const double *w) {
    size_t ny = (size_t)d->B * d->T * d->H * d->P;
    double *y = malloc(sizeof(double) * ny), L = 0;
    ref_forward(y, q, d);
    for (size_t i = 0; i < ny; i++) L += w[i] * y[i];
    free(y);
    return L;
}

// Central finite differences of ref_loss w.r.t. every used element of arr (count n, skipping the row
// padding: elements whose column within a row of width ld is >= used).
static void fd_grad(double *out, double *arr, size_t n, int ld, int used, const DProb *q, const ScanDims *d,
                    const double *w) {
    for (size_t i = 0; i < n; i++) {
        if ((int)(i % ld) >= used) {
            out[i] = 0;
            continue;
        }
        const double x0 = arr[i], h = 1e-5 * (fabs(x0) > 1 ? fabs(x0) : 1);
        arr[i] = x0 + h;
        double lp = ref_loss(q, d, w);
        arr[i] = x0 - h;
        double lm = ref_loss(q, d, w);
        arr[i] = x0;
        out[i] = (lp - lm) / (2 * h);
    }
}

static double rel_err_dd(const double *a, const double *b, size_t n) {
    double num = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        na += a[i] * a[i];
        nb += b[i] * b[i];
    }
    double den = sqrt(na > nb ? na : nb);
    return sqrt(num) / (den > 1e-30 ? den : 1e-30);
}

static double rel_err_fd(const float *a, const double *b, size_t n) {
    double *ad = to_double(a, n);
    double r = rel_err_dd(ad, b, n);
    free(ad);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Forward

typedef struct {
    int B, T, H, P, G, N, chunk, pad_x, pad_bc;
} Shape;

static const Shape fwd_shapes[] = {
    {1, 1, 2, 3, 1, 4, 4, 0, 0},     {2, 5, 2, 3, 2, 4, 4, 1, 3},     {1, 64, 4, 8, 2, 8, 16, 5, 2},
    {2, 100, 4, 8, 1, 8, 64, 0, 7},  {1, 257, 2, 8, 2, 8, 64, 3, 0},  {1, 257, 2, 16, 1, 16, 256, 0, 0},
    {1, 100, 4, 8, 4, 8, 8, 2, 2},   {1, 37, 3, 5, 1, 6, 1, 1, 1},    {1, 300, 6, 4, 2, 4, 128, 0, 0},
    {2, 70, 16, 4, 2, 4, 32, 0, 0},  {1, 130, 12, 64, 1, 8, 32, 0, 0},  // 12 heads of P=64: head batches 8 + 4
};

START_TEST(test_forward_matches_materialized) {
    for (size_t si = 0; si < sizeof fwd_shapes / sizeof *fwd_shapes; si++) {
        const Shape *sh = &fwd_shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc, 0.05f, 0.5f,
                           -1.5f, -0.2f, 100 + si);
        size_t ny = (size_t)sh->B * sh->T * sh->H * sh->P;
        float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
        double *yd = malloc(sizeof(double) * ny);
        float *scr = scratch_for(&p.d);
        ssd_forward(y, p.x, p.dt, p.A, p.Bm, p.Cm, p.D, &p.d, scr);
        DProb q = dprob_make(&p);
        ref_forward(yd, &q, &p.d);
        for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
        double rel = tu_rel_error(y, yr, ny), viol = tu_max_violation(y, yr, ny, 1e-5, 1e-4);
        printf("ssd fwd B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d: rel err %.2e, max violation %.3f\n", sh->B, sh->T,
               sh->H, sh->P, sh->G, sh->N, sh->chunk, rel, viol);
        ck_assert_msg(rel < 2e-6 && viol <= 1.0, "SSD forward differs from the materialized reference (shape %zu)",
                      si);
        dprob_free(&q);
        free(y); free(yr); free(yd); free(scr);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_forward_matches_recurrent) {
    const Shape shapes[] = {{1, 1, 2, 4, 1, 4, 4, 0, 0},
                            {2, 77, 4, 4, 2, 8, 16, 3, 1},
                            {1, 600, 2, 8, 1, 8, 256, 0, 0},
                            {1, 600, 2, 8, 2, 8, 64, 1, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc, 0.01f, 0.3f,
                           -2.0f, -0.1f, 200 + si);
        const int H = sh->H, P = sh->P, N = sh->N, G = sh->G, T = sh->T;
        size_t ny = (size_t)sh->B * T * H * P;
        float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
        float *scr = scratch_for(&p.d);
        ssd_forward(y, p.x, p.dt, p.A, p.Bm, p.Cm, p.D, &p.d, scr);
        float *state = malloc(sizeof(float) * H * P * N), *xt = malloc(sizeof(float) * H * P);
        for (int b = 0; b < sh->B; b++) {
            memset(state, 0, sizeof(float) * H * P * N);
            for (int t = 0; t < T; t++) {
                const size_t r = (size_t)b * T + t;
                memcpy(xt, p.x + r * p.d.ld_x, sizeof(float) * H * P);
                ssd_step(yr + r * H * P, state, xt, p.dt + r * H, p.A, p.Bm + r * p.d.ld_bc, p.Cm + r * p.d.ld_bc,
                         p.D, H, P, G, N);
            }
        }
        double rel = tu_rel_error(y, yr, ny), viol = tu_max_violation(y, yr, ny, 1e-5, 1e-4);
        printf("ssd fwd vs recurrent T=%d chunk=%d G=%d: rel err %.2e, max violation %.3f\n", T, sh->chunk, G, rel,
               viol);
        ck_assert_msg(rel < 5e-6 && viol <= 1.0, "SSD chunkwise forward differs from ssd_step (shape %zu)", si);
        free(state); free(xt); free(y); free(yr); free(scr);
        prob_free(&p);
    }
}
END_TEST

// Strong decays (dt·A down to -100 per token): no overflow, no NaN, still equal to the reference.
START_TEST(test_forward_strong_decay) {
    Prob p = prob_make(1, 300, 4, 8, 2, 8, 64, 0, 0, 0.5f, 5.0f, -20.0f, -2.0f, 7);
    size_t ny = (size_t)300 * 4 * 8;
    float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
    double *yd = malloc(sizeof(double) * ny);
    float *scr = scratch_for(&p.d);
    ssd_forward(y, p.x, p.dt, p.A, p.Bm, p.Cm, p.D, &p.d, scr);
    DProb q = dprob_make(&p);
    ref_forward(yd, &q, &p.d);
    for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
    double viol = tu_max_violation(y, yr, ny, 1e-5, 1e-4);
    printf("ssd strong decay: max violation %.3f\n", viol);
    ck_assert_msg(viol <= 1.0, "strong decays: forward wrong or not finite");
    dprob_free(&q);
    free(y); free(yr); free(yd); free(scr);
    prob_free(&p);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Backward

typedef struct {
    float *dx, *ddt, *dA, *dBm, *dCm, *dD;
} FGrad;

static FGrad fgrad_make(const Prob *p) {
    FGrad g = {calloc(p->nx, sizeof(float)), calloc(p->ndt, sizeof(float)), calloc(p->d.H, sizeof(float)),
               calloc(p->nbc, sizeof(float)), calloc(p->nbc, sizeof(float)), calloc(p->d.H, sizeof(float))};
    return g;
}

static void fgrad_free(FGrad *g) {
    free(g->dx); free(g->ddt); free(g->dA); free(g->dBm); free(g->dCm); free(g->dD);
}

static void run_backward(FGrad *g, const float *dy, const Prob *p, float *scr) {
    ssd_backward(g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, dy, p->x, p->dt, p->A, p->Bm, p->Cm, p->D, &p->d, scr);
}

// Compares every gradient of the chunkwise backward (float) with a double reference gradient.
static void check_grads(const FGrad *g, const DGrad *r, const Prob *p, double tol, const char *what) {
    const char *names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    const float *fs[] = {g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD};
    const double *ds[] = {r->x, r->dt, r->A, r->Bm, r->Cm, r->D};
    const size_t ns[] = {p->nx, p->ndt, (size_t)p->d.H, p->nbc, p->nbc, (size_t)p->d.H};
    for (int i = 0; i < 6; i++) {
        double e = rel_err_fd(fs[i], ds[i], ns[i]);
        printf("  %s %-3s rel err %.2e\n", what, names[i], e);
        ck_assert_msg(e < tol, "%s: %s rel err %.3e >= %.1e", what, names[i], e, tol);
    }
}

START_TEST(test_backward_finite_differences) {
    const Shape shapes[] = {{2, 13, 4, 3, 2, 4, 4, 1, 2}, {1, 9, 2, 3, 1, 3, 1, 0, 0}, {1, 11, 2, 2, 2, 3, 16, 0, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc, 0.05f, 0.6f,
                           -1.5f, -0.3f, 300 + si);
        const ScanDims *d = &p.d;
        size_t ny = (size_t)d->B * d->T * d->H * d->P;
        float *dy = malloc(sizeof(float) * ny);
        uint64_t s = 99 + si;
        tu_fill_randn(dy, ny, 1.0f, &s);
        double *w = to_double(dy, ny);
        DProb q = dprob_make(&p);
        DGrad fd = dgrad_make(&p), an = dgrad_make(&p);
        fd_grad(fd.x, q.x, p.nx, d->ld_x, d->H * d->P, &q, d, w);
        fd_grad(fd.dt, q.dt, p.ndt, 1, 1, &q, d, w);
        fd_grad(fd.A, q.A, d->H, 1, 1, &q, d, w);
        fd_grad(fd.Bm, q.Bm, p.nbc, d->ld_bc, d->G * d->N, &q, d, w);
        fd_grad(fd.Cm, q.Cm, p.nbc, d->ld_bc, d->G * d->N, &q, d, w);
        fd_grad(fd.D, q.D, d->H, 1, 1, &q, d, w);
        // the double reference backward must agree with finite differences to ~1e-8
        ref_backward(&an, w, &q, d);
        const double *fa[] = {fd.x, fd.dt, fd.A, fd.Bm, fd.Cm, fd.D}, *aa[] = {an.x, an.dt, an.A, an.Bm, an.Cm, an.D};
        const size_t ns[] = {p.nx, p.ndt, (size_t)d->H, p.nbc, p.nbc, (size_t)d->H};
        for (int i = 0; i < 6; i++) {
            double e = rel_err_dd(aa[i], fa[i], ns[i]);
            ck_assert_msg(e < 1e-7, "reference backward vs finite differences: tensor %d rel err %.3e", i, e);
        }
        // the chunkwise float backward against finite differences
        FGrad g = fgrad_make(&p);
        float *scr = scratch_for(d);
        run_backward(&g, dy, &p, scr);
        printf("ssd backward vs finite differences, T=%d chunk=%d G=%d:\n", d->T, d->chunk, d->G);
        check_grads(&g, &fd, &p, 2e-5, "fd");
        fgrad_free(&g);
        free(scr);
        dgrad_free(&fd); dgrad_free(&an); dprob_free(&q);
        free(dy); free(w);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_backward_matches_reference) {
    const Shape shapes[] = {{1, 300, 4, 8, 2, 8, 64, 2, 1},
                            {2, 257, 2, 8, 1, 8, 256, 0, 0},
                            {1, 333, 4, 4, 4, 4, 16, 0, 0},
                            {1, 200, 6, 8, 2, 16, 128, 0, 3},
                            {2, 100, 12, 64, 1, 8, 32, 1, 0}};  // head batches of 8 + 4
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc, 0.02f, 0.4f,
                           -1.5f, -0.1f, 400 + si);
        const ScanDims *d = &p.d;
        size_t ny = (size_t)d->B * d->T * d->H * d->P;
        float *dy = malloc(sizeof(float) * ny);
        uint64_t s = 7 + si;
        tu_fill_randn(dy, ny, 1.0f, &s);
        double *w = to_double(dy, ny);
        DProb q = dprob_make(&p);
        DGrad an = dgrad_make(&p);
        ref_backward(&an, w, &q, d);
        FGrad g = fgrad_make(&p);
        float *scr = scratch_for(d);
        run_backward(&g, dy, &p, scr);
        printf("ssd backward vs double reference, B=%d T=%d H=%d G=%d chunk=%d:\n", d->B, d->T, d->H, d->G, d->chunk);
        check_grads(&g, &an, &p, 3e-5, "ref");
        fgrad_free(&g);
        free(scr);
        dgrad_free(&an); dprob_free(&q);
        free(dy); free(w);
        prob_free(&p);
    }
}
END_TEST

// Gradients accumulate (+=) and the padding columns of dx / dB / dC rows are never written.
START_TEST(test_backward_accumulates) {
    Prob p = prob_make(2, 90, 4, 4, 2, 4, 16, 3, 5, 0.05f, 0.5f, -1.0f, -0.2f, 11);
    const ScanDims *d = &p.d;
    size_t ny = (size_t)d->B * d->T * d->H * d->P;
    float *dy = malloc(sizeof(float) * ny);
    uint64_t s = 5;
    tu_fill_randn(dy, ny, 1.0f, &s);
    float *scr = scratch_for(d);
    FGrad g1 = fgrad_make(&p), g2 = fgrad_make(&p);
    run_backward(&g1, dy, &p, scr);
    // g2 starts from sentinel values everywhere (padding included) and gets two backward passes
    float *bufs[] = {g2.dx, g2.ddt, g2.dA, g2.dBm, g2.dCm, g2.dD};
    const float *ones[] = {g1.dx, g1.ddt, g1.dA, g1.dBm, g1.dCm, g1.dD};
    const size_t ns[] = {p.nx, p.ndt, (size_t)d->H, p.nbc, p.nbc, (size_t)d->H};
    for (int i = 0; i < 6; i++)
        for (size_t j = 0; j < ns[i]; j++) bufs[i][j] = 0.25f;
    run_backward(&g2, dy, &p, scr);
    run_backward(&g2, dy, &p, scr);
    for (int i = 0; i < 6; i++) {
        float *expect = malloc(sizeof(float) * ns[i]);
        for (size_t j = 0; j < ns[i]; j++) expect[j] = 0.25f + 2.0f * ones[i][j];
        double v = tu_max_violation(bufs[i], expect, ns[i], 1e-5, 1e-5);
        ck_assert_msg(v <= 1.0, "tensor %d does not accumulate (violation %.3f)", i, v);
        free(expect);
    }
    for (size_t r = 0; r < (size_t)d->B * d->T; r++) {
        for (int j = d->H * d->P; j < d->ld_x; j++) ck_assert(g2.dx[r * d->ld_x + j] == 0.25f);
        for (int j = d->G * d->N; j < d->ld_bc; j++) {
            ck_assert(g2.dBm[r * d->ld_bc + j] == 0.25f);
            ck_assert(g2.dCm[r * d->ld_bc + j] == 0.25f);
        }
    }
    fgrad_free(&g1); fgrad_free(&g2);
    free(scr); free(dy);
    prob_free(&p);
}
END_TEST

// Same results for any thread count and run to run (dB/dC group sums are done per chunk, not atomically).
START_TEST(test_backward_deterministic) {
    Prob p = prob_make(1, 260, 8, 8, 1, 8, 64, 0, 0, 0.05f, 0.5f, -1.0f, -0.2f, 12);
    const ScanDims *d = &p.d;
    size_t ny = (size_t)d->B * d->T * d->H * d->P;
    float *dy = malloc(sizeof(float) * ny);
    uint64_t s = 6;
    tu_fill_randn(dy, ny, 1.0f, &s);
    FGrad g1 = fgrad_make(&p), g2 = fgrad_make(&p);
    float *scr = scratch_for(d);
    run_backward(&g1, dy, &p, scr);
    free(scr);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    scr = scratch_for(d);
    run_backward(&g2, dy, &p, scr);
    omp_set_num_threads(nt);
    ck_assert(memcmp(g1.dx, g2.dx, sizeof(float) * p.nx) == 0);
    ck_assert(memcmp(g1.dBm, g2.dBm, sizeof(float) * p.nbc) == 0);
    ck_assert(memcmp(g1.dCm, g2.dCm, sizeof(float) * p.nbc) == 0);
    ck_assert(memcmp(g1.ddt, g2.ddt, sizeof(float) * p.ndt) == 0);
    ck_assert(memcmp(g1.dA, g2.dA, sizeof(float) * d->H) == 0);
    fgrad_free(&g1); fgrad_free(&g2);
    free(scr); free(dy);
    prob_free(&p);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Helpers

START_TEST(test_scan_exp_accuracy) {
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        const float x = -87.0f * (float)i / 2000000.0f;
        const double ref = exp((double)x);
        const double e = fabs(scan_exp(x) - ref) / ref;
        if (e > worst) worst = e;
    }
    printf("scan_exp max rel err on [-87, 0]: %.2e\n", worst);
    ck_assert_msg(worst < 3e-7, "scan_exp rel err %.3e", worst);
    ck_assert(scan_exp(0.0f) == 1.0f);
    ck_assert(scan_exp(1e-3f) == 1.0f);  // positive inputs clamp to 0
    ck_assert(scan_exp(-200.0f) >= 0.0f && scan_exp(-200.0f) < 1e-37f);
    ck_assert(isnan(scan_exp(NAN)));
}
END_TEST

START_TEST(test_dims_check) {
    Err err;
    ScanDims d = {.B = 1, .T = 10, .H = 4, .P = 8, .G = 2, .N = 8, .chunk = 64, .ld_x = 32, .ld_bc = 16};
    ck_assert(scan_dims_check(&d, false, &err));
    ScanDims bad = d;
    bad.chunk = 48;
    ck_assert(!scan_dims_check(&bad, false, &err));
    ck_assert(strstr(err.msg, "chunk") != NULL);
    bad = d;
    bad.G = 3;
    ck_assert(!scan_dims_check(&bad, false, &err));
    ck_assert(strstr(err.msg, "G=3") != NULL);
    bad = d;
    bad.ld_x = 31;
    ck_assert(!scan_dims_check(&bad, false, &err));
    ck_assert(strstr(err.msg, "ld_x") != NULL);
    bad = d;
    bad.ld_bc = 15;
    ck_assert(!scan_dims_check(&bad, false, &err));
    bad = d;
    bad.T = 0;
    ck_assert(!scan_dims_check(&bad, false, &err));
    bad = d;
    bad.levels = 4;  // T = 10 needs bit_length(9) + 1 = 5
    ck_assert(!scan_dims_check(&bad, true, &err));
    ck_assert(strstr(err.msg, "levels") != NULL);
    bad.levels = 5;
    ck_assert(scan_dims_check(&bad, true, &err));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("scan_ssd");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_scan_exp_accuracy);
    tcase_add_test(tc, test_dims_check);
    tcase_add_test(tc, test_forward_matches_materialized);
    tcase_add_test(tc, test_forward_matches_recurrent);
    tcase_add_test(tc, test_forward_strong_decay);
    tcase_add_test(tc, test_backward_finite_differences);
    tcase_add_test(tc, test_backward_matches_reference);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_backward_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
