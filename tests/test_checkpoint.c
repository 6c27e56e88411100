// test_checkpoint.c — the checkpoint directory store: save/prune/latest, resolve, crash leftovers,
// model and optimizer round trips and error messages.
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testrun.h"
#include "testutil.h"

static char g_dir[64];   // temp root
static char g_run[128];  // run directory inside it (created by the first save)
static const char *g_self;  // this binary, re-executed as the saver of test_kill_during_save

static void setup(void) {
    tu_make_tmp(g_dir, sizeof g_dir, "checkpoint");
    snprintf(g_run, sizeof g_run, "%s/runs/run", g_dir);  // nested: save creates both levels
}

static void teardown(void) { tu_remove_tmp(g_dir); }

static void expect_error(bool ok, const Err *e, const char *what, const char *must1, const char *must2) {
    printf("  [%s] -> %s\n", what, ok ? "(no error!)" : e->msg);
    ck_assert_msg(!ok, "%s: expected an error", what);
    ck_assert_msg(strstr(e->msg, must1), "%s: message lacks '%s': %s", what, must1, e->msg);
    if (must2) ck_assert_msg(strstr(e->msg, must2), "%s: message lacks '%s': %s", what, must2, e->msg);
}

// ---------------------------------------------------------------------------------------------
// A tiny "model": params, grads-free, with AdamW moments in flat arrays.

enum { NP = 3, TOTAL = 10 * 8 + 6 * 1 * 4 + 8 };
typedef struct {
    TensorRef p[NP];
    float w[TOTAL], m[TOTAL], v[TOTAL];
} Model;

static void model_init(Model *md, float seed_scale, uint64_t seed) {
    static const TensorRef shapes[NP] = {
        {"model.embeddings.weight", 2, {10, 8}, NULL},
        {"model.layers.0.mixer.conv1d.weight", 3, {6, 1, 4}, NULL},
        {"model.norm.weight", 1, {8}, NULL},
    };
    size_t off = 0;
    for (int i = 0; i < NP; i++) {
        md->p[i] = shapes[i];
        md->p[i].data = md->w + off;
        off += (size_t)tensor_numel(&shapes[i]);
    }
    tu_fill_randn(md->w, TOTAL, seed_scale, &seed);
    tu_fill_randn(md->m, TOTAL, 0.01f, &seed);
    for (int i = 0; i < TOTAL; i++) md->v[i] = 1e-4f * tu_randn(&seed) * tu_randn(&seed);
}

static const char *kHf = "{\"model_type\": \"mamba2mlp\", \"hidden_size\": 8}";
static const char *kCfg = "{\"model\": {\"model_type\": \"mamba2\"}, \"train\": {\"lr\": 0.001}}";

static void save_step(const Model *md, int64_t step, int keep_last) {
    char state[128];
    snprintf(state, sizeof state, "{\"step\": %lld, \"data_pos\": 12345}", (long long)step);
    CheckpointData cd = {md->p, NP, md->m, md->v, kHf, kCfg, state, 0};
    Err e;
    ck_assert_msg(checkpoint_save(g_run, step, &cd, keep_last, &e), "%s", e.msg);
}

// Sorted, space-separated entries of a directory.
static void list_dir(const char *dir, char *out, size_t len) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    ck_assert_int_ge(n, 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
            strncat(out, names[i]->d_name, len - strlen(out) - 2);
            strcat(out, " ");
        }
        free(names[i]);
    }
    free(names);
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(s, f);
    fclose(f);
}

static void resolve_expect(const char *path, const char *want_suffix) {
    char out[512];
    Err e;
    ck_assert_msg(checkpoint_resolve(path, out, sizeof out, &e), "%s", e.msg);
    size_t lo = strlen(out), lw = strlen(want_suffix);
    ck_assert_msg(lo >= lw && !strcmp(out + lo - lw, want_suffix), "resolve(%s) = %s, want ...%s", path, out,
                  want_suffix);
}

