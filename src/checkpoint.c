// checkpoint.c — see checkpoint.h.
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CK_PATH 4096
#define CK_MAX_TEXT ((size_t)64 << 20)  // JSON files of a checkpoint are tiny; more means a wrong file
static const char *const kModelFile = "model.safetensors";
static const char *const kOptFile = "optimizer.safetensors";
static const char *const kManifest = "manifest.json";

char *checkpoint_dir_name(char *buf, size_t len, int64_t step) {
    snprintf(buf, len, "step_%08" PRId64, step);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// File system helpers.

static bool path_join(char *out, const char *a, const char *b, Err *err) {
    int k = snprintf(out, CK_PATH, "%s/%s", a, b);
    if (k < 0 || k >= CK_PATH) return err_set(err, "path too long: %s/%s", a, b);
    return true;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

// Writes a whole file and fsyncs it (no rename: used inside the not-yet-visible tmp directory).
static bool write_file_durable(const char *path, const char *data, size_t len, Err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(err, "cannot create %s: %s", path, strerror(errno));
    if (!write_all(fd, data, len) || fsync(fd) != 0) {
        err_set(err, "writing %s failed: %s (is the disk full?)", path, strerror(errno));
        close(fd);
        return false;
    }
    if (close(fd) != 0) return err_set(err, "closing %s failed: %s (is the disk full?)", path, strerror(errno));
    return true;
}

// Removes a checkpoint directory: its files, then itself. Deliberately not recursive: a checkpoint
// holds only plain files, so anything else inside makes rmdir fail instead of deleting it.
static bool remove_flat_dir(const char *dir, Err *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "cannot open %s to delete it: %s", dir, strerror(errno));
    struct dirent *e;
    char p[CK_PATH];
    bool ok = true;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!path_join(p, dir, e->d_name, err)) { ok = false; break; }
        if (unlink(p) != 0) { ok = err_set(err, "cannot delete %s: %s", p, strerror(errno)); break; }
    }
    closedir(d);
    if (ok && rmdir(dir) != 0) ok = err_set(err, "cannot delete directory %s: %s", dir, strerror(errno));
    return ok;
}

