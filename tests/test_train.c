// test_train.c — end-to-end checks of the ./train program on the byte-level corpus (built by
// data/build_corpus.sh): a tiny run of each model whose validation loss falls, bit-identical resume,
// the gradient dump, and the errors a user meets (bad config, missing data, corrupt checkpoint, divergence).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testrun.h"
#include "testutil.h"

static char g_tmp[256];

static void setup(void) {
    tu_require_train_and_bytes();
    tu_make_tmp(g_tmp, sizeof g_tmp, "train");
}

static void teardown(void) { tu_remove_tmp(g_tmp); }

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

// ---------------------------------------------------------------------------------------------------
// Interrupting, resuming and run directories.

// Lines of a run's log.jsonl that are training steps (not evaluations), and whether any step repeats.
static int count_step_lines(const char *run_dir, bool *repeats) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    int n = 0;
    long long prev = 0;
    *repeats = false;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "val_loss")) continue;
        long long st = atoll(strstr(line, "\"step\": ") + 8);
        if (st <= prev) *repeats = true;
        prev = st;
        n++;
    }
    fclose(f);
    return n;
}

// The step `latest` names in a run directory.
static long long latest_step(const char *run_dir) {
    char path[512], buf[64] = "";
    snprintf(path, sizeof path, "%s/latest", run_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    ck_assert(fgets(buf, sizeof buf, f) != NULL);
    fclose(f);
    return strncmp(buf, "step_", 5) == 0 ? atoll(buf + 5) : -1;
}

// Starts a long run in the background, waits for its first logged step, sends the signal(s) and
// returns the exit status the shell saw, with the run's output in *out.
static int run_and_signal(char **out, const char *dir, const char *signals) {
    return run(out,
               "./train --config tiny_transformer.json --run_dir %s --steps 1000000 --save_every 0 --eval_every 0 "
               "--sample_every 0 --threads 1 > %s.out 2>&1 & p=$!; "
               "for i in $(seq 600); do [ -s %s/log.jsonl ] && break; sleep 0.05; done; "
               "for s in %s; do kill -$s $p; done; "
               "wait $p; echo \"exit status $?\"; cat %s.out",
               dir, dir, dir, signals, dir);
}

// SIGTERM / SIGINT: the step is finished, a checkpoint saved, the resume command printed, exit 128+signal;
// the run then resumes from exactly that step.
START_TEST(test_signal_saves_checkpoint) {
    char dir[300], *out;
    snprintf(dir, sizeof dir, "%s/sig", g_tmp);
    run_and_signal(&out, dir, "TERM");
    ck_assert_msg(strstr(out, "exit status 143") && strstr(out, "SIGTERM: stopped after step") &&
                  strstr(out, "checkpoint saved") && strstr(out, "./train --resume"), "%s", out);
    free(out);
    bool repeats;
    const int logged = count_step_lines(dir, &repeats);
    const long long saved = latest_step(dir);
    printf("SIGTERM after %d logged steps: checkpoint at step %lld\n", logged, saved);
    ck_assert_msg(saved == logged && saved > 0, "checkpoint at %lld, log has %d steps", saved, logged);
    int rc = run(&out, "./train --resume %s --steps %lld", dir, saved + 3);
    ck_assert_msg(rc == 0 && strstr(out, "resumed from"), "%s", out);
    free(out);
    ck_assert_int_eq(count_step_lines(dir, &repeats), saved + 3);
    ck_assert(!repeats);
    // Ctrl-C: the same, exit status 130
    snprintf(dir, sizeof dir, "%s/int", g_tmp);
    run_and_signal(&out, dir, "INT");
    ck_assert_msg(strstr(out, "exit status 130") && strstr(out, "SIGINT: stopped after step"), "%s", out);
    free(out);
    ck_assert_int_gt(latest_step(dir), 0);
    // a second signal ends the run at once: no checkpoint, no resume advice. The process is stopped while
    // both are sent (two different signals: two of the same kind would merge into one while pending), so
    // the second always arrives before the step can end.
    snprintf(dir, sizeof dir, "%s/twice", g_tmp);
    run_and_signal(&out, dir, "STOP TERM INT CONT");
    ck_assert_msg((strstr(out, "exit status 130") || strstr(out, "exit status 143")) && !strstr(out, "stopped after") &&
                  !strstr(out, "checkpoint saved"), "%s", out);
    ck_assert_msg(access(dir, F_OK) == 0, "no run");
    char latest[400];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    ck_assert_msg(access(latest, F_OK) != 0, "a checkpoint was saved after the second signal");
    free(out);
}
END_TEST

// A resume cuts log.jsonl back to the checkpoint's step: the steps trained again are not logged twice,
// and a line cut short by a crash is dropped.
START_TEST(test_resume_truncates_log) {
    char *out;
    run_ok("./train --config tiny_mamba2.json --run_dir %s/l --steps 20 --save_every 10 --keep_last 5", g_tmp);
    // as if killed after step 20 was logged but before its checkpoint, mid-way through a line: 10 step
    // lines, the evaluation at step 20 and the partial line are to go
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -r %s/l/step_00000020 && echo step_00000010 > %s/l/latest && "
             "printf '{\"step\": 21, \"lo' >> %s/l/log.jsonl", g_tmp, g_tmp, g_tmp);
    ck_assert_int_eq(system(cmd), 0);
    int rc = run(&out, "./train --resume %s/l --steps 20", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "removed 12 lines logged after the checkpoint's step 10"), "%s", out);
    free(out);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/l", g_tmp);
    bool repeats;
    ck_assert_int_eq(count_step_lines(dir, &repeats), 20);
    ck_assert_msg(!repeats, "log.jsonl holds a step twice after the resume");
    run_ok("grep -c val_loss %s/l/log.jsonl | grep -qx 2", g_tmp);   // evaluations at steps 10 and 20, once each
}
END_TEST

