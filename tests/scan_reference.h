// scan_reference.h — what test_scan_ssd.c and test_scan_loglinear.c share: random test problems, the
// materialized O(T²) reference in double (forward and its analytic backward), central finite differences,
// and the checks both suites run on the chunkwise kernels. Header-only (one includer per test binary).
//
// One reference serves both scans: the log-linear op
//     y_t = Σ_{s≤t} λ_t[bit_length(t^s)] (q_t·k_s) exp(G_t - G_s) dt_s x_s + D x_t,  G = cumsum(dt·A)
// is the SSD with λ ≡ 1. A problem made with loglinear = false has no λ (lam == NULL): its reference uses
// weight 1 (exactly: the products are unchanged) and it runs through ssd_*; with λ it runs through
// loglinear_*.
#ifndef LL_SCAN_REFERENCE_H
#define LL_SCAN_REFERENCE_H

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scan_loglinear.h"
#include "scan_ssd.h"
#include "ssd_chunk.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Test problems

typedef struct {
    int B, T, H, P, G, N, chunk, pad_x, pad_bc, extra_levels;  // extra_levels: λ levels beyond those needed
} Shape;

typedef struct {
    ScanDims d;
    float *x, *dt, *A, *Bm, *Cm, *D, *lam;  // layouts of scan_ssd.h / scan_loglinear.h; lam NULL: SSD problem
    size_t nx, nbc, ndt, nlam;              // float counts of x, Bm (= Cm), dt, lam
} Prob;

// dt uniform in [dt_lo, dt_hi], A in [A_lo, A_hi], λ (log-linear) in [0.2, 1.5] (softplus range).
static inline Prob prob_make(const Shape *sh, bool loglinear, float dt_lo, float dt_hi, float A_lo, float A_hi,
                             uint64_t seed) {
    const int B = sh->B, T = sh->T, H = sh->H;
    Prob p;
    memset(&p, 0, sizeof p);
    p.d = (ScanDims){.B = B, .T = T, .H = H, .P = sh->P, .G = sh->G, .N = sh->N, .chunk = sh->chunk,
                     .ld_x = H * sh->P + sh->pad_x, .ld_bc = sh->G * sh->N + sh->pad_bc,
                     .levels = loglinear ? levels_needed(T) + sh->extra_levels : 0};
    p.nx = (size_t)B * T * p.d.ld_x;
    p.nbc = (size_t)B * T * p.d.ld_bc;
    p.ndt = (size_t)B * T * H;
    p.nlam = p.ndt * p.d.levels;
    p.x = malloc(sizeof(float) * p.nx);
    p.Bm = malloc(sizeof(float) * p.nbc);
    p.Cm = malloc(sizeof(float) * p.nbc);
    p.dt = malloc(sizeof(float) * p.ndt);
    p.lam = loglinear ? malloc(sizeof(float) * p.nlam) : NULL;
    p.A = malloc(sizeof(float) * H);
    p.D = malloc(sizeof(float) * H);
    uint64_t s = seed;
    tu_fill_randn(p.x, p.nx, 1.0f, &s);
    tu_fill_randn(p.Bm, p.nbc, 0.5f, &s);
    tu_fill_randn(p.Cm, p.nbc, 0.5f, &s);
    for (size_t i = 0; i < p.ndt; i++) p.dt[i] = dt_lo + (dt_hi - dt_lo) * (float)tu_uniform(&s);
    for (size_t i = 0; i < p.nlam; i++) p.lam[i] = 0.2f + 1.3f * (float)tu_uniform(&s);
    for (int h = 0; h < H; h++) p.A[h] = A_lo + (A_hi - A_lo) * (float)tu_uniform(&s);
    tu_fill_randn(p.D, H, 1.0f, &s);
    return p;
}

static inline void prob_free(Prob *p) {
    free(p->x); free(p->Bm); free(p->Cm); free(p->dt); free(p->lam); free(p->A); free(p->D);
}

static inline const char *prob_name(const Prob *p) { return p->lam ? "loglinear" : "ssd"; }