// "<prefix><digits>" with at least 8 digits and nothing else -> step.
static bool parse_step_name(const char *name, const char *prefix, int64_t *step) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return false;
    const char *s = name + pl;
    size_t k = strlen(s);
    if (k < 8 || k > 18) return false;
    for (size_t i = 0; i < k; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    *step = strtoll(s, NULL, 10);
    return true;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// Steps of the run_dir entries named "<prefix>NNNNNNNN" that are directories, sorted ascending.
// Returns a malloc'd array (NULL if none) and its length.
static int64_t *list_steps(const char *run_dir, const char *prefix, int *count) {
    *count = 0;
    DIR *d = opendir(run_dir);
    if (!d) return NULL;
    int cap = 16;
    int64_t *steps = malloc(sizeof(int64_t) * (size_t)cap);
    if (!steps) die("out of memory");
    struct dirent *e;
    char p[CK_PATH];
    while ((e = readdir(d)) != NULL) {
        int64_t s;
        if (!parse_step_name(e->d_name, prefix, &s)) continue;
        if (!path_join(p, run_dir, e->d_name, NULL) || !is_dir(p)) continue;
        if (*count == cap) {
            cap *= 2;
            steps = realloc(steps, sizeof(int64_t) * (size_t)cap);
            if (!steps) die("out of memory");
        }
        steps[(*count)++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)*count, sizeof(int64_t), cmp_i64);
    return steps;
}

// Reads a whole (small) file into a malloc'd NUL-terminated buffer.
static bool read_small_file(const char *path, char **out, size_t *len, Err *err) {
    return read_file(path, CK_MAX_TEXT, out, len, err);
}

// ---------------------------------------------------------------------------------------------
// Manifest.

// Parses <dir>/manifest.json. *m = NULL (and true) if the file does not exist.
static bool load_manifest(const char *dir, cJSON **m, Err *err) {
    *m = NULL;
    char p[CK_PATH];
    if (!path_join(p, dir, kManifest, err)) return false;
    if (access(p, F_OK) != 0) return true;
    char *txt;
    size_t len;
    if (!read_small_file(p, &txt, &len, err)) return false;
    *m = cJSON_ParseWithLength(txt, len);
    free(txt);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(*m, "files");
    if (!*m || !cJSON_IsObject(files)) {
        cJSON_Delete(*m);
        *m = NULL;
        return err_set(err, "%s is not a valid checkpoint manifest (corrupt); use another checkpoint", p);
    }
    return true;
}

// A checkpoint directory is complete when every file its manifest lists exists with the listed size.
// Without a manifest (a hand-made directory), model.safetensors must exist.
static bool checkpoint_complete(const char *dir, Err *err) {
    cJSON *m;
    if (!load_manifest(dir, &m, err)) return false;
    char p[CK_PATH];
    if (!m) {
        if (!path_join(p, dir, kModelFile, err)) return false;
        if (!is_file(p)) return err_set(err, "%s has no %s: not a checkpoint directory", dir, kModelFile);
        return true;
    }
    bool ok = true;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files");
    for (const cJSON *f = files->child; f && ok; f = f->next) {
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");
        struct stat st;
        if (!path_join(p, dir, f->string, err)) { ok = false; break; }
        if (stat(p, &st) != 0)
            ok = err_set(err, "checkpoint %s is incomplete: %s is missing; use another checkpoint", dir, p);
        else if (!cJSON_IsNumber(bytes) || (double)st.st_size != bytes->valuedouble)
            ok = err_set(err, "checkpoint %s is incomplete or corrupt: %s has %lld bytes, the manifest says %.0f; "
                         "use another checkpoint", dir, p, (long long)st.st_size,
                         cJSON_IsNumber(bytes) ? bytes->valuedouble : -1.0);
    }
    cJSON_Delete(m);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Save.

// TensorRefs for the optimizer file: [0, n) "exp_avg.<name>" into m, [n, 2n) "exp_avg_sq.<name>" into v.
// *names is the one allocation holding the names (free it and the returned array).
static TensorRef *optimizer_refs(const TensorRef *params, int n, const float *m, const float *v, char **names) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += 2 * strlen(params[i].name) + sizeof("exp_avg.") + sizeof("exp_avg_sq.");
    char *buf = xmalloc(total + 1);
    TensorRef *refs = xcalloc((size_t)(2 * n > 0 ? 2 * n : 1), sizeof(TensorRef));
    char *w = buf;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        refs[i] = params[i];
        refs[n + i] = params[i];
        refs[i].name = w;
        w += sprintf(w, "exp_avg.%s", params[i].name) + 1;
        refs[n + i].name = w;
        w += sprintf(w, "exp_avg_sq.%s", params[i].name) + 1;
        // The writer only reads data, and the loader writes into the caller's non-const arrays.
        refs[i].data = (float *)(m + off);
        refs[n + i].data = (float *)(v + off);
        off += tensor_numel(&params[i]);
    }
    *names = buf;
    return refs;
}

static void manifest_add_file(cJSON *files, const char *dir, const char *file, const char *text) {
    char p[CK_PATH];
    struct stat st;
    cJSON *f = cJSON_AddObjectToObject(files, file);
    if (path_join(p, dir, file, NULL) && stat(p, &st) == 0) cJSON_AddNumberToObject(f, "bytes", (double)st.st_size);
    if (text) {
        char crc[9];
        snprintf(crc, sizeof crc, "%08" PRIx32, crc32_update(0, text, strlen(text)));
        cJSON_AddStringToObject(f, "crc32", crc);
    }
}

// Prefixes of the temporary directories a save or a deletion leaves behind when it is killed: a
// checkpoint being written, a replaced one, and one being deleted. Their contents are never needed.
static const char *const kLeftoverPrefixes[] = {".tmp_step_", ".old_step_", ".del_step_"};
enum { N_LEFTOVER_PREFIXES = 3 };

void checkpoint_clean_leftovers(const char *run_dir) {
    char name[64], p[CK_PATH];
    Err e;
    for (int t = 0; t < N_LEFTOVER_PREFIXES; t++) {
        int cnt;
        int64_t *steps = list_steps(run_dir, kLeftoverPrefixes[t], &cnt);
        for (int i = 0; i < cnt; i++) {
            snprintf(name, sizeof name, "%s%08" PRId64, kLeftoverPrefixes[t], steps[i]);
            if (path_join(p, run_dir, name, &e) && !remove_flat_dir(p, &e))
                fprintf(stderr, "warning: could not remove leftover %s: %s\n", p, e.msg);
        }
        free(steps);
    }
}

