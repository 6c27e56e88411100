// test_scan_ssd.c — the Mamba-2 SSD scan against references (scan_reference.h): the materialized O(T²) form
// y = (C Bᵀ ⊙ decay mask) (dt·x) + D x in double, its analytic backward in double (itself checked against
// central finite differences), and the token-by-token recurrence (ssd_step).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ssd_chunk.h"
#include "scan_reference.h"
#include "scan_ssd.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Forward

static const Shape fwd_shapes[] = {
    {1, 1, 2, 3, 1, 4, 4, 0, 0, 0},     {2, 5, 2, 3, 2, 4, 4, 1, 3, 0},     {1, 64, 4, 8, 2, 8, 16, 5, 2, 0},
    {2, 100, 4, 8, 1, 8, 64, 0, 7, 0},  {1, 257, 2, 8, 2, 8, 64, 3, 0, 0},  {1, 257, 2, 16, 1, 16, 256, 0, 0, 0},
    {1, 100, 4, 8, 4, 8, 8, 2, 2, 0},   {1, 37, 3, 5, 1, 6, 1, 1, 1, 0},    {1, 300, 6, 4, 2, 4, 128, 0, 0, 0},
    {2, 70, 16, 4, 2, 4, 32, 0, 0, 0},  {1, 130, 12, 64, 1, 8, 32, 0, 0, 0},  // 12 heads of P=64: head batches 8 + 4
};

START_TEST(test_forward_matches_materialized) {
    for (size_t si = 0; si < sizeof fwd_shapes / sizeof *fwd_shapes; si++) {
        const Shape *sh = &fwd_shapes[si];
        Prob p = prob_make(sh, false, 0.05f, 0.5f, -1.5f, -0.2f, 100 + si);
        double rel, viol;
        forward_vs_reference(&p, 1e-5, 1e-4, &rel, &viol);
        printf("ssd fwd B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d: rel err %.2e, max violation %.3f\n", sh->B, sh->T,
               sh->H, sh->P, sh->G, sh->N, sh->chunk, rel, viol);
        ck_assert_msg(rel < 2e-6 && viol <= 1.0, "SSD forward differs from the materialized reference (shape %zu)",
                      si);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_forward_matches_recurrent) {
    const Shape shapes[] = {{1, 1, 2, 4, 1, 4, 4, 0, 0, 0},
                            {2, 77, 4, 4, 2, 8, 16, 3, 1, 0},
                            {1, 600, 2, 8, 1, 8, 256, 0, 0, 0},
                            {1, 600, 2, 8, 2, 8, 64, 1, 0, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh, false, 0.01f, 0.3f, -2.0f, -0.1f, 200 + si);
        double rel, viol;
        forward_vs_recurrent(&p, 1e-5, 1e-4, &rel, &viol);
        printf("ssd fwd vs recurrent T=%d chunk=%d G=%d: rel err %.2e, max violation %.3f\n", sh->T, sh->chunk, sh->G,
               rel, viol);
        ck_assert_msg(rel < 5e-6 && viol <= 1.0, "SSD chunkwise forward differs from ssd_step (shape %zu)", si);
        prob_free(&p);
    }
}
END_TEST

// Strong decays (dt·A down to -100 per token): no overflow, no NaN, still equal to the reference.
START_TEST(test_forward_strong_decay) {
    Prob p = prob_make(&(Shape){1, 300, 4, 8, 2, 8, 64, 0, 0, 0}, false, 0.5f, 5.0f, -20.0f, -2.0f, 7);
    double rel, viol;
    forward_vs_reference(&p, 1e-5, 1e-4, &rel, &viol);
    printf("ssd strong decay: max violation %.3f\n", viol);
    ck_assert_msg(viol <= 1.0, "strong decays: forward wrong or not finite");
    prob_free(&p);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Backward

START_TEST(test_backward_finite_differences) {
    const Shape shapes[] = {{2, 13, 4, 3, 2, 4, 4, 1, 2, 0}, {1, 9, 2, 3, 1, 3, 1, 0, 0, 0},
                            {1, 11, 2, 2, 2, 3, 16, 0, 1, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        Prob p = prob_make(&shapes[si], false, 0.05f, 0.6f, -1.5f, -0.3f, 300 + si);
        // the double reference backward must agree with finite differences to ~1e-8
        check_backward_fd(&p, 99 + si, 1e-7, 2e-5);
        prob_free(&p);
    }
}
END_TEST

START_TEST(test_backward_matches_reference) {
    const Shape shapes[] = {{1, 300, 4, 8, 2, 8, 64, 2, 1, 0},
                            {2, 257, 2, 8, 1, 8, 256, 0, 0, 0},
                            {1, 333, 4, 4, 4, 4, 16, 0, 0, 0},
                            {1, 200, 6, 8, 2, 16, 128, 0, 3, 0},
                            {2, 100, 12, 64, 1, 8, 32, 1, 0, 0}};  // head batches of 8 + 4
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        Prob p = prob_make(&shapes[si], false, 0.02f, 0.4f, -1.5f, -0.1f, 400 + si);
        check_backward_reference(&p, 7 + si, 3e-5);
        prob_free(&p);
    }
}
END_TEST

// Gradients accumulate (+=) and the padding columns of dx / dB / dC rows are never written.
START_TEST(test_backward_accumulates) {
    Prob p = prob_make(&(Shape){2, 90, 4, 4, 2, 4, 16, 3, 5, 0}, false, 0.05f, 0.5f, -1.0f, -0.2f, 11);
    check_backward_accumulates(&p, 5);
    prob_free(&p);
}
END_TEST

// Same results for 1 and 8 threads and run to run (dB/dC group sums are done per chunk task and head
// batch, not atomically; the running state's decay gradient per column block).
START_TEST(test_backward_deterministic) {
    Prob p = prob_make(&(Shape){1, 260, 8, 16, 1, 35, 32, 0, 0, 0}, false, 0.05f, 0.5f, -1.0f, -0.2f, 12);
    check_thread_count_independent(&p, 6);
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
