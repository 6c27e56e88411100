// testrun.h — helpers of the end-to-end tests that run the programs (./train, ./generate, ./evaluate,
// mpirun, scripts): run a shell command and capture its output, compare files, read a run's log.
#ifndef LL_TESTRUN_H
#define LL_TESTRUN_H

#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// The per-test temporary directory of an end-to-end suite: /tmp/test_<suite>_XXXXXX, made fresh (into tmp,
// n bytes) and removed with everything under it.
static inline void tu_make_tmp(char *tmp, size_t n, const char *suite) {
    snprintf(tmp, n, "/tmp/test_%s_XXXXXX", suite);
    ck_assert(mkdtemp(tmp) != NULL);
}

static inline void tu_remove_tmp(const char *tmp) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

// The suites that train end to end need ./train and the byte-level corpus.
static inline void tu_require_train_and_bytes(void) {
    ck_assert_msg(access("./train", X_OK) == 0, "./train is missing: run make");
    ck_assert_msg(access("data/tokens_bytes/corpus.tok", R_OK) == 0,
                  "byte-level corpus missing: run data/build_corpus.sh (or scripts/test.sh)");
}

// Runs a shell command with ./train etc.; captures stdout+stderr into *out (malloc'd); returns exit status.
static inline int vrun(char **out, const char *fmt, va_list ap) {
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

static inline int run(char **out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(out, fmt, ap);
    va_end(ap);
    return rc;
}

// Runs a command that must succeed (its output is shown if it does not).
static inline void run_ok(const char *fmt, ...) {
    char *out;
    va_list ap;
    va_start(ap, fmt);
    int rc = vrun(&out, fmt, ap);
    va_end(ap);
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
}

static inline bool files_equal(const char *a, const char *b) {
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

// The training losses of a run, in order.
static inline int read_losses(const char *run_dir, double *loss, int max) {
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

#endif
