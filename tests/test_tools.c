// test_tools.c — end-to-end checks of ./generate and ./evaluate, and of MQAR training through ./train:
// a seed fixes the generated text (also past the model's maximum context), the statistics show the state
// growing, bad options fail with a message naming them; a tiny model learns a tiny MQAR to high answer
// accuracy and stops early at train.target_accuracy; ./evaluate reports it; scripts/mqar.sh --quick runs.
#include <string.h>
#include <unistd.h>

#include "testrun.h"
#include "testutil.h"

static char g_tmp[256];

static void setup(void) {
    ck_assert_msg(access("./generate", X_OK) == 0 && access("./evaluate", X_OK) == 0 && access("./train", X_OK) == 0,
                  "./train, ./generate or ./evaluate is missing: run make");
    tu_make_tmp(g_tmp, sizeof g_tmp, "tools");
}

static void teardown(void) { tu_remove_tmp(g_tmp); }

START_TEST(test_generate_seeded) {
    // 300 new tokens from a model whose maximum context is 256 (9 levels): decoding continues past it
    const char *gen = "./generate --config tiny_loglinear_mamba2.json --prompt 'The ' --tokens 300 --ignore-eot "
                      "--temperature 0.9 --top-k 20 --threads 1 --quiet";
    char *a, *b, *c;
    ck_assert_int_eq(run(&a, "%s --seed 5 --stats %s/stats.jsonl", gen, g_tmp), 0);
    ck_assert_int_eq(run(&b, "%s --seed 5", gen), 0);
    ck_assert_int_eq(run(&c, "%s --seed 6", gen), 0);
    ck_assert_msg(strcmp(a, b) == 0, "the same seed gave different text:\n%s\n%s", a, b);
    ck_assert_msg(strcmp(a, c) != 0, "another seed gave the same text");
    ck_assert_msg(strncmp(a, "The ", 4) == 0 && strlen(a) > 300, "unexpected output: %s", a);
    // the stats: the state grows with the context (one more Fenwick level per doubling), also past 256
    char *st;
    ck_assert_int_eq(run(&st, "jq -r '[.context, .state_bytes] | @tsv' %s/stats.jsonl", g_tmp), 0);
    long long ctx, bytes, prev = 0, at256 = 0, last_ctx = 0, last_bytes = 0;
    int lines = 0;
    for (char *p = st; p && sscanf(p, "%lld %lld", &ctx, &bytes) == 2; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        ck_assert_msg(bytes >= prev, "state shrank at context %lld: %s", ctx, st);
        if (ctx == 256) at256 = bytes;
        prev = last_bytes = bytes;
        last_ctx = ctx;
        lines++;
    }
    ck_assert_msg(lines >= 8 && last_ctx > 256 && at256 > 0 && last_bytes > at256, "stats: %s", st);
    free(a);
    free(b);
    free(c);
    free(st);
}
END_TEST