static inline size_t prob_ny(const Prob *p) { return (size_t)p->d.B * p->d.T * p->d.H * p->d.P; }

// The tensors of a problem, in the order x, dt, A, B, C, D, then λ (log-linear only): float counts, and
// rows of width ld of which only the first `used` columns are inputs (the rest, row padding or λ levels
// beyond levels_needed(T), must never be written by the backward).
enum { NTENS = 7 };
static const char *const tensor_names[NTENS] = {"dx", "ddt", "dA", "dB", "dC", "dD", "dλ"};

typedef struct {
    int n;
    size_t count[NTENS];
    int ld[NTENS], used[NTENS];
} Layout;

static inline Layout prob_layout(const Prob *p) {
    const ScanDims *d = &p->d;
    const int lev_used = p->lam ? levels_needed(d->T) : 0;
    Layout l = {.n = p->lam ? 7 : 6,
                .count = {p->nx, p->ndt, (size_t)d->H, p->nbc, p->nbc, (size_t)d->H, p->nlam},
                .ld = {d->ld_x, 1, 1, d->ld_bc, d->ld_bc, 1, d->levels},
                .used = {d->H * d->P, 1, 1, d->G * d->N, d->G * d->N, 1, lev_used}};
    return l;
}

// Scratch filled with NaN: reading any scratch value the kernels did not write first shows up as NaN.
static inline float *nan_floats(size_t n) {
    float *s = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) s[i] = NAN;
    return s;
}

static inline float *scratch_for(const Prob *p) {
    return nan_floats(p->lam ? loglinear_scratch_floats(&p->d) : ssd_scratch_floats(&p->d));
}

static inline float *random_dy(const Prob *p, uint64_t seed) {
    float *dy = malloc(sizeof(float) * prob_ny(p));
    tu_fill_randn(dy, prob_ny(p), 1.0f, &seed);
    return dy;
}

static inline void run_forward(float *y, const Prob *p, float *scr) {
    if (p->lam)
        loglinear_forward(y, p->x, p->dt, p->A, p->Bm, p->Cm, p->D, p->lam, &p->d, scr);
    else
        ssd_forward(y, p->x, p->dt, p->A, p->Bm, p->Cm, p->D, &p->d, scr);
}

// Token-by-token recurrence (ssd_step / loglinear_step) over all sequences of a problem.
static inline void run_recurrent(float *y, const Prob *p) {
    const ScanDims *d = &p->d;
    const int H = d->H, P = d->P, N = d->N, L = p->lam ? d->levels : 1;
    const size_t nstate = (size_t)H * L * P * N;
    float *state = malloc(sizeof(float) * nstate), *xt = malloc(sizeof(float) * H * P);
    for (int b = 0; b < d->B; b++) {
        if (!p->lam) memset(state, 0, sizeof(float) * nstate);  // loglinear_step clears it itself at t = 0
        for (int t = 0; t < d->T; t++) {
            const size_t r = (size_t)b * d->T + t;
            memcpy(xt, p->x + r * d->ld_x, sizeof(float) * H * P);  // x rows are padded
            if (p->lam)
                loglinear_step(y + r * H * P, state, t, xt, p->dt + r * H, p->A, p->Bm + r * d->ld_bc,
                               p->Cm + r * d->ld_bc, p->D, p->lam + r * H * L, H, P, d->G, N, L, L);
            else
                ssd_step(y + r * H * P, state, xt, p->dt + r * H, p->A, p->Bm + r * d->ld_bc, p->Cm + r * d->ld_bc,
                         p->D, H, P, d->G, N);
        }
    }
    free(state);
    free(xt);
}

typedef struct {
    float *dx, *ddt, *dA, *dBm, *dCm, *dD, *dlam;  // dlam NULL for the SSD
} FGrad;

static inline FGrad fgrad_make(const Prob *p) {
    FGrad g = {calloc(p->nx, sizeof(float)),  calloc(p->ndt, sizeof(float)), calloc(p->d.H, sizeof(float)),
               calloc(p->nbc, sizeof(float)), calloc(p->nbc, sizeof(float)), calloc(p->d.H, sizeof(float)),
               p->lam ? calloc(p->nlam, sizeof(float)) : NULL};
    return g;
}