// A fresh run into a used run_dir is refused with the ways on; --overwrite clears the old run.
START_TEST(test_run_dir_reuse) {
    char *out;
    run_ok("./train --config tiny_transformer.json --run_dir %s/u --steps 6 --save_every 3", g_tmp);
    int rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/u --steps 4", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "/u already holds a run") && strstr(out, "--resume") &&
                  strstr(out, "--overwrite"), "%s", out);
    free(out);
    // leftovers of a killed save or deletion are removed when a run starts
    run_ok("mkdir -p %s/u/.del_step_00000003 %s/u/.tmp_step_00000009 && touch %s/u/.del_step_00000003/config.json "
           "%s/u/notes.txt", g_tmp, g_tmp, g_tmp, g_tmp);
    rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/u --steps 4 --overwrite", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "deleted the previous run"), "%s", out);
    free(out);
    run_ok("ls -a %s/u | tr '\\n' ' ' | grep -qx '. .. latest log.jsonl notes.txt step_00000004 '", g_tmp);
    // --resume with --steps at or below the checkpoint's step says so
    rc = run(&out, "./train --resume %s/u --steps 2", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "already past --steps 2"), "%s", out);
    free(out);
    rc = run(&out, "./train --resume %s/u --steps 4", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "the run is complete") && !strstr(out, "nan"), "%s", out);
    free(out);
}
END_TEST

