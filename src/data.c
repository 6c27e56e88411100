// data.c — token shard loader. See data.h.
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mqar.h"
#include "rng.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shards are little-endian and read in place via mmap; this loader needs a little-endian machine"
#endif

#define REGEN_HINT "regenerate the shards with data/build_corpus.sh (or ./tokenize, see data/README.md)"
#define HEADER_BYTES ((int64_t)SHARD_HEADER_INTS * 4)

typedef struct {
    char *path;
    void *map;              // the whole file, read-only
    size_t map_bytes;
    const uint16_t *tokens; // (num_tokens,) just after the header
    int64_t num_tokens;
} Shard;

struct DataLoader {
    int B, T;
    bool shuffle;
    uint64_t seed;
    int num_shards;
    Shard *shards;
    int64_t *win_start;     // (num_shards+1) index of each shard's first window; [num_shards] = total
    int64_t num_windows;
    int64_t total_tokens;
    int64_t *order;         // (num_windows) this epoch's permutation; NULL when not shuffling
    uint64_t epoch, cursor;
    bool is_task;           // a generated task (MQAR): window w = example w, no shards
    MqarSpec task;
};

// Uniform integer in [0, n) without modulo bias (reject the few values above the last multiple of n).
static uint64_t rng_below(uint64_t *state, uint64_t n) {
    uint64_t threshold = (0 - n) % n;  // = 2^64 mod n
    for (;;) {
        uint64_t r = rng_splitmix64(state);  // splitmix64: all shuffling needs
        if (r >= threshold) return r % n;
    }
}

static void make_order(DataLoader *dl) {
    if (!dl->shuffle) return;
    // Seed the epoch's stream from both numbers, so each epoch gets an unrelated permutation.
    uint64_t mix = dl->seed;
    uint64_t state = rng_splitmix64(&mix) ^ (dl->epoch * 0xD1B54A32D192ED03ull);
    int64_t n = dl->num_windows;
    for (int64_t i = 0; i < n; i++) dl->order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {  // Fisher-Yates
        int64_t j = (int64_t)rng_below(&state, (uint64_t)i + 1);
        int64_t t = dl->order[i];
        dl->order[i] = dl->order[j];
        dl->order[j] = t;
    }
}