static inline void fgrad_free(FGrad *g) {
    free(g->dx); free(g->ddt); free(g->dA); free(g->dBm); free(g->dCm); free(g->dD); free(g->dlam);
}

// The gradients in the order of prob_layout.
static inline void fgrad_list(const FGrad *g, float **out) {
    float *all[NTENS] = {g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, g->dlam};
    memcpy(out, all, sizeof all);
}

static inline void run_backward(FGrad *g, const float *dy, const Prob *p, float *scr) {
    if (p->lam)
        loglinear_backward(g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, g->dlam, dy, p->x, p->dt, p->A, p->Bm,
                           p->Cm, p->D, p->lam, &p->d, scr);
    else
        ssd_backward(g->dx, g->ddt, g->dA, g->dBm, g->dCm, g->dD, dy, p->x, p->dt, p->A, p->Bm, p->Cm, p->D, &p->d,
                     scr);
}

// ---------------------------------------------------------------------------------------------------
// Materialized reference in double (same layouts as the float tensors)

// A problem's inputs, or their gradients, in double (lam NULL for the SSD).
typedef struct {
    double *x, *dt, *A, *Bm, *Cm, *D, *lam;
} DTensors;

static inline double *to_double(const float *a, size_t n) {
    double *o = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) o[i] = a[i];
    return o;
}

static inline DTensors dtensors_of(const Prob *p) {
    DTensors q = {to_double(p->x, p->nx),   to_double(p->dt, p->ndt), to_double(p->A, p->d.H),
                  to_double(p->Bm, p->nbc), to_double(p->Cm, p->nbc), to_double(p->D, p->d.H),
                  p->lam ? to_double(p->lam, p->nlam) : NULL};
    return q;
}

static inline DTensors dtensors_zeros(const Prob *p) {
    DTensors g = {calloc(p->nx, sizeof(double)),  calloc(p->ndt, sizeof(double)), calloc(p->d.H, sizeof(double)),
                  calloc(p->nbc, sizeof(double)), calloc(p->nbc, sizeof(double)), calloc(p->d.H, sizeof(double)),
                  p->lam ? calloc(p->nlam, sizeof(double)) : NULL};
    return g;
}

static inline void dtensors_free(DTensors *q) {
    free(q->x); free(q->dt); free(q->A); free(q->Bm); free(q->Cm); free(q->D); free(q->lam);
}

static inline void dtensors_list(const DTensors *q, double **out) {
    double *all[NTENS] = {q->x, q->dt, q->A, q->Bm, q->Cm, q->D, q->lam};
    memcpy(out, all, sizeof all);
}