// ---------------------------------------------------------------------------------------------

START_TEST(test_keep_last_and_latest) {
    Model md;
    for (int s = 1; s <= 4; s++) {
        model_init(&md, (float)s, (uint64_t)s);
        save_step(&md, 10 * s, 2);
    }
    char ls[1024];
    list_dir(g_run, ls, sizeof ls);
    printf("  run dir after 4 saves, keep_last 2: %s\n", ls);
    ck_assert_str_eq(ls, "latest step_00000030 step_00000040 ");
    char p[256], *txt;
    Err e;
    ck_assert_msg(checkpoint_read_text(g_run, "latest", &txt, &e), "%s", e.msg);
    ck_assert_str_eq(txt, "step_00000040\n");
    free(txt);
    snprintf(p, sizeof p, "%s/step_00000040", g_run);
    list_dir(p, ls, sizeof ls);
    ck_assert_str_eq(ls, "config.json manifest.json model.safetensors optimizer.safetensors state.json "
                         "train_config.json ");
    // keep_last 0 keeps everything.
    save_step(&md, 50, 0);
    save_step(&md, 60, 0);
    list_dir(g_run, ls, sizeof ls);
    ck_assert_str_eq(ls, "latest step_00000030 step_00000040 step_00000050 step_00000060 ");
    // keep_last 1 after resuming from an older step: the one just written is never deleted, even
    // though step 60 has a higher number.
    save_step(&md, 45, 1);
    list_dir(g_run, ls, sizeof ls);
    ck_assert_str_eq(ls, "latest step_00000045 ");  // keep_last counts the new one; oldest go first
    resolve_expect(g_run, "/runs/run/step_00000045");
}
END_TEST

// Pruning deletes a checkpoint the way it is written: renamed out of the way first. A deletion that
// fails (or is killed) half-way leaves a .del_step_* leftover, never a partial step_* directory that a
// reader could take for a checkpoint; the next start removes the leftover.
START_TEST(test_prune_is_atomic) {
    Model md;
    model_init(&md, 1.0f, 1);
    save_step(&md, 1, 2);
    save_step(&md, 2, 2);
    // A directory inside step_1 makes its deletion fail after some files are gone.
    char p[256], ls[1024];
    snprintf(p, sizeof p, "%s/step_00000001/zz_subdir", g_run);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    save_step(&md, 3, 2);
    list_dir(g_run, ls, sizeof ls);
    printf("  run dir after a failed deletion of step 1: %s\n", ls);
    ck_assert_str_eq(ls, ".del_step_00000001 latest step_00000002 step_00000003 ");
    snprintf(p, sizeof p, "%s/.del_step_00000001/zz_subdir", g_run);
    ck_assert_int_eq(rmdir(p), 0);
    checkpoint_clean_leftovers(g_run);
    list_dir(g_run, ls, sizeof ls);
    ck_assert_str_eq(ls, "latest step_00000002 step_00000003 ");
    // checkpoint_remove_all: nothing of the run is left, other files stay
    snprintf(p, sizeof p, "%s/notes.txt", g_run);
    write_text(p, "mine");
    int64_t newest;
    ck_assert_int_eq(checkpoint_count(g_run, &newest), 2);
    ck_assert_int_eq(newest, 3);
    Err e;
    ck_assert_msg(checkpoint_remove_all(g_run, &e), "%s", e.msg);
    list_dir(g_run, ls, sizeof ls);
    ck_assert_str_eq(ls, "notes.txt ");
    ck_assert_int_eq(checkpoint_count(g_run, &newest), 0);
    ck_assert_int_eq(newest, -1);
}
END_TEST

