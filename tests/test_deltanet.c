// test_deltanet.c — the Gated DeltaNet kernels (deltanet.h) against references in double kept in this file:
// the per-token recurrence S_t = e^{g_t}(I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ (plain), the materialized
// O(T²) log-linear form Σ_s λ_t[level_of(t,s)] decay (q_tᵀ P_{t,s} k_s) β_s v_s, and central finite
// differences of both for every gradient. Also the recurrent steps, λ tied across levels == c·GDN, strong
// decays, accumulation, thread-count independence and the dims check.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "deltanet.h"
#include "levels.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Problems

typedef struct {
    DeltaDims d;
    float *q, *k, *v, *g, *beta, *lam;  // lam NULL for plain GDN
    size_t nq, nv, ng, nlam;            // floats of q (= k), v, g (= beta), lam
} Prob;

// q, k rows L2-normalised, v ~ N(0,1), β ∈ (0.1, 0.9), g ∈ [-g_hi, -g_lo], λ ∈ [0.2, 1.5].
static Prob prob_make(int B, int T, int H, int K, int V, int chunk, bool ll, int extra_levels, float g_lo,
                      float g_hi, uint64_t seed) {
    Prob p;
    memset(&p, 0, sizeof p);
    p.d = (DeltaDims){.B = B, .T = T, .H = H, .K = K, .V = V, .chunk = chunk,
                      .levels = ll ? levels_needed(T) + extra_levels : 0};
    p.nq = (size_t)B * T * H * K;
    p.nv = (size_t)B * T * H * V;
    p.ng = (size_t)B * T * H;
    p.nlam = p.ng * p.d.levels;
    p.q = xmalloc(sizeof(float) * p.nq);
    p.k = xmalloc(sizeof(float) * p.nq);
    p.v = xmalloc(sizeof(float) * p.nv);
    p.g = xmalloc(sizeof(float) * p.ng);
    p.beta = xmalloc(sizeof(float) * p.ng);
    p.lam = ll ? xmalloc(sizeof(float) * p.nlam) : NULL;
    uint64_t s = seed;
    tu_fill_randn(p.q, p.nq, 1.0f, &s);
    tu_fill_randn(p.k, p.nq, 1.0f, &s);
    tu_fill_randn(p.v, p.nv, 1.0f, &s);
    for (size_t r = 0; r < p.ng; r++) {
        float *rows[2] = {p.q + r * K, p.k + r * K};
        for (int a = 0; a < 2; a++) {
            double n2 = 0;
            for (int i = 0; i < K; i++) n2 += (double)rows[a][i] * rows[a][i];
            const float inv = (float)(1.0 / sqrt(n2 + 1e-12));
            for (int i = 0; i < K; i++) rows[a][i] *= inv;
        }
        p.beta[r] = 0.1f + 0.8f * (float)tu_uniform(&s);
        p.g[r] = -(g_lo + (g_hi - g_lo) * (float)tu_uniform(&s));
    }
    for (size_t i = 0; i < p.nlam; i++) p.lam[i] = 0.2f + 1.3f * (float)tu_uniform(&s);
    return p;
}

static void prob_free(Prob *p) {
    free(p->q); free(p->k); free(p->v); free(p->g); free(p->beta); free(p->lam);
}

static float *scratch_for(const DeltaDims *d) {
    const size_t n = deltanet_scratch_floats(d);
    float *s = xmalloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) s[i] = NAN;  // the kernels must not read scratch they did not write
    return s;
}

// The buffer the forward saves into, NaN like the scratch (the backward must read only what was saved).
static float *saved_buf(const DeltaDims *d) {
    const size_t n = deltanet_saved_floats(d);
    float *s = xmalloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) s[i] = NAN;
    return s;
}

// o and, when saved is non-NULL, what the backward reads (else it is dropped).
static void run_forward_saving(float *o, float *saved, const Prob *p) {
    float *scr = scratch_for(&p->d), *sv = saved ? saved : saved_buf(&p->d);
    deltanet_forward(o, sv, p->q, p->k, p->v, p->g, p->beta, p->lam, &p->d, scr);
    free(scr);
    if (!saved) free(sv);
}

static void run_forward(float *o, const Prob *p) { run_forward_saving(o, NULL, p); }

