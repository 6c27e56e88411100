// test_scan_loglinear.c — the log-linear Mamba-2 scan against references written here: the materialized
// O(T²) form (QKᵀ ⊙ decay mask ⊙ λ-mask)(dt·x) + D x in double with λ-mask_ts = λ_t[bit_length(t^s)], its
// analytic backward in double (checked against central finite differences), and the Fenwick recurrence
// (loglinear_step). Also: the level function, and λ tied across levels == λ·SSD.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scan_loglinear.h"
#include "scan_ssd.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Test problems

typedef struct {
    ScanDims d;
    float *x, *dt, *A, *Bm, *Cm, *D, *lam;
    size_t nx, nbc, ndt, nlam;
} Prob;

static Prob prob_make(int B, int T, int H, int P, int G, int N, int chunk, int pad_x, int pad_bc, int extra_levels,
                      float dt_lo, float dt_hi, float A_lo, float A_hi, uint64_t seed) {
    Prob p;
    memset(&p, 0, sizeof p);
    p.d = (ScanDims){.B = B, .T = T, .H = H, .P = P, .G = G, .N = N, .chunk = chunk, .ld_x = H * P + pad_x,
                     .ld_bc = G * N + pad_bc, .levels = loglinear_levels_needed(T) + extra_levels};
    p.nx = (size_t)B * T * p.d.ld_x;
    p.nbc = (size_t)B * T * p.d.ld_bc;
    p.ndt = (size_t)B * T * H;
    p.nlam = p.ndt * p.d.levels;
    p.x = malloc(sizeof(float) * p.nx);
    p.Bm = malloc(sizeof(float) * p.nbc);
    p.Cm = malloc(sizeof(float) * p.nbc);
    p.dt = malloc(sizeof(float) * p.ndt);
    p.lam = malloc(sizeof(float) * p.nlam);
    p.A = malloc(sizeof(float) * H);
    p.D = malloc(sizeof(float) * H);
    uint64_t s = seed;
    tu_fill_randn(p.x, p.nx, 1.0f, &s);
    tu_fill_randn(p.Bm, p.nbc, 0.5f, &s);
    tu_fill_randn(p.Cm, p.nbc, 0.5f, &s);
    for (size_t i = 0; i < p.ndt; i++) p.dt[i] = dt_lo + (dt_hi - dt_lo) * (float)tu_uniform(&s);
    for (size_t i = 0; i < p.nlam; i++) p.lam[i] = 0.2f + 1.3f * (float)tu_uniform(&s);  // softplus range
    for (int h = 0; h < H; h++) p.A[h] = A_lo + (A_hi - A_lo) * (float)tu_uniform(&s);
    tu_fill_randn(p.D, H, 1.0f, &s);
    return p;
}

static void prob_free(Prob *p) {
    free(p->x); free(p->Bm); free(p->Cm); free(p->dt); free(p->lam); free(p->A); free(p->D);
}

// Scratch filled with NaN: reading any scratch value the kernels did not write first shows up as NaN.
static float *scratch_for(const ScanDims *d) {
    size_t n = loglinear_scratch_floats(d);
    float *s = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) s[i] = NAN;
    return s;
}

static void run_forward(float *y, const Prob *p, float *scr) {
    loglinear_forward(y, p->x, p->dt, p->A, p->Bm, p->Cm, p->D, p->lam, &p->d, scr);
}

static int bitlen(uint64_t v) {
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------------
// Materialized reference in double

typedef struct {
    double *x, *dt, *A, *Bm, *Cm, *D, *lam;
} DProb;

static double *to_double(const float *a, size_t n) {
    double *o = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) o[i] = a[i];
    return o;
}

static DProb dprob_make(const Prob *p) {
    DProb q = {to_double(p->x, p->nx),   to_double(p->dt, p->ndt), to_double(p->A, p->d.H),
               to_double(p->Bm, p->nbc), to_double(p->Cm, p->nbc), to_double(p->D, p->d.H),
               to_double(p->lam, p->nlam)};
    return q;
}