START_TEST(test_resolve) {
    Model md;
    model_init(&md, 1.0f, 1);
    save_step(&md, 100, 3);
    save_step(&md, 200, 3);
    char p[256], latest[256];
    snprintf(latest, sizeof latest, "%s/latest", g_run);

    resolve_expect(g_run, "/runs/run/step_00000200");
    snprintf(p, sizeof p, "%s/", g_run);  // trailing slash
    resolve_expect(p, "/runs/run/step_00000200");
    snprintf(p, sizeof p, "%s/step_00000100/", g_run);  // a step dir itself
    resolve_expect(p, "/runs/run/step_00000100");
    snprintf(p, sizeof p, "%s/step_00000100", g_run);
    resolve_expect(p, "/runs/run/step_00000100");

    write_text(latest, "step_00000100\n");
    resolve_expect(g_run, "/runs/run/step_00000100");
    write_text(latest, "step_00000999\n");  // names a missing dir: fall back to the highest complete step
    resolve_expect(g_run, "/runs/run/step_00000200");
    write_text(latest, "../../etc\n");
    resolve_expect(g_run, "/runs/run/step_00000200");
    unlink(latest);
    resolve_expect(g_run, "/runs/run/step_00000200");

    // An incomplete higher step (a manifest file is missing) is skipped by the fallback ...
    snprintf(p, sizeof p, "%s/step_00000200/optimizer.safetensors", g_run);
    unlink(p);
    resolve_expect(g_run, "/runs/run/step_00000100");
    // ... and is an error when named directly.
    char out[512];
    Err e;
    snprintf(p, sizeof p, "%s/step_00000200", g_run);
    expect_error(checkpoint_resolve(p, out, sizeof out, &e), &e, "incomplete step dir", "incomplete",
                 "optimizer.safetensors");

    expect_error(checkpoint_resolve(g_dir, out, sizeof out, &e), &e, "dir without checkpoints",
                 "no checkpoint found", g_dir);
    snprintf(p, sizeof p, "%s/nope", g_dir);
    expect_error(checkpoint_resolve(p, out, sizeof out, &e), &e, "missing path", "No such file", p);
    snprintf(p, sizeof p, "%s/step_00000100/state.json", g_run);
    expect_error(checkpoint_resolve(p, out, sizeof out, &e), &e, "a file", "not a directory", p);
    expect_error(checkpoint_resolve(g_run, out, 8, &e), &e, "small buffer", "too long", NULL);
}
END_TEST

// Simulated crashes: a half-written .tmp_step dir, and `latest` not yet updated after the rename.
START_TEST(test_crash_leftovers) {
    Model md;
    model_init(&md, 1.0f, 1);
    save_step(&md, 40, 2);
    char p[256], ls[1024];
    snprintf(p, sizeof p, "%s/.tmp_step_00000050", g_run);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/.tmp_step_00000050/model.safetensors", g_run);
    write_text(p, "half a fil");
    snprintf(p, sizeof p, "%s/.tmp_step_00000007", g_run);  // an unrelated older leftover
    ck_assert_int_eq(mkdir(p, 0755), 0);
    resolve_expect(g_run, "/runs/run/step_00000040");

    // The next save of the same step replaces the leftover and removes every other one.
    save_step(&md, 50, 2);
    list_dir(g_run, ls, sizeof ls);
    printf("  after crash leftovers + save: %s\n", ls);
    ck_assert_str_eq(ls, "latest step_00000040 step_00000050 ");
    resolve_expect(g_run, "/runs/run/step_00000050");

    // Crash after the directory rename but before `latest` moved: latest still names a complete one.
    char latest[256];
    snprintf(latest, sizeof latest, "%s/latest", g_run);
    write_text(latest, "step_00000040\n");
    resolve_expect(g_run, "/runs/run/step_00000040");
    Model back;
    model_init(&back, 0.0f, 99);
    char dir[512];
    Err e;
    ck_assert(checkpoint_resolve(g_run, dir, sizeof dir, &e));
    ck_assert_msg(checkpoint_load_model(dir, back.p, NP, &e), "%s", e.msg);
}
END_TEST