// bit_length, written here independently of the library's.
static inline int ref_bitlen(uint64_t v) {
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

// λ_t[h, l] of row r = b·T + t, or 1 without λ (SSD).
static inline double ref_lam(const DTensors *q, const ScanDims *d, size_t r, int h, int l) {
    return q->lam ? q->lam[(r * d->H + h) * d->levels + l] : 1.0;
}

// y (B,T,H,P) = Σ_{s≤t} λ_t[bit_length(t^s)] (q_t·k_s) exp(G_t - G_s) dt_s x_s + D x_t.
static inline void ref_forward(double *y, const DTensors *q, const ScanDims *d) {
    const int T = d->T, H = d->H, P = d->P, N = d->N, Hg = d->H / d->G;
    double *Gc = malloc(sizeof(double) * T);
    for (int b = 0; b < d->B; b++) {
        for (int h = 0; h < H; h++) {
            const int g = h / Hg;
            double acc = 0;
            for (int t = 0; t < T; t++) Gc[t] = (acc += q->dt[((size_t)b * T + t) * H + h] * q->A[h]);
            for (int t = 0; t < T; t++) {
                const size_t rt = (size_t)b * T + t;
                const double *qt = q->Cm + rt * d->ld_bc + g * N;
                const double *xt = q->x + rt * d->ld_x + h * P;
                double *yt = y + (rt * H + h) * P;
                for (int p = 0; p < P; p++) yt[p] = q->D[h] * xt[p];
                for (int s = 0; s <= t; s++) {
                    const double *ks = q->Bm + ((size_t)b * T + s) * d->ld_bc + g * N;
                    const double *xs = q->x + ((size_t)b * T + s) * d->ld_x + h * P;
                    double qk = 0;
                    for (int n = 0; n < N; n++) qk += qt[n] * ks[n];
                    const double w = ref_lam(q, d, rt, h, ref_bitlen((uint64_t)(t ^ s))) * qk * exp(Gc[t] - Gc[s]) *
                                     q->dt[((size_t)b * T + s) * H + h];
                    for (int p = 0; p < P; p++) yt[p] += w * xs[p];
                }
            }
        }
    }
    free(Gc);
}

// Analytic backward of ref_forward in double, accumulated into gr (doc/loglinear-attention.md §4.4; the SSD
// is λ = 1):
//   P_ts = λ (q_t·k_s) e^{G_t-G_s};  dv_s = Σ_t P_ts dy_t;  dM_ts = dy_t·v_s;
//   dq_t += dM λ e k_s;  dk_s += dM λ e q_t;  dλ_t[ℓ(t,s)] += dM (q_t·k_s) e;
//   R_ts = dM P_ts: dG_t += R, dG_s -= R;  dg_r = Σ_{t≥r} dG_t.
static inline void ref_backward(DTensors *gr, const double *dy, const DTensors *q, const ScanDims *d) {
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
                    const int l = ref_bitlen((uint64_t)(t ^ s));
                    const double lv = ref_lam(q, d, rt, h, l);
                    double qk = 0, dyx = 0;
                    for (int n = 0; n < N; n++) qk += qt[n] * ks[n];
                    for (int p = 0; p < P; p++) dyx += dyt[p] * xs[p];
                    const double e = exp(Gc[t] - Gc[s]);
                    const double Pts = lv * qk * e;
                    // dv_s = P_ts dy_t -> dx_s += dt_s dv_s, ddt_s += x_s·dv_s
                    for (int p = 0; p < P; p++) gr->x[rs * d->ld_x + h * P + p] += dts * Pts * dyt[p];
                    gr->dt[rs * H + h] += Pts * dyx;
                    const double dM = dyx * dts;
                    for (int n = 0; n < N; n++) {
                        gr->Cm[rt * d->ld_bc + g * N + n] += dM * lv * e * ks[n];
                        gr->Bm[rs * d->ld_bc + g * N + n] += dM * lv * e * qt[n];
                    }
                    if (gr->lam) gr->lam[(rt * H + h) * d->levels + l] += dM * qk * e;
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

static inline double ref_loss(const DTensors *q, const ScanDims *d, const double *w) {
    size_t ny = (size_t)d->B * d->T * d->H * d->P;
    double *y = malloc(sizeof(double) * ny), L = 0;
    ref_forward(y, q, d);
    for (size_t i = 0; i < ny; i++) L += w[i] * y[i];
    free(y);
    return L;
}

// Central finite differences of ref_loss w.r.t. every used element of arr (count n, skipping the
// elements whose column within a row of width ld is >= used: they are not inputs, their gradient is 0).
static inline void fd_grad(double *out, double *arr, size_t n, int ld, int used, const DTensors *q,
                           const ScanDims *d, const double *w) {
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

static inline double rel_err_dd(const double *a, const double *b, size_t n) {
    double num = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        na += a[i] * a[i];
        nb += b[i] * b[i];
    }
    double den = sqrt(na > nb ? na : nb);
    return sqrt(num) / (den > 1e-30 ? den : 1e-30);
}

static inline double rel_err_fd(const float *a, const double *b, size_t n) {
    double *ad = to_double(a, n);
    double r = rel_err_dd(ad, b, n);
    free(ad);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Checks shared by both suites (each suite picks the problems and tolerances)

// Chunkwise forward against the materialized reference (rounded to float): relative error and max
// violation (tu_max_violation with atol, rtol).
static inline void forward_vs_reference(const Prob *p, double atol, double rtol, double *rel, double *viol) {
    const size_t ny = prob_ny(p);
    float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
    double *yd = malloc(sizeof(double) * ny);
    float *scr = scratch_for(p);
    run_forward(y, p, scr);
    DTensors q = dtensors_of(p);
    ref_forward(yd, &q, &p->d);
    for (size_t i = 0; i < ny; i++) yr[i] = (float)yd[i];
    *rel = tu_rel_error(y, yr, ny);
    *viol = tu_max_violation(y, yr, ny, atol, rtol);
    dtensors_free(&q);
    free(y); free(yr); free(yd); free(scr);
}

// Chunkwise forward against the token-by-token recurrence, as forward_vs_reference.
static inline void forward_vs_recurrent(const Prob *p, double atol, double rtol, double *rel, double *viol) {
    const size_t ny = prob_ny(p);
    float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
    float *scr = scratch_for(p);
    run_forward(y, p, scr);
    run_recurrent(yr, p);
    *rel = tu_rel_error(y, yr, ny);
    *viol = tu_max_violation(y, yr, ny, atol, rtol);
    free(y); free(yr); free(scr);
}

// Every gradient of the chunkwise backward (float) against a double reference gradient: rel err < tol.
static inline void check_grads(const FGrad *g, const DTensors *r, const Prob *p, double tol, const char *what) {
    const Layout l = prob_layout(p);
    float *fs[NTENS];
    double *ds[NTENS];
    fgrad_list(g, fs);
    dtensors_list(r, ds);
    for (int i = 0; i < l.n; i++) {
        double e = rel_err_fd(fs[i], ds[i], l.count[i]);
        printf("  %s %-3s rel err %.2e\n", what, tensor_names[i], e);
        ck_assert_msg(e < tol, "%s: %s rel err %.3e >= %.1e", what, tensor_names[i], e, tol);
    }
}

// Central finite differences of the reference loss Σ dy ⊙ y (dy random from dy_seed): the double
// reference backward must match them to ref_tol, then the chunkwise backward to tol (check_grads).
static inline void check_backward_fd(const Prob *p, uint64_t dy_seed, double ref_tol, double tol) {
    const ScanDims *d = &p->d;
    const Layout l = prob_layout(p);
    float *dy = random_dy(p, dy_seed);
    double *w = to_double(dy, prob_ny(p));
    DTensors q = dtensors_of(p), fd = dtensors_zeros(p), an = dtensors_zeros(p);
    double *qs[NTENS], *fs[NTENS], *as[NTENS];
    dtensors_list(&q, qs);
    dtensors_list(&fd, fs);
    dtensors_list(&an, as);
    for (int i = 0; i < l.n; i++) fd_grad(fs[i], qs[i], l.count[i], l.ld[i], l.used[i], &q, d, w);
    ref_backward(&an, w, &q, d);
    for (int i = 0; i < l.n; i++) {
        double e = rel_err_dd(as[i], fs[i], l.count[i]);
        ck_assert_msg(e < ref_tol, "reference backward vs finite differences: tensor %d rel err %.3e", i, e);
    }
    FGrad g = fgrad_make(p);
    float *scr = scratch_for(p);
    run_backward(&g, dy, p, scr);
    printf("%s backward vs finite differences, T=%d chunk=%d G=%d", prob_name(p), d->T, d->chunk, d->G);
    if (p->lam) printf(" levels=%d", d->levels);
    printf(":\n");
    check_grads(&g, &fd, p, tol, "fd");
    fgrad_free(&g);
    free(scr);
    dtensors_free(&fd); dtensors_free(&an); dtensors_free(&q);
    free(dy); free(w);
}

// The chunkwise backward against the double reference backward (dy random from dy_seed), rel err < tol.
static inline void check_backward_reference(const Prob *p, uint64_t dy_seed, double tol) {
    const ScanDims *d = &p->d;
    float *dy = random_dy(p, dy_seed);
    double *w = to_double(dy, prob_ny(p));
    DTensors q = dtensors_of(p), an = dtensors_zeros(p);
    ref_backward(&an, w, &q, d);
    FGrad g = fgrad_make(p);
    float *scr = scratch_for(p);
    run_backward(&g, dy, p, scr);
    printf("%s backward vs double reference, B=%d T=%d H=%d G=%d chunk=%d:\n", prob_name(p), d->B, d->T, d->H, d->G,
           d->chunk);
    check_grads(&g, &an, p, tol, "ref");
    fgrad_free(&g);
    free(scr);
    dtensors_free(&an); dtensors_free(&q);
    free(dy); free(w);
}

// Gradients accumulate (+=), and what is not an input (row padding, unused λ levels) is never written.
static inline void check_backward_accumulates(const Prob *p, uint64_t dy_seed) {
    const Layout l = prob_layout(p);
    float *dy = random_dy(p, dy_seed);
    float *scr = scratch_for(p);
    FGrad g1 = fgrad_make(p), g2 = fgrad_make(p);
    run_backward(&g1, dy, p, scr);
    // g2 starts from sentinel values everywhere (padding included) and gets two backward passes
    float *bufs[NTENS], *ones[NTENS];
    fgrad_list(&g2, bufs);
    fgrad_list(&g1, ones);
    for (int i = 0; i < l.n; i++)
        for (size_t j = 0; j < l.count[i]; j++) bufs[i][j] = 0.25f;
    run_backward(&g2, dy, p, scr);
    run_backward(&g2, dy, p, scr);
    for (int i = 0; i < l.n; i++) {
        float *expect = malloc(sizeof(float) * l.count[i]);
        for (size_t j = 0; j < l.count[i]; j++) expect[j] = 0.25f + 2.0f * ones[i][j];
        double v = tu_max_violation(bufs[i], expect, l.count[i], 1e-5, 1e-5);
        ck_assert_msg(v <= 1.0, "tensor %d does not accumulate (violation %.3f)", i, v);
        free(expect);
        for (size_t j = 0; j < l.count[i]; j++)
            if ((int)(j % l.ld[i]) >= l.used[i])
                ck_assert_msg(bufs[i][j] == 0.25f, "%s[%zu] is not an input but was written", tensor_names[i], j);
    }
    fgrad_free(&g1); fgrad_free(&g2);
    free(scr); free(dy);
}

// Same gradients, bit for bit, with all threads and with one (dB/dC group sums are done per chunk, not
// atomically).
// The forward output and every gradient are the same bits with 1 and with 8 threads (and run to run): the
// task structure (head batches, state column blocks) is set by the dims, not by the thread count. Checks
// first that the problem really splits both (ssd_chunk.h), so the test covers the partial sums.
static inline void check_thread_count_independent(const Prob *p, uint64_t dy_seed) {
    ScanCtx k;
    scan_setup(&k, &p->d, p->lam != NULL, NULL);
    ck_assert_msg(k.nhb > 1 && k.nsb > 1, "problem does not split heads (nhb %d) and state columns (nsb %d)", k.nhb,
                  k.nsb);
    const Layout l = prob_layout(p);
    float *dy = random_dy(p, dy_seed);
    FGrad g[2] = {fgrad_make(p), fgrad_make(p)};
    float *y[2];
    const int saved = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 8 : 1);
        float *scr = scratch_for(p);
        y[run] = nan_floats(prob_ny(p));
        run_forward(y[run], p, scr);
        run_backward(&g[run], dy, p, scr);
        free(scr);
    }
    omp_set_num_threads(saved);
    ck_assert_msg(memcmp(y[0], y[1], sizeof(float) * prob_ny(p)) == 0, "y depends on the thread count");
    float *a[NTENS], *b[NTENS];
    fgrad_list(&g[0], a);
    fgrad_list(&g[1], b);
    for (int i = 0; i < l.n; i++)
        ck_assert_msg(memcmp(a[i], b[i], sizeof(float) * l.count[i]) == 0, "%s depends on the thread count",
                      tensor_names[i]);
    fgrad_free(&g[0]); fgrad_free(&g[1]);
    free(y[0]); free(y[1]); free(dy);
}

#endif
