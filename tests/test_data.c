// test_data.c — the shard loader: windows and targets, shuffling (determinism, each window once per
// epoch), position save/restore, shards past 2 GB, and every error case giving false + a useful message.
#include "testutil.h"
#include "data.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/ll_test_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}
static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

// Writes a shard; `count` goes in the header, `n` tokens are written (they differ to make bad files).
static void write_shard_raw(const char *name, int32_t magic, int32_t version, int32_t count,
                            const uint16_t *tokens, int64_t n, char *path_out) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    if (path_out) strcpy(path_out, path);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    int32_t hdr[SHARD_HEADER_INTS] = {0};
    hdr[0] = magic;
    hdr[1] = version;
    hdr[2] = count;
    ck_assert(fwrite(hdr, sizeof hdr, 1, f) == 1);
    ck_assert(n == 0 || fwrite(tokens, 2, (size_t)n, f) == (size_t)n);
    fclose(f);
}

static void write_shard(const char *name, const uint16_t *tokens, int64_t n) {
    write_shard_raw(name, SHARD_MAGIC, SHARD_VERSION, (int32_t)n, tokens, n, NULL);
}

// Shard whose tokens are base, base+1, ... so every position is identifiable.
static void write_counting_shard(const char *name, int base, int64_t n) {
    uint16_t *t = malloc((size_t)n * 2 + 2);
    for (int64_t i = 0; i < n; i++) t[i] = (uint16_t)(base + i);
    write_shard(name, t, n);
    free(t);
}

static DataLoader *open_ok(const char *pattern, int B, int T, int V, uint64_t seed, bool shuffle) {
    char glob_[256];
    snprintf(glob_, sizeof glob_, "%s/%s", g_dir, pattern);
    DataLoader *dl = NULL;
    Err err;
    ck_assert_msg(dataloader_open(&dl, glob_, B, T, V, seed, shuffle, &err), "open failed: %s", err.msg);
    return dl;
}

static bool open_fails(const char *pattern, int B, int T, int V, Err *err) {
    char glob_[256];
    snprintf(glob_, sizeof glob_, "%s/%s", g_dir, pattern);
    DataLoader *dl = (DataLoader *)1;
    bool ok = dataloader_open(&dl, glob_, B, T, V, 1, true, err);
    if (ok) dataloader_close(dl);
    else ck_assert_ptr_null(dl);
    printf("  expected error: %s\n", err->msg);
    return !ok;
}

// ---- tests ----

START_TEST(test_sequential_windows) {
    make_dir();
    const int T = 8;
    // Sorted by name: a (3 windows: 27 tokens -> (27-1)/8 = 3), then b (2 windows: exactly 2*8+1 tokens).
    write_counting_shard("s_b.bin", 1000, 2 * T + 1);
    write_counting_shard("s_a.bin", 0, 3 * T + 3);
    DataLoader *dl = open_ok("s_*.bin", 1, T, 65535, 0, false);
    ck_assert_int_eq(dataloader_num_windows(dl), 5);
    ck_assert_int_eq(dataloader_total_tokens(dl), 3 * T + 3 + 2 * T + 1);
    ck_assert_int_eq(dataloader_num_shards(dl), 2);
    const int starts[5] = {0, 8, 16, 1000, 1008};  // windows never straddle shards
    int32_t in[T], tg[T];
    for (int round = 0; round < 2; round++) {
        for (int w = 0; w < 5; w++) {
            DataPosition p = dataloader_position(dl);
            ck_assert_int_eq(p.epoch, (uint64_t)round);
            ck_assert_int_eq(p.cursor, (uint64_t)w);
            dataloader_next(dl, in, tg);
            for (int t = 0; t < T; t++) {
                ck_assert_int_eq(in[t], starts[w] + t);
                ck_assert_int_eq(tg[t], starts[w] + t + 1);  // next-token targets
            }
        }
    }
    dataloader_close(dl);

    // B = 2 with 5 windows: the third batch straddles the epoch boundary (window 4, then window 0).
    dl = open_ok("s_*.bin", 2, T, 65535, 0, false);
    int32_t in2[2 * T], tg2[2 * T];
    for (int i = 0; i < 3; i++) dataloader_next(dl, in2, tg2);
    ck_assert_int_eq(in2[0], 1008);
    ck_assert_int_eq(in2[T], 0);
    ck_assert_int_eq(dataloader_position(dl).epoch, 1);
    ck_assert_int_eq(dataloader_position(dl).cursor, 1);
    dataloader_rewind(dl);
    dataloader_next(dl, in2, tg2);
    ck_assert_int_eq(in2[0], 0);
    ck_assert_int_eq(in2[T], 8);
    dataloader_close(dl);
    remove_dir();
}
END_TEST