// Deletes step_<step> the way it was written, atomically: renamed to .del_step_<step> first (so a kill
// never leaves a half-deleted step_* directory that looks like a checkpoint), then emptied and removed.
static bool remove_checkpoint(const char *run_dir, int64_t step, Err *err) {
    char name[64], delname[64], p[CK_PATH], del[CK_PATH];
    snprintf(delname, sizeof delname, ".del_step_%08" PRId64, step);
    if (!path_join(p, run_dir, checkpoint_dir_name(name, sizeof name, step), err) ||
        !path_join(del, run_dir, delname, err))
        return false;
    if (is_dir(del) && !remove_flat_dir(del, err)) return false;
    if (rename(p, del) != 0) return err_set(err, "cannot move %s aside to delete it: %s", p, strerror(errno));
    if (!fsync_dir(run_dir, err)) return false;
    return remove_flat_dir(del, err);
}

// Deletes old step dirs beyond keep_last (never `keep`) and leftover temporary dirs. Warnings only.
static void prune(const char *run_dir, int64_t keep, int keep_last) {
    checkpoint_clean_leftovers(run_dir);
    if (keep_last <= 0) return;
    int cnt;
    int64_t *steps = list_steps(run_dir, "step_", &cnt);
    int excess = cnt - keep_last;
    Err e;
    for (int i = 0; i < cnt && excess > 0; i++) {
        if (steps[i] == keep) continue;
        char name[64];
        if (!remove_checkpoint(run_dir, steps[i], &e))
            fprintf(stderr, "warning: could not delete old checkpoint %s/%s: %s\n", run_dir,
                    checkpoint_dir_name(name, sizeof name, steps[i]), e.msg);
        excess--;
    }
    free(steps);
}

int checkpoint_count(const char *run_dir, int64_t *newest) {
    int cnt;
    int64_t *steps = list_steps(run_dir, "step_", &cnt);
    if (newest) *newest = cnt > 0 ? steps[cnt - 1] : -1;
    free(steps);
    return cnt;
}

bool checkpoint_remove_all(const char *run_dir, Err *err) {
    int cnt;
    int64_t *steps = list_steps(run_dir, "step_", &cnt);
    bool ok = true;
    // `latest` first: from then on no reader follows it into a directory about to go.
    char latest[CK_PATH];
    if (!path_join(latest, run_dir, "latest", err)) ok = false;
    else if (unlink(latest) != 0 && errno != ENOENT) ok = err_set(err, "cannot delete %s: %s", latest, strerror(errno));
    for (int i = 0; i < cnt && ok; i++) ok = remove_checkpoint(run_dir, steps[i], err);
    free(steps);
    if (ok) checkpoint_clean_leftovers(run_dir);
    return ok;
}

int64_t checkpoint_step(const char *dir) {
    cJSON *m;
    Err e;
    int64_t step = -1;
    if (load_manifest(dir, &m, &e) && m) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "step");
        if (cJSON_IsNumber(s) && s->valuedouble >= 0 && s->valuedouble < 9e15 &&
            s->valuedouble == (double)(int64_t)s->valuedouble)
            step = (int64_t)s->valuedouble;
        cJSON_Delete(m);
    }
    if (step >= 0) return step;
    size_t k = strlen(dir);
    while (k > 1 && dir[k - 1] == '/') k--;
    size_t b = k;
    while (b > 0 && dir[b - 1] != '/') b--;
    char base[64];
    if (k - b >= sizeof base) return -1;
    memcpy(base, dir + b, k - b);
    base[k - b] = '\0';
    return parse_step_name(base, "step_", &step) ? step : -1;
}

