// test_scripts.c — the experiment scripts' quick modes run end to end (scripts/efficiency.sh, lm.sh,
// lambda.sh, passkey.sh; mqar.sh is in test_tools.c): their tables have a sane row per model, the plots are
// PNG files where gnuplot exists, a rerun skips finished work, a run stopped early resumes, and without
// gnuplot (GNUPLOT=no-such-gnuplot) a script still writes its tables, says why there is no PNG, exits 0,
// and a later run draws the PNGs from the saved results without computing again. Every script refuses
// an option without its value.
#include <string.h>
#include <unistd.h>

#include "testrun.h"
#include "testutil.h"

static char g_tmp[256];
static bool g_gnuplot;

static void setup(void) {
    ck_assert_msg(access("./train", X_OK) == 0 && access("./evaluate", X_OK) == 0 &&
                      access("build/rel/bench_scan", X_OK) == 0,
                  "./train, ./evaluate or build/rel/bench_scan is missing: run make test");
    tu_make_tmp(g_tmp, sizeof g_tmp, "scripts");
    g_gnuplot = system("command -v gnuplot >/dev/null") == 0;
}

static void teardown(void) { tu_remove_tmp(g_tmp); }

// The number printed by a shell command (e.g. grep -c) whose one %s is the test's directory.
static long count(const char *fmt) {
    char *out;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, g_tmp);
    run(&out, "%s", cmd);
    long n = atol(out);
    free(out);
    return n;
}

// A PNG file where gnuplot exists (checked by its signature); nothing to check without gnuplot.
static void expect_png(const char *rel) {
    if (!g_gnuplot) return;
    char *out;
    ck_assert_int_eq(run(&out, "head -c 8 %s/%s | od -An -c | tr -d ' \\n'", g_tmp, rel), 0);
    ck_assert_msg(strstr(out, "PNG") != NULL, "%s is not a PNG: %s", rel, out);
    free(out);
}

START_TEST(test_efficiency_quick) {
    char *out;
    // without gnuplot: tables, a note, exit 0, no PNG
    ck_assert_int_eq(run(&out, "GNUPLOT=no-such-gnuplot scripts/efficiency.sh --quick --out %s/e", g_tmp), 0);
    ck_assert_msg(strstr(out, "note: gnuplot is not installed") != NULL, "no note: %s", out);
    free(out);
    ck_assert_int_eq(count("test -e %s/e/time_threads1.png && echo 1 || echo 0"), 0);
    // one row per mixer with two positive times, and five ratio rows
    ck_assert_int_eq(count("grep -cE '^\\| (softmax attention|Mamba-2 \\(SSD\\)|Log-Linear Mamba-2|Gated DeltaNet|"
                           "Log-Linear GDN) \\| [0-9]+\\.[0-9]+ \\| [0-9]+\\.[0-9]+ \\|$' %s/e/table_threads1.md"), 5);
    ck_assert_int_eq(count("jq -Rrs '[split(\"\\n\")[1:][] | select(length > 0) | split(\"\\t\") | select((.[2] | tonumber) > 0)]"
                           " | length' %s/e/results_threads1.tsv"), 10);
    // rerun: nothing measured again, the plot drawn from the saved results
    ck_assert_int_eq(run(&out, "scripts/efficiency.sh --quick --out %s/e", g_tmp), 0);
    ck_assert_msg(strstr(out, "skipping") != NULL && strstr(out, "fwd+bwd ms") == NULL, "measured again: %s", out);
    free(out);
    expect_png("e/time_threads1.png");
}
END_TEST