// Reads `batches` batches and records the first input token of each window (its identity).
static void read_ids(DataLoader *dl, int B, int T, int batches, int32_t *ids) {
    int32_t *in = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    for (int k = 0; k < batches; k++) {
        dataloader_next(dl, in, tg);
        for (int b = 0; b < B; b++) {
            ids[k * B + b] = in[b * T];
            for (int t = 0; t + 1 < T; t++) ck_assert_int_eq(tg[b * T + t], in[b * T + t + 1]);
            ck_assert_int_eq(tg[b * T + T - 1], in[b * T] + T);  // counting shards
        }
    }
    free(in);
    free(tg);
}

START_TEST(test_shuffle) {
    make_dir();
    const int T = 4, B = 5;
    write_counting_shard("sh_0.bin", 0, 20 * T + 1);      // 20 windows
    write_counting_shard("sh_1.bin", 10000, 17 * T + 2);  // 17 windows
    const int N = 37, EPOCHS = 3, BATCHES = (EPOCHS * N + B - 1) / B;
    int32_t a[BATCHES * B], b[BATCHES * B], c[BATCHES * B];
    DataLoader *dl = open_ok("sh_*.bin", B, T, 65535, 42, true);
    ck_assert_int_eq(dataloader_num_windows(dl), N);
    read_ids(dl, B, T, BATCHES, a);
    dataloader_close(dl);

    // Each epoch is a permutation of all windows; epochs differ from each other and from the file order.
    for (int e = 0; e < EPOCHS; e++) {
        int seen[N];
        memset(seen, 0, sizeof seen);
        bool identity = true;
        for (int i = 0; i < N; i++) {
            int id = a[e * N + i];
            int local = id < 10000 ? id : id - 10000, w = id < 10000 ? id / T : 20 + local / T;
            ck_assert_msg(local % T == 0 && w >= 0 && w < N, "token %d is not a window start", id);
            seen[w]++;
            identity = identity && w == i;
        }
        for (int w = 0; w < N; w++) ck_assert_msg(seen[w] == 1, "epoch %d: window %d seen %d times", e, w, seen[w]);
        ck_assert_msg(!identity, "epoch %d is not shuffled", e);
    }
    ck_assert_msg(memcmp(a, a + N, N * sizeof *a) != 0, "epochs 0 and 1 have the same order");

    // Same seed: same stream. Different seed: different stream.
    dl = open_ok("sh_*.bin", B, T, 65535, 42, true);
    read_ids(dl, B, T, BATCHES, b);
    dataloader_close(dl);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    dl = open_ok("sh_*.bin", B, T, 65535, 43, true);
    read_ids(dl, B, T, BATCHES, c);
    dataloader_close(dl);
    ck_assert(memcmp(a, c, sizeof a) != 0);

    // The order is fixed by the documented RNG (splitmix64 + Fisher-Yates), so it must never change
    // between versions or machines: a resumed run depends on it.
    const int32_t golden[5] = {10000, 10060, 12, 36, 10028};
    printf("  seed 42 first windows: %d %d %d %d %d\n", a[0], a[1], a[2], a[3], a[4]);
    fflush(stdout);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(a[i], golden[i]);
    remove_dir();
}
END_TEST