// mkdir -p: creates run_dir and any missing parents.
bool checkpoint_save(const char *run_dir, int64_t step, const CheckpointData *cd, int keep_last, Err *err) {
    if (step < 0) return err_set(err, "checkpoint_save: negative step %" PRId64 " (program bug)", step);
    if (!cd || (cd->n > 0 && !cd->params) || (!cd->exp_avg != !cd->exp_avg_sq))
        return err_set(err, "checkpoint_save: incomplete CheckpointData (program bug)");
    if (!run_dir[0]) return err_set(err, "checkpoint_save: empty run directory name (program bug)");
    if (!mkdir_p(run_dir, err)) return false;
    if (!is_dir(run_dir)) return err_set(err, "run directory %s exists but is not a directory", run_dir);

    char name[64], tmpname[64], tmp[CK_PATH], final[CK_PATH], p[CK_PATH];
    checkpoint_dir_name(name, sizeof name, step);
    snprintf(tmpname, sizeof tmpname, ".tmp_step_%08" PRId64, step);
    if (!path_join(tmp, run_dir, tmpname, err) || !path_join(final, run_dir, name, err)) return false;
    // A leftover from a crash while saving this very step: its contents are worthless.
    if (is_dir(tmp) && !remove_flat_dir(tmp, err)) return false;
    if (mkdir(tmp, 0755) != 0) return err_set(err, "cannot create %s: %s", tmp, strerror(errno));

    cJSON *manifest = cJSON_CreateObject();
    cJSON_AddStringToObject(manifest, "format", "loglinear.c checkpoint");
    cJSON_AddNumberToObject(manifest, "version", 1);
    cJSON_AddNumberToObject(manifest, "step", (double)step);
    cJSON *files = cJSON_AddObjectToObject(manifest, "files");
    bool ok = false;
    char *mtxt = NULL;

    if (!path_join(p, tmp, kModelFile, err) || !safetensors_write(p, cd->params, cd->n, NULL, err)) goto fail;
    manifest_add_file(files, tmp, kModelFile, NULL);
    if (cd->exp_avg) {
        char *names;
        const int nm = cd->n_moments > 0 ? cd->n_moments : cd->n;
        TensorRef *refs = optimizer_refs(cd->params, nm, cd->exp_avg, cd->exp_avg_sq, &names);
        bool w = path_join(p, tmp, kOptFile, err) && safetensors_write(p, refs, 2 * nm, NULL, err);
        free(refs);
        free(names);
        if (!w) goto fail;
        manifest_add_file(files, tmp, kOptFile, NULL);
    }
    const char *texts[3] = {cd->hf_config_json, cd->config_json, cd->state_json};
    const char *tnames[3] = {"config.json", "train_config.json", "state.json"};
    for (int i = 0; i < 3; i++) {
        if (!texts[i]) continue;
        if (!path_join(p, tmp, tnames[i], err) || !write_file_durable(p, texts[i], strlen(texts[i]), err)) goto fail;
        manifest_add_file(files, tmp, tnames[i], texts[i]);
    }
    mtxt = cJSON_Print(manifest);
    if (!mtxt) die("out of memory");
    if (!path_join(p, tmp, kManifest, err) || !write_file_durable(p, mtxt, strlen(mtxt), err)) goto fail;
    if (!fsync_dir(tmp, err)) goto fail;

    // Publish. Re-saving an existing step swaps the directories atomically, so step_S is always whole.
    if (is_dir(final)) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
            Err e;
            if (!remove_flat_dir(tmp, &e)) fprintf(stderr, "warning: could not remove replaced %s: %s\n", tmp, e.msg);
        } else {
            // No RENAME_EXCHANGE on this filesystem: move the old one aside first (brief window without step_S;
            // resolve then falls back to the highest complete step).
            char old[CK_PATH], oldname[64];
            snprintf(oldname, sizeof oldname, ".old_step_%08" PRId64, step);
            if (!path_join(old, run_dir, oldname, err)) goto fail;
            if (is_dir(old) && !remove_flat_dir(old, err)) goto fail;
            if (rename(final, old) != 0) {
                err_set(err, "cannot move %s aside: %s", final, strerror(errno));
                goto fail;
            }
            if (rename(tmp, final) != 0) {
                err_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
                rename(old, final);  // put the previous checkpoint back
                goto fail;
            }
            Err e;
            if (!remove_flat_dir(old, &e)) fprintf(stderr, "warning: could not remove replaced %s: %s\n", old, e.msg);
        }
    } else if (rename(tmp, final) != 0) {
        err_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        goto fail;
    }
    if (!fsync_dir(run_dir, err)) goto fail;

    // `latest` last, replaced atomically: it only ever names a complete directory.
    char latest[CK_PATH], latest_tmp[CK_PATH], line[80];
    snprintf(line, sizeof line, "%s\n", name);
    if (!path_join(latest, run_dir, "latest", err) || !path_join(latest_tmp, run_dir, "latest.tmp", err) ||
        !write_file_durable(latest_tmp, line, strlen(line), err))
        goto fail;
    if (rename(latest_tmp, latest) != 0) {
        err_set(err, "cannot rename %s to %s: %s", latest_tmp, latest, strerror(errno));
        goto fail;
    }
    if (!fsync_dir(run_dir, err)) goto fail;
    ok = true;
    prune(run_dir, step, keep_last);
