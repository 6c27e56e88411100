// test_train.c — end-to-end checks of the ./train program on the byte-level corpus (built by
// data/build_corpus.sh): a tiny run of each model whose validation loss falls, bit-identical resume,
// the gradient dump, and the errors a user meets (bad config, missing data, corrupt checkpoint, divergence).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static char g_tmp[256];

// Runs a shell command with ./train etc.; captures stdout+stderr into *out (malloc'd); returns exit status.
static int vrun(char **out, const char *fmt, va_list ap) {
    char cmd[4096];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    char full[4200];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    // The sanitizer runtime of this test must not leak into the release binaries it starts.
    unsetenv("LD_PRELOAD");
    FILE *p = popen(full, "r");
    ck_assert_msg(p != NULL, "popen failed");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int status = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int run(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(out, fmt, ap);
    va_end(ap);
    return rc;
}

// Runs a command that must succeed (its output is shown if it does not).
static void run_ok(const char *fmt, ...) {
    char *out;
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(&out, fmt, ap);
    va_end(ap);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
}

static void setup(void) {
    ck_assert_msg(access("./train", X_OK) == 0, "./train is missing: run make");
    ck_assert_msg(access("data/tokens_bytes/corpus.tok", R_OK) == 0,
                  "byte-level corpus missing: run data/build_corpus.sh (or scripts/test.sh)");
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_train_XXXXXX");
    ck_assert(mkdtemp(g_tmp) != NULL);
}

static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    ck_assert_int_eq(system(cmd), 0);
}

// The last "val_loss" in a run's log.jsonl, and the first training loss.
static void read_log(const char *run_dir, double *first_loss, double *last_val) {
    char path[512];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    char line[1024];
    *first_loss = NAN;
    *last_val = NAN;
    while (fgets(line, sizeof line, f)) {
        const char *p;
        if ((p = strstr(line, "\"val_loss\": "))) *last_val = atof(p + 12);
        else if (isnan(*first_loss) && (p = strstr(line, "\"loss\": "))) *first_loss = atof(p + 8);
    }
    fclose(f);
}

static void check_loss_falls(const char *config) {
    char *out;
    int rc = run(&out, "./train --config %s --run_dir %s/run --steps 40 --eval_every 20", config, g_tmp);
    ck_assert_msg(rc == 0, "%s failed:\n%s", config, out);
    double first, val;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", g_tmp);
    read_log(dir, &first, &val);
    printf("%s: first train loss %.3f, final val loss %.3f\n", config, first, val);
    // ln(257) = 5.55 at init; 40 steps of byte-level training must get well below that.
    ck_assert_msg(first > 5.0 && val < first - 1.0, "%s: loss did not fall (%.3f -> %.3f)", config, first, val);
    ck_assert_msg(strstr(out, "sample: ") != NULL, "no text sample printed");
    ck_assert_msg(strstr(out, "MFU") && strstr(out, "tok/s") && strstr(out, "ETA"), "progress line incomplete");
    ck_assert_msg(strstr(out, "memory: params") && strstr(out, "activations") && strstr(out, "MFU against"),
                  "memory or MFU-peak line missing");
    free(out);
}

START_TEST(test_transformer_learns) { check_loss_falls("tiny_transformer.json"); }
END_TEST
START_TEST(test_mamba2_learns) { check_loss_falls("tiny_mamba2.json"); }
END_TEST
START_TEST(test_loglinear_mamba2_learns) { check_loss_falls("tiny_loglinear_mamba2.json"); }
END_TEST
START_TEST(test_gated_deltanet_learns) { check_loss_falls("tiny_gated_deltanet.json"); }
END_TEST
START_TEST(test_loglinear_gated_deltanet_learns) { check_loss_falls("tiny_loglinear_gated_deltanet.json"); }
END_TEST