START_TEST(test_seek_and_position) {
    make_dir();
    const int T = 4, B = 3;
    write_counting_shard("p_0.bin", 0, 23 * T + 1);  // 23 windows: batches straddle epochs
    DataLoader *dl = open_ok("p_*.bin", B, T, 65535, 7, true);
    int32_t skip[20 * B], rest[30 * B], again[30 * B];
    for (int k = 0; k < 3; k++) {
        int before = k == 0 ? 4 : k == 1 ? 9 : 17;  // positions in epoch 0, in epoch 1, in epoch 2
        dataloader_rewind(dl);
        read_ids(dl, B, T, before, skip);
        DataPosition pos = dataloader_position(dl);
        ck_assert_int_eq(pos.epoch * 23 + pos.cursor, (uint64_t)before * B);
        read_ids(dl, B, T, 30, rest);
        DataLoader *dl2 = open_ok("p_*.bin", B, T, 65535, 7, true);
        Err err;
        ck_assert_msg(dataloader_seek(dl2, pos, &err), "seek: %s", err.msg);
        read_ids(dl2, B, T, 30, again);
        ck_assert_msg(memcmp(rest, again, sizeof rest) == 0, "resume from epoch %llu cursor %llu differs",
                      (unsigned long long)pos.epoch, (unsigned long long)pos.cursor);
        dataloader_close(dl2);
    }
    // Seeking within the same loader, backwards in epochs, also reproduces the stream.
    DataPosition p0 = {1, 5};
    Err err;
    ck_assert(dataloader_seek(dl, p0, &err));
    read_ids(dl, B, T, 10, rest);
    ck_assert(dataloader_seek(dl, p0, &err));
    read_ids(dl, B, T, 10, again);
    ck_assert(memcmp(rest, again, 10 * B * sizeof *rest) == 0);
    // A cursor past the data (e.g. other shards or seq_len) is refused.
    DataPosition bad = {0, 23};
    ck_assert(!dataloader_seek(dl, bad, &err));
    printf("  expected error: %s\n", err.msg);
    ck_assert_msg(strstr(err.msg, "cursor 23") && strstr(err.msg, "23 windows"), "message: %s", err.msg);
    dataloader_close(dl);
    remove_dir();
}
END_TEST

// Skipping n windows lands where reading them would: within an epoch, across one, across several, and
// by counts that are not a multiple of B (a data-parallel rank skips the other ranks' share).
START_TEST(test_skip) {
    make_dir();
    const int T = 4, B = 3;
    write_counting_shard("k_0.bin", 0, 23 * T + 1);  // 23 windows
    DataLoader *read = open_ok("k_*.bin", 1, T, 65535, 11, true);   // B = 1: reads window by window
    DataLoader *skip = open_ok("k_*.bin", B, T, 65535, 11, true);
    int32_t want[B], got[B], dummy[1];
    const int64_t skips[] = {0, 2, 7, 23, 50, 1};
    for (int k = 0; k < 6; k++) {
        for (int64_t i = 0; i < skips[k]; i++) read_ids(read, 1, T, 1, dummy);
        dataloader_skip(skip, skips[k]);
        DataPosition a = dataloader_position(read), b = dataloader_position(skip);
        ck_assert_msg(a.epoch == b.epoch && a.cursor == b.cursor, "skip %lld: at (%llu, %llu), reading gives (%llu, %llu)",
                      (long long)skips[k], (unsigned long long)b.epoch, (unsigned long long)b.cursor,
                      (unsigned long long)a.epoch, (unsigned long long)a.cursor);
        read_ids(read, 1, T, B, want);
        read_ids(skip, B, T, 1, got);
        ck_assert_msg(memcmp(want, got, sizeof want) == 0, "batch after skip %lld differs", (long long)skips[k]);
    }
    dataloader_close(read);
    dataloader_close(skip);
    remove_dir();
}
END_TEST

