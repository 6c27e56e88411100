// test_safetensors.c — safetensors round trip, PyTorch-layout files, and every error path.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testrun.h"
#include "testutil.h"

// ---------------------------------------------------------------------------------------------
// Temp dir and raw file helpers.

static char g_dir[64];

static void setup(void) {
    tu_make_tmp(g_dir, sizeof g_dir, "safetensors");
}

static void teardown(void) { tu_remove_tmp(g_dir); }

static void path_in(char *out, const char *name) { snprintf(out, 256, "%s/%s", g_dir, name); }

static unsigned char *read_bytes(const char *path, size_t *len) {
    char *b;
    Err e;
    ck_assert_msg(read_file(path, SIZE_MAX - 1, &b, len, &e), "%s", e.msg);
    return (unsigned char *)b;
}

static void write_file(const char *path, const void *b, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

// Writes a safetensors file from a header string (padded with spaces to a multiple of 8, as PyTorch
// does) and a data section.
static void write_raw_st(const char *path, const char *header, const void *data, size_t data_len) {
    size_t h = strlen(header), hp = (h + 7) / 8 * 8;
    unsigned char *b = calloc(1, 8 + hp + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    if (data_len) memcpy(b + 8 + hp, data, data_len);
    write_file(path, b, 8 + hp + data_len);
    free(b);
}

static void expect_error(bool ok, const Err *e, const char *what, const char *must1, const char *must2) {
    printf("  [%s] -> %s\n", what, ok ? "(no error!)" : e->msg);
    ck_assert_msg(!ok, "%s: expected an error", what);
    ck_assert_msg(strstr(e->msg, must1), "%s: message lacks '%s': %s", what, must1, e->msg);
    if (must2) ck_assert_msg(strstr(e->msg, must2), "%s: message lacks '%s': %s", what, must2, e->msg);
}

// ---------------------------------------------------------------------------------------------
// A small model-like set of tensors.

enum { NT = 5 };
typedef struct {
    TensorRef t[NT];
    float *block;
    size_t total;
} Set;

static void make_set(Set *s, uint64_t seed) {
    static const TensorRef shapes[NT] = {
        {"model.embeddings.weight", 2, {37, 16}, NULL},
        {"model.layers.0.mixer.conv1d.weight", 3, {24, 1, 4}, NULL},
        {"model.norm.weight", 1, {16}, NULL},
        {"scalar", 0, {0}, NULL},
        {"empty.weight", 2, {0, 5}, NULL},
    };
    s->total = 0;
    for (int i = 0; i < NT; i++) s->total += (size_t)tensor_numel(&shapes[i]);
    s->block = xmalloc(s->total * sizeof(float));
    tu_fill_randn(s->block, s->total, 1.0f, &seed);
    // Special values must survive bit-exactly.
    s->block[0] = -0.0f;
    s->block[1] = INFINITY;
    uint32_t nan_bits = 0x7fc01234u;
    memcpy(&s->block[2], &nan_bits, 4);
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        s->t[i] = shapes[i];
        s->t[i].data = s->block + off;
        off += (size_t)tensor_numel(&shapes[i]);
    }
}

// Same names/shapes, fresh buffers filled with garbage.
static void make_empty_like(Set *dst, const Set *src) {
    *dst = *src;
    dst->block = xmalloc(src->total * sizeof(float));
    memset(dst->block, 0xA5, src->total * sizeof(float));
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        dst->t[i].data = dst->block + off;
        off += (size_t)tensor_numel(&src->t[i]);
    }
}

static void write_set(const char *path, const Set *s) {
    Err e;
    ck_assert_msg(safetensors_write(path, s->t, NT, NULL, &e), "%s", e.msg);
}

// ---------------------------------------------------------------------------------------------