static bool open_shard(Shard *sh, int vocab_size, Err *err) {
    // A FIFO matched by the glob would block open() forever, a directory cannot be mapped.
    int fd;
    struct stat st;
    Err e;
    if (!open_regular_file(sh->path, "shard", &fd, &st, &e))
        return err_set(err, "%s; make the glob match only token shard files", e.msg);
    int64_t size = (int64_t)st.st_size;
    if (size < HEADER_BYTES) {
        close(fd);
        return err_set(err, "shard %s: %lld bytes, shorter than the %lld-byte header (truncated); %s",
                       sh->path, (long long)size, (long long)HEADER_BYTES, REGEN_HINT);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping keeps the file alive
    if (map == MAP_FAILED) return err_set(err, "cannot mmap shard %s: %s", sh->path, strerror(errno));
    sh->map = map;
    sh->map_bytes = (size_t)size;
    const int32_t *hdr = map;
    if (hdr[0] != SHARD_MAGIC)
        return err_set(err, "shard %s: bad magic %d (expected %d): not a token shard; %s", sh->path, hdr[0],
                       SHARD_MAGIC, REGEN_HINT);
    if (hdr[1] != SHARD_VERSION)
        return err_set(err, "shard %s: version %d, this build reads version %d; %s", sh->path, hdr[1],
                       SHARD_VERSION, REGEN_HINT);
    int64_t n = (uint32_t)hdr[2];  // the header stores the count as int32; read it as unsigned
    int64_t expected = HEADER_BYTES + 2 * n;
    if (size != expected)
        return err_set(err, "shard %s: header says %lld tokens (%lld bytes) but the file has %lld bytes (%s); %s",
                       sh->path, (long long)n, (long long)expected, (long long)size,
                       size < expected ? "truncated" : "trailing bytes", REGEN_HINT);
    sh->tokens = (const uint16_t *)((const char *)map + HEADER_BYTES);
    sh->num_tokens = n;
    // Check every token now (a few ms per 10M tokens) so a vocabulary mismatch can't surface mid-run as
    // an out-of-bounds embedding read.
    int max_id = 0;
    const uint16_t *tok = sh->tokens;
    #pragma omp parallel for reduction(max : max_id) schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (tok[i] > max_id) max_id = tok[i];
    if (max_id >= vocab_size) {
        int64_t i = 0;
        while (tok[i] < vocab_size) i++;
        return err_set(err, "shard %s: token %lld is id %d >= vocab_size %d: the shards were made with a "
                       "different tokenizer than the model expects (gpt2: 50257, bytes: 257); use shards "
                       "matching vocab_size or %s",
                       sh->path, (long long)i, tok[i], vocab_size, REGEN_HINT);
    }
    return true;
}

bool dataloader_open(DataLoader **out, const char *glob_pattern, int B, int T, int vocab_size,
                     uint64_t seed, bool shuffle, Err *err) {
    *out = NULL;
    if (B <= 0 || T <= 0 || vocab_size <= 0)
        return err_set(err, "dataloader: batch_size (%d), seq_len (%d) and vocab_size (%d) must be positive",
                       B, T, vocab_size);
    if (mqar_is_spec(glob_pattern)) {
        DataLoader *dl = xcalloc(1, sizeof *dl);
        *dl = (DataLoader){.B = B, .T = T, .shuffle = shuffle, .seed = seed, .is_task = true};
        if (!mqar_parse(&dl->task, glob_pattern, T, vocab_size, err)) {
            free(dl);
            return false;
        }
        dl->num_windows = dl->task.examples;
        dl->total_tokens = dl->task.examples * T;
        if (shuffle) dl->order = xmalloc((size_t)dl->num_windows * sizeof *dl->order);
        make_order(dl);
        *out = dl;
        return true;
    }
    glob_t g;
    int rc = glob(glob_pattern, 0, NULL, &g);  // sorted by name
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc != GLOB_NOMATCH) globfree(&g);
        return err_set(err, "no file matches the data pattern '%s'; build the shards with data/build_corpus.sh "
                       "(or ./tokenize) or fix the path in the config", glob_pattern);
    }
    DataLoader *dl = xcalloc(1, sizeof *dl);
    dl->B = B;
    dl->T = T;
    dl->shuffle = shuffle;
    dl->seed = seed;
    dl->num_shards = (int)g.gl_pathc;
    dl->shards = xcalloc(g.gl_pathc, sizeof *dl->shards);
    dl->win_start = xcalloc(g.gl_pathc + 1, sizeof *dl->win_start);
    for (size_t i = 0; i < g.gl_pathc; i++) dl->shards[i].path = strdup(g.gl_pathv[i]);
    globfree(&g);
    for (int s = 0; s < dl->num_shards; s++) {
        if (!open_shard(&dl->shards[s], vocab_size, err)) {
            dataloader_close(dl);
            return false;
        }
        int64_t n = dl->shards[s].num_tokens;
        dl->win_start[s + 1] = dl->win_start[s] + (n > T ? (n - 1) / T : 0);
        dl->total_tokens += n;
    }
    dl->num_windows = dl->win_start[dl->num_shards];
    if (dl->num_windows < B) {
        err_set(err, "not enough data in '%s': %d shard(s) with %lld tokens give %lld windows of T+1 = %d tokens "
                "(stride T), but one batch needs B = %d windows, i.e. at least B*T+1 = %lld tokens in one shard; "
                "use a smaller batch_size/seq_len or more data",
                glob_pattern, dl->num_shards, (long long)dl->total_tokens, (long long)dl->num_windows, T + 1, B,
                (long long)B * T + 1);
        dataloader_close(dl);
        return false;
    }
    // One int64 per window: 8 bytes per T tokens, small next to the mapped shards themselves.
    if (shuffle) dl->order = xmalloc((size_t)dl->num_windows * sizeof *dl->order);
    make_order(dl);
    *out = dl;
    return true;
}