START_TEST(test_load_roundtrip) {
    Model md, back;
    model_init(&md, 0.5f, 7);
    save_step(&md, 123, 2);
    model_init(&back, 0.0f, 99);
    memset(back.w, 0, sizeof back.w);
    memset(back.m, 0, sizeof back.m);
    memset(back.v, 0, sizeof back.v);
    char dir[512], *txt;
    Err e;
    ck_assert_msg(checkpoint_resolve(g_run, dir, sizeof dir, &e), "%s", e.msg);
    ck_assert_msg(checkpoint_load_model(dir, back.p, NP, &e), "%s", e.msg);
    ck_assert_msg(checkpoint_load_optimizer(dir, back.p, NP, back.m, back.v, &e), "%s", e.msg);
    ck_assert_msg(memcmp(md.w, back.w, sizeof md.w) == 0, "weights differ");
    ck_assert_msg(memcmp(md.m, back.m, sizeof md.m) == 0, "exp_avg differs");
    ck_assert_msg(memcmp(md.v, back.v, sizeof md.v) == 0, "exp_avg_sq differs");
    ck_assert(checkpoint_read_text(dir, "config.json", &txt, &e));
    ck_assert_str_eq(txt, kHf);
    free(txt);
    ck_assert(checkpoint_read_text(dir, "train_config.json", &txt, &e));
    ck_assert_str_eq(txt, kCfg);
    free(txt);
    ck_assert(checkpoint_read_text(dir, "state.json", &txt, &e));
    ck_assert_str_eq(txt, "{\"step\": 123, \"data_pos\": 12345}");
    free(txt);

    // The model file is a plain HF-style safetensors: exact names, F32, format pt.
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    StFileInfo info;
    ck_assert_msg(safetensors_list(p, &info, &e), "%s", e.msg);
    ck_assert_int_eq(info.n, NP);
    for (int i = 0; i < NP; i++) ck_assert_str_eq(info.tensors[i].name, md.p[i].name);
    safetensors_info_free(&info);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    ck_assert_msg(safetensors_list(p, &info, &e), "%s", e.msg);
    ck_assert_int_eq(info.n, 2 * NP);
    ck_assert_str_eq(info.tensors[0].name, "exp_avg.model.embeddings.weight");
    ck_assert_str_eq(info.tensors[NP + 2].name, "exp_avg_sq.model.norm.weight");
    safetensors_info_free(&info);

    // Re-saving the same step replaces it atomically with the new contents.
    Model md2;
    model_init(&md2, 2.0f, 8);
    save_step(&md2, 123, 2);
    ck_assert_msg(checkpoint_load_model(dir, back.p, NP, &e), "%s", e.msg);
    ck_assert(memcmp(md2.w, back.w, sizeof md2.w) == 0);
    char ls[1024];
    list_dir(g_run, ls, sizeof ls);
    ck_assert_str_eq(ls, "latest step_00000123 ");
}
END_TEST