static bool files_equal(const char *a, const char *b) {
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

// 20 straight steps and 10 + stop + resume + 10 give byte-identical weights and optimizer moments.
static void check_resume(const char *config) {
    char *out;
    run_ok("./train --config %s --run_dir %s/straight --steps 20 --save_every 0", config, g_tmp);
    int rc = run(&out, "./train --config %s --run_dir %s/split --steps 20 --save_every 0 --stop-at 10", config, g_tmp);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "stopped at step 10") != NULL, "%s", out);
    free(out);
    rc = run(&out, "./train --resume %s/split", g_tmp);
    ck_assert_msg(rc == 0, "%s", out);
    ck_assert_msg(strstr(out, "resumed from") != NULL, "%s", out);
    free(out);
    char a[1024], b[1024];
    const char *files[] = {"model.safetensors", "optimizer.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/straight/step_00000020/%s", g_tmp, files[i]);
        snprintf(b, sizeof b, "%s/split/step_00000020/%s", g_tmp, files[i]);
        ck_assert_msg(files_equal(a, b), "%s: %s differs between 20 straight steps and 10 + resume + 10", config, files[i]);
    }
    printf("%s: 20 straight steps == 10 + resume + 10 (model and optimizer byte-identical)\n", config);
}

// --eval: the validation loss of a checkpoint, over the whole validation set when eval_batches allows.
START_TEST(test_eval_only) {
    char *out;
    run_ok("./train --config tiny_transformer.json --run_dir %s/e --steps 40 --save_every 0 --eval_every 0 --sample_tokens 0", g_tmp);
    int rc = run(&out, "./train --resume %s/e --eval --eval_batches 4", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "at step 40: val loss ") && strstr(out, "over 4 of "), "%s", out);
    double loss = atof(strstr(out, "val loss ") + 9);
    ck_assert_msg(loss > 2.0 && loss < 4.5, "val loss %g", loss);
    free(out);
    // per-position loss: one row per position, each over every evaluated sequence; their mean is the
    // validation loss of the same sample
    char tsv[512];
    snprintf(tsv, sizeof tsv, "%s/pos.tsv", g_tmp);
    rc = run(&out, "./train --resume %s/e --eval --eval_batches 8 --positions %s", g_tmp, tsv);
    ck_assert_msg(rc == 0, "%s", out);
    double val8 = atof(strstr(out, "val loss ") + 9);
    free(out);
    FILE *f = fopen(tsv, "r");
    ck_assert(f != NULL);
    char line[256];
    ck_assert(fgets(line, sizeof line, f) && strncmp(line, "position\tloss\tcount\n", 20) == 0);
    double mean = 0;
    int rows = 0, pos, cnt;
    double l;
    while (fscanf(f, "%d %lf %d", &pos, &l, &cnt) == 3) {
        ck_assert_int_eq(pos, rows);
        ck_assert_int_eq(cnt, 8 * 4);   // eval_batches x batch_size sequences
        ck_assert(l > 0 && l < 10);
        mean += l / 64.0;
        rows++;
    }
    fclose(f);
    ck_assert_int_eq(rows, 64);
    printf("per-position val loss: mean over 64 positions %.4f, val loss %.4f\n", mean, val8);
    ck_assert_msg(fabs(mean - val8) < 2e-4, "per-position mean %.5f != val loss %.5f", mean, val8);
}
END_TEST

START_TEST(test_resume_bit_identical_transformer) { check_resume("tiny_transformer.json"); }
END_TEST
START_TEST(test_resume_bit_identical_loglinear) { check_resume("tiny_loglinear_mamba2.json"); }
END_TEST
START_TEST(test_resume_bit_identical_mamba2) { check_resume("tiny_mamba2.json"); }
END_TEST
START_TEST(test_resume_bit_identical_gated_deltanet) { check_resume("tiny_gated_deltanet.json"); }
END_TEST
START_TEST(test_resume_bit_identical_loglinear_gated_deltanet) { check_resume("tiny_loglinear_gated_deltanet.json"); }
END_TEST