// What the forward saves for p, for a backward.
static float *forward_saved(const Prob *p) {
    float *o = xmalloc(sizeof(float) * (p->nv ? p->nv : 1)), *sv = saved_buf(&p->d);
    run_forward_saving(o, sv, p);
    free(o);
    return sv;
}

// ---------------------------------------------------------------------------------------------------
// References in double (per (b, h); layouts of deltanet.h)

typedef struct {
    int B, T, H, K, V, levels;
    double *q, *k, *v, *g, *beta, *lam;  // lam NULL: plain
} DProb;

static double *to_double(const float *x, size_t n) {
    if (!x) return NULL;
    double *d = xmalloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static DProb dprob_of(const Prob *p) {
    DProb r = {p->d.B, p->d.T, p->d.H, p->d.K, p->d.V, p->d.levels, to_double(p->q, p->nq), to_double(p->k, p->nq),
               to_double(p->v, p->nv), to_double(p->g, p->ng), to_double(p->beta, p->ng), to_double(p->lam, p->nlam)};
    return r;
}

static void dprob_free(DProb *r) {
    free(r->q); free(r->k); free(r->v); free(r->g); free(r->beta); free(r->lam);
}

// The per-token recurrence (plain GDN), o (B,T,H,V).
static void ref_recurrent(const DProb *r, double *o) {
    const int K = r->K, V = r->V, H = r->H;
    double *S = xmalloc(sizeof(double) * K * V), *u = xmalloc(sizeof(double) * V);
    for (int b = 0; b < r->B; b++)
        for (int h = 0; h < H; h++) {
            memset(S, 0, sizeof(double) * K * V);
            for (int t = 0; t < r->T; t++) {
                const size_t row = ((size_t)b * r->T + t) * H + h;
                const double *q = r->q + row * K, *k = r->k + row * K, *v = r->v + row * V;
                const double a = exp(r->g[row]), bt = r->beta[row];
                for (int e = 0; e < V; e++) {  // u = kᵀS
                    u[e] = 0;
                    for (int n = 0; n < K; n++) u[e] += k[n] * S[n * V + e];
                }
                for (int n = 0; n < K; n++)
                    for (int e = 0; e < V; e++) S[n * V + e] = a * (S[n * V + e] - bt * k[n] * u[e]) + bt * k[n] * v[e];
                for (int e = 0; e < V; e++) {
                    double acc = 0;
                    for (int n = 0; n < K; n++) acc += S[n * V + e] * q[n];
                    o[row * V + e] = acc;
                }
            }
        }
    free(S);
    free(u);
}

// The materialized form: o_t = Σ_{s≤t} λ_t[level_of(t,s)] (Π_{r=s+1..t} e^{g_r}) (q_tᵀ P_{t,s} k_s) β_s v_s,
// with the row vector q_tᵀ P_{t,s} carried from s = t down (λ ≡ 1 when lam is NULL).
static void ref_materialized(const DProb *r, double *o) {
    const int K = r->K, V = r->V, H = r->H;
    double *x = xmalloc(sizeof(double) * K);
    for (int b = 0; b < r->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < r->T; t++) {
                const size_t rt = ((size_t)b * r->T + t) * H + h;
                double *ot = o + rt * V;
                memcpy(x, r->q + rt * K, sizeof(double) * K);
                for (int e = 0; e < V; e++) ot[e] = 0;
                double decay = 1;
                for (int s = t; s >= 0; s--) {
                    const size_t rs = ((size_t)b * r->T + s) * H + h;
                    const double *ks = r->k + rs * K, *vs = r->v + rs * V;
                    double xk = 0;
                    for (int n = 0; n < K; n++) xk += x[n] * ks[n];
                    const double lam = r->lam ? r->lam[rt * r->levels + level_of(t, s)] : 1.0;
                    const double coef = lam * decay * xk * r->beta[rs];
                    for (int e = 0; e < V; e++) ot[e] += coef * vs[e];
                    for (int n = 0; n < K; n++) x[n] -= r->beta[rs] * xk * ks[n];
                    decay *= exp(r->g[rs]);
                }
            }
    free(x);
}

static void ref_forward(const DProb *r, double *o) {
    if (r->lam) ref_materialized(r, o);
    else ref_recurrent(r, o);
}

// ---------------------------------------------------------------------------------------------------
// Comparisons

// max |a − b| / (atol + rtol·|b|) and ||a − b|| / ||b||
static void compare(const float *a, const double *b, size_t n, double atol, double rtol, double *viol, double *rel) {
    double worst = 0, num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        const double v = d / (atol + rtol * fabs(b[i]));
        if (!(v <= worst)) worst = v;  // NaN fails
        num += d * d;
        den += b[i] * b[i];
    }
    *viol = worst;
    *rel = sqrt(num) / (sqrt(den) > 1e-30 ? sqrt(den) : 1e-30);
}

