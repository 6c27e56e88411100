// test_optimizer.c — AdamW against a plain double-precision reference (PyTorch semantics: decoupled
// weight decay, bias-corrected moments), the warmup + cosine schedule, global-norm and clipping helpers.
#include <omp.h>
#include <string.h>

#include "optimizer.h"
#include "testutil.h"

// PyTorch's AdamW, one step, in double.
static void adamw_reference(double *p, const double *g, double *m, double *v, const uint8_t *mask, size_t n,
                            double lr, double b1, double b2, double eps, double wd, int64_t step) {
    for (size_t i = 0; i < n; i++) {
        if (!mask || mask[i]) p[i] *= 1.0 - lr * wd;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, (double)step)), vh = v[i] / (1 - pow(b2, (double)step));
        p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

START_TEST(test_adamw_matches_reference) {
    enum { N = 1000, STEPS = 25 };
    uint64_t s = 17;
    float p[N], g[N], m[N] = {0}, v[N] = {0};
    double pd[N], md[N] = {0}, vd[N] = {0}, gd[N];
    uint8_t mask[N];
    for (int i = 0; i < N; i++) {
        p[i] = tu_randn(&s);
        pd[i] = p[i];
        mask[i] = (uint8_t)(i % 3 != 0);
    }
    AdamWHyper h = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    for (int step = 1; step <= STEPS; step++) {
        for (int i = 0; i < N; i++) {
            g[i] = 0.1f * tu_randn(&s);
            gd[i] = g[i];
        }
        adamw_update(p, g, m, v, mask, N, &h, step);
        adamw_reference(pd, gd, md, vd, mask, N, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, step);
    }
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(p[i] - pd[i]));
    printf("AdamW vs double reference after %d steps: max |Δp| = %.2e\n", STEPS, worst);
    ck_assert_msg(worst < 2e-5, "AdamW differs from the reference by %.3e", worst);
    // weight decay only where the mask says so: with zero gradient, masked-off entries do not move
    float q[2] = {1.0f, 1.0f}, z[2] = {0, 0}, mm[2] = {0}, vv[2] = {0};
    uint8_t mk[2] = {1, 0};
    adamw_update(q, z, mm, vv, mk, 2, &h, 1);
    ck_assert_float_eq_tol(q[0], 1.0f - h.lr * h.weight_decay, 1e-7);
    ck_assert_float_eq(q[1], 1.0f);
}
END_TEST

START_TEST(test_schedule) {
    const float lr = 1e-3f, floor_ratio = 0.1f;
    const int64_t total = 200, warm = 20;
    ck_assert_float_eq_tol(lr_schedule(0, total, warm, lr, floor_ratio), lr / warm, 1e-9);
    ck_assert_float_eq_tol(lr_schedule(warm - 1, total, warm, lr, floor_ratio), lr, 1e-9);
    ck_assert_float_eq_tol(lr_schedule(warm, total, warm, lr, floor_ratio), lr, 1e-9);   // cosine starts at the peak
    ck_assert_float_eq_tol(lr_schedule(total - 1, total, warm, lr, floor_ratio), lr * floor_ratio, 1e-9);
    // halfway through the decay: the mean of peak and floor
    float mid = lr_schedule(warm + (total - warm - 1) / 2, total, warm, lr, floor_ratio);
    ck_assert_msg(fabsf(mid - 0.55f * lr) < 0.02f * lr, "mid-decay lr %g", mid);
    float prev = lr_schedule(0, total, warm, lr, floor_ratio);
    for (int64_t t = 1; t < total; t++) {
        float cur = lr_schedule(t, total, warm, lr, floor_ratio);
        if (t < warm) ck_assert(cur > prev);
        else if (t > warm) ck_assert(cur <= prev);
        ck_assert(cur >= lr * floor_ratio - 1e-9f && cur <= lr + 1e-9f);
        prev = cur;
    }
    // no warmup
    ck_assert_float_eq_tol(lr_schedule(0, 10, 0, lr, floor_ratio), lr, 1e-9);
}
END_TEST

START_TEST(test_grad_norm_and_clip) {
    enum { N = 100003 };
    float *g = xmalloc(N * sizeof(float));
    uint64_t s = 5;
    double ref = 0;
    for (int i = 0; i < N; i++) {
        g[i] = tu_randn(&s);
        ref += (double)g[i] * g[i];
    }
    ref = sqrt(ref);
    double n1 = grad_global_norm(g, N), n2 = grad_global_norm(g, N);
    ck_assert_msg(fabs(n1 - ref) < 1e-9 * ref, "norm %.12g vs %.12g", n1, ref);
    ck_assert(n1 == n2);   // deterministic for a fixed thread count
    grad_scale(g, N, 0.5f);
    ck_assert_msg(fabs(grad_global_norm(g, N) - 0.5 * ref) < 1e-6 * ref, "scaled norm");
    g[N / 2] = NAN;
    ck_assert(isnan(grad_global_norm(g, N)));
    g[N / 2] = INFINITY;
    ck_assert(!isfinite(grad_global_norm(g, N)));
    free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optimizer");
    TCase *tc = tcase_create("optimizer");
    tcase_add_test(tc, test_adamw_matches_reference);
    tcase_add_test(tc, test_schedule);
    tcase_add_test(tc, test_grad_norm_and_clip);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