// The training losses of a run, in order.
static int read_losses(const char *run_dir, double *loss, int max) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    int n = 0;
    const char *p;
    while (fgets(line, sizeof line, f) && n < max)
        if (!strstr(line, "val_loss") && (p = strstr(line, "\"loss\": "))) loss[n++] = atof(p + 8);
    fclose(f);
    return n;
}

// Gradient accumulation: 2 micro-batches of 2 sequences make the same steps as 1 batch of 4 (the loader
// hands out the same windows in the same order), up to float summation order.
START_TEST(test_grad_accumulation) {
    run_ok("./train --config tiny_mamba2.json --run_dir %s/b4 --steps 6 --warmup_steps 1 --batch_size 4 "
                       "--grad_accum 1 --save_every 0", g_tmp);
    run_ok("./train --config tiny_mamba2.json --run_dir %s/b2 --steps 6 --warmup_steps 1 --batch_size 2 "
                   "--grad_accum 2 --save_every 0", g_tmp);
    double a[16], b[16];
    char da[300], db[300];
    snprintf(da, sizeof da, "%s/b4", g_tmp);
    snprintf(db, sizeof db, "%s/b2", g_tmp);
    int na = read_losses(da, a, 16), nb = read_losses(db, b, 16);
    ck_assert_int_eq(na, 6);
    ck_assert_int_eq(nb, 6);
    double worst = 0;
    for (int i = 0; i < 6; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    printf("batch 4 x accum 1 vs batch 2 x accum 2: max loss difference over 6 steps %.2e\n", worst);
    ck_assert_msg(worst < 1e-4, "gradient accumulation changes the training (%.3e)", worst);
}
END_TEST

// --init-from: a new run starts from another run's weights (the path a PyTorch-written model.safetensors
// takes); its first loss is the loss the weights had, far below that of a fresh initialisation.
START_TEST(test_init_from) {
    char *out;
    run_ok("./train --config tiny_loglinear_mamba2.json --run_dir %s/a --steps 30 --save_every 0", g_tmp);
    int rc = run(&out, "./train --config tiny_loglinear_mamba2.json --run_dir %s/b --steps 2 --warmup_steps 1 --init-from "
                   "%s/a/step_00000030", g_tmp, g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "initialised the weights from"), "%s", out);
    free(out);
    double first, val;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/b", g_tmp);
    read_log(dir, &first, &val);
    printf("--init-from: first loss of the new run %.3f (fresh init: ~5.55)\n", first);
    ck_assert_msg(first < 4.5, "weights not loaded: first loss %.3f", first);
    // weights of another model type: a clear shape/name error naming the file
    rc = run(&out, "./train --config tiny_mamba2.json --run_dir %s/c --init-from %s/a/step_00000030", g_tmp, g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "--init-from") && strstr(out, "model.safetensors"), "%s", out);
    free(out);
}
END_TEST