// state.json is validated field by field before use (the manifest is removed so its CRC lets edits through).
START_TEST(test_bad_state_json) {
    run_ok("./train --config tiny_transformer.json --run_dir %s/s --steps 4 --save_every 0", g_tmp);
    static const struct { const char *field, *value, *must; } cases[] = {
        {"step", "\"abc\"", "field 'step' must be a non-negative integer"},
        {"step", "-3", "field 'step' is -3, but it cannot be negative"},
        {"step", "1e30", "field 'step' must be a non-negative integer"},
        {"step", "2", "field 'step' = 2, but the checkpoint is of step 4"},
        {"tokens_seen", "0", "field 'tokens_seen' = 0 does not fit 'step' = 4"},
        {"data_cursor", "\"99999999\"", "field 'data_cursor' = 99999999 is past"},
        {"elapsed_seconds", "\"x\"", "field 'elapsed_seconds' must be a finite number"},
        {"consecutive_bad", "3", "field 'consecutive_bad' = 3 exceeds 'bad_steps_total'"},
    };
    run_ok("cd %s/s/step_00000004 && rm manifest.json && cp state.json state.orig", g_tmp);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        run_ok("cd %s/s/step_00000004 && sed 's/\"%s\": [^,]*,/\"%s\": %s,/' state.orig > state.json && "
               "grep -q '\"%s\": %s,' state.json", g_tmp, cases[i].field, cases[i].field, cases[i].value,
               cases[i].field, cases[i].value);
        int rc = run(&out, "./train --resume %s/s --steps 8", g_tmp);
        printf("state.json %s = %s: %s", cases[i].field, cases[i].value, out);
        ck_assert_msg(rc != 0 && strstr(out, cases[i].must) && strstr(out, "state.json"), "%s", out);
        free(out);
    }
}
END_TEST

// How rewrite_optimizer damages a copy of an optimizer.safetensors.
enum { OPT_ZERO, OPT_NAN_M, OPT_NEG_V, OPT_INF_V, OPT_DROP, OPT_EXTRA, OPT_RESHAPE, N_OPT_DAMAGE };

// Writes src's tensors to dst with one kind of damage (fresh CRCs: each file is valid on its own).
static void rewrite_optimizer(const char *src, const char *dst, int damage) {
    StFileInfo info;
    Err err;
    ck_assert_msg(safetensors_list(src, &info, &err), "%s", err.msg);
    const int n = info.n;
    TensorRef *t = calloc((size_t)n + 1, sizeof *t);
    float **bufs = calloc((size_t)n, sizeof *bufs);   // owned here whatever the damage does to t
    for (int i = 0; i < n; i++) {
        t[i].name = info.tensors[i].name;
        t[i].ndim = info.tensors[i].ndim;
        for (int d = 0; d < t[i].ndim; d++) t[i].shape[d] = info.tensors[i].shape[d];
        t[i].data = bufs[i] = calloc((size_t)tensor_numel(&t[i]), sizeof(float));
    }
    ck_assert_msg(safetensors_read(src, t, n, true, &err), "%s", err.msg);
    int out_n = n;
    // the first exp_avg.* and exp_avg_sq.* tensors (the file lists each kind in the model's order)
    TensorRef *m = NULL, *v = NULL;
    for (int i = 0; i < n; i++) {
        if (!m && strncmp(t[i].name, "exp_avg.", 8) == 0) m = &t[i];
        if (!v && strncmp(t[i].name, "exp_avg_sq.", 11) == 0) v = &t[i];
    }
    ck_assert(m && v);
    switch (damage) {
    case OPT_ZERO:
        for (int i = 0; i < n; i++) memset(t[i].data, 0, sizeof(float) * (size_t)tensor_numel(&t[i]));
        break;
    case OPT_NAN_M: m->data[1] = NAN; break;
    case OPT_NEG_V: v->data[2] = -1e-8f; break;
    case OPT_INF_V: v->data[0] = INFINITY; break;
    case OPT_DROP: *v = t[--out_n]; break;
    case OPT_EXTRA:
        t[out_n] = *m;
        t[out_n++].name = "exp_avg.model.extra.weight";
        break;
    case OPT_RESHAPE:   // the same numbers as one flat row
        m->shape[0] = tensor_numel(m);
        m->ndim = 1;
        break;
    }
    ck_assert_msg(safetensors_write(dst, t, out_n, NULL, &err), "%s", err.msg);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    safetensors_info_free(&info);
    free(t);
}