START_TEST(test_roundtrip) {
    Set a, b;
    make_set(&a, 1);
    make_empty_like(&b, &a);
    char path[256], tmp[300];
    path_in(path, "rt.safetensors");
    const char *meta[] = {"step", "7", "note", "quote\" back\\slash\nnewline", NULL};
    Err e;
    ck_assert_msg(safetensors_write(path, a.t, NT, meta, &e), "%s", e.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_msg(access(tmp, F_OK) != 0, "temporary file left behind");

    ck_assert_msg(safetensors_read(path, b.t, NT, true, &e), "%s", e.msg);
    ck_assert_msg(memcmp(a.block, b.block, a.total * sizeof(float)) == 0, "data not bit-identical");

    StFileInfo info;
    ck_assert_msg(safetensors_list(path, &info, &e), "%s", e.msg);
    ck_assert_int_eq(info.n, NT);
    int64_t data_bytes = 0;
    for (int i = 0; i < NT; i++) {
        ck_assert_str_eq(info.tensors[i].name, a.t[i].name);
        ck_assert_str_eq(info.tensors[i].dtype, "F32");
        ck_assert_int_eq(info.tensors[i].ndim, a.t[i].ndim);
        for (int d = 0; d < a.t[i].ndim; d++) ck_assert_int_eq(info.tensors[i].shape[d], a.t[i].shape[d]);
        ck_assert_int_eq(info.tensors[i].begin, data_bytes);
        data_bytes += tensor_numel(&a.t[i]) * 4;
    }
    printf("  round trip: %d tensors, header %lld bytes, file %lld bytes\n", info.n, (long long)info.header_len,
           (long long)info.file_size);
    ck_assert_int_eq(info.header_len % 8, 0);
    ck_assert_int_eq(info.file_size, 8 + info.header_len + data_bytes);
    safetensors_info_free(&info);

    char *v;
    ck_assert(safetensors_get_metadata(path, "format", &v, &e));
    ck_assert_str_eq(v, "pt");
    free(v);
    ck_assert(safetensors_get_metadata(path, "step", &v, &e));
    ck_assert_str_eq(v, "7");
    free(v);
    ck_assert(safetensors_get_metadata(path, "note", &v, &e));
    ck_assert_str_eq(v, meta[3]);
    free(v);
    ck_assert(safetensors_get_metadata(path, "crc32.model.norm.weight", &v, &e));
    char want[9];
    snprintf(want, sizeof want, "%08x", (unsigned)crc32_update(0, a.t[2].data, 16 * sizeof(float)));
    ck_assert_str_eq(v, want);
    free(v);
    ck_assert(safetensors_get_metadata(path, "absent", &v, &e));
    ck_assert_ptr_null(v);

    // The header is plain JSON with __metadata__ first and space padding only.
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)raw[i] << (8 * i);
    cJSON *root = cJSON_ParseWithLength((const char *)raw + 8, hl);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(root->child->string, "__metadata__");
    cJSON_Delete(root);
    free(raw);

    // Overwriting an existing file works (atomic replace).
    ck_assert_msg(safetensors_write(path, a.t, 3, NULL, &e), "%s", e.msg);
    ck_assert_msg(safetensors_read(path, b.t, 3, true, &e), "%s", e.msg);
    free(a.block);
    free(b.block);
}
END_TEST

