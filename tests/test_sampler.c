// test_sampler.c — next-token sampling (sampler.h): greedy at temperature 0 and with top-k = 1, a fixed
// seed gives a fixed sequence, top-k / top-p keep exactly the most likely tokens, and the frequencies
// follow softmax(logits / temperature).
#include <math.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

enum { V = 50 };

static void random_logits(float *lg, uint64_t *s) {
    for (int i = 0; i < V; i++) lg[i] = 3.0f * tu_randn(s);
}

START_TEST(test_greedy) {
    uint64_t s = 1;
    float lg[V];
    for (int trial = 0; trial < 20; trial++) {
        random_logits(lg, &s);
        int best = 0;
        for (int i = 1; i < V; i++) if (lg[i] > lg[best]) best = i;
        const float temps[] = {0.0f, 0.5f, 1.0f, 3.0f};
        for (int ti = 0; ti < 4; ti++) {
            // temperature 0, or top-k = 1 at any temperature: the argmax
            SamplerConfig sc = {.temperature = temps[ti], .top_k = temps[ti] == 0.0f ? 0 : 1, .top_p = 1.0f};
            Sampler *sm = sampler_create(&sc, V);
            Rng r;
            rng_seed(&r, (uint64_t)trial);
            for (int k = 0; k < 5; k++) ck_assert_int_eq(sampler_next(sm, lg, &r), best);
            sampler_free(sm);
        }
    }
    // ties go to the lowest id; NaN never wins
    float t[V];
    for (int i = 0; i < V; i++) t[i] = 0.0f;
    t[7] = t[3] = 2.0f;
    t[0] = NAN;
    ck_assert_int_eq(sampler_argmax(t, V), 3);
}
END_TEST

START_TEST(test_seed_fixes_the_sequence) {
    uint64_t s = 2;
    float lg[V];
    random_logits(lg, &s);
    const SamplerConfig cfgs[] = {{1.0f, 0, 1.0f}, {0.7f, 10, 1.0f}, {1.3f, 0, 0.9f}, {1.0f, 5, 0.5f}};
    for (int ci = 0; ci < 4; ci++) {
        Sampler *sm = sampler_create(&cfgs[ci], V);
        int32_t a[200], b[200], c[200];
        Rng r1, r2, r3;
        rng_seed(&r1, 42);
        rng_seed(&r2, 42);
        rng_seed(&r3, 43);
        for (int i = 0; i < 200; i++) a[i] = sampler_next(sm, lg, &r1);
        for (int i = 0; i < 200; i++) b[i] = sampler_next(sm, lg, &r2);
        for (int i = 0; i < 200; i++) c[i] = sampler_next(sm, lg, &r3);
        ck_assert(memcmp(a, b, sizeof a) == 0);
        ck_assert_msg(memcmp(a, c, sizeof a) != 0, "another seed must give another sequence (config %d)", ci);
        sampler_free(sm);
    }
}
END_TEST

// Empirical frequencies over n draws against the expected distribution p (zero where excluded).
static void check_frequencies(const SamplerConfig *sc, const float *lg, const double *p, int n) {
    Sampler *sm = sampler_create(sc, V);
    Rng r;
    rng_seed(&r, 9);
    int counts[V] = {0};
    for (int i = 0; i < n; i++) counts[sampler_next(sm, lg, &r)]++;
    for (int i = 0; i < V; i++) {
        const double f = (double)counts[i] / n, sd = sqrt(p[i] * (1 - p[i]) / n);
        if (p[i] == 0) ck_assert_msg(counts[i] == 0, "token %d is excluded but was drawn %d times", i, counts[i]);
        else ck_assert_msg(fabs(f - p[i]) < 5 * sd + 1e-3, "token %d: frequency %.4f, expected %.4f", i, f, p[i]);
    }
    sampler_free(sm);
}

START_TEST(test_distribution) {
    float lg[V];
    for (int i = 0; i < V; i++) lg[i] = (float)(V - i) * 0.1f;   // token 0 most likely, strictly decreasing
    const float temps[] = {0.5f, 1.0f, 2.0f};
    for (int ti = 0; ti < 3; ti++) {
        double p[V], sum = 0;
        for (int i = 0; i < V; i++) sum += p[i] = exp(lg[i] / temps[ti]);
        for (int i = 0; i < V; i++) p[i] /= sum;
        SamplerConfig sc = {.temperature = temps[ti], .top_k = 0, .top_p = 1.0f};
        check_frequencies(&sc, lg, p, 40000);
        // top-k = 5: the five most likely, renormalised
        double pk[V] = {0}, sk = 0;
        for (int i = 0; i < 5; i++) sk += pk[i] = p[i];
        for (int i = 0; i < 5; i++) pk[i] /= sk;
        sc.top_k = 5;
        check_frequencies(&sc, lg, pk, 40000);
        // top-p = 0.4: the smallest most-likely prefix reaching 0.4
        double pp[V] = {0}, acc = 0;
        int keep = 0;
        while (acc < 0.4) acc += p[keep++];
        for (int i = 0; i < keep; i++) pp[i] = p[i] / acc;
        sc.top_k = 0;
        sc.top_p = 0.4f;
        check_frequencies(&sc, lg, pp, 40000);
    }
}
END_TEST

START_TEST(test_config_errors) {
    Err err;
    SamplerConfig sc = {.temperature = -1.0f, .top_k = 0, .top_p = 1.0f};
    ck_assert(!sampler_config_check(&sc, &err));
    ck_assert(strstr(err.msg, "--temperature") != NULL);
    sc.temperature = 1.0f;
    sc.top_p = 0.0f;
    ck_assert(!sampler_config_check(&sc, &err));
    ck_assert(strstr(err.msg, "--top-p") != NULL);
    sc.top_p = 1.5f;
    ck_assert(!sampler_config_check(&sc, &err));
    sc.top_p = 1.0f;
    ck_assert(sampler_config_check(&sc, &err));
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {{"greedy", test_greedy}, {"seed", test_seed_fixes_the_sequence},
                                 {"distribution", test_distribution}, {"config_errors", test_config_errors}};
    return tu_run_suite(tu_suite_of("sampler", tests, sizeof tests / sizeof *tests, 60));
}