static void dprob_free(DProb *q) {
    free(q->x); free(q->dt); free(q->A); free(q->Bm); free(q->Cm); free(q->D); free(q->lam);
}

static inline double lam_at(const DProb *q, const ScanDims *d, int b, int t, int h, int l) {
    return q->lam[(((size_t)b * d->T + t) * d->H + h) * d->levels + l];
}

// y_t = Σ_{s≤t} λ_t[bit_length(t^s)] (q_t·k_s) exp(G_t - G_s) dt_s x_s + D x_t
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
                    const double w = lam_at(q, d, b, t, h, bitlen((uint64_t)(t ^ s))) * qk * exp(Gc[t] - Gc[s]) *
                                     q->dt[((size_t)b * T + s) * H + h];
                    for (int p = 0; p < P; p++) yt[p] += w * xs[p];
                }
            }
        }
    }
    free(Gc);
}

typedef struct {
    double *x, *dt, *A, *Bm, *Cm, *D, *lam;
} DGrad;

static DGrad dgrad_make(const Prob *p) {
    DGrad g = {calloc(p->nx, sizeof(double)),  calloc(p->ndt, sizeof(double)), calloc(p->d.H, sizeof(double)),
               calloc(p->nbc, sizeof(double)), calloc(p->nbc, sizeof(double)), calloc(p->d.H, sizeof(double)),
               calloc(p->nlam, sizeof(double))};
    return g;
}

static void dgrad_free(DGrad *g) {
    free(g->x); free(g->dt); free(g->A); free(g->Bm); free(g->Cm); free(g->D); free(g->lam);
}

// Analytic backward of ref_forward in double (loglinear-attention.md §4.4):
//   P_ts = λ (q_t·k_s) e^{G_t-G_s};  dv_s = Σ_t P_ts dy_t;  dM_ts = dy_t·v_s;
//   dq_t += dM λ e k_s;  dk_s += dM λ e q_t;  dλ_t[ℓ(t,s)] += dM (q_t·k_s) e;
//   R_ts = dM P_ts: dG_t += R, dG_s -= R;  dg_r = Σ_{t≥r} dG_t.
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
                    const int l = bitlen((uint64_t)(t ^ s));
                    const double lv = lam_at(q, d, b, t, h, l);
                    double qk = 0, dyx = 0;
                    for (int n = 0; n < N; n++) qk += qt[n] * ks[n];
                    for (int p = 0; p < P; p++) dyx += dyt[p] * xs[p];
                    const double e = exp(Gc[t] - Gc[s]);
                    const double Pts = lv * qk * e;
                    for (int p = 0; p < P; p++) gr->x[rs * d->ld_x + h * P + p] += dts * Pts * dyt[p];
                    gr->dt[rs * H + h] += Pts * dyx;
                    const double dM = dyx * dts;
                    for (int n = 0; n < N; n++) {
                        gr->Cm[rt * d->ld_bc + g * N + n] += dM * lv * e * ks[n];
                        gr->Bm[rs * d->ld_bc + g * N + n] += dM * lv * e * qt[n];
                    }
                    gr->lam[(rt * H + h) * d->levels + l] += dM * qk * e;
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

// Central differences of ref_loss for every used element (column < used within rows of width ld).
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

// Token-by-token Fenwick recurrence over all sequences of a problem.
static void run_recurrent(float *y, const Prob *p) {
    const ScanDims *d = &p->d;
    const int H = d->H, P = d->P, N = d->N, L = d->levels;
    float *state = malloc(sizeof(float) * (size_t)H * L * P * N), *xt = malloc(sizeof(float) * H * P);
    for (int b = 0; b < d->B; b++) {
        for (int t = 0; t < d->T; t++) {
            const size_t r = (size_t)b * d->T + t;
            memcpy(xt, p->x + r * d->ld_x, sizeof(float) * H * P);
            loglinear_step(y + r * H * P, state, t, xt, p->dt + r * H, p->A, p->Bm + r * d->ld_bc,
                           p->Cm + r * d->ld_bc, p->D, p->lam + r * H * L, H, P, d->G, N, L);
        }
    }
    free(state);
    free(xt);
}