// A tensor larger than the 32 MB read/CRC piece: pieces are read in parallel and CRCs combined.
START_TEST(test_large_tensor) {
    int64_t rows = 9 * 1024 + 3, cols = 1024;  // 36 MB
    TensorRef t = {"big", 2, {rows, cols}, xmalloc((size_t)(rows * cols) * 4)};
    TensorRef r = {"big", 2, {rows, cols}, xcalloc((size_t)(rows * cols), 4)};
    uint64_t seed = 5;
    tu_fill_randn(t.data, (size_t)(rows * cols), 1.0f, &seed);
    char path[256];
    path_in(path, "big.safetensors");
    Err e;
    double t0 = now_seconds();
    ck_assert_msg(safetensors_write(path, &t, 1, NULL, &e), "%s", e.msg);
    double t1 = now_seconds();
    ck_assert_msg(safetensors_read(path, &r, 1, true, &e), "%s", e.msg);
    double t2 = now_seconds();
    printf("  36 MB tensor: write %.3f s, read %.3f s (sanitizer build)\n", t1 - t0, t2 - t1);
    ck_assert(memcmp(t.data, r.data, (size_t)(rows * cols) * 4) == 0);
    char *v;
    ck_assert(safetensors_get_metadata(path, "crc32.big", &v, &e));
    char want[9];
    snprintf(want, sizeof want, "%08x", (unsigned)crc32_update(0, t.data, (size_t)(rows * cols) * 4));
    ck_assert_str_eq(v, want);
    free(v);
    // Corrupt a byte in the second piece: the combined CRC must catch it.
    FILE *f = fopen(path, "r+b");
    size_t len;
    free(read_bytes(path, &len));
    fseeko(f, (off_t)len - 100, SEEK_SET);
    int c = fgetc(f);
    fseeko(f, (off_t)len - 100, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    expect_error(safetensors_read(path, &r, 1, true, &e), &e, "corrupt 2nd piece", "corrupt", "'big'");
    free(t.data);
    free(r.data);
}
END_TEST

// A file laid out as PyTorch's writer does: sorted keys, only {"format":"pt"} metadata (no CRCs),
// space padding, data ordered differently from the keys, BF16 and F16 tensors.
START_TEST(test_pytorch_layout) {
    float f32[4] = {1.25f, -3.5f, 1e-30f, 7.0f};
    uint16_t bf16[6];
    float bf16_want[6];
    uint64_t seed = 9;
    for (int i = 0; i < 6; i++) {
        float x = tu_randn(&seed);
        uint32_t bits;
        memcpy(&bits, &x, 4);
        bf16[i] = (uint16_t)(bits >> 16);
        bits &= 0xffff0000u;
        memcpy(&bf16_want[i], &bits, 4);
    }
    // F16: 1.5, -2, 2^-10, 2^-24 (smallest subnormal), 65504 (max), -0, +inf
    uint16_t f16[7] = {0x3E00, 0xC000, 0x1400, 0x0001, 0x7BFF, 0x8000, 0x7C00};
    float f16_want[7] = {1.5f, -2.0f, 0x1p-10f, 0x1p-24f, 65504.0f, -0.0f, INFINITY};
    unsigned char data[16 + 12 + 14];
    memcpy(data, f32, 16);        // F32 first, as safetensors orders data by dtype alignment
    memcpy(data + 16, bf16, 12);
    memcpy(data + 28, f16, 14);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
        "\"b.f32\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"c.f16\":{\"dtype\":\"F16\",\"shape\":[7],\"data_offsets\":[28,42]}}";
    char path[256];
    path_in(path, "torch.safetensors");
    write_raw_st(path, hdr, data, sizeof data);

    float got_f32[4], got_bf16[6], got_f16[7];
    TensorRef ex[3] = {{"b.f32", 1, {4}, got_f32}, {"c.f16", 1, {7}, got_f16}, {"a.bf16", 2, {2, 3}, got_bf16}};
    Err e;
    ck_assert_msg(safetensors_read(path, ex, 3, true, &e), "%s", e.msg);
    ck_assert(memcmp(got_f32, f32, sizeof f32) == 0);
    ck_assert(memcmp(got_bf16, bf16_want, sizeof bf16_want) == 0);
    ck_assert(memcmp(got_f16, f16_want, sizeof f16_want) == 0);

    StFileInfo info;
    ck_assert_msg(safetensors_list(path, &info, &e), "%s", e.msg);
    ck_assert_int_eq(info.n, 3);
    ck_assert_str_eq(info.tensors[0].name, "a.bf16");
    ck_assert_str_eq(info.tensors[0].dtype, "BF16");
    ck_assert_str_eq(info.tensors[2].dtype, "F16");
    safetensors_info_free(&info);

    // No metadata block at all also loads (older writers).
    const char *hdr2 = "{\"b.f32\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    write_raw_st(path, hdr2, f32, 16);
    memset(got_f32, 0, sizeof got_f32);
    ck_assert_msg(safetensors_read(path, ex, 1, true, &e), "%s", e.msg);
    ck_assert(memcmp(got_f32, f32, sizeof f32) == 0);
    char *v;
    ck_assert(safetensors_get_metadata(path, "format", &v, &e));
    ck_assert_ptr_null(v);
}
END_TEST

START_TEST(test_truncated) {
    Set a, b;
    make_set(&a, 2);
    make_empty_like(&b, &a);
    char path[256], cut[256];
    path_in(path, "full.safetensors");
    path_in(cut, "cut.safetensors");
    write_set(path, &a);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)raw[i] << (8 * i);
    size_t cuts[] = {0, 4, 8, 8 + hl / 2, 8 + hl, 8 + hl + 10, len - 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(cut, raw, cuts[i]);
        Err e;
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", cuts[i], len);
        expect_error(safetensors_read(cut, b.t, NT, true, &e), &e, what, "truncated", cut);
        StFileInfo info;
        ck_assert(!safetensors_list(cut, &info, &e));
    }
    free(raw);
    free(a.block);
    free(b.block);
}
END_TEST

