// fuzz_util.h — shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): the parsers under test read
// files, so each input is written to a per-process temporary file first.
#ifndef LL_FUZZ_UTIL_H
#define LL_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

// <tmp>/llfuzz_<pid>_<name> (static buffer).
static inline const char *fuzz_path(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/llfuzz_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), name);
    return p;
}

static inline void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) die("fuzz: cannot write %s", path);
    if (size && fwrite(data, 1, size, f) != size) die("fuzz: short write to %s", path);
    fclose(f);
}

// The input as a NUL-terminated string (malloc'd).
static inline char *fuzz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) die("fuzz: out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
