// run_dir.c — see run_dir.h.
#include "run_dir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"

#define RD_PATH 4096

static bool log_path(char *out, const char *run_dir, const char *name, Err *err) {
    int k = snprintf(out, RD_PATH, "%s/%s", run_dir, name);
    if (k < 0 || k >= RD_PATH) return err_set(err, "path too long: %s/%s", run_dir, name);
    return true;
}

bool run_dir_prepare_fresh(const char *run_dir, bool overwrite, Err *err) {
    struct stat st;
    if (stat(run_dir, &st) != 0) return true;   // created when the log is opened
    if (!S_ISDIR(st.st_mode))
        return err_set(err, "run directory %s exists but is not a directory; pass another --run_dir", run_dir);
    char log[RD_PATH], latest[RD_PATH];
    if (!log_path(log, run_dir, "log.jsonl", err) || !log_path(latest, run_dir, "latest", err)) return false;
    int64_t newest;
    const int ckpts = checkpoint_count(run_dir, &newest);
    const bool has_log = access(log, F_OK) == 0, has_latest = access(latest, F_OK) == 0;
    if (!ckpts && !has_log && !has_latest) return true;
    char what[256];
    if (ckpts) snprintf(what, sizeof what, "%d checkpoint%s, the newest at step %lld%s", ckpts, ckpts > 1 ? "s" : "",
                        (long long)newest, has_log ? ", and a log.jsonl" : "");
    else snprintf(what, sizeof what, "%s", has_log ? "a log.jsonl" : "a `latest` file");
    if (!overwrite)
        return err_set(err, "run directory %s already holds a run (%s); continue it with --resume %s, or start "
                       "a new run there with --overwrite (deletes its checkpoints and log.jsonl), or pass "
                       "another --run_dir", run_dir, what, run_dir);
    if (!checkpoint_remove_all(run_dir, err)) return false;
    if (has_log && unlink(log) != 0 && errno != ENOENT)
        return err_set(err, "cannot delete %s: %s", log, strerror(errno));
    if (!fsync_dir(run_dir, err)) return false;
    printf("--overwrite: deleted the previous run in %s (%s)\n", run_dir, what);
    return true;
}

// The step of a log.jsonl line ({"step": N, ...}), or -1 when it has none.
static int64_t line_step(const char *line) {
    const char *p = strstr(line, "\"step\":");
    if (!p) return -1;
    char *end;
    long long v = strtoll(p + 7, &end, 10);
    return end == p + 7 ? -1 : (int64_t)v;
}

bool run_dir_truncate_log(const char *run_dir, int64_t step, int64_t *dropped, Err *err) {
    if (dropped) *dropped = 0;
    char log[RD_PATH], tmp[RD_PATH];
    if (!log_path(log, run_dir, "log.jsonl", err) || !log_path(tmp, run_dir, "log.jsonl.tmp", err)) return false;
    FILE *in = fopen(log, "r");
    if (!in) {
        if (errno == ENOENT) return true;
        return err_set(err, "cannot read %s: %s", log, strerror(errno));
    }
    // First pass: is there anything to cut? (Most resumes after --stop-at have nothing.)
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t keep_lines = 0, total = 0;
    bool cutting = false;
    while ((len = getline(&line, &cap, in)) > 0) {
        total++;
        // Lines are written in step order: everything from the first line past the checkpoint (or the
        // first incomplete line) on belongs to the lost steps.
        if (!cutting && (line[len - 1] != '\n' || line_step(line) > step)) cutting = true;
        if (!cutting) keep_lines++;
    }
    if (ferror(in)) {
        free(line);
        fclose(in);
        return err_set(err, "cannot read %s: %s", log, strerror(errno));
    }
    if (keep_lines == total) {
        free(line);
        fclose(in);
        return true;
    }
    rewind(in);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        free(line);
        fclose(in);
        return err_set(err, "cannot create %s: %s", tmp, strerror(errno));
    }
    bool ok = true;
    for (int64_t i = 0; i < keep_lines && ok; i++) {
        len = getline(&line, &cap, in);
        ok = len > 0 && fwrite(line, 1, (size_t)len, out) == (size_t)len;
    }
    free(line);
    fclose(in);
    ok = ok && fflush(out) == 0 && fsync(fileno(out)) == 0;
    if (fclose(out) != 0) ok = false;
    if (!ok) {
        unlink(tmp);
        return err_set(err, "cannot write %s: %s (is the disk full?)", tmp, strerror(errno));
    }
    if (rename(tmp, log) != 0) {
        unlink(tmp);
        return err_set(err, "cannot rename %s to %s: %s", tmp, log, strerror(errno));
    }
    if (!fsync_dir(run_dir, err)) return false;
    if (dropped) *dropped = total - keep_lines;
    return true;
}

FILE *run_dir_open_log(const char *run_dir, Err *err) {
    char log[RD_PATH];
    if (!mkdir_p(run_dir, err) || !log_path(log, run_dir, "log.jsonl", err)) return NULL;
    FILE *f = fopen(log, "a");
    if (!f) err_set(err, "cannot write %s: %s", log, strerror(errno));
    return f;
}
