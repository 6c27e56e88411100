// test_scan_loglinear.c — the log-linear Mamba-2 scan against references (scan_reference.h): the materialized
// O(T²) form (QKᵀ ⊙ decay mask ⊙ λ-mask)(dt·x) + D x in double with λ-mask_ts = λ_t[bit_length(t^s)], its
// analytic backward in double (checked against central finite differences), and the Fenwick recurrence
// (loglinear_step). Also: the level function, and λ tied across levels == λ·SSD.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "blas_setup.h"
#include "scan_loglinear.h"
#include "scan_reference.h"
#include "scan_ssd.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------------
// Levels

START_TEST(test_levels_needed) {
    ck_assert_int_eq(levels_needed(1), 1);
    ck_assert_int_eq(levels_needed(2), 2);
    ck_assert_int_eq(levels_needed(3), 3);
    ck_assert_int_eq(levels_needed(64), 7);
    ck_assert_int_eq(levels_needed(65), 8);
    ck_assert_int_eq(levels_needed(2048), 12);
    ck_assert_int_eq(levels_needed(2049), 13);
    ck_assert_int_eq(levels_needed(16384), 15);
    ck_assert_int_eq(levels_needed((int64_t)1 << 40), 41);
    // the table of doc/loglinear-attention.md §1.3 (T = 8)
    static const int rows[8][8] = {{0},
                                   {1, 0},
                                   {2, 2, 0},
                                   {2, 2, 1, 0},
                                   {3, 3, 3, 3, 0},
                                   {3, 3, 3, 3, 1, 0},
                                   {3, 3, 3, 3, 2, 2, 0},
                                   {3, 3, 3, 3, 2, 2, 1, 0}};
    for (int t = 0; t < 8; t++)
        for (int s = 0; s <= t; s++) ck_assert_int_eq(level_of(t, s), rows[t][s]);
    // the Fenwick buckets: level l >= 1 of t is [(t>>l)<<l, +2^(l-1)) iff bit l-1 of t is set
    for (int t = 0; t < 700; t++) {
        int count[16] = {0};
        for (int s = 0; s <= t; s++) {
            int l = level_of(t, s);
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
        Prob p = prob_make(&(Shape){1, T, 1, T, 1, 1, 8, 0, 0, 0}, true, 1.0f, 1.0f, -1e-30f, -1e-30f, 1);
        for (int t = 0; t < T; t++) {
            for (int s = 0; s < T; s++) p.x[(size_t)t * T + s] = (s == t) ? 1.0f : 0.0f;
            p.Bm[t] = 1.0f;
            p.Cm[t] = 1.0f;
            for (int l = 0; l < p.d.levels; l++) p.lam[(size_t)t * p.d.levels + l] = (float)(l + 1);
        }
        p.D[0] = 0.0f;
        float *y = malloc(sizeof(float) * (size_t)T * T), *yc = malloc(sizeof(float) * (size_t)T * T);
        run_recurrent(y, &p);
        float *scr = scratch_for(&p);
        run_forward(yc, &p, scr);
        for (int t = 0; t < T; t++) {
            for (int s = 0; s < T; s++) {
                const float expect = s <= t ? (float)(ref_bitlen((uint64_t)(t ^ s)) + 1) : 0.0f;
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
        Prob p = prob_make(sh, true, 0.05f, 0.5f, -1.5f, -0.1f, 100 + si);
        double rel, viol;
        forward_vs_reference(&p, 1e-5, 1e-4, &rel, &viol);
        printf("loglinear fwd B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d levels=%d: rel err %.2e, max violation %.3f\n",
               sh->B, sh->T, sh->H, sh->P, sh->G, sh->N, sh->chunk, p.d.levels, rel, viol);
        ck_assert_msg(rel < 2e-6 && viol <= 1.0, "forward differs from the materialized reference (shape %zu)", si);
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
        Prob p = prob_make(sh, true, 0.005f, 0.1f, -1.0f, -0.05f, 200 + si);
        double rel, viol;
        forward_vs_recurrent(&p, 1e-4, 1e-3, &rel, &viol);
        printf("loglinear fwd vs recurrent T=%d H=%d G=%d chunk=%d: rel err %.2e, max violation %.3f\n", sh->T, sh->H,
               sh->G, sh->chunk, rel, viol);
        ck_assert_msg(rel < 1e-5 && viol <= 1.0, "chunkwise forward differs from loglinear_step (shape %zu)", si);
        prob_free(&p);
    }
}
END_TEST

// λ_t[h, l] = c_{t,h} for all l: log-linear == c·(SSD output without D) + D x.
START_TEST(test_tied_lambda_is_ssd) {
    const Shape shapes[] = {{2, 300, 4, 8, 2, 8, 64, 0, 0, 0}, {1, 100, 2, 4, 1, 4, 8, 1, 1, 2}};
    for (size_t si = 0; si < 2; si++) {
        const Shape *sh = &shapes[si];
        Prob p = prob_make(sh, true, 0.05f, 0.5f, -1.0f, -0.1f, 300 + si);
        const ScanDims *d = &p.d;
        for (size_t r = 0; r < p.ndt; r++)
            for (int l = 1; l < d->levels; l++) p.lam[r * d->levels + l] = p.lam[r * d->levels];
        size_t ny = (size_t)d->B * d->T * d->H * d->P;
        float *y = malloc(sizeof(float) * ny), *ys = malloc(sizeof(float) * ny), *yx = malloc(sizeof(float) * ny);
        float *scr = scratch_for(&p), *scr2 = nan_floats(ssd_scratch_floats(d));
        run_forward(y, &p, scr);
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
    Prob p = prob_make(&(Shape){1, 300, 4, 8, 2, 8, 16, 0, 0, 0}, true, 0.5f, 5.0f, -20.0f, -2.0f, 7);
    double rel, viol;
    forward_vs_reference(&p, 1e-5, 1e-4, &rel, &viol);
    printf("loglinear strong decay: max violation %.3f\n", viol);
    ck_assert_msg(viol <= 1.0, "strong decays: forward wrong or not finite");
    prob_free(&p);
}
END_TEST

// The program runs every thread with flush-to-zero (blas_setup.h: fp_flush_denormals). Decays over long
// spans pass through the denormal range (here e^{-0.05..-3} per token over 1024 tokens): with FTZ on, the
// chunkwise forward and backward still match the double reference.
START_TEST(test_flush_to_zero_long_decays) {
    fp_flush_denormals();
    Prob p = prob_make(&(Shape){1, 1024, 2, 8, 1, 8, 64, 0, 0, 0}, true, 0.05f, 1.0f, -3.0f, -1.0f, 77);
    double rel, viol;
    forward_vs_reference(&p, 1e-5, 1e-4, &rel, &viol);
    printf("loglinear with flush-to-zero, long decays: forward max violation %.3f\n", viol);
    ck_assert_msg(viol <= 1.0, "flush-to-zero: forward differs from the reference");
    check_backward_reference(&p, 78, 3e-5);
    prob_free(&p);
}
END_TEST

// ---------------------------------------------------------------------------------------------------
// Backward

START_TEST(test_backward_finite_differences) {
    const Shape shapes[] = {{2, 13, 4, 3, 2, 4, 4, 1, 2, 1}, {1, 11, 2, 3, 1, 3, 1, 0, 0, 0},
                            {1, 19, 2, 2, 2, 3, 2, 0, 1, 0}, {1, 9, 2, 2, 1, 2, 16, 0, 0, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        Prob p = prob_make(&shapes[si], true, 0.05f, 0.6f, -1.5f, -0.3f, 400 + si);
        check_backward_fd(&p, 99 + si, 1e-7, 2e-5);
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
        Prob p = prob_make(&shapes[si], true, 0.02f, 0.4f, -1.5f, -0.05f, 500 + si);
        check_backward_reference(&p, 7 + si, 3e-5);
        prob_free(&p);
    }
}
END_TEST

// Gradients accumulate (+=); padding columns and unused λ levels are never written.
START_TEST(test_backward_accumulates) {
    Prob p = prob_make(&(Shape){2, 90, 4, 4, 2, 4, 16, 3, 5, 2}, true, 0.05f, 0.5f, -1.0f, -0.2f, 11);
    check_backward_accumulates(&p, 5);
    prob_free(&p);
}
END_TEST

// Same results for 1 and 8 threads and run to run: 20 chunks, so the 8 heads go in 2 batches of 4 and the
// 512 elements of each state in 2 column blocks; then two B/C groups of 4 heads in batches of 2, and
// states of 560 elements (blocks of 288 + 272).
START_TEST(test_backward_deterministic) {
    Prob p = prob_make(&(Shape){1, 640, 8, 16, 1, 32, 32, 0, 0, 0}, true, 0.05f, 0.5f, -1.0f, -0.2f, 12);
    check_thread_count_independent(&p, 6);
    prob_free(&p);
    p = prob_make(&(Shape){1, 300, 8, 16, 2, 35, 32, 0, 2, 0}, true, 0.05f, 0.5f, -1.0f, -0.2f, 13);
    check_thread_count_independent(&p, 7);
    prob_free(&p);
}
END_TEST

// The scratch sized for (B, T) covers every smaller batch and sequence (the model sizes it once for its
// largest batch; shorter inputs split the heads into more batches and the states into more blocks).
START_TEST(test_scratch_covers_smaller_inputs) {
    const int shapes[][4] = {{8, 64, 64, 64}, {4, 32, 16, 32}, {16, 64, 16, 256}};  // H, P, N, chunk
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int H = shapes[si][0], P = shapes[si][1], N = shapes[si][2], chunk = shapes[si][3];
        for (int ll = 0; ll < 2; ll++)
            for (int B = 1; B <= 4; B++)
                for (int T = chunk; T <= 96 * chunk; T += chunk * 5 / 2) {
                    ScanDims d = {.B = B, .T = T, .H = H, .P = P, .G = 1, .N = N, .chunk = chunk,
                                  .ld_x = H * P + 2 * N, .ld_bc = H * P + 2 * N, .levels = levels_needed(T)};
                    ScanCtx k;
                    const size_t big = scan_setup(&k, &d, ll, NULL);
                    for (int b2 = 1; b2 <= B; b2++)
                        for (int t2 = 1; t2 <= T; t2 += 1 + t2 / 3) {
                            ScanDims e = d;
                            e.B = b2;
                            e.T = t2;
                            ck_assert_msg(scan_setup(&k, &e, ll, NULL) <= big,
                                          "scratch for B=%d T=%d exceeds the one for B=%d T=%d (H=%d chunk=%d)", b2,
                                          t2, B, T, H, chunk);
                        }
                }
    }
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
    tcase_add_test(tc, test_flush_to_zero_long_decays);
    tcase_add_test(tc, test_backward_finite_differences);
    tcase_add_test(tc, test_backward_matches_reference);
    tcase_add_test(tc, test_backward_accumulates);
    tcase_add_test(tc, test_backward_deterministic);
    tcase_add_test(tc, test_scratch_covers_smaller_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