fail:
    if (!ok) {
        // Leave nothing half-written behind; the previous checkpoint is untouched.
        Err e;
        if (is_dir(tmp)) remove_flat_dir(tmp, &e);
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        err_set(err, "saving checkpoint %s failed: %s", final, msg);
    }
    free(mtxt);
    cJSON_Delete(manifest);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Resolve and load.

static bool set_out(char *dir_out, size_t dir_len, const char *dir, Err *err) {
    size_t k = strlen(dir);
    while (k > 1 && dir[k - 1] == '/') k--;  // "runs/x/" -> "runs/x"
    if (k + 1 > dir_len) return err_set(err, "checkpoint path %s is too long (%zu bytes)", dir, k);
    memcpy(dir_out, dir, k);
    dir_out[k] = '\0';
    return true;
}

bool checkpoint_resolve(const char *path, char *dir_out, size_t dir_len, Err *err) {
    char p[CK_PATH], base[CK_PATH];
    if (!set_out(base, sizeof base, path, err)) return false;
    struct stat st;
    if (stat(base, &st) != 0)
        return err_set(err, "checkpoint path %s: %s; pass a run directory or a step_XXXXXXXX directory", base,
                       strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set(err, "checkpoint path %s is not a directory; pass a run directory or a step_XXXXXXXX "
                       "directory", base);

    // A checkpoint directory itself.
    if (!path_join(p, base, kModelFile, err)) return false;
    if (is_file(p)) {
        if (!checkpoint_complete(base, err)) return false;
        return set_out(dir_out, dir_len, base, err);
    }

    // A run directory: `latest`, else the newest complete step_* directory.
    char latest[CK_PATH], *txt = NULL;
    size_t len;
    bool latest_bad = false;
    Err e = {{0}};   // why `latest` was rejected, reported if nothing else is usable
    if (path_join(latest, base, "latest", err) && access(latest, F_OK) == 0) {
        if (read_small_file(latest, &txt, &len, &e)) {
            char *s = txt;
            while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) s[--len] = '\0';
            int64_t step;
            if (parse_step_name(s, "step_", &step) && path_join(p, base, s, &e) && is_dir(p) &&
                checkpoint_complete(p, &e)) {
                free(txt);
                return set_out(dir_out, dir_len, p, err);
            }
        }
        free(txt);
        latest_bad = true;
    }
    int cnt;
    int64_t *steps = list_steps(base, "step_", &cnt);
    char name[64];
    for (int i = cnt - 1; i >= 0; i--) {
        Err skip;
        if (!path_join(p, base, checkpoint_dir_name(name, sizeof name, steps[i]), &skip) ||
            !checkpoint_complete(p, &skip))
            continue;
        free(steps);
        if (latest_bad)
            fprintf(stderr, "warning: %s does not name a complete checkpoint%s%s%s; using %s\n", latest,
                    e.msg[0] ? " (" : "", e.msg, e.msg[0] ? ")" : "", p);
        return set_out(dir_out, dir_len, p, err);
    }
    free(steps);
    return err_set(err, "no checkpoint found in %s: %s%s%s%s and no complete step_XXXXXXXX directory; pass a run "
                   "directory written by this trainer, or a directory holding %s", base,
                   latest_bad ? "`latest` names no complete checkpoint" : "no `latest` file",
                   latest_bad && e.msg[0] ? " (" : "", latest_bad && e.msg[0] ? e.msg : "",
                   latest_bad && e.msg[0] ? ")" : "", kModelFile);
}

bool checkpoint_read_text(const char *dir, const char *file, char **out, Err *err) {
    *out = NULL;
    char p[CK_PATH];
    if (!path_join(p, dir, file, err)) return false;
    size_t len;
    if (!read_small_file(p, out, &len, err)) return false;
    cJSON *m;
    if (!load_manifest(dir, &m, err)) {
        free(*out);
        *out = NULL;
        return false;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "files"), file);
    const cJSON *crc = cJSON_GetObjectItemCaseSensitive(f, "crc32");
    bool ok = true;
    if (cJSON_IsString(crc)) {
        char have[9];
        snprintf(have, sizeof have, "%08" PRIx32, crc32_update(0, *out, len));
        if (strcmp(have, crc->valuestring))
            ok = err_set(err, "checkpoint file %s is corrupt: CRC32 %s, the manifest records %s; use another "
                         "checkpoint", p, have, crc->valuestring);
    }
    cJSON_Delete(m);
    if (!ok) {
        free(*out);
        *out = NULL;
    }
    return ok;
}

