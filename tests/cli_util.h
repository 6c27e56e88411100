// cli_util.h — running the programs (./train, ./generate, ./evaluate, scripts) from the end-to-end tests.
#ifndef LL_CLI_UTIL_H
#define LL_CLI_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <check.h>

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

#endif