// The files of a checkpoint must tell the same story: state.json against the AdamW moments of
// optimizer.safetensors (finite, >= 0, non-zero exactly when a step ran; the model's tensors) and against
// train_config.json (seed) and its own step count (tokens_per_step). The manifest is removed so that
// the edits are not refused as corruption first.
START_TEST(test_checkpoint_consistency) {
    run_ok("./train --config tiny_transformer.json --run_dir %s/k --steps 4 --save_every 0 --threads 1", g_tmp);
    char dir[300], opt[400], orig[400];
    snprintf(dir, sizeof dir, "%s/k/step_00000004", g_tmp);
    snprintf(opt, sizeof opt, "%s/optimizer.safetensors", dir);
    snprintf(orig, sizeof orig, "%s/opt.orig", dir);
    run_ok("cd %s && rm manifest.json && cp state.json state.orig && cp optimizer.safetensors opt.orig && "
           "grep -q '\"tokens_per_step\": 256,' state.json", dir);
    static const struct { const char *sed, *must; } states[] = {
        {"s/\"tokens_seen\": 1024/\"tokens_seen\": 1000/",
         "field 'tokens_seen' = 1000 does not fit 'step' = 4 x 'tokens_per_step' = 256 (= 1024 tokens)"},
        {"s/\"seed\": \"42\"/\"seed\": \"7\"/",
         "field 'seed' = 7, but the checkpoint's train_config.json has train.seed = 42"},
        {"s/\"bad_steps_total\": 0/\"bad_steps_total\": 4/",
         "'bad_steps_total' = 4 says no optimizer step ran, but"},
    };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        char *out;
        run_ok("cd %s && sed '%s' state.orig > state.json && ! cmp -s state.json state.orig", dir, states[i].sed);
        int rc = run(&out, "./train --resume %s/k --steps 8 --threads 1", g_tmp);
        printf("state.json %s: %s", states[i].sed, out);
        ck_assert_msg(rc == 1 && strstr(out, states[i].must) && strstr(out, "state.json") &&
                      strstr(out, "resume from another checkpoint"), "%s", out);
        free(out);
    }
    run_ok("cp %s/state.orig %s/state.json", dir, dir);
    static const char *const moments[N_OPT_DAMAGE] = {
        [OPT_ZERO] = "says 4 optimizer steps ran, but every AdamW moment in",
        [OPT_NAN_M] = "[1] = nan, but an AdamW first moment is always finite",
        [OPT_NEG_V] = "[2] = -1e-08, but an AdamW second moment is a mean of squares: finite and >= 0",
        [OPT_INF_V] = "[0] = inf, but an AdamW second moment",
        [OPT_DROP] = "' is missing (the file has 41 tensors; the model's 21 parameter tensors need 42",
        [OPT_EXTRA] = "43 tensors, but the model's 21 parameter tensors need 42 (exp_avg.* and exp_avg_sq.* of each): "
                      "'exp_avg.model.extra.weight' is not a moment of this model",
        [OPT_RESHAPE] = "has shape [8224], but the model's parameter 'model.embeddings.weight' is [257,32]",
    };
    for (int d = 0; d < N_OPT_DAMAGE; d++) {
        char *out;
        rewrite_optimizer(orig, opt, d);
        int rc = run(&out, "./train --resume %s/k --steps 8 --threads 1", g_tmp);
        printf("optimizer damage %d: %s", d, out);
        ck_assert_msg(rc == 1 && strstr(out, moments[d]) && strstr(out, "optimizer.safetensors") &&
                      (strstr(out, "resume from another checkpoint") || strstr(out, "--init-from")), "%s", out);
        free(out);
    }
    run_ok("cp %s %s", orig, opt);
    char old4[400];   // a copy for the state.json without tokens_per_step (pruning deletes step 4 below)
    snprintf(old4, sizeof old4, "%s/step_00000004", g_tmp);
    run_ok("cp -r %s %s", dir, old4);
    // The count holds while the batch stays as it started; a resume that changes the batch (allowed) ends
    // the check (tokens_per_step 0 from then on), and a state.json from before the field resumes too.
    run_ok("./train --resume %s/k --steps 5 --threads 1 && grep -q '\"tokens_per_step\": 256,' "
           "%s/k/step_00000005/state.json", g_tmp, g_tmp);
    run_ok("./train --resume %s/k --steps 6 --batch_size 2 --threads 1 && grep -q '\"tokens_per_step\": 0,' "
           "%s/k/step_00000006/state.json && grep -q '\"tokens_seen\": 1408,' %s/k/step_00000006/state.json",
           g_tmp, g_tmp, g_tmp);
    run_ok("./train --resume %s/k --steps 7 --threads 1", g_tmp);
    run_ok("cd %s && grep -v tokens_per_step state.orig > state.json", old4);
    run_ok("./train --resume %s --run_dir %s/old --steps 5 --threads 1 && grep -q '\"tokens_per_step\": 0,' "
           "%s/old/step_00000005/state.json", old4, g_tmp, g_tmp);
}
END_TEST