START_TEST(test_corrupt_crc) {
    Set a, b;
    make_set(&a, 3);
    make_empty_like(&b, &a);
    char path[256];
    path_in(path, "crc.safetensors");
    write_set(path, &a);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)raw[i] << (8 * i);
    // Flip one bit inside tensor 1 (conv1d weight), which starts after the 37*16 embedding floats.
    size_t at = 8 + hl + 37 * 16 * 4 + 50;
    raw[at] ^= 0x01;
    write_file(path, raw, len);
    Err e;
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "flipped bit", "corrupt",
                 "'model.layers.0.mixer.conv1d.weight'");
    // Tensors not containing the flipped byte still load.
    ck_assert_msg(safetensors_read(path, &b.t[0], 1, false, &e), "%s", e.msg);
    raw[at] ^= 0x01;
    write_file(path, raw, len);
    ck_assert_msg(safetensors_read(path, b.t, NT, true, &e), "%s", e.msg);
    free(raw);
    free(a.block);
    free(b.block);
}
END_TEST

START_TEST(test_wrong_shape_missing_unexpected) {
    Set a, b;
    make_set(&a, 4);
    make_empty_like(&b, &a);
    char path[256];
    path_in(path, "shape.safetensors");
    write_set(path, &a);
    Err e;

    TensorRef saved = b.t[0];
    b.t[0].shape[0] = 16;
    b.t[0].shape[1] = 37;
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "transposed shape", "[37,16]", "[16,37]");
    ck_assert(strstr(e.msg, "different model config") && strstr(e.msg, "'model.embeddings.weight'"));
    b.t[0].ndim = 1;
    b.t[0].shape[0] = 37 * 16;
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "flattened shape", "[592]", "--config");
    b.t[0] = saved;

    float extra_buf[3];
    TensorRef more[NT + 1];
    memcpy(more, b.t, sizeof b.t);
    more[NT] = (TensorRef){"model.layers.1.attn.q_proj.weight", 1, {3}, extra_buf};
    expect_error(safetensors_read(path, more, NT + 1, false, &e), &e, "missing tensor", "missing",
                 "'model.layers.1.attn.q_proj.weight'");
    ck_assert(strstr(e.msg, path));

    expect_error(safetensors_read(path, b.t, 3, true, &e), &e, "unexpected under strict", "unexpected", "'scalar'");
    ck_assert(strstr(e.msg, "'empty.weight'") && strstr(e.msg, "2 unexpected"));
    ck_assert_msg(safetensors_read(path, b.t, 3, false, &e), "non-strict subset: %s", e.msg);
    ck_assert(memcmp(a.block, b.block, (37 * 16 + 24 * 4 + 16) * sizeof(float)) == 0);
    free(a.block);
    free(b.block);
}
END_TEST