// o = the recurrent steps over the whole sequence (plain: deltanet_step; log-linear: deltanet_loglinear_step).
static void run_steps(float *o, const Prob *p) {
    const DeltaDims *d = &p->d;
    const int H = d->H, K = d->K, V = d->V, L = d->levels;
    const size_t nstate = (size_t)H * (L > 0 ? L : 1) * K * V;
    float *state = xmalloc(sizeof(float) * nstate);
    for (int b = 0; b < d->B; b++) {
        memset(state, 0, sizeof(float) * nstate);
        for (int t = 0; t < d->T; t++) {
            const size_t row = (size_t)b * d->T + t;
            const float *q = p->q + row * H * K, *k = p->k + row * H * K, *v = p->v + row * H * V;
            if (L > 0)
                deltanet_loglinear_step(o + row * H * V, state, t, q, k, v, p->g + row * H, p->beta + row * H,
                                        p->lam + row * H * L, H, K, V, L, L);
            else
                deltanet_step(o + row * H * V, state, q, k, v, p->g + row * H, p->beta + row * H, H, K, V);
        }
    }
    free(state);
}

static double g_fwd_worst = 0, g_step_worst = 0;

// Chunkwise vs the double reference and vs the recurrent steps.
static void check_forward(const Prob *p, double rel_tol, const char *what) {
    const DeltaDims *d = &p->d;
    const size_t n = p->nv;
    float *o = xmalloc(sizeof(float) * n), *os = xmalloc(sizeof(float) * n);
    double *oref = xmalloc(sizeof(double) * n), *osd = xmalloc(sizeof(double) * n);
    run_forward(o, p);
    DProb r = dprob_of(p);
    ref_forward(&r, oref);
    double viol, rel, viol_s, rel_s;
    compare(o, oref, n, 1e-5, 1e-4, &viol, &rel);
    run_steps(os, p);
    for (size_t i = 0; i < n; i++) osd[i] = o[i];
    compare(os, osd, n, 1e-5, 1e-4, &viol_s, &rel_s);
    printf("%-10s %s B=%d T=%d H=%d K=%d V=%d chunk=%d levels=%d: vs reference rel %.2e viol %.3f; "
           "vs step rel %.2e viol %.3f\n", d->levels ? "loglinear" : "gdn", what, d->B, d->T, d->H, d->K, d->V,
           d->chunk, d->levels, rel, viol, rel_s, viol_s);
    if (rel > g_fwd_worst) g_fwd_worst = rel;
    if (rel_s > g_step_worst) g_step_worst = rel_s;
    ck_assert_msg(rel < rel_tol && viol <= 1.0, "chunkwise forward differs from the double reference");
    ck_assert_msg(rel_s < rel_tol && viol_s <= 1.0, "chunkwise forward differs from the recurrent step");
    dprob_free(&r);
    free(o); free(os); free(oref); free(osd);
}

// ---------------------------------------------------------------------------------------------------
// Tests: dims