START_TEST(test_load_errors) {
    Model md;
    model_init(&md, 1.0f, 3);
    save_step(&md, 5, 2);
    char dir[512];
    Err e;
    ck_assert(checkpoint_resolve(g_run, dir, sizeof dir, &e));

    Model other;
    model_init(&other, 1.0f, 3);
    float big[16 * 8];
    other.p[0].shape[0] = 16;
    other.p[0].data = big;
    expect_error(checkpoint_load_model(dir, other.p, NP, &e), &e, "other config", "[10,8]", "[16,8]");
    ck_assert(strstr(e.msg, "--config") && strstr(e.msg, dir) && strstr(e.msg, "model.safetensors") &&
              strstr(e.msg, "'model.embeddings.weight'"));
    expect_error(checkpoint_load_optimizer(dir, other.p, NP, other.m, other.v, &e), &e, "other config (optimizer)",
                 "'exp_avg.model.embeddings.weight'", "optimizer.safetensors");
    expect_error(checkpoint_load_model(dir, md.p, NP - 1, &e), &e, "fewer params", "unexpected",
                 "'model.norm.weight'");
    TensorRef more[NP + 1];
    memcpy(more, md.p, sizeof md.p);
    more[NP] = (TensorRef){"lm_head.weight", 1, {4}, big};
    expect_error(checkpoint_load_model(dir, more, NP + 1, &e), &e, "more params", "missing", "'lm_head.weight'");

    // A corrupted JSON file (same size) is caught by the manifest CRC.
    char p[600], *txt;
    snprintf(p, sizeof p, "%s/state.json", dir);
    FILE *f = fopen(p, "r+b");
    fseek(f, 2, SEEK_SET);
    fputc('X', f);
    fclose(f);
    expect_error(checkpoint_read_text(dir, "state.json", &txt, &e), &e, "corrupt state.json", "corrupt", p);
    ck_assert_ptr_null(txt);
    expect_error(checkpoint_read_text(dir, "nope.json", &txt, &e), &e, "missing text file", "cannot read",
                 "nope.json");

    // A corrupted weight is caught by the tensor CRC.
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    f = fopen(p, "r+b");
    fseek(f, (long)st.st_size - 5, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)st.st_size - 5, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    expect_error(checkpoint_load_model(dir, md.p, NP, &e), &e, "corrupt weight", "corrupt", "'model.norm.weight'");

    // Saved without optimizer state.
    CheckpointData cd = {md.p, NP, NULL, NULL, kHf, NULL, NULL, 0};
    ck_assert_msg(checkpoint_save(g_run, 6, &cd, 0, &e), "%s", e.msg);
    ck_assert(checkpoint_resolve(g_run, dir, sizeof dir, &e));
    ck_assert_msg(checkpoint_load_model(dir, md.p, NP, &e), "%s", e.msg);
    expect_error(checkpoint_load_optimizer(dir, md.p, NP, md.m, md.v, &e), &e, "no optimizer file",
                 "no optimizer.safetensors", dir);
    expect_error(checkpoint_read_text(dir, "state.json", &txt, &e), &e, "omitted state.json", "cannot read", NULL);

    // Save into an unwritable place fails cleanly.
    CheckpointData cd2 = {md.p, NP, md.m, md.v, kHf, kCfg, "{}", 0};
    expect_error(checkpoint_save("/proc/nonexistent_run", 1, &cd2, 2, &e), &e, "unwritable run dir", "cannot create",
                 "/proc/nonexistent_run");
}
END_TEST

// A child process saves successive steps in a loop and is SIGKILLed at random moments. Each time the
// checkpoint that resolve picks must load completely, and its weights, moments and state.json must all
// belong to the same step.
enum { KB_ROWS = 1024, KB_COLS = 1024 };  // 4 MB tensor, 12 MB per checkpoint with the moments

static void kb_fill(float *w, float *m, float *v, size_t n, int64_t step) {
    for (size_t i = 0; i < n; i++) {
        w[i] = (float)(step * 1000 + (int64_t)(i % 997));
        m[i] = -w[i];
        v[i] = 0.5f * w[i];
    }
}

// The saver process: `test_checkpoint --saver <run_dir> <first_step>` saves steps first, first+1, ...
// until killed. A separate exec (not a bare fork) because libgomp is not fork-safe once the parent has
// used OpenMP.
static int saver_main(const char *run_dir, int64_t first) {
    size_t n = (size_t)KB_ROWS * KB_COLS + 8;
    float *w = xmalloc(n * 4), *m = xmalloc(n * 4), *v = xmalloc(n * 4);
    TensorRef p[2] = {{"big.weight", 2, {KB_ROWS, KB_COLS}, w}, {"small.weight", 1, {8}, w + n - 8}};
    char state[64];
    CheckpointData cd = {p, 2, m, v, kHf, kCfg, state, 0};
    for (int64_t s = first;; s++) {
        kb_fill(w, m, v, n, s);
        snprintf(state, sizeof state, "{\"step\": %lld}", (long long)s);
        Err e;
        if (!checkpoint_save(run_dir, s, &cd, 2, &e)) {
            fprintf(stderr, "saver: %s\n", e.msg);
            return 3;
        }
    }
}

