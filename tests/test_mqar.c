// test_mqar.c — the MQAR task generator (mqar.h) and its data-loader source: every example is a function
// of (spec, index) alone; keys, values and queries sit where Zoology puts them; targets are -1 except at
// the answers; spec errors name the key; shuffled epochs visit every example once.
#include <string.h>

#include "data.h"
#include "mqar.h"
#include "testutil.h"

enum { T = 64 };

static MqarSpec parse_ok(const char *spec, int vocab) {
    MqarSpec s;
    Err err;
    ck_assert_msg(mqar_parse(&s, spec, T, vocab, &err), "%s", err.msg);
    return s;
}

START_TEST(test_deterministic) {
    MqarSpec s = parse_ok("mqar:pairs=4-12,vocab=100,examples=50,seed=3", 128), s2 = parse_ok("mqar:pairs=4-12,vocab=100,examples=50,seed=4", 128);
    int32_t in1[T], tg1[T], in2[T], tg2[T];
    int differ_index = 0, differ_seed = 0;
    for (int i = 0; i < 50; i++) {
        mqar_example(&s, i, T, in1, tg1);
        mqar_example(&s, i, T, in2, tg2);
        ck_assert(memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0);
        mqar_example(&s, (i + 1) % 50, T, in2, tg2);
        differ_index += memcmp(in1, in2, sizeof in1) != 0;
        mqar_example(&s2, i, T, in2, tg2);
        differ_seed += memcmp(in1, in2, sizeof in1) != 0;
    }
    ck_assert_int_eq(differ_index, 50);
    ck_assert_int_eq(differ_seed, 50);
}
END_TEST

// The layout: N pairs k v with distinct keys in [1, V/2) and distinct values in [V/2, V); every key queried
// exactly once after the pairs, at an even offset; the target there is the key's value and -1 elsewhere.
START_TEST(test_layout_and_mask) {
    const int V = 64;
    MqarSpec s = parse_ok("mqar:pairs=2-16,vocab=64,examples=1000,fill=zero", V);
    int32_t in[T], tg[T];
    int seen_lo = 99, seen_hi = 0, short_gaps = 0, queries = 0;
    for (int i = 0; i < 1000; i++) {
        mqar_example(&s, i, T, in, tg);
        // the pairs: key-value alternation from the start (with fill=zero a query is followed by a 0)
        int N = 0;
        while (N < 16 && in[2 * N] >= 1 && in[2 * N] < V / 2 && in[2 * N + 1] >= V / 2) N++;
        ck_assert(N >= 2 && N <= 16);
        seen_lo = N < seen_lo ? N : seen_lo;
        seen_hi = N > seen_hi ? N : seen_hi;
        for (int a = 0; a < N; a++) {
            ck_assert(in[2 * a] >= 1 && in[2 * a] < V / 2);
            ck_assert(in[2 * a + 1] >= V / 2 && in[2 * a + 1] < V);
            ck_assert_int_eq(tg[2 * a], -1);
            ck_assert_int_eq(tg[2 * a + 1], -1);
            for (int b = 0; b < a; b++) ck_assert(in[2 * a] != in[2 * b] && in[2 * a + 1] != in[2 * b + 1]);
        }
        int asked[16] = {0};
        for (int p = 2 * N; p < T; p++) {
            if (tg[p] < 0) {
                ck_assert_int_eq(in[p], 0);
                continue;
            }
            ck_assert_int_eq((p - 2 * N) % 2, 0);
            int a = 0;
            while (a < N && in[2 * a] != in[p]) a++;
            ck_assert_msg(a < N, "query %d at %d is not a key", in[p], p);
            ck_assert_int_eq(tg[p], in[2 * a + 1]);   // the answer is the key's value
            asked[a]++;
            queries++;
            short_gaps += (p - 2 * N) / 2 < (T - 2 * N) / 4;
        }
        for (int a = 0; a < N; a++) ck_assert_int_eq(asked[a], 1);
    }
    ck_assert(seen_lo == 2 && seen_hi == 16);
    // power_a = 0.01: gaps ∝ g^-0.99, most queries in the first half of the query region
    ck_assert_msg(short_gaps > queries * 6 / 10, "%d of %d queries with short gaps", short_gaps, queries);
}
END_TEST

START_TEST(test_spec_errors) {
    const struct { const char *spec; const char *needle; } cases[] = {
        {"mqar:pairs=20", "seq_len >= 4*pairs"},      {"mqar:pairs=0", "pairs=0"},
        {"mqar:vocab=300", "vocab=300"},              {"mqar:pairs=30,vocab=40", "raise vocab"},
        {"mqar:pairz=3", "unknown key 'pairz'"},      {"mqar:pairs", "KEY=VALUE"},
        {"mqar:fill=noise", "fill=noise"},            {"mqar:power_a=2", "power_a"},
        {"mqar:examples=0", "examples=0"},            {"mqar:pairs=8-4", "LO-HI"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        MqarSpec s;
        Err err;
        ck_assert_msg(!mqar_parse(&s, cases[i].spec, T, 257, &err), "%s accepted", cases[i].spec);
        ck_assert_msg(strstr(err.msg, cases[i].needle) != NULL, "%s: '%s' lacks '%s'", cases[i].spec, err.msg,
                      cases[i].needle);
    }
    MqarSpec s = parse_ok("mqar", 257);   // all defaults
    ck_assert(s.pairs_lo == 8 && s.vocab == 257 && s.examples == 100000 && s.random_fill);
}
END_TEST

// Through the data loader: one shuffled epoch of a set visits each example exactly once; rewinding repeats it.
START_TEST(test_loader_epoch) {
    DataLoader *dl;
    Err err;
    const int B = 4, E = 40;
    ck_assert_msg(dataloader_open(&dl, "mqar:pairs=3,vocab=32,examples=40", B, 16, 32, 7, true, &err), "%s", err.msg);
    ck_assert(dataloader_is_task(dl));
    ck_assert_int_eq(dataloader_num_windows(dl), E);
    MqarSpec s = parse_ok("mqar:pairs=3,vocab=32,examples=40", 32);
    int32_t in[4 * 16], tg[4 * 16], ref_in[16], ref_tg[16];
    int hits[40] = {0};
    for (int b = 0; b < E / B; b++) {
        dataloader_next(dl, in, tg);
        for (int r = 0; r < B; r++) {
            int found = -1;
            for (int i = 0; i < E && found < 0; i++) {
                mqar_example(&s, i, 16, ref_in, ref_tg);
                if (!memcmp(ref_in, in + r * 16, sizeof ref_in) && !memcmp(ref_tg, tg + r * 16, sizeof ref_tg)) found = i;
            }
            ck_assert(found >= 0);
            hits[found]++;
        }
    }
    for (int i = 0; i < E; i++) ck_assert_int_eq(hits[i], 1);
    dataloader_close(dl);
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {{"deterministic", test_deterministic}, {"layout_and_mask", test_layout_and_mask},
                                 {"spec_errors", test_spec_errors}, {"loader_epoch", test_loader_epoch}};
    return tu_run_suite(tu_suite_of("mqar", tests, sizeof tests / sizeof *tests, 60));
}