START_TEST(test_dims_check) {
    Err e;
    DeltaDims ok = {.B = 1, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 64, .levels = 0};
    ck_assert(deltanet_dims_check(&ok, &e));
    ok.levels = levels_needed(100);
    ck_assert(deltanet_dims_check(&ok, &e));
    struct {
        DeltaDims d;
        const char *field;
    } bad[] = {
        {{.B = 0, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 64}, "B=0"},
        {{.B = 1, .T = 0, .H = 2, .K = 16, .V = 32, .chunk = 64}, "T=0"},
        {{.B = 1, .T = 100, .H = -1, .K = 16, .V = 32, .chunk = 64}, "H=-1"},
        {{.B = 1, .T = 100, .H = 2, .K = 0, .V = 32, .chunk = 64}, "K=0"},
        {{.B = 1, .T = 100, .H = 2, .K = 16, .V = 0, .chunk = 64}, "V=0"},
        {{.B = 1, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 48}, "chunk=48"},
        {{.B = 1, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 0}, "chunk=0"},
        {{.B = 1, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 64, .levels = 7}, "levels=7"},
        {{.B = 1, .T = 100, .H = 2, .K = 16, .V = 32, .chunk = 64, .levels = -2}, "levels=-2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.msg[0] = 0;
        ck_assert_msg(!deltanet_dims_check(&bad[i].d, &e), "case %zu accepted", i);
        ck_assert_msg(strstr(e.msg, bad[i].field) != NULL, "message '%s' does not name %s", e.msg, bad[i].field);
    }
    ck_assert(!deltanet_dims_check(NULL, &e));
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Tests: forward

typedef struct {
    int B, T, H, K, V, chunk;
} Shape;

static const Shape fwd_shapes[] = {
    {2, 1, 3, 16, 32, 64},  {2, 5, 3, 16, 32, 4},    {2, 63, 3, 16, 32, 16}, {2, 64, 3, 16, 32, 64},
    {2, 65, 3, 16, 32, 64}, {2, 130, 3, 16, 32, 16}, {2, 300, 3, 16, 32, 64}, {1, 300, 2, 16, 32, 4},
    {2, 1000, 2, 16, 32, 64}, {1, 1000, 2, 8, 12, 16}, {1, 77, 2, 32, 8, 4},
};

START_TEST(test_forward_plain) {
    for (size_t i = 0; i < sizeof fwd_shapes / sizeof *fwd_shapes; i++) {
        const Shape *s = &fwd_shapes[i];
        Prob p = prob_make(s->B, s->T, s->H, s->K, s->V, s->chunk, false, 0, 0.0f, 0.7f, 10 + i);
        check_forward(&p, 1e-5, "");
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_forward_loglinear) {
    for (size_t i = 0; i < sizeof fwd_shapes / sizeof *fwd_shapes; i++) {
        const Shape *s = &fwd_shapes[i];
        Prob p = prob_make(s->B, s->T, s->H, s->K, s->V, s->chunk, true, (int)(i % 3), 0.0f, 0.7f, 20 + i);
        check_forward(&p, 1e-5, "");
        prob_free(&p);
    }
    // many levels: 2048 tokens (12 levels), chunk 16 (7 chunk levels)
    Prob p = prob_make(1, 2048, 2, 16, 16, 16, true, 0, 0.0f, 0.1f, 31);
    check_forward(&p, 1e-5, "");
    prob_free(&p);
}
END_TEST

// The materialized form with λ ≡ 1 is plain GDN: checks the two references against each other.
START_TEST(test_references_agree) {
    Prob p = prob_make(2, 70, 2, 8, 6, 16, false, 0, 0.0f, 0.7f, 41);
    DProb r = dprob_of(&p);
    double *a = xmalloc(sizeof(double) * p.nv), *b = xmalloc(sizeof(double) * p.nv);
    ref_recurrent(&r, a);
    ref_materialized(&r, b);
    double worst = 0;
    for (size_t i = 0; i < p.nv; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    printf("references: recurrence vs materialized max diff %.2e\n", worst);
    ck_assert(worst < 1e-12);
    free(a); free(b);
    dprob_free(&r);
    prob_free(&p);
}
END_TEST

// λ_t[l] = c_t for every level: log-linear == c_t · GDN, and the gradients follow.
START_TEST(test_tied_lambda) {
    const Shape shapes[] = {{2, 300, 3, 16, 32, 64}, {1, 100, 2, 8, 8, 4}};
    for (size_t si = 0; si < 2; si++) {
        const Shape *s = &shapes[si];
        Prob p = prob_make(s->B, s->T, s->H, s->K, s->V, s->chunk, true, 1, 0.0f, 0.7f, 50 + si);
        Prob pp = p;  // the plain problem on the same inputs
        pp.lam = NULL;
        pp.d.levels = 0;
        const int L = p.d.levels, V = p.d.V, K = p.d.K;
        for (size_t r = 0; r < p.ng; r++)
            for (int l = 1; l < L; l++) p.lam[r * L + l] = p.lam[r * L];
        float *o = xmalloc(sizeof(float) * p.nv), *op = xmalloc(sizeof(float) * p.nv);
        run_forward(o, &p);
        run_forward(op, &pp);
        double *oc = xmalloc(sizeof(double) * p.nv);
        for (size_t r = 0; r < p.ng; r++)
            for (int e = 0; e < V; e++) oc[r * V + e] = (double)p.lam[r * L] * op[r * V + e];
        double viol, rel;
        compare(o, oc, p.nv, 1e-5, 1e-4, &viol, &rel);
        printf("tied λ T=%d chunk=%d: output vs c·GDN rel %.2e viol %.3f\n", s->T, s->chunk, rel, viol);
        ck_assert_msg(rel < 1e-5 && viol <= 1.0, "tied λ output differs from c·GDN");
        // gradients: log-linear with do  ==  plain with c·do;  Σ_l dλ_t[l] == do_t·o_plain_t
        uint64_t rng = 77;
        float *dout = tu_randn_buf(p.nv, 1.0f, &rng), *doc = xmalloc(sizeof(float) * p.nv);
        for (size_t r = 0; r < p.ng; r++)
            for (int e = 0; e < V; e++) doc[r * V + e] = p.lam[r * L] * dout[r * V + e];
        float *gl[5], *gp[5];
        const size_t ns[5] = {p.nq, p.nq, p.nv, p.ng, p.ng};
        for (int t = 0; t < 5; t++) gl[t] = tu_zeros(ns[t]), gp[t] = tu_zeros(ns[t]);
        float *dlam = tu_zeros(p.nlam);
        float *scr = scratch_for(&p.d), *scrp = scratch_for(&pp.d), *sv = forward_saved(&p), *svp = forward_saved(&pp);
        deltanet_backward(gl[0], gl[1], gl[2], gl[3], gl[4], dlam, dout, sv, p.q, p.k, p.v, p.g, p.beta, p.lam, &p.d,
                          scr);
        deltanet_backward(gp[0], gp[1], gp[2], gp[3], gp[4], NULL, doc, svp, pp.q, pp.k, pp.v, pp.g, pp.beta, NULL,
                          &pp.d, scrp);
        const char *names[5] = {"dq", "dk", "dv", "dg", "dbeta"};
        for (int t = 0; t < 5; t++) {
            double e = tu_rel_error(gl[t], gp[t], ns[t]);
            printf("  tied λ %-6s rel %.2e\n", names[t], e);
            ck_assert_msg(e < 1e-5, "tied λ: %s differs from the plain gradient", names[t]);
        }
        float *dls = xmalloc(sizeof(float) * p.ng), *dlr = xmalloc(sizeof(float) * p.ng);
        for (size_t r = 0; r < p.ng; r++) {
            double a = 0, bsum = 0;
            for (int l = 0; l < L; l++) a += dlam[r * L + l];
            for (int e = 0; e < V; e++) bsum += (double)dout[r * V + e] * op[r * V + e];
            dls[r] = (float)a;
            dlr[r] = (float)bsum;
        }
        double e = tu_rel_error(dls, dlr, p.ng);
        printf("  tied λ Σ dλ   rel %.2e\n", e);
        ck_assert_msg(e < 1e-5, "tied λ: Σ_l dλ differs from do·o");
        (void)K;
        for (int t = 0; t < 5; t++) free(gl[t]), free(gp[t]);
        free(dlam); free(scr); free(scrp); free(sv); free(svp); free(dout); free(doc); free(dls); free(dlr);
        free(o); free(op); free(oc);
        prob_free(&p);
    }
}
END_TEST

// With flush-to-zero on (as the program runs, blas_setup.h: fp_flush_denormals), decays passing through the
// denormal range over long sequences still give the reference's outputs, in both modes.
START_TEST(test_flush_to_zero_long_decays) {
    fp_flush_denormals();
    for (int ll = 0; ll < 2; ll++) {
        Prob p = prob_make(1, 1024, 2, 16, 16, 64, ll, 0, 0.05f, 1.0f, 90 + ll);
        check_forward(&p, 1e-5, "flush-to-zero, long decays");
        prob_free(&p);
    }
}
END_TEST

// Decays down to e^-50 per token, long sequences: finite and still matching.
START_TEST(test_strong_decay) {
    for (int ll = 0; ll < 2; ll++) {
        Prob p = prob_make(2, 300, 2, 16, 16, 16, ll, 0, 0.0f, 50.0f, 60 + ll);
        check_forward(&p, 1e-5, "strong decay");
        prob_free(&p);
        Prob p2 = prob_make(1, 3000, 2, 8, 8, 64, ll, 0, 5.0f, 50.0f, 62 + ll);
        check_forward(&p2, 1e-5, "strong decay");
        // and the backward stays finite
        uint64_t rng = 5;
        float *dout = tu_randn_buf(p2.nv, 1.0f, &rng), *gs[6];
        const size_t ns[6] = {p2.nq, p2.nq, p2.nv, p2.ng, p2.ng, p2.nlam};
        for (int t = 0; t < 6; t++) gs[t] = tu_zeros(ns[t]);
        float *scr = scratch_for(&p2.d), *sv = forward_saved(&p2);
        deltanet_backward(gs[0], gs[1], gs[2], gs[3], gs[4], ll ? gs[5] : NULL, dout, sv, p2.q, p2.k, p2.v, p2.g,
                          p2.beta, p2.lam, &p2.d, scr);
        for (int t = 0; t < 6; t++)
            for (size_t i = 0; i < ns[t]; i++) ck_assert_msg(isfinite(gs[t][i]), "gradient %d not finite", t);
        for (int t = 0; t < 6; t++) free(gs[t]);
        free(scr); free(sv); free(dout);
        prob_free(&p2);
    }
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Tests: backward vs central finite differences of the double reference

typedef struct {
    DProb *r;
    const double *w;  // loss = Σ w ⊙ o
    double *o;
    size_t n;
} FdCtx;

static double fd_loss(FdCtx *c) {
    ref_forward(c->r, c->o);
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += c->w[i] * c->o[i];
    return s;
}

static double g_bwd_worst[6];

static void check_backward_fd(const Prob *p, size_t max_checks, double tol, uint64_t seed) {
    const DeltaDims *d = &p->d;
    const bool ll = d->levels > 0;
    uint64_t rng = seed;
    float *dout = tu_randn_buf(p->nv, 1.0f, &rng);
    const size_t ns[6] = {p->nq, p->nq, p->nv, p->ng, p->ng, p->nlam};
    float *gs[6];
    for (int t = 0; t < 6; t++) gs[t] = tu_zeros(ns[t]);
    float *scr = scratch_for(d), *sv = forward_saved(p);
    deltanet_backward(gs[0], gs[1], gs[2], gs[3], gs[4], ll ? gs[5] : NULL, dout, sv, p->q, p->k, p->v, p->g,
                      p->beta, p->lam, d, scr);
    free(scr);
    free(sv);
    DProb r = dprob_of(p);
    double *w = to_double(dout, p->nv), *o = xmalloc(sizeof(double) * p->nv);
    FdCtx c = {&r, w, o, p->nv};
    double *xs[6] = {r.q, r.k, r.v, r.g, r.beta, r.lam};
    const char *names[6] = {"dq", "dk", "dv", "dg", "dbeta", "dlam"};
    printf("%s FD B=%d T=%d H=%d K=%d V=%d chunk=%d levels=%d\n", ll ? "loglinear" : "gdn", d->B, d->T, d->H, d->K,
           d->V, d->chunk, d->levels);
    for (int t = 0; t < (ll ? 6 : 5); t++) {
        const size_t n = ns[t], m = n < max_checks ? n : max_checks;
        double num2 = 0, den2 = 0;
        for (size_t ci = 0; ci < m; ci++) {
            const size_t i = m == n ? ci : (size_t)(tu_next(&rng) % n);
            const double x0 = xs[t][i], h = 1e-5;
            xs[t][i] = x0 + h;
            const double lp = fd_loss(&c);
            xs[t][i] = x0 - h;
            const double lm = fd_loss(&c);
            xs[t][i] = x0;
            const double fd = (lp - lm) / (2 * h), an = gs[t][i];
            num2 += (fd - an) * (fd - an);
            den2 += fd * fd;
        }
        const double e = sqrt(num2) / (sqrt(den2) > 1e-30 ? sqrt(den2) : 1e-30);
        printf("  %-6s FD rel error %.2e (%zu coords)\n", names[t], e, m);
        if (e > g_bwd_worst[t]) g_bwd_worst[t] = e;
        ck_assert_msg(e < tol, "%s differs from finite differences (%.2e)", names[t], e);
    }
    // λ levels past levels_needed(T) are never used: no gradient
    if (ll)
        for (size_t rr = 0; rr < p->ng; rr++)
            for (int l = levels_needed(d->T); l < d->levels; l++) ck_assert(gs[5][rr * d->levels + l] == 0.0f);
    for (int t = 0; t < 6; t++) free(gs[t]);
    free(dout); free(w); free(o);
    dprob_free(&r);
}

static const Shape fd_shapes[] = {
    {2, 13, 2, 4, 6, 4},  // 4 chunks, partial last
    {1, 9, 2, 5, 3, 16},  // one partial chunk
    {1, 1, 2, 4, 4, 4},   // one token
    {1, 37, 2, 6, 5, 4},  // 10 chunks: 4 chunk levels, several reads per chunk
    {2, 40, 1, 8, 8, 8},  // exactly 5 chunks
    {1, 70, 2, 8, 4, 16}, // 5 chunks of 16
    {1, 40, 1, 4, 32, 8}, // one head: the state scans split over the columns (2 blocks of 16)
};

START_TEST(test_backward_fd_plain) {
    for (size_t i = 0; i < sizeof fd_shapes / sizeof *fd_shapes; i++) {
        const Shape *s = &fd_shapes[i];
        Prob p = prob_make(s->B, s->T, s->H, s->K, s->V, s->chunk, false, 0, 0.05f, 0.7f, 100 + i);
        check_backward_fd(&p, 300, 1e-4, 7 + i);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_backward_fd_loglinear) {
    for (size_t i = 0; i < sizeof fd_shapes / sizeof *fd_shapes; i++) {
        const Shape *s = &fd_shapes[i];
        Prob p = prob_make(s->B, s->T, s->H, s->K, s->V, s->chunk, true, (int)(i % 2), 0.05f, 0.7f, 200 + i);
        check_backward_fd(&p, 300, 1e-4, 17 + i);
        prob_free(&p);
    }
}
END_TEST

// Strong decays inside the chunks (e^-0.5 .. e^-3 per token, so E spans down to e^-24 in a chunk of 8): the
// decay gradients of the one-inverse form (e^G in [−β e^G ⊙ K | β V], E in Ap and in Tg's system) against
// finite differences, several reads per chunk, a partial last chunk.
START_TEST(test_backward_fd_strong_decay) {
    for (int ll = 0; ll < 2; ll++) {
        Prob p = prob_make(1, 37, 2, 6, 5, 8, ll, 0, 0.5f, 3.0f, 500 + ll);
        check_backward_fd(&p, 300, 1e-4, 27 + ll);
        prob_free(&p);
    }
}
END_TEST

// Gradients accumulate (+=): a second call adds the same again (up to the rounding of adding in steps);
// unused λ levels stay untouched; the backward leaves what the forward saved as it was.
START_TEST(test_backward_accumulates) {
    for (int ll = 0; ll < 2; ll++) {
        Prob p = prob_make(2, 90, 3, 8, 12, 16, ll, 2, 0.0f, 0.7f, 300 + ll);
        uint64_t rng = 3;
        float *dout = tu_randn_buf(p.nv, 1.0f, &rng);
        const size_t ns[6] = {p.nq, p.nq, p.nv, p.ng, p.ng, p.nlam};
        float *a[6], *b[6];
        for (int t = 0; t < 6; t++) {
            a[t] = tu_zeros(ns[t]);
            b[t] = tu_zeros(ns[t]);
        }
        float *scr = scratch_for(&p.d), *sv = forward_saved(&p);
        const size_t nsv = deltanet_saved_floats(&p.d);
        float *sv0 = xmalloc(sizeof(float) * nsv);
        memcpy(sv0, sv, sizeof(float) * nsv);
        deltanet_backward(a[0], a[1], a[2], a[3], a[4], ll ? a[5] : NULL, dout, sv, p.q, p.k, p.v, p.g, p.beta, p.lam,
                          &p.d, scr);
        for (int rep = 0; rep < 2; rep++)
            deltanet_backward(b[0], b[1], b[2], b[3], b[4], ll ? b[5] : NULL, dout, sv, p.q, p.k, p.v, p.g, p.beta,
                              p.lam, &p.d, scr);
        ck_assert_msg(memcmp(sv, sv0, sizeof(float) * nsv) == 0, "the backward changed what the forward saved");
        for (int t = 0; t < 6; t++)
            for (size_t i = 0; i < ns[t]; i++)
                ck_assert_msg(fabsf(b[t][i] - 2.0f * a[t][i]) <= 1e-5f * (1.0f + fabsf(a[t][i])),
                              "tensor %d not accumulated", t);
        if (ll)
            for (size_t r = 0; r < p.ng; r++)
                for (int l = levels_needed(p.d.T); l < p.d.levels; l++) ck_assert(b[5][r * p.d.levels + l] == 0.0f);
        for (int t = 0; t < 6; t++) free(a[t]), free(b[t]);
        free(scr); free(sv); free(sv0); free(dout);
        prob_free(&p);
    }
}
END_TEST

// The same bits for 1 and 8 threads, forward and backward (with 8 threads and 4 heads the state scans are
// split over the state's columns, see dn_setup).
START_TEST(test_thread_count_independent) {
    for (int ll = 0; ll < 2; ll++) {
        Prob p = prob_make(1, 700, 4, 16, 32, 16, ll, 0, 0.0f, 0.7f, 400 + ll);
        uint64_t rng = 4;
        float *dout = tu_randn_buf(p.nv, 1.0f, &rng);
        const size_t ns[7] = {p.nv, p.nq, p.nq, p.nv, p.ng, p.ng, p.nlam};
        float *r[2][7];
        const int saved = omp_get_max_threads();
        for (int th = 0; th < 2; th++) {
            omp_set_num_threads(th == 0 ? 1 : 8);
            for (int t = 0; t < 7; t++) r[th][t] = tu_zeros(ns[t]);
            float *scr = scratch_for(&p.d), *sv = saved_buf(&p.d);
            deltanet_forward(r[th][0], sv, p.q, p.k, p.v, p.g, p.beta, p.lam, &p.d, scr);
            deltanet_backward(r[th][1], r[th][2], r[th][3], r[th][4], r[th][5], ll ? r[th][6] : NULL, dout, sv, p.q,
                              p.k, p.v, p.g, p.beta, p.lam, &p.d, scr);
            free(scr);
            free(sv);
        }
        omp_set_num_threads(saved);
        for (int t = 0; t < 7; t++)
            ck_assert_msg(memcmp(r[0][t], r[1][t], sizeof(float) * ns[t]) == 0, "tensor %d depends on threads", t);
        for (int th = 0; th < 2; th++)
            for (int t = 0; t < 7; t++) free(r[th][t]);
        free(dout);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_summary) {
    printf("worst forward rel error %.2e (vs reference), %.2e (vs step); worst FD rel error dq %.2e dk %.2e dv %.2e "
           "dg %.2e dbeta %.2e dlam %.2e\n", g_fwd_worst, g_step_worst, g_bwd_worst[0], g_bwd_worst[1],
           g_bwd_worst[2], g_bwd_worst[3], g_bwd_worst[4], g_bwd_worst[5]);
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {
        {"dims_check", test_dims_check},
        {"references_agree", test_references_agree},
        {"forward_plain", test_forward_plain},
        {"forward_loglinear", test_forward_loglinear},
        {"tied_lambda", test_tied_lambda},
        {"strong_decay", test_strong_decay},
        {"flush_to_zero_long_decays", test_flush_to_zero_long_decays},
        {"backward_fd_plain", test_backward_fd_plain},
        {"backward_fd_loglinear", test_backward_fd_loglinear},
        {"backward_fd_strong_decay", test_backward_fd_strong_decay},
        {"backward_accumulates", test_backward_accumulates},
        {"thread_count_independent", test_thread_count_independent},
        {"summary", test_summary},
    };
    Suite *s = suite_create("deltanet");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) tcase_add_test(tc, tests[i].fn);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);  // the summary reads the worst errors of the other tests
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