// ---------------------------------------------------------------------------------------------------
// Levels

START_TEST(test_levels_needed) {
    ck_assert_int_eq(loglinear_levels_needed(1), 1);
    ck_assert_int_eq(loglinear_levels_needed(2), 2);
    ck_assert_int_eq(loglinear_levels_needed(3), 3);
    ck_assert_int_eq(loglinear_levels_needed(64), 7);
    ck_assert_int_eq(loglinear_levels_needed(65), 8);
    ck_assert_int_eq(loglinear_levels_needed(2048), 12);
    ck_assert_int_eq(loglinear_levels_needed(2049), 13);
    ck_assert_int_eq(loglinear_levels_needed(16384), 15);
    ck_assert_int_eq(loglinear_levels_needed((int64_t)1 << 40), 41);
    // the table of loglinear-attention.md §1.3 (T = 8)
    static const int rows[8][8] = {{0},
                                   {1, 0},
                                   {2, 2, 0},
                                   {2, 2, 1, 0},
                                   {3, 3, 3, 3, 0},
                                   {3, 3, 3, 3, 1, 0},
                                   {3, 3, 3, 3, 2, 2, 0},
                                   {3, 3, 3, 3, 2, 2, 1, 0}};
    for (int t = 0; t < 8; t++)
        for (int s = 0; s <= t; s++) ck_assert_int_eq(loglinear_level(t, s), rows[t][s]);
    // the Fenwick buckets: level l >= 1 of t is [(t>>l)<<l, +2^(l-1)) iff bit l-1 of t is set
    for (int t = 0; t < 700; t++) {
        int count[16] = {0};
        for (int s = 0; s <= t; s++) {
            int l = loglinear_level(t, s);
            count[l]++;
            if (l > 0) {
                ck_assert((t >> (l - 1)) & 1);
                ck_assert_int_eq(s >> l, t >> l);
                ck_assert(s < ((t >> l) << l) + (1 << (l - 1)));
            }
        }
        ck_assert_int_eq(count[0], 1);
        for (int l = 1; l < 16; l++) ck_assert_int_eq(count[l], ((t >> (l - 1)) & 1) ? 1 << (l - 1) : 0);
    }
}
END_TEST