// Files a shard glob or --config may name by mistake: each gets a message naming it, none hangs.
START_TEST(test_special_files) {
    char *out;
    run_ok("mkfifo %s/fifo_0.bin && mkdir %s/dir_0.bin %s/cfgdir && ln -s %s/loop.json %s/loop.json", g_tmp, g_tmp,
           g_tmp, g_tmp, g_tmp);
    int rc = run(&out, "timeout 60 ./train --config tiny_transformer.json --run_dir %s/r --train_data '%s/fifo_*.bin'",
                 g_tmp, g_tmp);
    ck_assert_msg(rc == 1 && strstr(out, "fifo_0.bin is a FIFO (named pipe), not a regular file"), "%s", out);
    free(out);
    rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/r --val_data '%s/dir_*.bin'", g_tmp, g_tmp);
    ck_assert_msg(rc == 1 && strstr(out, "dir_0.bin is a directory, not a regular file"), "%s", out);
    free(out);
    rc = run(&out, "./train --config %s/cfgdir", g_tmp);
    ck_assert_msg(rc == 1 && strstr(out, "cfgdir is a directory, not a config file"), "%s", out);
    free(out);
    rc = run(&out, "./train --config %s/loop.json", g_tmp);
    ck_assert_msg(rc == 1 && strstr(out, "loop.json cannot be opened") && strstr(out, "symbolic links"), "%s", out);
    free(out);
    // options: a typo is an unknown option with the nearest one suggested; --key=value works
    rc = run(&out, "./train --hlep");
    ck_assert_msg(rc == 1 && strstr(out, "unknown option '--hlep' (did you mean '--help'?)"), "%s", out);
    free(out);
    rc = run(&out, "./train --config tiny_transformer.json --stesp 3");
    ck_assert_msg(rc == 1 && strstr(out, "(did you mean '--steps'?)"), "%s", out);
    free(out);
    rc = run(&out, "./train --config=tiny_transformer.json --run_dir=%s/kv --steps=2 --warmup_steps=1 --eval_every=0",
             g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "done: 2 steps"), "%s", out);
    free(out);
}
END_TEST

// A short smoke run on a config whose warmup is longer than the run; the progress line and log records.
START_TEST(test_smoke_run_and_progress) {
    char *out;
    int rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/p --steps 3 --warmup_steps 40 "
                 "--log_every 1", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "warming up over all 3 steps") && strstr(out, "elapsed ") &&
                  strstr(out, "| mem ") && strstr(out, "peak memory"), "%s", out);
    // byte-level samples are escaped: no control character reaches the terminal
    const char *sample = strstr(out, "sample: ");
    ck_assert(sample != NULL);
    for (const char *c = sample; *c && *c != '\n'; c++)
        ck_assert_msg((unsigned char)*c >= 0x20 && *c != 0x7f, "raw control byte 0x%02x in the sample", *c);
    free(out);
    run_ok("grep -c '\"tokens\": [0-9]*, \"time\": [0-9.]*}' %s/p/log.jsonl | grep -qx 3", g_tmp);
    // a skipped (non-finite) step is logged with null, which JSON readers accept
    run(&out, "./train --config tiny_transformer.json --run_dir %s/n --lr 1e30 --grad_clip 0 --warmup_steps 1 "
        "--max_bad_steps 1", g_tmp);
    free(out);
    run_ok("grep -q '\"skipped\": true, \"loss\": [0-9.]*, \"grad_norm\": null' %s/n/log.jsonl && "
           "! grep -q nan %s/n/log.jsonl", g_tmp, g_tmp);
}
END_TEST