START_TEST(test_bad_headers) {
    Set a, b;
    make_set(&a, 5);
    make_empty_like(&b, &a);
    char path[256];
    path_in(path, "hdr.safetensors");
    write_set(path, &a);
    size_t len;
    unsigned char *raw = read_bytes(path, &len);
    Err e;

    // Header length larger than the file.
    unsigned char *bad = malloc(len);
    memcpy(bad, raw, len);
    uint64_t big = (uint64_t)len;
    for (int i = 0; i < 8; i++) bad[i] = (unsigned char)(big >> (8 * i));
    write_file(path, bad, len);
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "header length > file", "header length", path);
    // Absurd header length (e.g. random bytes).
    big = 1ull << 40;
    for (int i = 0; i < 8; i++) bad[i] = (unsigned char)(big >> (8 * i));
    write_file(path, bad, len);
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "header length 2^40", "implausible", path);

    // Invalid JSON of the same length: the header is overwritten with a cut-off object.
    memcpy(bad, raw, len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)raw[i] << (8 * i);
    memset(bad + 8, ' ', hl);
    memcpy(bad + 8, "{\"a\": [1, 2", 11);
    write_file(path, bad, len);
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "invalid JSON", "not valid JSON", path);
    // Garbage after a valid object.
    memset(bad + 8, ' ', hl);
    memcpy(bad + 8, "{} xyz", 6);
    write_file(path, bad, len);
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "trailing garbage", "not valid JSON", path);
    // Valid JSON, not an object.
    memset(bad + 8, ' ', hl);
    memcpy(bad + 8, "[1,2]", 5);
    write_file(path, bad, len);
    expect_error(safetensors_read(path, b.t, NT, true, &e), &e, "JSON array", "not a JSON object", path);
    free(bad);
    free(raw);

    // Unsupported dtype, inconsistent offsets, non-string metadata.
    float buf[4] = {0};
    TensorRef t = {"w", 1, {4}, buf};
    write_raw_st(path, "{\"w\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}", buf, 16);
    expect_error(safetensors_read(path, &t, 1, true, &e), &e, "I32 dtype", "dtype I32", "F32");
    write_raw_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", buf, 16);
    expect_error(safetensors_read(path, &t, 1, true, &e), &e, "offsets too short", "corrupt", "'w'");
    write_raw_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"__metadata__\":{\"x\":1}}",
                 buf, 16);
    expect_error(safetensors_read(path, &t, 1, true, &e), &e, "numeric metadata", "__metadata__", "corrupt");
    write_raw_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"__metadata__\":{\"crc32.w\":\"xyz\"}}", buf, 16);
    expect_error(safetensors_read(path, &t, 1, true, &e), &e, "malformed crc", "crc32.w", "corrupt");

    // The tensors must tile the data section exactly (PyTorch-style files carry no CRC to catch this).
    TensorRef two[2] = {{"a", 1, {2}, buf}, {"b", 1, {2}, buf + 2}};
    write_raw_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", buf, 16);
    expect_error(safetensors_read(path, two, 2, true, &e), &e, "overlapping offsets", "overlaps", "corrupt");
    write_raw_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", buf, 16);
    expect_error(safetensors_read(path, two, 2, false, &e), &e, "gap between tensors", "[8,12) belong to no tensor",
                 "corrupt");
    write_raw_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", buf, 16);
    expect_error(safetensors_read(path, two, 1, true, &e), &e, "trailing data bytes", "8 trailing bytes", "corrupt");
    StFileInfo info;
    expect_error(safetensors_list(path, &info, &e), &e, "trailing bytes (list)", "8 trailing bytes", path);
    // A shape whose product overflows int64 is refused before any multiplication overflows (UBSan would
    // abort this test otherwise).
    write_raw_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                       "\"data_offsets\":[0,16]}}", buf, 16);
    expect_error(safetensors_read(path, &t, 1, true, &e), &e, "huge shape", "invalid shape", "corrupt");

    char missing[256];
    path_in(missing, "nope.safetensors");
    expect_error(safetensors_read(missing, &t, 1, true, &e), &e, "missing file", "cannot read", missing);
    free(a.block);
    free(b.block);
}
END_TEST

START_TEST(test_write_errors) {
    float buf[2] = {1, 2};
    TensorRef t[2] = {{"w", 1, {2}, buf}, {"w", 1, {2}, buf}};
    Err e;
    expect_error(safetensors_write("/nonexistent_dir_xyz/a.safetensors", t, 1, NULL, &e), &e, "no directory",
                 "cannot create", "/nonexistent_dir_xyz/a.safetensors.tmp");
    char path[256];
    path_in(path, "w.safetensors");
    expect_error(safetensors_write(path, t, 2, NULL, &e), &e, "duplicate name", "twice", "'w'");
    const char *meta[] = {"format", "tf", NULL};
    expect_error(safetensors_write(path, t, 1, meta, &e), &e, "reserved key", "reserved", "format");
    ck_assert_msg(access(path, F_OK) != 0, "a failed write must not create the file");
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_large_tensor);
    tcase_add_test(tc, test_pytorch_layout);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_corrupt_crc);
    tcase_add_test(tc, test_wrong_shape_missing_unexpected);
    tcase_add_test(tc, test_bad_headers);
    tcase_add_test(tc, test_write_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