// The recurrent cascade puts source s in level bit_length(t^s) for target t: with one value channel per
// source (x_s = e_s), no decay and λ_t[l] = l + 1, y_t[s] = λ_t[level of s] reads the level off. The
// chunkwise forward sees the same levels.
START_TEST(test_levels_of_the_recurrence) {
    const int Ts[] = {64, 300};
    for (int ti = 0; ti < 2; ti++) {
        const int T = Ts[ti];
        Prob p = prob_make(1, T, 1, T, 1, 1, 8, 0, 0, 0, 1.0f, 1.0f, -1e-30f, -1e-30f, 1);
        for (int t = 0; t < T; t++) {
            for (int s = 0; s < T; s++) p.x[(size_t)t * T + s] = (s == t) ? 1.0f : 0.0f;
            p.Bm[t] = 1.0f;
            p.Cm[t] = 1.0f;
            for (int l = 0; l < p.d.levels; l++) p.lam[(size_t)t * p.d.levels + l] = (float)(l + 1);
        }
        p.D[0] = 0.0f;
        float *y = malloc(sizeof(float) * (size_t)T * T), *yc = malloc(sizeof(float) * (size_t)T * T);
        run_recurrent(y, &p);
        float *scr = scratch_for(&p.d);
        run_forward(yc, &p, scr);
        for (int t = 0; t < T; t++) {
            for (int s = 0; s < T; s++) {
                const float expect = s <= t ? (float)(bitlen((uint64_t)(t ^ s)) + 1) : 0.0f;
                ck_assert_msg(y[(size_t)t * T + s] == expect, "recurrence: t=%d s=%d level %g, expected %g", t, s,
                              y[(size_t)t * T + s] - 1, expect - 1);
                ck_assert_msg(fabsf(yc[(size_t)t * T + s] - expect) < 1e-5f, "chunkwise: t=%d s=%d", t, s);
            }
        }
        free(y); free(yc); free(scr);
        prob_free(&p);
    }
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Forward

typedef struct {
    int B, T, H, P, G, N, chunk, pad_x, pad_bc, extra_levels;
} Shape;

START_TEST(test_forward_matches_materialized) {
    const Shape shapes[] = {
        {1, 1, 2, 3, 1, 4, 4, 0, 0, 0},    {2, 5, 2, 3, 2, 4, 4, 1, 3, 2},    {1, 64, 4, 8, 2, 8, 16, 5, 2, 0},
        {2, 100, 4, 8, 1, 8, 64, 0, 7, 1}, {1, 257, 2, 8, 2, 8, 64, 3, 0, 0}, {1, 257, 2, 8, 1, 8, 8, 0, 0, 3},
        {1, 100, 4, 8, 4, 8, 8, 2, 2, 0},  {1, 37, 3, 5, 1, 6, 1, 1, 1, 0},   {1, 300, 6, 4, 2, 4, 4, 0, 0, 0},
        {2, 70, 16, 4, 2, 4, 32, 0, 0, 0}, {1, 129, 2, 4, 1, 4, 128, 0, 0, 0}, {1, 520, 2, 4, 2, 4, 2, 0, 0, 0},
        {1, 130, 12, 64, 1, 8, 16, 0, 0, 0},  // 12 heads of P=64: head batches of 8 + 4
    };
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc,
                           sh->extra_levels, 0.05f, 0.5f, -1.5f, -0.1f, 100 + si);
        size_t ny = (size_t)sh->B * sh->T * sh->H * sh->P;
        float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
        double *yd = malloc(sizeof(double) * ny);
        float *scr = scratch_for(&p.d);
        run_forward(y, &p, scr);
        DProb q = dprob_make(&p);
        ref_forward(yd, &q, &p.d);
        for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
        double rel = tu_rel_error(y, yr, ny), viol = tu_max_violation(y, yr, ny, 1e-5, 1e-4);
        printf("loglinear fwd B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d levels=%d: rel err %.2e, max violation %.3f\n",
               sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, p.d.levels, rel, viol);
        ck_assert_msg(rel < 2e-6 && viol <= 1.0, "forward differs from the materialized reference (shape %zu)", si);
        dprob_free(&q);
        free(y); free(yr); free(yd); free(scr);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_forward_matches_recurrent) {
    const Shape shapes[] = {{1, 1, 2, 4, 1, 4, 4, 0, 0, 0},      {2, 77, 4, 4, 2, 8, 16, 3, 1, 1},
                            {1, 2048, 2, 4, 1, 4, 64, 0, 0, 0},  {1, 2048, 4, 4, 2, 4, 16, 1, 2, 3},
                            {1, 1500, 2, 8, 1, 8, 256, 0, 0, 0}, {1, 1000, 2, 4, 2, 4, 1, 0, 0, 0},
                            {1, 20000, 2, 2, 1, 2, 64, 0, 0, 0}};  // past the paper's 16384 (15 levels)
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc,
                           sh->extra_levels, 0.005f, 0.1f, -1.0f, -0.05f, 200 + si);
        size_t ny = (size_t)sh->B * sh->T * sh->H * sh->P;
        float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
        float *scr = scratch_for(&p.d);
        run_forward(y, &p, scr);
        run_recurrent(yr, &p);
        double rel = tu_rel_error(y, yr, ny), viol = tu_max_violation(y, yr, ny, 1e-4, 1e-3);
        printf("loglinear fwd vs recurrent T=%d H=%d G=%d chunk=%d: rel err %.2e, max violation %.3f\n", sh->T, sh->H,
               sh->G, sh->chunk, rel, viol);
        ck_assert_msg(rel < 1e-5 && viol <= 1.0, "chunkwise forward differs from loglinear_step (shape %zu)", si);
        free(y); free(yr); free(scr);
        prob_free(&p);
    }
}
END_TEST

