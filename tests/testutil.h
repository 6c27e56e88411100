// testutil.h — helpers shared by the Check test suites: a seeded RNG for test data and
// finite-difference/compare utilities. Header-only so each test binary stays self-contained.
#ifndef LL_TESTUTIL_H
#define LL_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "rng.h"

// splitmix64 (rng.h): deterministic test data independent of the library's xoshiro stream.
static inline uint64_t tu_next(uint64_t *s) { return rng_splitmix64(s); }
static inline double tu_uniform(uint64_t *s) { return (double)(tu_next(s) >> 11) * (1.0 / 9007199254740992.0); }
static inline float tu_randn(uint64_t *s) {
    double u1 = tu_uniform(s), u2 = tu_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static inline void tu_fill_randn(float *x, size_t n, float scale, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_randn(s);
}

// Max |a-b| / (atol + rtol*|b|) over n values; <= 1 means "close".
static inline double tu_max_violation(const float *a, const float *b, size_t n, double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double v = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(v <= worst)) worst = v;  // NaN propagates as a failure
    }
    return worst;
}

// Relative error between two vectors as ||a-b|| / max(||a||, ||b||, tiny).
static inline double tu_rel_error(const float *a, const float *b, size_t n) {
    double num = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i];
    }
    double den = sqrt(na > nb ? na : nb);
    return sqrt(num) / (den > 1e-30 ? den : 1e-30);
}

// ---- finite differences of a scalar loss (kernels' tests) -------------------------------------------
typedef double (*TuLossFn)(void *ctx);  // runs the forward on the current inputs, returns Σ r ⊙ out

// Central differences of f w.r.t. x[i], for all i (n <= max_checks) or a random sample of max_checks
// coordinates. Returns ||num − ana|| / max(||num||, ||ana||) over those coordinates and prints it.
// FD_DEBUG=1 in the environment prints the first coordinates side by side.
static inline double tu_fd_rel_error(const char *name, TuLossFn f, void *ctx, float *x, const float *ana, size_t n,
                           float eps, size_t max_checks, uint64_t *rng) {
    size_t m = n < max_checks ? n : max_checks;
    float *num = xmalloc(m * sizeof(float)), *an = xmalloc(m * sizeof(float));
    for (size_t c = 0; c < m; c++) {
        size_t i = (m == n) ? c : (size_t)(tu_next(rng) % n);
        float x0 = x[i], xp = x0 + eps, xm = x0 - eps;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        num[c] = (float)((lp - lm) / ((double)xp - (double)xm));  // the float step actually taken
        an[c] = ana[i];
        if (getenv("FD_DEBUG") && c < 12) printf("    [%zu] num %.6f ana %.6f\n", i, num[c], an[c]);
    }
    double e = tu_rel_error(num, an, m);
    printf("  %-44s FD rel error %.2e (%zu coords, eps %.0e)\n", name, e, m, (double)eps);
    free(num);
    free(an);
    return e;
}

static inline double tu_dot_rd(const float *r, const float *out, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * (double)out[i];
    return s;
}

static inline float *tu_randn_buf(size_t n, float scale, uint64_t *rng) {
    float *p = xmalloc((n ? n : 1) * sizeof(float));
    tu_fill_randn(p, n, scale, rng);
    return p;
}

static inline float *tu_zeros(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

// A suite with one test case per test (so CK_RUN_CASE=<name> runs a single one), each with a timeout.
typedef struct {
    const char *name;
    const TTest *fn;
} TuNamedTest;
// setup / teardown (may be NULL) run around every test, in its own process (a checked fixture).
static inline Suite *tu_suite_with_fixture(const char *suite_name, const TuNamedTest *tests, size_t n, int timeout_s,
                                           SFun setup, SFun teardown) {
    Suite *s = suite_create(suite_name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(tests[i].name);
        if (setup || teardown) tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, timeout_s);
        tcase_add_test(tc, tests[i].fn);
        suite_add_tcase(s, tc);
    }
    return s;
}

static inline Suite *tu_suite_of(const char *suite_name, const TuNamedTest *tests, size_t n, int timeout_s) {
    return tu_suite_with_fixture(suite_name, tests, n, timeout_s, NULL, NULL);
}

// Run a single Check suite and exit with a status CI understands.
static inline int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

#endif
