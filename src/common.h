// common.h — error reporting, checked allocation and small utilities shared by every module.
// Library code never exits on bad input: it fills an Err and returns false, so tests can check the
// message and the caller (train.c, tools) decides to print "error: ..." and exit non-zero.
#ifndef LL_COMMON_H
#define LL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

typedef struct {
    char msg[1024];   // human-readable: names the file, the field and the fix
} Err;

// Formats into err->msg (if err is non-NULL) and returns false, so `return err_set(err, ...)` reads well.
bool err_set(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Fatal errors for programs (not library code): prints "error: <msg>" to stderr and exits with status 1.
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// A function die() calls after printing and before exiting (e.g. to stop the other ranks of a distributed
// run, which would otherwise wait for this one forever); NULL for none.
void die_set_hook(void (*hook)(void));

// A whole decimal integer in [lo, hi] (no sign-only, empty, trailing text or overflow).
bool parse_ll(const char *v, long long lo, long long hi, long long *out);
// A program option's integer value >= lo, or die naming the option (for the programs' argument parsers).
long long option_ll(const char *opt, const char *v, long long lo);

// Allocation that dies on failure (out of memory is not recoverable here). Memory is 64-byte aligned
// and, for xcalloc, zeroed. Free with free().
void *xmalloc(size_t bytes);
void *xcalloc(size_t count, size_t size);

// Monotonic wall clock in seconds.
double now_seconds(void);

// Zeroes n floats, split over the OpenMP threads when large (a single-threaded memset of the training
// step's gradient buffers would be a serial pass over memory). Call outside parallel regions.
void zero_floats(float *p, size_t n);

// CRC32 (zlib polynomial) of a byte range; chain with crc = crc32_update(crc, ...), start from 0.
uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes);

// Opens an existing regular file read-only. Anything else is refused without blocking (open() of a FIFO
// would wait for a writer forever): "<path> is a directory|a FIFO (named pipe)|..., not a regular file".
// `what` starts the messages ("shard", "config", ...; may be ""). *st (may be NULL) receives its stat.
bool open_regular_file(const char *path, const char *what, int *fd, struct stat *st, Err *err);

// Reads a whole regular file of at most max_bytes into a malloc'd buffer, with a NUL after the data so
// text parsers can treat it as a C string (*len excludes it). The one file reader of the library.
bool read_file(const char *path, size_t max_bytes, char **data, size_t *len, Err *err);

// Creates a directory and its missing parents (mode 0755); an existing directory is fine.
bool mkdir_p(const char *dir, Err *err);

// fsync(2) of a directory, so the renames and creations inside it survive a crash. Filesystems that
// cannot fsync a directory (EINVAL, ENOTSUP) count as success: nothing more can be done there.
bool fsync_dir(const char *dir, Err *err);

// write(2) until all len bytes are written (retrying on EINTR); false with errno set on failure.
bool write_all(int fd, const void *buf, size_t len);

// Picks the candidate nearest to `word` (edit distance) if it is plausibly a typo of it; writes
// " (did you mean 'x'?)" into out, or "" when none is close.
void did_you_mean(const char *word, const char *const *cands, size_t n, char *out, size_t len);

#define LL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LL_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
