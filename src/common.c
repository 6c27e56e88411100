// common.c — see common.h.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

bool err_set(Err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void (*g_die_hook)(void);

void die_set_hook(void (*hook)(void)) { g_die_hook = hook; }

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_die_hook) g_die_hook();
    exit(1);
}

bool parse_ll(const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    const long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return false;
    *out = x;
    return true;
}

long long option_ll(const char *opt, const char *v, long long lo) {
    long long x;
    if (!parse_ll(v, lo, LLONG_MAX, &x)) die("%s needs an integer >= %lld, got '%s'", opt, lo, v);
    return x;
}

void *xmalloc(size_t bytes) {
    void *p = NULL;
    // 64-byte alignment keeps AVX-512 loads on one cache line; round the size up as aligned_alloc wants.
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    p = aligned_alloc(64, rounded);
    if (!p) die("out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) die("allocation size overflow (%zu x %zu)", count, size);
    void *p = xmalloc(count * size);
    memset(p, 0, count * size);
    return p;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void zero_floats(float *p, size_t n) {
    enum { PIECE = 1 << 14 };  // 64 KiB per task
    const int64_t pieces = (int64_t)((n + PIECE - 1) / PIECE);
#pragma omp parallel for schedule(static) if (pieces > 4)
    for (int64_t i = 0; i < pieces; i++) {
        const size_t lo = (size_t)i * PIECE, m = n - lo < PIECE ? n - lo : PIECE;
        memset(p + lo, 0, m * sizeof(float));
    }
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes) {
    const unsigned char *p = data;
    // zlib's crc32 takes a uInt length; feed large buffers in pieces.
    while (bytes > 0) {
        uInt n = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        bytes -= n;
    }
    return crc;
}

bool write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO (named pipe)" : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : "a special file";
}

bool open_regular_file(const char *path, const char *what, int *fd, struct stat *st_out, Err *err) {
    const char *sep = what[0] ? " " : "";
    struct stat st;
    // The type first, then O_NONBLOCK in case the path is swapped for a FIFO in between (no effect on
    // regular files), then the type of what was actually opened.
    if (stat(path, &st) != 0) return err_set(err, "cannot read %s%s%s: %s", what, sep, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, "%s%s%s is %s, not a regular file", what, sep, path, file_kind(st.st_mode));
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) return err_set(err, "cannot open %s%s%s: %s", what, sep, path, strerror(errno));
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return err_set(err, "%s%s%s is not a regular file (it changed while being opened)", what, sep, path);
    }
    if (st_out) *st_out = st;
    return true;
}

bool read_file(const char *path, size_t max_bytes, char **data, size_t *len, Err *err) {
    *data = NULL;
    *len = 0;
    int fd = -1;
    struct stat st = {0};
    if (!open_regular_file(path, "", &fd, &st, err)) return false;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return err_set(err, "cannot read %s: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return err_set(err, "%s has %lld bytes, more than the %zu this file may have; is it the right file?", path,
                       (long long)st.st_size, max_bytes);
    }
    const size_t n = (size_t)st.st_size;
    char *buf = xmalloc(n + 1);
    const size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return err_set(err, "cannot read %s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return true;
}

bool mkdir_p(const char *dir, Err *err) {
    char p[4096];
    if (!dir[0]) return err_set(err, "cannot create a directory with an empty name");
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return err_set(err, "path too long: %s", dir);
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0') continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return err_set(err, "cannot create directory %s: %s", p, strerror(errno));
        *c = saved;
        if (!saved) return true;
    }
}

bool fsync_dir(const char *dir, Err *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "cannot open directory %s to fsync it: %s", dir, strerror(errno));
    bool ok = fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP;
    if (!ok) err_set(err, "cannot fsync directory %s: %s", dir, strerror(errno));
    close(fd);
    return ok;
}

// Levenshtein distance of two short words (99 when either is longer than 63 bytes).
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

void did_you_mean(const char *key, const char *const *cands, size_t n, char *out, size_t len) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (size_t i = 0; i < n; i++) {
        int d = edit_distance(key, cands[i]);
        if (d < best_d) { best_d = d; best = cands[i]; }
    }
    int limit = (int)strlen(key) / 3;
    if (limit < 2) limit = 2;
    if (best && best_d <= limit) snprintf(out, len, " (did you mean '%s'?)", best);
    else if (len) out[0] = '\0';
}