// λ_t[h, l] = c_{t,h} for all l: log-linear == c·(SSD output without D) + D x.
START_TEST(test_tied_lambda_is_ssd) {
    const Shape shapes[] = {{2, 300, 4, 8, 2, 8, 64, 0, 0, 0}, {1, 100, 2, 4, 1, 4, 8, 1, 1, 2}};
    for (size_t si = 0; si < 2; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc,
                           sh->extra_levels, 0.05f, 0.5f, -1.0f, -0.1f, 300 + si);
        const ScanDims *d = &p.d;
        for (size_t r = 0; r < p.ndt; r++)
            for (int l = 1; l < d->levels; l++) p.lam[r * d->levels + l] = p.lam[r * d->levels];
        size_t ny = (size_t)d->B * d->T * d->H * d->P;
        float *y = malloc(sizeof(float) * ny), *ys = malloc(sizeof(float) * ny), *yx = malloc(sizeof(float) * ny);
        float *scr = scratch_for(d);
        run_forward(y, &p, scr);
        float *scr2 = xmalloc(sizeof(float) * ssd_scratch_floats(d));
        for (size_t i = 0; i < ssd_scratch_floats(d); i++) scr2[i] = NAN;
        ssd_forward(ys, p.x, p.dt, p.A, p.Bm, p.Cm, p.D, d, scr2);
        for (int b = 0; b < d->B; b++)
            for (int t = 0; t < d->T; t++)
                for (int h = 0; h < d->H; h++) {
                    const size_t r = ((size_t)b * d->T + t) * d->H + h;
                    const float c = p.lam[r * d->levels];
                    for (int i = 0; i < d->P; i++) {
                        const float xv = p.x[((size_t)b * d->T + t) * d->ld_x + h * d->P + i];
                        yx[r * d->P + i] = c * (ys[r * d->P + i] - p.D[h] * xv) + p.D[h] * xv;
                    }
                }
        double rel = tu_rel_error(y, yx, ny), viol = tu_max_violation(y, yx, ny, 1e-5, 1e-4);
        printf("tied λ vs c·SSD T=%d chunk=%d: rel err %.2e, max violation %.3f\n", d->T, d->chunk, rel, viol);
        ck_assert_msg(rel < 2e-6 && viol <= 1.0, "tied λ differs from c·SSD");
        free(y); free(ys); free(yx); free(scr); free(scr2);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_forward_strong_decay) {
    Prob p = prob_make(1, 300, 4, 8, 2, 8, 16, 0, 0, 0, 0.5f, 5.0f, -20.0f, -2.0f, 7);
    size_t ny = (size_t)300 * 4 * 8;
    float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
    double *yd = malloc(sizeof(double) * ny);
    float *scr = scratch_for(&p.d);
    run_forward(y, &p, scr);
    DProb q = dprob_make(&p);
    ref_forward(yd, &q, &p.d);
    for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
    double viol = tu_max_violation(y, yr, ny, 1e-5, 1e-4);
    printf("loglinear strong decay: max violation %.3f\n", viol);
    ck_assert_msg(viol <= 1.0, "strong decays: forward wrong or not finite");
    dprob_free(&q);
    free(y); free(yr); free(yd); free(scr);
    prob_free(&p);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Backward

typedef struct {
    float *dx, *ddt, *dA, *dBm, *dCm, *dD, *dlam;
} FGrad;

static FGrad fgrad_make(const Prob *p) {
    FGrad g = {calloc(p->nx, sizeof(float)),  calloc(p->ndt, sizeof(float)), calloc(p->d.H, sizeof(float)),
               calloc(p->nbc, sizeof(float)), calloc(p->nbc, sizeof(float)), calloc(p->d.H, sizeof(float)),
               calloc(p->nlam, sizeof(float))};
    return g;
}

static void fgrad_free(FGrad *g) {
    free(g->dx); free(g->ddt); free(g->dA); free(g->dBm); free(g->dCm); free(g->dD); free(g->dlam);
}

static void run_backward(FGrad *g, const float *dy, const Prob *p, float *scr) {
    loglinear_backward(g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, g->dlam, dy, p->x, p->dt, p->A, p->Bm, p->Cm,
                       p->D, p->lam, &p->d, scr);
}

static void check_grads(const FGrad *g, const DGrad *r, const Prob *p, double tol, const char *what) {
    const char *names[] = {"dx", "ddt", "dA", "dB", "dC", "dD", "dλ"};
    const float *fs[] = {g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, g->dlam};
    const double *ds[] = {r->x, r->dt, r->A, r->Bm, r->Cm, r->D, r->lam};
    const size_t ns[] = {p->nx, p->ndt, (size_t)p->d.H, p->nbc, p->nbc, (size_t)p->d.H, p->nlam};
    for (int i = 0; i < 7; i++) {
        double e = rel_err_fd(fs[i], ds[i], ns[i]);
        printf("  %s %-3s rel err %.2e\n", what, names[i], e);
        ck_assert_msg(e < tol, "%s: %s rel err %.3e >= %.1e", what, names[i], e, tol);
    }
}

START_TEST(test_backward_finite_differences) {
    const Shape shapes[] = {{2, 13, 4, 3, 2, 4, 4, 1, 2, 1}, {1, 11, 2, 3, 1, 3, 1, 0, 0, 0},
                            {1, 19, 2, 2, 2, 3, 2, 0, 1, 0}, {1, 9, 2, 2, 1, 2, 16, 0, 0, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc,
                           sh->extra_levels, 0.05f, 0.6f, -1.5f, -0.3f, 400 + si);
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
        fd_grad(fd.lam, q.lam, p.nlam, 1, 1, &q, d, w);
        ref_backward(&an, w, &q, d);
        const double *fa[] = {fd.x, fd.dt, fd.A, fd.Bm, fd.Cm, fd.D, fd.lam};
        const double *aa[] = {an.x, an.dt, an.A, an.Bm, an.Cm, an.D, an.lam};
        const size_t ns[] = {p.nx, p.ndt, (size_t)d->H, p.nbc, p.nbc, (size_t)d->H, p.nlam};
        for (int i = 0; i < 7; i++) {
            double e = rel_err_dd(aa[i], fa[i], ns[i]);
            ck_assert_msg(e < 1e-7, "reference backward vs finite differences: tensor %d rel err %.3e", i, e);
        }
        FGrad g = fgrad_make(&p);
        float *scr = scratch_for(d);
        run_backward(&g, dy, &p, scr);
        printf("loglinear backward vs finite differences, T=%d chunk=%d G=%d levels=%d:\n", d->T, d->chunk, d->G,
               d->levels);
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
    const Shape shapes[] = {{1, 300, 4, 8, 2, 8, 16, 2, 1, 0}, {2, 257, 2, 8, 1, 8, 64, 0, 0, 1},
                            {1, 520, 2, 4, 2, 4, 8, 0, 0, 0},  {1, 333, 4, 4, 4, 4, 4, 0, 0, 0},
                            {1, 200, 6, 8, 2, 16, 128, 0, 3, 0}, {1, 150, 2, 4, 1, 4, 1, 0, 0, 0},
                            {2, 100, 12, 64, 1, 8, 16, 1, 0, 0},  // head batches of 8 + 4
                            {1, 1024, 2, 64, 1, 128, 64, 0, 0, 0}};  // model-like head: P=64, N=128
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, sh->pad_x, sh->pad_bc,
                           sh->extra_levels, 0.02f, 0.4f, -1.5f, -0.05f, 500 + si);
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
        printf("loglinear backward vs double reference, B=%d T=%d H=%d G=%d chunk=%d:\n", d->B, d->T, d->H, d->G,
               d->chunk);
        check_grads(&g, &an, &p, 3e-5, "ref");
        fgrad_free(&g);
        free(scr);
        dgrad_free(&an); dprob_free(&q);
        free(dy); free(w);
        prob_free(&p);
    }
}
END_TEST