// Model keys on the command line: a new run gets the model they describe (derived sizes follow); a resume
// refuses those that change a tensor's shape. Sizes that cannot fit are refused before any allocation,
// naming the setting and the bytes.
START_TEST(test_model_overrides_and_sizes) {
    char *out;
    int rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/o --hidden_size 64 --num_hidden_layers 1 "
                 "--steps 2 --eval_every 0", g_tmp);
    // d = 64, one layer, V = 257, MLP width 256 (derived from d): 2*257*64 + 4*64*64 + 3*64*256 + 3*64 = 98496
    ck_assert_msg(rc == 0 && strstr(out, "0.10M params | d=64 L=1"), "%s", out);
    free(out);
    run_ok("grep -q '\"hidden_size\":[[:space:]]*64,' %s/o/step_00000002/config.json", g_tmp);
    rc = run(&out, "./train --resume %s/o --hidden_size 32 --steps 4", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "change model.hidden_size") && strstr(out, "model.embeddings.weight"), "%s", out);
    free(out);
    rc = run(&out, "./train --resume %s/o --norm_eps 1e-5 --steps 3", g_tmp);   // no shape changes: fine
    ck_assert_msg(rc == 0 && strstr(out, "done: 3 steps"), "%s", out);
    free(out);
    rc = run(&out, "./train --config tiny_mamba2.json --run_dir %s/o2 --num_kv_heads 1", g_tmp);
    ck_assert_msg(rc != 0 && strstr(out, "--num_kv_heads") && strstr(out, "does not apply to model_type 'mamba2'"),
                  "%s", out);
    free(out);
    static const struct { const char *flags, *must1, *must2; } sizes[] = {
        {"--vocab_size 2147483647", "the model is too large", "vocab_size 2147483647"},
        {"--hidden_size 65536", "the model is too large", "hidden_size 65536"},
        {"--batch_size 2147483647", "the batch is too large", "batch_size 2147483647"},
        {"--hidden_size 1000000000", "hidden_size (1000000000) x model.hidden_ratio", "lower hidden_size"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rc = run(&out, "./train --config tiny_transformer.json --run_dir %s/big %s", g_tmp, sizes[i].flags);
        ck_assert_msg(rc == 1 && strstr(out, sizes[i].must1) && strstr(out, sizes[i].must2) &&
                      (i == 3 || strstr(out, " GB")), "%s: %s", sizes[i].flags, out);
        free(out);
    }
    // the paper's recipe, scaled down by flags only
    rc = run(&out, "./train --config configs/flame/train_hattention_mid.json --run_dir %s/paper --hidden_size 64 "
             "--num_heads 2 --num_hidden_layers 1 --seq_len 64 --grad_accum 1 --steps 2 --eval_batches 1", g_tmp);
    ck_assert_msg(rc == 0 && strstr(out, "loglinear_mamba2") && strstr(out, "warming up over all 2 steps") &&
                  strstr(out, "done: 2 steps"), "%s", out);
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
    tcase_add_test(tc, test_signal_saves_checkpoint);
    tcase_add_test(tc, test_resume_truncates_log);
    tcase_add_test(tc, test_run_dir_reuse);
    tcase_add_test(tc, test_bad_state_json);
    tcase_add_test(tc, test_checkpoint_consistency);
    tcase_add_test(tc, test_special_files);
    tcase_add_test(tc, test_smoke_run_and_progress);
    tcase_add_test(tc, test_model_overrides_and_sizes);
    suite_add_tcase(s, tc);
    const int rc = tu_run_suite(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    return system(cmd) == 0 ? rc : 1;
}