// A sparse shard larger than 2^31 bytes: windows past the 2 GB mark must read the right tokens.
START_TEST(test_shard_over_2gb) {
    make_dir();
    const int T = 1024;
    const int64_t n = 1100000000;  // 2.2 GB of tokens
    char path[256];
    write_shard_raw("big_0.bin", SHARD_MAGIC, SHARD_VERSION, (int32_t)n, NULL, 0, path);
    int fd = open(path, O_RDWR);
    ck_assert(fd >= 0);
    ck_assert(ftruncate(fd, (off_t)(1024 + 2 * n)) == 0);  // holes read as zeros, no disk used
    int64_t nw = (n - 1) / T, last = nw - 1;
    uint16_t marks[T + 1];
    for (int i = 0; i <= T; i++) marks[i] = (uint16_t)(1 + i % 251);
    off_t off = (off_t)(1024 + 2 * last * T);
    ck_assert(off > ((off_t)1 << 31));
    ck_assert(pwrite(fd, marks, sizeof marks, off) == (ssize_t)sizeof marks);
    close(fd);
    DataLoader *dl = open_ok("big_*.bin", 1, T, 257, 0, false);
    ck_assert_int_eq(dataloader_num_windows(dl), nw);
    ck_assert_int_eq(dataloader_total_tokens(dl), n);
    Err err;
    ck_assert(dataloader_seek(dl, (DataPosition){0, (uint64_t)last}, &err));
    int32_t in[T], tg[T];
    dataloader_next(dl, in, tg);
    for (int t = 0; t < T; t++) {
        ck_assert_int_eq(in[t], marks[t]);
        ck_assert_int_eq(tg[t], marks[t + 1]);
    }
    dataloader_close(dl);
    remove_dir();
}
END_TEST

START_TEST(test_errors) {
    make_dir();
    Err err;
    uint16_t tok[200];
    for (int i = 0; i < 200; i++) tok[i] = (uint16_t)(i % 250);
    char path[256];

    ck_assert(open_fails("nothing_*.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, "nothing_*.bin") && strstr(err.msg, "build_corpus.sh"), "message: %s", err.msg);

    write_shard_raw("magic.bin", 12345, SHARD_VERSION, 200, tok, 200, path);
    ck_assert(open_fails("magic.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "magic") && strstr(err.msg, "build_corpus.sh"),
                  "message: %s", err.msg);

    write_shard_raw("version.bin", SHARD_MAGIC, 7, 200, tok, 200, path);
    ck_assert(open_fails("version.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "version 7"), "message: %s", err.msg);

    write_shard_raw("trunc.bin", SHARD_MAGIC, SHARD_VERSION, 200, tok, 150, path);
    ck_assert(open_fails("trunc.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "truncated") && strstr(err.msg, "200 tokens"),
                  "message: %s", err.msg);

    write_shard_raw("trailing.bin", SHARD_MAGIC, SHARD_VERSION, 150, tok, 200, path);
    ck_assert(open_fails("trailing.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "trailing"), "message: %s", err.msg);

    snprintf(path, sizeof path, "%s/tiny.bin", g_dir);
    FILE *f = fopen(path, "wb");
    fputs("not a shard", f);
    fclose(f);
    ck_assert(open_fails("tiny.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "header"), "message: %s", err.msg);

    tok[117] = 300;
    write_shard_raw("vocab.bin", SHARD_MAGIC, SHARD_VERSION, 200, tok, 200, path);
    ck_assert(open_fails("vocab.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "token 117") && strstr(err.msg, "300") &&
                  strstr(err.msg, "vocab_size 257"), "message: %s", err.msg);
    tok[117] = 5;

    write_shard("small_0.bin", tok, 40);  // (40-1)/16 = 2 windows, one batch needs 4
    ck_assert(open_fails("small_*.bin", 4, 16, 257, &err));
    ck_assert_msg(strstr(err.msg, "40 tokens") && strstr(err.msg, "2 windows") && strstr(err.msg, "B = 4") &&
                  strstr(err.msg, "65 tokens"), "message: %s", err.msg);

    ck_assert(open_fails("small_*.bin", 0, 16, 257, &err));
    ck_assert_msg(strstr(err.msg, "batch_size"), "message: %s", err.msg);

    // One bad shard among good ones still fails, naming the bad one.
    write_shard("mix_0.bin", tok, 200);
    write_shard_raw("mix_1.bin", SHARD_MAGIC, SHARD_VERSION, 200, tok, 199, path);
    ck_assert(open_fails("mix_*.bin", 1, 4, 257, &err));
    ck_assert_msg(strstr(err.msg, "mix_1.bin"), "message: %s", err.msg);
    remove_dir();
}
END_TEST

int main(void) {
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("data");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sequential_windows);
    tcase_add_test(tc, test_shuffle);
    tcase_add_test(tc, test_seek_and_position);
    tcase_add_test(tc, test_skip);
    tcase_add_test(tc, test_shard_over_2gb);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