// Runs a strict safetensors read of <dir>/<file> and prefixes errors with "checkpoint".
static bool load_file(const char *dir, const char *file, const TensorRef *refs, int n, const char *missing_hint,
                      Err *err) {
    char p[CK_PATH];
    if (!path_join(p, dir, file, err)) return false;
    if (!is_file(p)) return err_set(err, "checkpoint %s has no %s; %s", dir, file, missing_hint);
    Err e;
    if (!safetensors_read(p, refs, n, true, &e)) return err_set(err, "checkpoint %s", e.msg);
    return true;
}

bool checkpoint_load_model(const char *dir, const TensorRef *params, int n, Err *err) {
    return load_file(dir, kModelFile, params, n,
                     "pass a step_XXXXXXXX checkpoint directory or a run directory", err);
}

// The optimizer file p holds exactly the moments refs[0, 2n) of params[0, n) (names, shapes, count).
// Checked from the header before loading: when model.safetensors fits the model and this file does not, it
// belongs to another run or model, and the fix is not another --config (safetensors_read's advice).
static bool check_optimizer_tensors(const char *dir, const char *p, const TensorRef *params, const TensorRef *refs,
                                    int n, Err *err) {
    char s1[96], s2[96];
    StFileInfo info;
    Err e;
    if (!safetensors_list(p, &info, &e)) {
        safetensors_info_free(&info);
        return err_set(err, "checkpoint %s", e.msg);
    }
    char fix[CK_PATH + 256];
    snprintf(fix, sizeof fix, "the optimizer state does not belong to this checkpoint's model: resume from another "
             "checkpoint, or start a new run from these weights (fresh optimizer) with --init-from %s", dir);
    const int want = 2 * n;
    bool ok = true;
    for (int i = 0; i < want && ok; i++) {
        const StTensorInfo *ti = NULL;
        for (int j = 0; j < info.n && !ti; j++)
            if (!strcmp(info.tensors[j].name, refs[i].name)) ti = &info.tensors[j];
        bool same = ti && ti->ndim == refs[i].ndim;
        for (int d = 0; same && d < ti->ndim; d++) same = ti->shape[d] == refs[i].shape[d];
        if (!ti)
            ok = err_set(err, "checkpoint %s: tensor '%s' is missing (the file has %d tensors; the model's %d "
                         "parameter tensors need %d: exp_avg.* and exp_avg_sq.* of each); %s", p, refs[i].name,
                         info.n, n, want, fix);
        else if (!same)
            ok = err_set(err, "checkpoint %s: tensor '%s' has shape %s, but the model's parameter '%s' is %s; %s", p,
                         refs[i].name, tensor_shape_str(s1, sizeof s1, ti->ndim, ti->shape),
                         params[i % n].name,
                         tensor_shape_str(s2, sizeof s2, refs[i].ndim, refs[i].shape), fix);
    }
    for (int j = 0; j < info.n && ok && info.n != want; j++) {
        bool found = false;
        for (int i = 0; i < want && !found; i++) found = !strcmp(info.tensors[j].name, refs[i].name);
        if (!found)
            ok = err_set(err, "checkpoint %s: %d tensors, but the model's %d parameter tensors need %d (exp_avg.* and "
                         "exp_avg_sq.* of each): '%s' is not a moment of this model; %s", p, info.n, n, want,
                         info.tensors[j].name, fix);
    }
    safetensors_info_free(&info);
    return ok;
}

bool checkpoint_load_optimizer(const char *dir, const TensorRef *params, int n, float *exp_avg,
                               float *exp_avg_sq, Err *err) {
    char *names;
    TensorRef *refs = optimizer_refs(params, n, exp_avg, exp_avg_sq, &names);
    char p[CK_PATH];
    bool ok = path_join(p, dir, kOptFile, err);
    if (ok && is_file(p) && !check_optimizer_tensors(dir, p, params, refs, n, err)) ok = false;
    ok = ok && load_file(dir, kOptFile, refs, 2 * n,
                         "it was saved without optimizer state, so training cannot resume exactly from it (load "
                         "only the model weights instead)", err);
    free(refs);
    free(names);
    return ok;
}