START_TEST(test_dump_grads) {
    char path[512];
    snprintf(path, sizeof path, "%s/grads.safetensors", g_tmp);
    run_ok("./train --config tiny_loglinear_mamba2.json --run_dir %s/r --dump-grads %s", g_tmp, path);
    StFileInfo info;
    Err err;
    ck_assert_msg(safetensors_list(path, &info, &err), "%s", err.msg);
    bool has_loss = false, has_L = false, has_ids = false;
    for (int i = 0; i < info.n; i++) {
        has_loss |= strcmp(info.tensors[i].name, "loss") == 0;
        has_ids |= strcmp(info.tensors[i].name, "input_ids") == 0;
        has_L |= strcmp(info.tensors[i].name, "backbone.layers.1.mixer.L") == 0;
    }
    ck_assert(has_loss && has_ids && has_L);
    safetensors_info_free(&info);
    // Activation recomputation through the command line: the same gradient file, byte for byte.
    run_ok("./train --config tiny_loglinear_mamba2.json --run_dir %s/r --recompute 1 --dump-grads %s.rec", g_tmp, path);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp %s %s.rec", path, path);
    ck_assert_msg(system(cmd) == 0, "--recompute 1 changed the gradients");
}
END_TEST

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_user_errors) {
    char *out, path[512];
    // unknown key: names the file and the key, suggests the fix
    snprintf(path, sizeof path, "%s/bad.json", g_tmp);
    write_file(path, "{\"model\": {\"model_type\": \"transformer\", \"vocab_size\": 257, \"hiden_size\": 32, "
                     "\"num_hidden_layers\": 1, \"num_heads\": 2}, \"train\": {}}");
    int rc = run(&out, "./train --config %s", path);
    ck_assert_msg(rc != 0 && strstr(out, "hiden_size") && strstr(out, "bad.json") && strstr(out, "hidden_size"), "%s", out);
    free(out);
    // missing shards
    rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/r --train_data '%s/nothing_*.bin'", g_tmp, g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "nothing_") && strstr(out, "train_data"), "%s", out);
    free(out);
    // bad override
    rc = run(&out, "./train --config tiny_transformer.json --lr fast");
    ck_assert_msg(rc != 0 && strstr(out, "lr"), "%s", out);
    free(out);
    // divergence: huge lr makes the loss non-finite; the run stops after max_bad_steps with advice
    rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/div --lr 1e30 --grad_clip 0 --warmup_steps 1 "
                   "--max_bad_steps 3", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "non-finite") && strstr(out, "max_bad_steps"), "%s", out);
    free(out);
}
END_TEST

START_TEST(test_checkpoint_errors) {
    char *out;
    run_ok("./train --config tiny_mamba2.json --run_dir %s/c --steps 6 --save_every 0", g_tmp);
    // a checkpoint of another model: resume with a config that does not match
    int rc = run(&out, "./train --resume %s/c --config tiny_transformer.json", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "different model"), "%s", out);
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/c/step_00000006/model.safetensors", g_tmp);
    // flip one byte in the middle of the data: CRC mismatch
    FILE *f = fopen(path, "r+b");
    ck_assert(f != NULL);
    fseek(f, -100, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -100, SEEK_END);
    fputc(ch ^ 0x40, f);
    fclose(f);
    rc = run(&out, "./train --resume %s/c --steps 12", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "corrupt") && strstr(out, "model.safetensors"), "%s", out);
    free(out);
    // truncate it
    ck_assert_int_eq(truncate(path, 1000), 0);
    rc = run(&out, "./train --resume %s/c --steps 12", g_tmp);
    ck_assert_msg(rc != 0 && (strstr(out, "truncated") || strstr(out, "incomplete or corrupt")) && strstr(out, "model.safetensors"), "%s", out);
    free(out);
}
END_TEST

int main(void) {
    // The runs' MFU peak probe (peak.h) caches into a directory of this test binary, not the user's.
    char cache[] = "/tmp/test_train_cache_XXXXXX";
    if (!mkdtemp(cache) || setenv("XDG_CACHE_HOME", cache, 1) != 0) {
        perror(cache);
        return 1;
    }
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_transformer_learns);
    tcase_add_test(tc, test_mamba2_learns);
    tcase_add_test(tc, test_loglinear_mamba2_learns);
    tcase_add_test(tc, test_resume_bit_identical_transformer);
    tcase_add_test(tc, test_resume_bit_identical_mamba2);
    tcase_add_test(tc, test_resume_bit_identical_loglinear);
    tcase_add_test(tc, test_gated_deltanet_learns);
    tcase_add_test(tc, test_loglinear_gated_deltanet_learns);
    tcase_add_test(tc, test_resume_bit_identical_gated_deltanet);
    tcase_add_test(tc, test_resume_bit_identical_loglinear_gated_deltanet);
    tcase_add_test(tc, test_grad_accumulation);
    tcase_add_test(tc, test_eval_only);
    tcase_add_test(tc, test_init_from);
    tcase_add_test(tc, test_dump_grads);
    tcase_add_test(tc, test_user_errors);
    tcase_add_test(tc, test_checkpoint_errors);
    suite_add_tcase(s, tc);
    const int rc = tu_run_suite(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    return system(cmd) == 0 ? rc : 1;
}