START_TEST(test_generate_errors) {
    const struct { const char *args, *needle; } cases[] = {
        {"--config tiny_transformer.json --top-p 2", "--top-p"},
        {"--config tiny_transformer.json --temperature -1", "--temperature"},
        {"--checkpoint /nonexistent/run", "/nonexistent/run"},
        {"--config tiny_transformer.json --prompt-ids '1 99999'", "--prompt-ids"},
        {"--config tiny_transformer.json --prompt a --prompt-file b", "at most one"},
        {"--config tiny_transformer.json --bogus 1", "--bogus"},
        {"--config tiny_transformer.json --tokns 3", "unknown option '--tokns' (did you mean '--tokens'?)"},
        {"--config=tiny_transformer.json --top-p=2", "--top-p"},   // --key=value
        {"--config tiny_transformer.json --quiet=1", "option '--quiet' is a flag and takes no value"},
        {"--config tiny_transformer.json --samples 3000000000", "--samples needs an integer from 1 to"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out;
        int rc = run(&out, "./generate %s --threads 1", cases[i].args);
        ck_assert_msg(rc != 0, "'%s' succeeded", cases[i].args);
        ck_assert_msg(strstr(out, cases[i].needle) != NULL, "'%s': message lacks '%s': %s", cases[i].args,
                      cases[i].needle, out);
        free(out);
    }
}
END_TEST

// A 2-layer Gated DeltaNet (d = 64) learns MQAR with 2-4 pairs to >= 90% answer accuracy in a few hundred
// steps and stops at train.target_accuracy; the loss counts the answers only (it starts near ln(32)).
START_TEST(test_mqar_learns_and_stops) {
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/mqar.json", g_tmp);
    FILE *f = fopen(cfg, "w");
    ck_assert(f != NULL);
    fputs("{\"model\": {\"model_type\": \"gated_deltanet\", \"vocab_size\": 32, \"hidden_size\": 64, "
          "\"num_hidden_layers\": 2, \"num_heads\": 2, \"head_dim\": 32, \"expand_v\": 1, "
          "\"max_position_embeddings\": 64, \"chunk_size\": 16, \"initializer_range\": 0.02},\n"
          " \"train\": {\"train_data\": \"mqar:pairs=2-4,vocab=32,examples=20000,fill=zero\", "
          "\"val_data\": \"mqar:pairs=2-4,vocab=32,examples=256,seed=1,fill=zero\", \"tokenizer\": \"\", "
          "\"batch_size\": 32, \"seq_len\": 32, \"steps\": 600, \"lr\": 0.003, \"warmup_steps\": 20, "
          "\"eval_every\": 25, \"eval_batches\": 4, \"sample_every\": 0, \"save_every\": 0, \"log_every\": 50, "
          "\"threads\": 1, \"target_accuracy\": 0.9, \"seed\": 1}}\n", f);
    fclose(f);
    run_ok("./train --config %s --run_dir %s/run", cfg, g_tmp);
    char *out;
    ck_assert_int_eq(run(&out, "jq -rs '[.[] | select(.stopped)][0].step, ([.[] | select(.val_accuracy)] | last | "
                               ".val_accuracy), ([.[] | select(.loss)][0].loss)' %s/run/log.jsonl", g_tmp), 0);
    int stop_step = 0;
    double acc = 0, first_loss = 0;
    ck_assert_msg(sscanf(out, "%d %lf %lf", &stop_step, &acc, &first_loss) == 3, "log: %s", out);
    printf("MQAR: stopped at step %d with validation accuracy %.4f (first loss %.3f)\n", stop_step, acc, first_loss);
    ck_assert_msg(stop_step > 0 && stop_step < 600 && acc >= 0.9, "no early stop at 90%%: %s", out);
    ck_assert_msg(first_loss > 3.0 && first_loss < 4.0, "first loss %.3f is not ~ln(32) over the answers", first_loss);
    free(out);
    ck_assert_int_eq(run(&out, "./evaluate --checkpoint %s/run --threads 1 --json %s/e.json > /dev/null && jq .accuracy "
                               "%s/e.json", g_tmp, g_tmp, g_tmp), 0);
    double eacc = 0;
    ck_assert_msg(sscanf(out, "%lf", &eacc) == 1 && eacc >= 0.9, "./evaluate accuracy: %s", out);
    free(out);
}
END_TEST

// scripts/mqar.sh --quick: the five models train, the table has a row each; without gnuplot it says so and
// exits 0; a second run skips the finished runs and draws the PNG from the saved results.
START_TEST(test_mqar_script_quick) {
    char *out;
    ck_assert_int_eq(run(&out, "GNUPLOT=no-such-gnuplot scripts/mqar.sh --quick --out %s/mq", g_tmp), 0);
    ck_assert_msg(strstr(out, "note: gnuplot is not installed") != NULL, "no note: %s", out);
    free(out);
    ck_assert_int_eq(run(&out, "grep -c '^| [A-Z].* | [0-9.]* ± [0-9.]* |$' %s/mq/table.md", g_tmp), 0);
    ck_assert_msg(atoi(out) == 5, "table rows: %s", out);
    free(out);
    ck_assert_int_eq(run(&out, "scripts/mqar.sh --quick --out %s/mq", g_tmp), 0);
    ck_assert_msg(strstr(out, "skipping") != NULL && strstr(out, "step 4") == NULL, "no skip on rerun: %s", out);
    free(out);
    if (system("command -v gnuplot >/dev/null") == 0) {
        ck_assert_int_eq(run(&out, "head -c 8 %s/mq/accuracy.png | od -An -c | tr -d ' '", g_tmp), 0);
        ck_assert_msg(strstr(out, "PNG") != NULL, "accuracy.png is not a PNG: %s", out);
        free(out);
    }
}
END_TEST

int main(void) {
    const TuNamedTest tests[] = {
        {"generate_seeded", test_generate_seeded}, {"generate_errors", test_generate_errors},
        {"mqar_learns_and_stops", test_mqar_learns_and_stops}, {"mqar_script_quick", test_mqar_script_quick}};
    return tu_run_suite(tu_suite_with_fixture("tools", tests, sizeof tests / sizeof *tests, 180, setup, teardown));
}