START_TEST(test_lm_quick) {
    char *out;
    // stopped early (--stop-at is passed to ./train): the script fails and says so; the rerun resumes
    ck_assert_int_ne(run(&out, "GNUPLOT=no-such-gnuplot scripts/lm.sh --quick --threads 1 --out %s/l --models mamba2 "
                               "--stop-at 3", g_tmp), 0);
    ck_assert_msg(strstr(out, "stopped at step 3 of 6") != NULL, "%s", out);
    free(out);
    ck_assert_int_eq(run(&out, "GNUPLOT=no-such-gnuplot scripts/lm.sh --quick --threads 1 --out %s/l", g_tmp), 0);
    ck_assert_msg(strstr(out, "resuming") != NULL && strstr(out, "note: gnuplot is not installed") != NULL, "%s", out);
    free(out);
    // a row per model: parameters, finite validation loss below the uniform ln(257) = 5.55 + margin
    ck_assert_int_eq(count("grep -cE '^\\| [A-Z][A-Za-z0-9 -]+ \\| 0\\.[0-9]{3}M \\| 0\\.[0-9]{3}M \\| [45]\\.[0-9]{4} \\|' "
                           "%s/l/table.md"), 5);
    ck_assert_int_eq(count("jq -Rrs '[split(\"\\n\")[1:][] | select(length > 0) | split(\"\\t\") | "
                           "select((.[3] | tonumber) < 6 and (.[1] | tonumber) > (.[2] | tonumber))] | length' %s/l/results.tsv"), 5);
    ck_assert_int_eq(count("tail -n +2 %s/l/runs/loglinear_mamba2/positions.csv | wc -l"), 64);
    // rerun where gnuplot exists: nothing trained or evaluated again, the PNGs drawn
    ck_assert_int_eq(run(&out, "scripts/lm.sh --quick --threads 1 --out %s/l", g_tmp), 0);
    ck_assert_msg(strstr(out, ": training ") == NULL && strstr(out, ": resuming ") == NULL, "trained again: %s", out);
    free(out);
    ck_assert_int_eq(count("ls %s/l/runs/*/eval.txt | wc -l"), 5);
    expect_png("l/loss.png");
    expect_png("l/per_position.png");
}
END_TEST

START_TEST(test_lambda_quick) {
    run_ok("scripts/lambda.sh --quick --threads 1 --out %s/la", g_tmp);
    ck_assert_int_eq(count("grep -cE '^\\| (Mamba-2|Gated DeltaNet) \\| [0-9.]+ \\| [0-9.]+ \\| -?[0-9.]+ \\|' %s/la/table.md"), 2);
    // every chunk size trained, from the same seed: the losses agree (to the logged 6 decimals, up to rounding)
    ck_assert_int_eq(count("jq -Rrs '[split(\"\\n\")[1:][] | select(length > 0) | split(\"\\t\") | "
                           "select((.[3] | tonumber) < 1e-3 and (.[4] | tonumber) > 0)] | length' %s/la/chunk.tsv"), 4);
    expect_png("la/tied.png");
    expect_png("la/chunk.png");
}
END_TEST

START_TEST(test_passkey_quick) {
    run_ok("scripts/passkey.sh --quick --threads 1 --out %s/p", g_tmp);
    // 5 models x 2 lengths, accuracies in [0, 100] for 2 depths and their mean
    ck_assert_int_eq(count("grep -cE '^\\| [A-Z][A-Za-z0-9 -]+ \\| (64|128) \\|( [0-9]{1,3} \\|){3}$' %s/p/table.md"), 10);
    ck_assert_int_eq(count("jq -Rrs '[split(\"\\n\")[1:][] | select(length > 0) | split(\"\\t\") | "
                           "select((.[5] | tonumber) >= 0 and (.[5] | tonumber) <= 1 and .[3] == \"1\")] | length' "
                           "%s/p/results.tsv"), 20);
    char *out;
    ck_assert_int_eq(run(&out, "scripts/passkey.sh --quick --threads 1 --out %s/p", g_tmp), 0);
    ck_assert_msg(strstr(out, "== passkey transformer: lengths") == NULL, "evaluated again: %s", out);
    free(out);
    expect_png("p/passkey.png");
    expect_png("p/passkey_heatmap.png");
}
END_TEST

// An option given without its value is refused by name, before any work (exit 2), in every script.
START_TEST(test_missing_value) {
    const char *scripts[] = {"efficiency", "lm", "lambda", "passkey", "mqar"};
    for (size_t i = 0; i < sizeof scripts / sizeof *scripts; i++) {
        char *out, want[64];
        ck_assert_int_eq(run(&out, "scripts/%s.sh --quick --threads", scripts[i]), 2);
        snprintf(want, sizeof want, "%s: --threads needs a value", scripts[i]);
        ck_assert_msg(strstr(out, want) != NULL, "%s: %s", scripts[i], out);
        free(out);
    }
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {
        {"missing_value", test_missing_value},
        {"efficiency_quick", test_efficiency_quick}, {"lm_quick", test_lm_quick},
        {"lambda_quick", test_lambda_quick}, {"passkey_quick", test_passkey_quick}};
    return tu_run_suite(tu_suite_with_fixture("scripts", tests, sizeof tests / sizeof *tests, 300, setup, teardown));
}