START_TEST(test_kill_during_save) {
    size_t n = (size_t)KB_ROWS * KB_COLS + 8;
    float *w = xmalloc(n * 4), *m = xmalloc(n * 4), *v = xmalloc(n * 4);
    TensorRef p[2] = {{"big.weight", 2, {KB_ROWS, KB_COLS}, w}, {"small.weight", 1, {8}, w + n - 8}};
    Err e;
    char state[64];
    kb_fill(w, m, v, n, 0);
    snprintf(state, sizeof state, "{\"step\": 0}");
    CheckpointData cd = {p, 2, m, v, kHf, kCfg, state, 0};
    ck_assert_msg(checkpoint_save(g_run, 0, &cd, 2, &e), "%s", e.msg);

    uint64_t seed = 42;
    int64_t next = 1, seen_max = 0;
    int progressed = 0;
    for (int round = 0; round < 6; round++) {
        char first[32];
        snprintf(first, sizeof first, "%lld", (long long)next);
        fflush(stdout);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            execl(g_self, g_self, "--saver", g_run, first, (char *)NULL);
            _exit(4);
        }
        // Wide enough to complete some saves (12 MB each, fsync'ed) on a loaded machine, short enough to cut others.
        usleep((useconds_t)(150000 + tu_next(&seed) % 1350000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        ck_assert_msg(WIFSIGNALED(status), "saver exited on its own (status %d): a save failed", status);

        char dir[512], *txt;
        ck_assert_msg(checkpoint_resolve(g_run, dir, sizeof dir, &e), "%s", e.msg);
        ck_assert_msg(checkpoint_read_text(dir, "state.json", &txt, &e), "%s", e.msg);
        long long step = -1;
        ck_assert_int_eq(sscanf(txt, "{\"step\": %lld}", &step), 1);
        free(txt);
        memset(w, 0, n * 4);
        memset(m, 0, n * 4);
        memset(v, 0, n * 4);
        ck_assert_msg(checkpoint_load_model(dir, p, 2, &e), "%s", e.msg);
        ck_assert_msg(checkpoint_load_optimizer(dir, p, 2, m, v, &e), "%s", e.msg);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = (float)(step * 1000 + (int64_t)(i % 997));
            bad += w[i] != want || m[i] != -want || v[i] != 0.5f * want;
        }
        char ls[1024];
        list_dir(g_run, ls, sizeof ls);
        printf("  kill round %d: resumed from step %lld, %zu mismatches; run dir: %s\n", round, step, bad, ls);
        fflush(stdout);
        ck_assert_uint_eq(bad, 0);
        ck_assert_int_ge(step, seen_max);
        progressed += step > seen_max;
        seen_max = step;
        next = step + 1;
    }
    ck_assert_msg(progressed >= 2, "only %d rounds completed a save: kill timing too short to test much",
                  progressed);
    // The next save cleans whatever the kills left behind.
    kb_fill(w, m, v, n, next);
    ck_assert_msg(checkpoint_save(g_run, next, &cd, 2, &e), "%s", e.msg);
    char ls[1024];
    list_dir(g_run, ls, sizeof ls);
    ck_assert_msg(!strstr(ls, ".tmp") && !strstr(ls, ".old") && !strstr(ls, ".del") && !strstr(ls, "latest.tmp"),
                  "leftovers: %s", ls);
    free(w);
    free(m);
    free(v);
}
END_TEST

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--saver")) return saver_main(argv[2], atoll(argv[3]));
    g_self = argv[0];
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_keep_last_and_latest);
    tcase_add_test(tc, test_prune_is_atomic);
    tcase_add_test(tc, test_resolve);
    tcase_add_test(tc, test_crash_leftovers);
    tcase_add_test(tc, test_load_roundtrip);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_kill_during_save);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