// Gradients accumulate (+=); padding columns and unused λ levels are never written.
START_TEST(test_backward_accumulates) {
    Prob p = prob_make(2, 90, 4, 4, 2, 4, 16, 3, 5, 2, 0.05f, 0.5f, -1.0f, -0.2f, 11);
    const ScanDims *d = &p.d;
    size_t ny = (size_t)d->B * d->T * d->H * d->P;
    float *dy = malloc(sizeof(float) * ny);
    uint64_t s = 5;
    tu_fill_randn(dy, ny, 1.0f, &s);
    float *scr = scratch_for(d);
    FGrad g1 = fgrad_make(&p), g2 = fgrad_make(&p);
    run_backward(&g1, dy, &p, scr);
    float *bufs[] = {g2.dx, g2.ddt, g2.dA, g2.dBm, g2.dCm, g2.dD, g2.dlam};
    const float *ones[] = {g1.dx, g1.ddt, g1.dA, g1.dBm, g1.dCm, g1.dD, g1.dlam};
    const size_t ns[] = {p.nx, p.ndt, (size_t)d->H, p.nbc, p.nbc, (size_t)d->H, p.nlam};
    for (int i = 0; i < 7; i++)
        for (size_t j = 0; j < ns[i]; j++) bufs[i][j] = 0.25f;
    run_backward(&g2, dy, &p, scr);
    run_backward(&g2, dy, &p, scr);
    for (int i = 0; i < 7; i++) {
        float *expect = malloc(sizeof(float) * ns[i]);
        for (size_t j = 0; j < ns[i]; j++) expect[j] = 0.25f + 2.0f * ones[i][j];
        double v = tu_max_violation(bufs[i], expect, ns[i], 1e-5, 1e-5);
        ck_assert_msg(v <= 1.0, "tensor %d does not accumulate (violation %.3f)", i, v);
        free(expect);
    }
    const int used = loglinear_levels_needed(d->T);
    for (size_t r = 0; r < p.ndt; r++)
        for (int l = used; l < d->levels; l++) ck_assert(g2.dlam[r * d->levels + l] == 0.25f);
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

START_TEST(test_backward_deterministic) {
    Prob p = prob_make(1, 700, 8, 8, 1, 8, 64, 0, 0, 0, 0.05f, 0.5f, -1.0f, -0.2f, 12);
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
    ck_assert(memcmp(g1.dlam, g2.dlam, sizeof(float) * p.nlam) == 0);
    ck_assert(memcmp(g1.dA, g2.dA, sizeof(float) * d->H) == 0);
    fgrad_free(&g1); fgrad_free(&g2);
    free(scr); free(dy);
    prob_free(&p);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("scan_loglinear");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_levels_needed);
    tcase_add_test(tc, test_levels_of_the_recurrence);
    tcase_add_test(tc, test_forward_matches_materialized);
    tcase_add_test(tc, test_forward_matches_recurrent);
    tcase_add_test(tc, test_tied_lambda_is_ssd);
    tcase_add_test(tc, test_forward_strong_decay);
    tcase_add_test(tc, test_backward_finite_differences);
    tcase_add_test(tc, test_backward_matches_reference);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_backward_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