void dataloader_close(DataLoader *dl) {
    if (!dl) return;
    for (int s = 0; s < dl->num_shards; s++) {
        if (dl->shards[s].map) munmap(dl->shards[s].map, dl->shards[s].map_bytes);
        free(dl->shards[s].path);
    }
    free(dl->shards);
    free(dl->win_start);
    free(dl->order);
    free(dl);
}

// Copies window w of the shards: inputs = tokens[w*T, w*T+T), targets = the next token of each.
static void shard_window(const DataLoader *dl, int64_t w, int32_t *in_b, int32_t *tg_b) {
    const int T = dl->T;
    // Binary search for the shard holding window w (the last s with win_start[s] <= w).
    int lo = 0, hi = dl->num_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (dl->win_start[mid] <= w) lo = mid; else hi = mid - 1;
    }
    const uint16_t *win = dl->shards[lo].tokens + (w - dl->win_start[lo]) * T;  // (T+1,)
    for (int t = 0; t < T; t++) {
        in_b[t] = win[t];
        tg_b[t] = win[t + 1];
    }
}

void dataloader_next(DataLoader *dl, int32_t *inputs, int32_t *targets) {
    const int T = dl->T;
    for (int b = 0; b < dl->B; b++) {
        int64_t w = dl->shuffle ? dl->order[dl->cursor] : (int64_t)dl->cursor;
        int32_t *in_b = inputs + (int64_t)b * T, *tg_b = targets + (int64_t)b * T;
        if (dl->is_task) mqar_example(&dl->task, w, T, in_b, tg_b);
        else shard_window(dl, w, in_b, tg_b);
        if (++dl->cursor == (uint64_t)dl->num_windows) {
            dl->cursor = 0;
            dl->epoch++;
            make_order(dl);
        }
    }
}

void dataloader_skip(DataLoader *dl, int64_t n) {
    while (n > 0) {
        const int64_t left = dl->num_windows - (int64_t)dl->cursor;   // windows left in this epoch
        if (n < left) {
            dl->cursor += (uint64_t)n;
            return;
        }
        n -= left;
        dl->cursor = 0;
        dl->epoch++;
        make_order(dl);
    }
}

DataPosition dataloader_position(const DataLoader *dl) { return (DataPosition){dl->epoch, dl->cursor}; }

bool dataloader_seek(DataLoader *dl, DataPosition pos, Err *err) {
    if (pos.cursor >= (uint64_t)dl->num_windows)
        return err_set(err, "data position cursor %llu is past the %lld windows of this data (epoch %llu): the "
                       "checkpoint was made with different shards or a different seq_len; resume with the same "
                       "data and seq_len", (unsigned long long)pos.cursor, (long long)dl->num_windows,
                       (unsigned long long)pos.epoch);
    bool new_epoch = pos.epoch != dl->epoch;
    dl->epoch = pos.epoch;
    dl->cursor = pos.cursor;
    if (new_epoch) make_order(dl);
    return true;
}

void dataloader_rewind(DataLoader *dl) {
    bool new_epoch = dl->epoch != 0;
    dl->epoch = 0;
    dl->cursor = 0;
    if (new_epoch) make_order(dl);
}

int64_t dataloader_num_windows(const DataLoader *dl) { return dl->num_windows; }
int64_t dataloader_total_tokens(const DataLoader *dl) { return dl->total_tokens; }
int dataloader_num_shards(const DataLoader *dl) { return dl->num_shards; }
bool dataloader_is_task(const DataLoader *dl) { return dl->is_task; }
